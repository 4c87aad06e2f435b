"""The ``ppsi`` command line: Typer app; each command lives in its own module of this package.

The CLI layer is the only code that imports typer or rich; it parses, validates, calls one library
function and renders the result.
"""

from __future__ import annotations

import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    sys.stderr.write("error: interrupted while starting; nothing was done\n")
    sys.exit(130)


# Ctrl-C while the command line loads (typer, rich): one line, not a traceback; ``main`` puts
# the usual KeyboardInterrupt back before any command runs
signal.signal(signal.SIGINT, _interrupted_while_starting)

import typer  # noqa: E402

from .. import __version__  # noqa: E402

app = typer.Typer(
    name="ppsi",
    help="Turn STFT magnitude spectrograms back into waveforms, online and fast.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: typer's rich help imports ~0.2 s of modules
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ppsi {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """ppsi: phase reconstruction from STFT magnitudes."""


def _register() -> None:
    # Each module adds its commands to ``app`` (or a sub-app) on import.
    from . import bench, evaluate, info, invert, score, train  # noqa: F401


_register()


def _load_torch() -> None:
    """Import torch with Ctrl-C deferred: an interrupt raised inside its C++ import code aborts
    the process (pybind11 terminates), so it is recorded and reported once the import is done.
    Help and version need no torch and stay fast. A command then runs with freed memory kept
    in the process (:func:`ppsi_cli.runtime.keep_freed_memory`)."""
    args = sys.argv[1:]
    if not args or "--help" in args or "--version" in args:
        return
    hit: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    import torch  # noqa: F401

    if hit:
        _interrupted_while_starting(signal.SIGINT, None)
    from ..runtime import keep_freed_memory

    keep_freed_memory()  # before the command allocates: faster CPU work, same results


def main() -> None:
    _load_torch()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app()
    except KeyboardInterrupt:  # between the command's own handlers
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except SystemExit as exc:
        # typer turns a Ctrl-C while it parses the command line into a silent exit 130
        typer_exit = exc.__context__
        if exc.code == 130 and isinstance(getattr(typer_exit, "__cause__", None),
                                          KeyboardInterrupt):
            sys.stderr.write("error: interrupted while starting; nothing was done\n")
        raise
    finally:  # the command has ended: a late Ctrl-C must not turn its result into a crash
        signal.signal(signal.SIGINT, signal.SIG_IGN)
