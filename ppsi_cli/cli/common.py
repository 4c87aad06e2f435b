"""Shared CLI helpers: one red line per error on stderr, consoles for results and diagnostics."""

from __future__ import annotations

import typer
from rich.console import Console

out = Console()  # results (stdout, pipeable)
err = Console(stderr=True, soft_wrap=True)  # progress, notices, errors (one line each)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one clear error line and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)
