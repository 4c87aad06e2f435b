"""``ppsi invert`` (spectrograms or audio -> WAV) and ``ppsi spec`` (audio -> spectrogram files)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from . import app
from .common import (NO_CENTER_NOTICE, err, fail, mel_option, out, with_stft_options,
                     writable_file)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    return i, n


@app.command()
@with_stft_options
def invert(
    inputs: Path = typer.Argument(..., help="A spectrogram/audio file or a folder (recursive)."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Output folder (mirrors the input "
                                 "tree); for one input file, a path ending in .wav names the "
                                 "output file itself."),
    method: str = typer.Option("ppsi", help="ppsi | ppsi-strided | ppsi-offline | oracle | "
                                            "rtisi-la | rtisi | griffin-lim | pghi | rtpghi | "
                                            "librosa | torchaudio | pghipy; options as "
                                            "+KEY=VALUE (e.g. "
                                            "griffin-lim+iters=100)"),
    weights: Optional[Path] = typer.Option(None, help="Weights file (default: shipped weights)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    iters: Optional[int] = typer.Option(None, help="Iterations: Griffin-Lim (default 32), "
                                                   "RTISI(-LA) sweeps per frame (default 5)."),
    momentum: Optional[float] = typer.Option(None, help="Momentum: fast Griffin-Lim and --refine "
                                                        "(default 0.99; 0: plain GL), RTISI(-LA) "
                                                        "(default 0.7)."),
    refine: Optional[int] = typer.Option(None, help="ppsi methods: fast Griffin-Lim iterations "
                                                    "warm-started from the ppsi phase (offline, "
                                                    "best quality)."),
    subtype: str = typer.Option("PCM_16", help="PCM_16 | PCM_24 | FLOAT"),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip existing outputs."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Files inverted together "
                                                               "(default 1 on CPU, 16 on GPU)."),
    shard: str = typer.Option("0/1", help="Process shard I of N of the sorted file list."),
    gpus: int = typer.Option(0, min=0, help="One process per GPU over shards."),
    jobs: int = typer.Option(1, min=1, help="CPU worker processes over shards, one thread "
                                            "each (a folder's throughput on many cores)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the summary here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, no per-file ok lines or "
                               "notices (failures still get theirs)."),
    stft: dict = None,  # the STFT options, given by with_stft_options
    scale: Optional[str] = typer.Option(None, "--scale", help="linear | power | log | db: the "
                                        "scale of .npy/.pt files (default linear)."),
    mel: Optional[str] = mel_option("The input is a mel spectrogram of this front end (.npz "
                                    "files may say it themselves): hifigan | vocos | librosa "
                                    "| torchaudio, settings overridable as +KEY=VALUE (n_mels, "
                                    "f_min, f_max, mel_scale, mel_norm, power, log, clamp). "
                                    "Audio input: its mel is inverted."),
) -> None:
    """Invert magnitude spectrograms (.npy/.npz/.pt) or audio (wav/flac/ogg) into WAV files.

    A spectrogram's STFT is what its .npz metadata say, else the STFT options, else 16 kHz,
    Hann 1024, hop 256, start-referenced frames; an option that contradicts a file's metadata is
    an error. Audio is analysed with the options. Each WAV has its spectrogram's sample rate.
    Ctrl-C stops after the files that are done (exit 130; --json has them)."""
    try:
        import torch

        from ..batch import (INPUT_EXTS, InvertOptions, Summary, find_inputs, named_output,
                             run_batch, run_sharded)
        from ..inverter import resolve_device
    except KeyboardInterrupt:
        raise fail("interrupted while starting; no file was touched", code=130) from None

    try:
        i, n = _parse_shard(shard)
        dev = str(resolve_device("cuda" if gpus else device))
        options = InvertOptions(method=method, weights=str(weights) if weights else None,
                                device=dev, iters=iters, momentum=momentum, refine=refine,
                                subtype=subtype, force=force, skip_existing=skip_existing,
                                batch_size=batch_size or (16 if dev.startswith("cuda") else 1),
                                shard=(i, n), scale=scale, mel=mel,
                                stft=stft)
        total = len(find_inputs(inputs))
    except (ValueError, FileNotFoundError) as exc:
        raise fail(escape(str(exc))) from None
    writable_file("--json", json_file)
    named = named_output(inputs, out_dir)
    if named != "wav" and f".{named}" in INPUT_EXTS:
        raise fail(f"-o {escape(str(out_dir))}: invert writes WAV files; name the output .wav or "
                   "give a folder")
    if stft.get("center") is False and not quiet:
        err.print(f"[yellow]notice[/] {NO_CENTER_NOTICE}", highlight=False)
    if total == 0:
        raise fail(f"no spectrogram or audio files (.npy .npz .pt .wav .flac .ogg) under "
                   f"{escape(str(inputs))}")
    if gpus and gpus > torch.cuda.device_count():
        raise fail(f"--gpus {gpus}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if jobs > 1 and (gpus or options.device != "cpu"):
        raise fail("--jobs runs CPU workers; for CUDA use --gpus N (or --device cpu)")

    progress = Progress(TextColumn("[bold]inverting"), BarColumn(), TextColumn("{task.completed}"
                        "/{task.total} files"), TextColumn("{task.fields[speed]}"),
                        TimeRemainingColumn(), console=err, disable=quiet, transient=True)
    task = progress.add_task("files", total=total, speed="")
    audio = {"seconds": 0.0, "start": time.perf_counter()}

    def on_event(e: dict) -> None:
        if e["event"] == "start":
            progress.update(task, total=e["files"])
        elif e["event"] == "file":
            if e["status"] == "failed":
                err.print(f"[red]failed[/] {escape(e['input'])}: {escape(e['error'])}",
                          highlight=False)
            elif not quiet:
                for note in e["notices"]:
                    err.print(f"[yellow]notice[/] {escape(e['input'])}: {escape(note)}",
                              highlight=False)
            audio["seconds"] += e["audio_seconds"]
            rate = audio["seconds"] / max(time.perf_counter() - audio["start"], 1e-9)
            progress.update(task, advance=1, speed=f"{rate:.1f} audio s/s")

    try:
        with progress:
            if gpus or jobs > 1:
                devices = [f"cuda:{g}" for g in range(gpus)] if gpus else ["cpu"] * jobs
                summary: Summary = run_sharded(inputs, out_dir, options, devices, on_event)
            else:
                summary = run_batch(inputs, out_dir, options, on_event)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(escape(str(exc))) from None
    except KeyboardInterrupt:  # before any file finished (e.g. while torch loads)
        raise fail("interrupted before any file was done", code=130) from None
    line = (f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped; "
            f"{summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s "
            f"({summary.realtime_factor:.1f}x real time)")
    if not quiet:
        out.print(line, highlight=False)
    if json_file:
        try:
            json_file.parent.mkdir(parents=True, exist_ok=True)
            from ..io import json_text

            json_file.write_text(json_text(summary.to_dict()))
        except OSError as exc:
            raise fail(f"cannot write --json {escape(str(json_file))}: {escape(str(exc))}")
    if summary.interrupted:
        done = summary.ok + summary.failed + summary.skipped
        raise fail(f"interrupted: {done} of {summary.planned} files done; run the same command "
                   "with --skip-existing to finish", code=130)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
@with_stft_options
def spec(
    inputs: Path = typer.Argument(..., help="An audio file or a folder of audio (recursive)."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Output folder (mirrors the tree); "
                                 "for one audio file, a path ending in .npz, .npy or .pt names "
                                 "the output file itself (and its format)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="npz (with STFT metadata, the "
                                      "default) | npy | pt"),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    stft: dict = None,  # the STFT options, given by with_stft_options
    mel: Optional[str] = mel_option("Write mel spectrograms of this front end instead: "
                                    "hifigan | vocos | librosa | torchaudio (+KEY=VALUE "
                                    "overrides)."),
) -> None:
    """Write magnitude spectrograms of audio (16 kHz, Hann 1024, hop 256 unless the STFT
    options say otherwise), or with --mel its mel spectrograms; .npz files carry every setting
    as metadata."""
    from ..batch import make_spectrograms, named_output
    from ..io import AUDIO_EXTS
    from ..spec_io import SPEC_EXTS

    formats = tuple(e[1:] for e in SPEC_EXTS)
    named = named_output(inputs, out_dir)
    if f".{named}" in AUDIO_EXTS:
        raise fail(f"-o {escape(str(out_dir))}: spec writes spectrogram files; name the output "
                   ".npz, .npy or .pt, or give a folder")
    fmt = fmt.lower() if fmt else (named if named in formats else "npz")
    if fmt not in formats:
        raise fail(f"--format must be npz, npy or pt, got {fmt!r}")
    if named in formats and named != fmt:
        raise fail(f"--format {fmt} but -o {escape(str(out_dir))} names a .{named} file")
    try:
        results = make_spectrograms(inputs, out_dir, fmt, force, stft, mel)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(escape(str(exc))) from None
    failed = [r for r in results if r.status == "failed"]
    for r in results:
        if r.status == "failed":
            err.print(f"[red]failed[/] {escape(r.input)}: {escape(r.error)}", highlight=False)
        for note in r.notices:
            err.print(f"[yellow]notice[/] {escape(r.input)}: {escape(note)}", highlight=False)
    out.print(f"{len(results) - len(failed)} spectrogram(s) written to {out_dir}, "
              f"{len(failed)} failed", highlight=False)
    if failed:
        raise typer.Exit(1)
