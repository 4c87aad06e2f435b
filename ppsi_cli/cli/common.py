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


# STFT settings, one definition shared by invert, spec, eval and train (torch's names; None:
# not given, so a spectrogram file's own metadata or today's defaults apply)
SAMPLE_RATE = typer.Option(None, "--sample-rate", help="Hz (default 16000).")
N_FFT = typer.Option(None, "--n-fft", help="FFT size (default 1024).")
WIN_LENGTH = typer.Option(None, "--win-length", help="Window length <= n_fft, centred in the "
                                                     "frame (default: n_fft).")
HOP_LENGTH = typer.Option(None, "--hop-length", help="Hop (default: win_length // 4).")
WINDOW = typer.Option(None, "--window", help="hann | sqrt-hann | hamming | blackman "
                                             "(default hann).")
CENTER = typer.Option(None, "--center/--no-center", help="Frames centred as torch/librosa "
                                                         "(center=True) or ppsi's start-"
                                                         "referenced frames (default).")


def stft_settings(sample_rate, n_fft, win_length, hop_length, window, center) -> dict:
    return dict(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length,
                hop_length=hop_length, window=window, center=center)
