"""``python -m ppsi_cli`` runs the command-line tool."""

from .cli import main

main()
