"""``ppsi score``: objective metrics of estimates against references, as a table and files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import app
from .common import err, fail, out, writable_file

#: the names of ``ppsi_cli.metrics.METRICS``, for the help without importing NumPy and the
#: metric packages (``ppsi --help`` starts in well under 0.5 s); a test keeps them equal
METRIC_NAMES = ("pesq", "pesq-nb", "estoi", "stoi", "lsc", "si-sdr")


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3f}"


@app.command()
def score(
    ref: Path = typer.Argument(..., help="Reference audio file or directory."),
    est: Path = typer.Argument(..., help="Estimated audio file or directory (same relative "
                                         "paths, any of .wav/.flac/.ogg)."),
    metrics: str = typer.Option("pesq,estoi,lsc", "--metrics", "-m",
                                help=f"Comma-separated, from: {', '.join(METRIC_NAMES)}."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write per-file values as CSV."),
    json_path: Optional[Path] = typer.Option(None, "--json",
                                             help="Write summary and per-file values as JSON."),
    report: Optional[Path] = typer.Option(None, "--report",
                                          help="Write a self-contained HTML report."),
    report_files: int = typer.Option(4, "--report-files",
                                     help="Pairs shown with spectrograms and audio in the report."),
    allow_failures: bool = typer.Option(False, "--allow-failures",
                                        help="Exit 0 even if some pairs could not be scored or "
                                             "some references have no estimate."),
) -> None:
    """Score estimates against references (PESQ, ESTOI, LSC, ...).

    Files pair by relative path without extension (ref/a/b.flac with est/a/b.wav). Each pair is
    truncated to the shorter signal; lengths more than 10 % apart, pairs under 0.5 s and silent
    signals are not scored (NaN + reason, counted as failed). LSC = 20 log10(‖|Y|-|X|‖_F /
    ‖|X|‖_F) dB over the model STFT (16 kHz, n_fft 1024, hop 256, Hann), floored at -120 dB.
    """
    from ..metrics import parse_metrics
    from ..score import (pair_files, score_pairs, summarize, to_csv, to_json, unique_notices,
                         write_text_atomic)
    try:
        names = parse_metrics(metrics)
    except ValueError as e:
        raise fail(str(e), code=2)
    if jobs < 1:
        raise fail(f"--jobs must be >= 1, got {jobs}", code=2)
    if report_files < 0:
        raise fail(f"--report-files must be >= 0, got {report_files}", code=2)
    for flag, path in (("--csv", csv_path), ("--json", json_path), ("--report", report)):
        writable_file(flag, path, make_folder=False, code=2)
    try:
        pairs, unpaired_ref, unpaired_est = pair_files(ref, est)
    except ValueError as e:
        raise fail(str(e), code=2)
    for p in unpaired_ref:
        err.print(f"[yellow]unpaired:[/] {p} has no estimate", highlight=False, soft_wrap=True)
    for p in unpaired_est:
        err.print(f"[yellow]unpaired:[/] {p} has no reference", highlight=False, soft_wrap=True)
    if not pairs:
        raise fail(f"no pairs of audio files between {str(ref)!r} and {str(est)!r}")

    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task("score", total=len(pairs))

        def on_progress(done: int, total: int, result) -> None:
            progress.update(task, completed=done)

        results = score_pairs(pairs, names, jobs=jobs, on_progress=on_progress)

    for notice in unique_notices(results):
        err.print(f"[cyan]note:[/] {notice}", highlight=False, soft_wrap=True)
    failed = [r for r in results if r.failed]
    for r in failed:
        fail(f"{r.key}: {r.reason_text()}")

    summary = summarize(results, names)
    table = Table(title=f"{len(results)} pair{'s' if len(results) != 1 else ''}")
    for col in ("metric", "mean ± std", "95% CI", "n", "failed"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m, s in summary.items():
        spread = f" ± {_fmt(s.std)}" if s.n > 1 else ""  # no spread from a single pair
        ci = f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]" if s.n > 1 else "–"
        table.add_row(m, f"{_fmt(s.mean)}{spread}", ci, str(s.n),
                      f"[red]{s.failed}[/]" if s.failed else "0")
    out.print(table)

    if csv_path is not None:
        write_text_atomic(csv_path, to_csv(results, names))
    if json_path is not None:
        write_text_atomic(json_path, to_json(results, names, summary, unpaired_ref, unpaired_est))
    if report is not None:
        from ..report import write_report

        write_report(report, results, names, summary, unpaired_ref=unpaired_ref,
                     unpaired_est=unpaired_est, examples=report_files)
    for flag, path in (("CSV", csv_path), ("JSON", json_path), ("report", report)):
        if path is not None:
            err.print(f"wrote {flag}: {path}", highlight=False, soft_wrap=True)

    if failed and not allow_failures:
        raise fail(f"{len(failed)} of {len(results)} pairs could not be scored "
                   "(--allow-failures to exit 0)")
    if unpaired_ref and not allow_failures:  # a system that left out files is not scored whole
        raise fail(f"{len(unpaired_ref)} of {len(unpaired_ref) + len(results)} references have "
                   "no estimate; the means cover the others (--allow-failures to exit 0)")
