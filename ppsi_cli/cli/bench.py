"""``ppsi bench``: speed measurements (``ppsi bench solvers``, ``ppsi bench invert``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import app
from .common import err, fail, out, with_stft_options

bench_app = typer.Typer(
    help="Measure speed: tridiagonal solvers, whole inversion.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench", help="Measure speed (solvers, inversion).")

_DTYPES = ("complex128", "complex64", "float64", "float32")  # torch dtypes, by name


def parse_batches(text: str) -> list[int]:
    """``"1,64,1024"`` -> ``[1, 64, 1024]``; raises ValueError naming the bad item."""
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"--batches: {item!r} is not a batch size >= 1 (use e.g. 1,64,1024)")
        sizes.append(int(item))
    return sizes


def _times(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.1f}×" if x >= 1 else f"{x:.2g}×"


def solvers_table(rows: list[dict]) -> Table:
    """Rich table of :func:`ppsi_cli.bench.bench_solvers` results."""
    first = rows[0] if rows else {}
    table = Table(title="Tridiagonal solvers, time per system",
                  caption=(f"K={first.get('k')}, {first.get('dtype')}, {first.get('device')}, "
                           f"{first.get('threads')} thread(s); random Hermitian PD systems. "
                           "Dense is timed on a sub-batch where noted (its memory grows as "
                           "batch × K²).") if rows else None)
    table.add_column("solver")
    table.add_column("batch", justify="right")
    table.add_column("µs per solve", justify="right")
    table.add_column("× vs dense", justify="right")
    table.add_column("× vs reference", justify="right")
    table.add_column("note", style="dim")
    previous = None
    for row in rows:
        if previous is not None and row["batch"] != previous:
            table.add_section()
        previous = row["batch"]
        table.add_row(row["solver"], str(row["batch"]), f"{row['seconds_per_solve'] * 1e6:,.2f}",
                      _times(row["vs_dense"]), _times(row["vs_reference"]), row["note"])
    return table


@bench_app.command("solvers")
def solvers(
    device: str = typer.Option("cpu", "--device", "-d", help="cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as a JSON list."),
    threads: int = typer.Option(1, "--threads", help="torch intra-op threads for the run."),
    dtype: str = typer.Option("complex128", "--dtype",
                              help=f"System dtype: {', '.join(_DTYPES)}."),
    k: int = typer.Option(513, "--k", hidden=True, help="Unknowns per system."),
    batches: str = typer.Option("1,64,1024", "--batches", hidden=True,
                                help="Comma-separated batch sizes."),
    min_time: float = typer.Option(0.2, "--min-time", hidden=True,
                                   help="Minimum timed seconds per measurement."),
) -> None:
    """Time every solver (reference, lapack, ldl, thomas, triton, dense) on random K=513 systems."""
    if device not in ("cpu", "cuda"):
        raise fail(f"--device must be cpu or cuda, got {device!r}", code=2)
    import torch

    from ..bench import bench_solvers

    if device == "cuda" and not torch.cuda.is_available():
        raise fail("--device cuda: no CUDA device is available here")
    if dtype not in _DTYPES:
        raise fail(f"--dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}", code=2)
    try:
        sizes = parse_batches(batches)
    except ValueError as e:
        raise fail(str(e), code=2)
    if threads < 1:
        raise fail(f"--threads must be >= 1, got {threads}", code=2)
    if k < 1:
        raise fail(f"--k must be >= 1, got {k}", code=2)
    if not min_time >= 0:
        raise fail(f"--min-time must be >= 0, got {min_time}", code=2)

    with err.status("timing solvers…") as status:
        def on_result(row: dict) -> None:
            status.update(f"timing solvers… {row['solver']} at batch {row['batch']} done")

        rows = bench_solvers(device=device, k=k, batches=sizes, dtype=getattr(torch, dtype),
                             threads=threads, min_time=min_time, on_result=on_result)
    if as_json:
        from ..io import json_text

        typer.echo(json_text(rows), nl=False)
    else:
        out.print(solvers_table(rows))


def _per_audio_second(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.4f}"


def invert_table(rows: list[dict]) -> Table:
    """Rich table of :func:`ppsi_cli.bench.bench_invert` results."""
    first = rows[0] if rows else {}
    cuda = first.get("device", "cpu").startswith("cuda")
    notes = [f"{first.get('audio_seconds', 0):.1f} s of speech per file, {first.get('device')}"
             + ("" if cuda else f", {first.get('threads')} thread(s)")
             + (f", streamed {first['chunk_frames']} frame(s) per push, "
                f"{first.get('push_audio_ms', 0):g} ms of audio each (a real-time caller's "
                "deadline per push); ms per push over every timed push" if first.get("chunk_frames")
                else "")
             + "; s per audio s: lower is better."]
    cnn = {r["method"]: r["cnn_seconds_per_audio_second"] for r in rows
           if "cnn_seconds_per_audio_second" in r and r["batch"] == first.get("batch")}
    if {"ppsi", "ppsi-strided"} <= cnn.keys():
        notes.append(f"Strided CNN = {cnn['ppsi-strided'] / cnn['ppsi']:.2f} × the online CNN "
                     "(expected ~0.5).")
    for source in sorted({r["weights"] for r in rows if r["weights"]}):
        notes.append(f"ppsi models: {source}"
                     + (" — speed does not depend on the weights' values." if "random" in source
                        else "."))
    table = Table(title="Inversion speed, magnitudes → waveform", caption=" ".join(notes))
    table.add_column("method")
    if cuda:
        table.add_column("batch", justify="right")
    table.add_column("s per audio s", justify="right")
    table.add_column("× real time", justify="right")
    pushes = any("push_ms" in r for r in rows)  # streamed: per push instead of CNN and LS
    for name in (("push median ms", "p99", "max") if pushes else ("CNN s/s", "LS s/s")):
        table.add_column(name, justify="right")
    with_peers = any("vs_peer" in r for r in rows)
    if with_peers:
        table.add_column("vs peer", justify="right")
    previous = None
    for row in rows:
        if previous is not None and row["method"] != previous:
            table.add_section()
        previous = row["method"]
        cells = [row["method"]] + ([str(row["batch"])] if cuda else [])
        table.add_row(*cells, _per_audio_second(row["seconds_per_audio_second"]),
                      _times(row["realtime_factor"]),
                      *([f"{row['push_ms'][k]:.2f}" for k in ("median", "p99", "max")]
                        if pushes else
                        [_per_audio_second(row.get("cnn_seconds_per_audio_second")),
                         _per_audio_second(row.get("ls_seconds_per_audio_second"))]),
                      *([f"{row['vs_peer']:.2f}× {row['peer']}" if "vs_peer" in row else ""]
                        if with_peers else []))
    return table


@bench_app.command("invert")
@with_stft_options
def invert_speed(
    as_json: bool = typer.Option(False, "--json", help="Print the results as a JSON list."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu or cuda."),
    threads: int = typer.Option(1, "--threads", help="torch intra-op threads for the run."),
    seconds: float = typer.Option(10.0, "--seconds", help="Seconds of speech per file."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights file for ppsi "
                                           "(default: shipped weights, else random ones)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods, "
                                          "options as +KEY=VALUE (default: all on CPU; ppsi, "
                                          "ppsi-strided, oracle on CUDA)."),
    batches: Optional[str] = typer.Option(None, "--batches", help="CUDA batch sizes "
                                          "(default 1,16,256)."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per method (median)."),
    audio: Optional[list[Path]] = typer.Option(None, "--audio", help="Speech file(s) to time "
                                               "on (default: the two ARCTIC clips of "
                                               "examples/audio, installed with ppsi)."),
    stft: dict = None,  # the STFT options, given by with_stft_options
    peers: bool = typer.Option(False, "--peers", help="Also time the other libraries' methods "
                               "that are installed (librosa's and torchaudio's griffinlim "
                               "beside ppsi's Griffin-Lim rows, pghipy beside PGHI; pip "
                               "install 'ppsi[peers]'), with each of ppsi's rows' time over "
                               "its fastest peer's."),
    chunk: Optional[int] = typer.Option(None, "--chunk", min=1, help="Time the online methods as "
                                        "streams fed N frames per push (1: frame by frame, as a "
                                        "real-time caller) instead of whole files, with the "
                                        "median, p99 and max ms of a push."),
) -> None:
    """Time every inversion method on real speech: seconds per audio second, CNN vs LS."""
    import torch

    from ..bench import bench_invert
    from ..config import stft_config
    from ..methods import parse_methods

    if device not in ("cpu", "cuda"):
        raise fail(f"--device must be cpu or cuda, got {device!r}", code=2)
    if device == "cuda" and not torch.cuda.is_available():
        raise fail("--device cuda: no CUDA device is available here")
    try:
        if methods is not None:
            parse_methods(methods)
    except ValueError as e:
        raise fail(f"--methods: {e}", code=2)
    try:
        sizes = parse_batches(batches) if batches is not None else None
    except ValueError as e:
        raise fail(str(e), code=2)
    if device == "cpu" and sizes not in (None, [1]):
        raise fail("--batches: only on CUDA (the CPU figure is one file on --threads threads)",
                   code=2)
    for name, value, low in (("--threads", threads, 1), ("--repeats", repeats, 1)):
        if value < low:
            raise fail(f"{name} must be >= {low}, got {value}", code=2)
    if not seconds > 0:
        raise fail(f"--seconds must be > 0, got {seconds}", code=2)

    with err.status("timing inversion…") as status:
        def on_result(row: dict) -> None:
            status.update(f"timing inversion… {row['method']} at batch {row['batch']} done")

        try:
            rows = bench_invert(device=device, seconds=seconds, methods=methods,
                                stft=stft_config(stft),
                                weights=weights, threads=threads, batches=sizes,
                                repeats=repeats, audio=audio, peers=peers, chunk=chunk,
                                on_result=on_result)
        except (ValueError, FileNotFoundError) as e:
            raise fail(str(e)) from None
    if as_json:
        from ..io import json_text

        typer.echo(json_text(rows), nl=False)
    else:
        out.print(invert_table(rows))
