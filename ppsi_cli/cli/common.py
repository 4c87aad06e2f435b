"""Shared CLI helpers: one red line per error on stderr, consoles for results and diagnostics."""

from __future__ import annotations

import functools
import inspect
import os
import typing
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

out = Console()  # results (stdout, pipeable)
err = Console(stderr=True, soft_wrap=True)  # progress, notices, errors (one line each)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one clear error line and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def writable_file(flag: str, path: Optional["os.PathLike"], make_folder: bool = True,
                  code: int = 1) -> None:
    """Before any work: the folder of an output file ``path`` exists (made if missing, with
    ``make_folder``) and takes files, and ``path`` is not a folder; else one line and exit
    ``code`` (a long run must not fail at its end on where its output goes)."""
    if path is None:
        return
    path = Path(path)
    if not make_folder and not path.parent.is_dir():
        raise fail(f"{flag} {escape(repr(str(path)))}: folder {escape(repr(str(path.parent)))} "
                   "does not exist", code=code)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot write {flag} {escape(str(path))}: {escape(str(exc))}",
                   code=code) from None
    if path.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        why = "is a folder" if path.is_dir() else f"folder {path.parent} is not writable"
        raise fail(f"cannot write {flag} {escape(str(path))}: {escape(why)}", code=code)


# STFT settings: one definition, added to invert, spec, eval and train by ``with_stft_options``
# (torch's names; None: not given, so a spectrogram file's own metadata or the defaults apply)
_STFT_OPTIONS = {
    "sample_rate": (int, typer.Option(None, "--sample-rate", help="Hz (default 16000).")),
    "n_fft": (int, typer.Option(None, "--n-fft", help="FFT size (default 1024).")),
    "win_length": (int, typer.Option(None, "--win-length", help="Window length <= n_fft, "
                                     "centred in the frame (default: n_fft).")),
    "hop_length": (int, typer.Option(None, "--hop-length", help="Hop (default: "
                                     "win_length // 4).")),
    "window": (str, typer.Option(None, "--window", help="hann | sqrt-hann | hamming | "
                                 "blackman (default hann).")),
    "center": (bool, typer.Option(None, "--center/--no-center", help="Frames centred as "
                                  "torch/librosa (center=True) or ppsi's start-referenced "
                                  "frames (default; not torch's center=False: that is "
                                  "--center --pad-length 0).")),
    "pad_length": (int, typer.Option(None, "--pad-length", help="Padding of centred frames "
                                     "before the signal (default n_fft // 2); 0: frames start "
                                     "at the signal, torch/librosa center=False.")),
}

#: the notice for ``--no-center`` given explicitly (its name reads like torch's center=False)
NO_CENTER_NOTICE = ("--no-center is ppsi's start-referenced framing (frames begin win_length - "
                    "hop samples before the signal); a torch / librosa center=False "
                    "spectrogram is --center --pad-length 0")


#: ``--mel PRESET``: one definition for invert, spec and eval
MEL_HELP = ("Mel front end: hifigan | vocos | librosa | torchaudio, each setting overridable as "
            "+KEY=VALUE (n_mels, f_min, f_max, mel_scale, mel_norm, power, log, clamp), e.g. "
            "hifigan+f_max=11025. Its STFT is the default.")


def mel_option(help_text: str = MEL_HELP):
    return typer.Option(None, "--mel", help=help_text)


def with_stft_options(command):
    """Give ``command`` the STFT options; it receives them as one dict, its ``stft`` argument
    (the settings given, None for the others)."""
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command)  # resolved in the command's own module
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                               annotation=Optional[kind])
             for name, (kind, option) in _STFT_OPTIONS.items()]
    params = [p.replace(annotation=hints.get(p.name, p.annotation))
              for p in signature.parameters.values() if p.name != "stft"]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        stft = {name: kwargs.pop(name) for name in _STFT_OPTIONS}
        return command(*args, stft=stft, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params + extra,
                                              return_annotation=None)
    wrapper.__annotations__ = {p.name: p.annotation for p in params + extra}
    del wrapper.__wrapped__  # typer reads the signature above, not the command's own
    return wrapper
