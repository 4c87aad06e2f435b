"""``ppsi eval``: the quality/speed table of every method on a folder of speech, in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import app
from .common import err, fail, mel_option, out, with_stft_options, writable_file


@app.command("eval")
@with_stft_options
def eval_cmd(
    data: Path = typer.Argument(..., help="Folder of reference speech (copy synthesis)."),
    methods: str = typer.Option("ppsi,ppsi-strided,oracle,rtisi-la,gl32,gl100,pghi",
                                help="Comma-separated methods, options as +KEY=VALUE: ppsi, "
                                     "ppsi-strided, ppsi-offline (+refine=N), oracle, "
                                     "griffin-lim (+iters=N, "
                                     "alias glN), rtisi, rtisi-la, pghi, rtpghi; peers: "
                                     "librosa (griffinlim / mel_to_audio), torchaudio, "
                                     "pghipy."),
    weights_online: Optional[Path] = typer.Option(None, help="Online weights (default shipped)."),
    weights_strided: Optional[Path] = typer.Option(None, help="Strided weights (default shipped)."),
    weights_offline: Optional[Path] = typer.Option(None, help="Look-ahead weights of "
                                                   "ppsi-offline (default shipped)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evenly spaced subset of N files."),
    jobs: int = typer.Option(1, min=1, help="Worker processes (one thread each)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write all results here."),
    compare: str = typer.Option("", help="Paired per-file differences A - B to report, e.g. "
                                         "ppsi:gl32,ppsi-strided:ppsi (mean ± standard error, "
                                         "95 % CI, paired t-test p, share of files A is higher)."),
    stft: dict = None,  # the STFT options, given by with_stft_options
    mel: Optional[str] = mel_option("Invert each file's mel spectrogram of this front end "
                                    "(hifigan | vocos | librosa | torchaudio, +KEY=VALUE "
                                    "overrides) instead of its magnitudes; its STFT is the "
                                    "default. Scores stay WB-PESQ at 16 kHz."),
) -> None:
    """Mean ± std of WB-PESQ, ESTOI, LSC and seconds per audio second (one thread) per method."""
    from ..evaluate import EvalOptions, eval_files, evaluate

    try:
        options = EvalOptions(methods, str(weights_online) if weights_online else None,
                              str(weights_strided) if weights_strided else None, limit, jobs,
                              compare, stft, mel,
                              str(weights_offline) if weights_offline else None)
        n = len(eval_files(data, limit))
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    writable_file("--json", json_file)
    progress = Progress(TextColumn("[bold]evaluating"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} files"), TimeRemainingColumn(),
                        console=err, transient=True)
    task = progress.add_task("eval", total=n)
    try:
        with progress:
            result = evaluate(data, options, lambda row: progress.advance(task))
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    notes: dict[str, int] = {}
    for row in result["rows"]:
        for note in row.get("notes", []):
            notes[note] = notes.get(note, 0) + 1
    for note, count in notes.items():
        err.print(f"[cyan]note:[/] {count} file(s): {escape(note)}", highlight=False)
    st = options.cfg
    table = Table(title=f"{result['files']} files, {result['audio_seconds'] / 60:.1f} min of "
                        f"audio from {data}; STFT {st.sample_rate} Hz, {st.window} "
                        f"{st.win_length}/{st.n_fft}/{st.hop_length}"
                        + (", centred" if st.center else "")
                        + (f"; mel input ({mel})" if mel else ""))
    for col in ("method", "WB-PESQ", "ESTOI", "LSC (dB)", "s / audio s (1 thread)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m, s in result["summary"].items():
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" if k != "lsc" else
                 f"{s[k]['mean']:.2f} ± {s[k]['std']:.2f}" for k in ("pesq", "estoi", "lsc")]
        table.add_row(m, *cells, f"{s['seconds_per_audio_second']:.4f}")
    out.print(table)
    if options.pairs:
        ptable = Table(title="paired per file, A − B")
        for col in ("A − B", "WB-PESQ ± s.e.", "95 % CI", "p", "A higher", "ESTOI ± s.e."):
            ptable.add_column(col, justify="left" if col == "A − B" else "right",
                              no_wrap=col == "A − B")
        for (a, b), entry in zip(options.pairs, result["paired"].values()):
            q, e = entry["pesq"], entry["estoi"]
            ptable.add_row(f"{a} − {b}", f"{q['mean']:+.3f} ± {q['sem']:.3f}",
                           f"[{q['ci95'][0]:+.3f}, {q['ci95'][1]:+.3f}]", f"{q['p']:.2g}",
                           f"{100 * q['share_higher']:.0f} % of {q['n']}",
                           f"{e['mean']:+.4f} ± {e['sem']:.4f}")
        out.print(ptable)
    if json_file:
        try:
            from ..io import json_text

            json_file.write_text(json_text(result))
        except OSError as exc:
            raise fail(f"cannot write --json {escape(str(json_file))}: {escape(str(exc))}")
    for m, s in result["summary"].items():  # scores a file could not get are left out of means
        lost = {k: s[k]["failed"] for k in ("pesq", "estoi", "lsc") if s[k]["failed"]}
        if lost:
            err.print(f"[yellow]note[/] {escape(m)}: not scored on some files ("
                      + ", ".join(f"{k} {n}" for k, n in lost.items())
                      + "; too short or silent for the metric), left out of its means",
                      highlight=False)
    for f in result["failed"]:
        err.print(f"[red]failed[/] {escape(f['file'])}: {escape(f['error'])}", highlight=False)
    if result["failed"]:
        raise typer.Exit(1)
