"""Quality and speed of every inversion method on a folder of speech, in one run (``ppsi eval``).

Each file is analysed with the model's STFT, resynthesised from its magnitudes by each method
(copy synthesis, output cut to the input length) and scored against the original: WB-PESQ,
ESTOI, LSC (see :mod:`ppsi_cli.metrics`). Speed is the inversion time alone (no I/O, no scoring)
per audio second on one thread. Files are processed in parallel worker processes (``jobs``), one
thread each; every method sees the same files.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import StftConfig
from .dsp.stft import istft, stft
from .io import AUDIO_EXTS

# name -> (description, how to run it)
METHODS: dict[str, str] = {
    "ppsi": "ppsi online (CNN + least squares)",
    "ppsi-strided": "ppsi strided + 1-hop look-ahead",
    "ppsi+gl32": "ppsi then 32 fast Griffin-Lim iterations (offline)",
    "oracle": "least squares from the true phase differences",
    "rtisi-la": "RTISI-LA, look-ahead 3, 5 iterations per frame",
    "gl32": "fast Griffin-Lim, 32 iterations (momentum 0.99)",
    "gl100": "fast Griffin-Lim, 100 iterations (momentum 0.99)",
    "pghi": "PGHI (offline)",
    "rtpghi": "RTPGHI (online)",
}
DEFAULT_METHODS = ("ppsi", "ppsi-strided", "oracle", "rtisi-la", "gl32", "gl100", "pghi")
SCORES = ("pesq", "estoi", "lsc")


@dataclass
class EvalOptions:
    methods: tuple[str, ...] = DEFAULT_METHODS
    weights_online: str | None = None
    weights_strided: str | None = None
    limit: int | None = None
    jobs: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")


def eval_files(root: Path, limit: int | None = None) -> list[Path]:
    """Audio files under ``root``, sorted; ``limit`` keeps an evenly spaced subset."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"evaluation data not found: {root}")
    files = sorted(p for p in (root.rglob("*") if root.is_dir() else [root])
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTS)
    if not files:
        raise FileNotFoundError(f"no audio files under {root}")
    if limit and limit < len(files):
        idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in sorted(set(idx))]
    return files


def _inverter(method: str, options: EvalOptions) -> Callable[[torch.Tensor, StftConfig], Any]:
    """A function spec (K, T) complex, cfg -> waveform, for ``method`` (models loaded once)."""
    from .api import oracle_spectrogram, ppsi_spectrogram
    from .baselines import griffin_lim_stft, pghi, rtisi_la, rtpghi
    from .weights import load_weights, shipped_weights

    if method in ("ppsi", "ppsi+gl32", "ppsi-strided"):
        variant = "strided" if method == "ppsi-strided" else "online"
        path = options.weights_strided if variant == "strided" else options.weights_online
        model = load_weights(path or shipped_weights(variant))

        def run(spec, cfg):
            mag = spec.abs()
            rec = ppsi_spectrogram(model.net, mag, cfg, model.solver)
            if method == "ppsi+gl32":
                rec = griffin_lim_stft(mag, cfg, n_iter=32, init_phase=torch.angle(rec))
            return istft(rec, cfg, None)
        return run
    if method == "oracle":
        return lambda spec, cfg: istft(oracle_spectrogram(spec, cfg), cfg, None)
    if method in ("gl32", "gl100"):
        n = int(method[2:])
        # the random initial phase is drawn from a generator seeded per file
        return lambda spec, cfg: istft(griffin_lim_stft(
            spec.abs(), cfg, n_iter=n, generator=torch.Generator().manual_seed(options.seed)),
            cfg, None)
    if method == "rtisi-la":
        return lambda spec, cfg: rtisi_la(spec.abs(), cfg, lookahead=3, n_iter=5)
    if method == "pghi":
        return lambda spec, cfg: pghi(spec.abs(), cfg)
    if method == "rtpghi":
        return lambda spec, cfg: rtpghi(spec.abs(), cfg)
    raise ValueError(method)


def _score(ref: np.ndarray, est: np.ndarray, sr: int) -> dict[str, float]:
    from .metrics import MetricError, estoi, lsc, pesq_wb

    out = {}
    for name, fn in (("pesq", pesq_wb), ("estoi", estoi), ("lsc", lsc)):
        try:
            out[name] = float(fn(ref, est, sr))
        except MetricError:
            out[name] = float("nan")
    return out


_STATE: dict[str, Any] = {}


def _init(options: EvalOptions) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(options.seed)
    _STATE["inverters"] = {m: _inverter(m, options) for m in options.methods}


def _eval_file(path: str) -> dict[str, Any]:
    from .train.data import load_mono

    cfg = StftConfig()
    x = load_mono(path, cfg.sample_rate)
    spec = stft(torch.from_numpy(x).double(), cfg)
    row: dict[str, Any] = {"file": path, "seconds": len(x) / cfg.sample_rate, "methods": {}}
    for method, run in _STATE["inverters"].items():
        t0 = time.perf_counter()
        with torch.no_grad():
            y = run(spec.to(torch.complex64) if method != "oracle" else spec, cfg)
        elapsed = time.perf_counter() - t0
        y = y.double().numpy()[: len(x)]
        if len(y) < len(x):
            y = np.pad(y, (0, len(x) - len(y)))
        row["methods"][method] = {"time": elapsed, **_score(x, y, cfg.sample_rate)}
    return row


def evaluate(root: Path, options: EvalOptions,
             on_file: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Per-file rows and per-method summaries (mean, std, n) of pesq, estoi, lsc and speed."""
    files = [str(f) for f in eval_files(root, options.limit)]
    rows: list[dict[str, Any]] = []
    if options.jobs <= 1:
        _init(options)
        for f in files:
            rows.append(_eval_file(f))
            if on_file:
                on_file(rows[-1])
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(options.jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_init, initargs=(options,)) as pool:
            for row in pool.map(_eval_file, files):
                rows.append(row)
                if on_file:
                    on_file(row)
    return {"files": len(rows), "audio_seconds": sum(r["seconds"] for r in rows),
            "summary": summarize(rows, options.methods), "rows": rows}


def parse_pairs(text: str, methods) -> list[tuple[str, str]]:
    """``"a:b,c:d"`` -> [(a, b), (c, d)], each method one of ``methods``."""
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        a, sep, b = item.partition(":")
        if not sep or not a or not b or a == b:
            raise ValueError(f"comparison {item!r}: write two different methods as A:B")
        missing = [m for m in (a, b) if m not in methods]
        if missing:
            raise ValueError(f"comparison {item!r}: {missing} not among the evaluated methods "
                             f"{list(methods)}")
        pairs.append((a, b))
    return pairs


def paired(rows: list[dict[str, Any]], a: str, b: str, key: str = "pesq") -> dict[str, float]:
    """Per-file differences ``a - b`` of one score over the files where both are finite.

    mean, standard error, 95 % confidence interval and two-sided p-value of the paired
    t-test, and the share of files where ``a`` scores higher (ties count half)."""
    from scipy import stats

    d = np.array([r["methods"][a][key] - r["methods"][b][key] for r in rows], dtype=float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "sem": math.nan,
           "ci95": [math.nan, math.nan], "p": math.nan,
           "share_higher": float(((d > 0).sum() + 0.5 * (d == 0).sum()) / n) if n else math.nan}
    if n > 1:
        sem = float(d.std(ddof=1) / math.sqrt(n))
        half = float(stats.t.ppf(0.975, n - 1)) * sem
        out.update(sem=sem, ci95=[out["mean"] - half, out["mean"] + half])
        if sem > 0:
            out["p"] = float(2 * stats.t.sf(abs(out["mean"]) / sem, n - 1))
        else:
            out["p"] = 1.0 if out["mean"] == 0 else 0.0
    return out


def summarize(rows: list[dict[str, Any]], methods) -> dict[str, dict[str, Any]]:
    out = {}
    total = sum(r["seconds"] for r in rows)
    for m in methods:
        entry: dict[str, Any] = {"description": METHODS[m]}
        for key in SCORES:
            vals = np.array([r["methods"][m][key] for r in rows], dtype=float)
            ok = vals[np.isfinite(vals)]
            entry[key] = {"mean": float(ok.mean()) if ok.size else math.nan,
                          "std": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
                          "n": int(ok.size), "failed": int(vals.size - ok.size)}
        entry["seconds_per_audio_second"] = sum(r["methods"][m]["time"] for r in rows) / total
        out[m] = entry
    return out
