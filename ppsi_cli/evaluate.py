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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import MelConfig, StftConfig, front_end
from .dsp.mel import mel_spectrogram
from .dsp.stft import stft
from .io import AUDIO_EXTS
from .methods import Method, parse_method, parse_methods

DEFAULT_METHODS = "ppsi,ppsi-strided,oracle,rtisi-la,gl32,gl100,pghi"
SCORES = ("pesq", "estoi", "lsc")


@dataclass
class EvalOptions:
    """``methods``: comma-separated :mod:`ppsi_cli.methods` spellings; ``compare``: pairs
    ``A:B,...`` of them to report paired per-file differences for; ``stft``: the STFT settings
    every method is evaluated with (torch's names; the audio is resampled to its rate); ``mel``:
    a mel front end (preset, ``NAME+KEY=VALUE``) whose output every method inverts instead of the
    magnitudes (its STFT is the default)."""

    methods: str = DEFAULT_METHODS
    weights_online: str | None = None
    weights_strided: str | None = None
    limit: int | None = None
    jobs: int = 1
    compare: str = ""
    stft: dict[str, Any] = field(default_factory=dict)  # settings given (None: not given)
    mel: str | None = None
    weights_offline: str | None = None
    parsed: list[Method] = field(init=False)
    pairs: list[tuple[str, str]] = field(init=False)
    cfg: StftConfig = field(init=False)
    mel_cfg: MelConfig | None = field(init=False)

    def __post_init__(self) -> None:
        self.parsed = parse_methods(self.methods)
        self.mel_cfg, self.cfg = front_end(self.mel, self.stft)
        self.pairs = parse_pairs(self.compare, self.parsed)
        if self.jobs < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("jobs and limit must be >= 1")


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


def _inverters(options: EvalOptions) -> dict[str, Any]:
    """label -> :class:`~ppsi_cli.inverter.Inverter` (models loaded once), all on one STFT."""
    from .inverter import Inverter

    weights = {"online": options.weights_online, "strided": options.weights_strided,
               "offline": options.weights_offline}
    return {m.label: Inverter(m, weights=weights.get(m.variant) if m.uses_network else None,
                              stft=options.cfg, mel=options.mel_cfg) for m in options.parsed}


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
    from .runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    _STATE["inverters"] = inverters = _inverters(options)
    # one untimed call each first: the first call pays one-off costs (numba's compiled kernels
    # loaded from its cache, torch's first kernels), which a short run's mean would carry
    cfg = next(iter(inverters.values())).stft
    noise = 0.1 * np.random.default_rng(0).standard_normal(cfg.sample_rate).astype(np.float32)
    spec, given = _inputs(noise, inverters)
    for inv in inverters.values():
        inv(spec if inv.method.name == "oracle" else given, len(noise))


def _inputs(x: np.ndarray, inverters: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle's input (the float64 STFT of ``x``) and the others' (its complex64 rounding,
    or the float32 mel spectrogram of a mel front end)."""
    first = next(iter(inverters.values()))
    spec = stft(torch.from_numpy(x).double(), first.stft)
    if first.mel is not None:
        return spec, mel_spectrogram(spec.abs(), first.mel, first.stft).float()
    return spec, spec.to(torch.complex64)


def _eval_file(path: str) -> dict[str, Any]:
    """Copy synthesis of one file by every method: the STFT in float64; the oracle inverts it
    as it is, the others its complex64 rounding (float32 magnitudes, as users have), or with a
    mel front end its float32 mel spectrogram."""
    from .train.data import load_corpus

    inverters = _STATE["inverters"]
    first = next(iter(inverters.values()))
    cfg: StftConfig = first.stft
    corpus = load_corpus([Path(path)], cfg.sample_rate, min_samples=cfg.win_length)
    if corpus.skipped:  # unreadable, too short for one frame or non-finite: one line, no scores
        return {"file": path, "error": corpus.skipped[0][1]}
    x = corpus.audio[0]
    spec, given = _inputs(x, inverters)
    row: dict[str, Any] = {"file": path, "seconds": len(x) / cfg.sample_rate, "methods": {},
                           "notes": _conversions(path, cfg.sample_rate)}
    for label, inv in inverters.items():
        t0 = time.perf_counter()
        y = inv(spec if inv.method.name == "oracle" else given, len(x))
        elapsed = time.perf_counter() - t0
        row["methods"][label] = {"time": elapsed,
                                 **_score(x, y.double().numpy(), cfg.sample_rate)}
    return row


def _conversions(path: str, sample_rate: int) -> list[str]:
    """What reading ``path`` changed: its channels mixed down, its rate resampled."""
    import soundfile as sf

    info = sf.info(path)
    notes = [f"{info.channels} channels mixed down to mono"] if info.channels > 1 else []
    if info.samplerate != sample_rate:
        notes.append(f"resampled {info.samplerate} Hz -> {sample_rate} Hz")
    return notes


def evaluate(root: Path, options: EvalOptions,
             on_file: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Per-file rows, per-method summaries (mean, std, n) of pesq, estoi, lsc and speed, and the
    paired comparisons of ``options.compare``."""
    files = [str(f) for f in eval_files(root, options.limit)]
    _inverters(options)  # a method that cannot serve this STFT: one line, before any work
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
    failed = [{"file": r["file"], "error": r["error"]} for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    if not rows:
        raise ValueError(f"none of the {len(files)} file(s) under {root} could be evaluated "
                         f"({failed[0]['file']}: {failed[0]['error']})")
    result = {"files": len(rows), "audio_seconds": sum(r["seconds"] for r in rows),
              "summary": summarize(rows, options.parsed), "rows": rows, "failed": failed}
    if options.pairs:
        result["paired"] = compare(rows, options.pairs)
    result["stft"] = options.cfg.to_dict()
    if options.mel_cfg is not None:
        result["mel"] = {"given": options.mel, **options.mel_cfg.to_dict()}
    return result


def parse_pairs(text: str, methods: list[Method]) -> list[tuple[str, str]]:
    """``"a:b,c:d"`` -> [(label a, label b), ...]; each side any spelling of one of ``methods``."""
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        a, sep, b = item.partition(":")
        if not sep or not a or not b:
            raise ValueError(f"comparison {item!r}: write two different methods as A:B")
        sides = []
        for side in (a, b):
            m = parse_method(side)
            if m not in methods:
                raise ValueError(f"comparison {item!r}: {side} is not among the evaluated methods "
                                 f"({', '.join(x.label for x in methods)})")
            sides.append(m.label)
        if sides[0] == sides[1]:
            raise ValueError(f"comparison {item!r}: write two different methods as A:B")
        pairs.append((sides[0], sides[1]))
    return pairs


def compare(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``"A:B"`` -> paired per-file differences of WB-PESQ and ESTOI (see :func:`paired`)."""
    return {f"{a}:{b}": {k: paired(rows, a, b, k) for k in ("pesq", "estoi")} for a, b in pairs}


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


def summarize(rows: list[dict[str, Any]], methods: list[Method]) -> dict[str, dict[str, Any]]:
    out = {}
    total = sum(r["seconds"] for r in rows)
    for method in methods:
        m = method.label
        entry: dict[str, Any] = {"description": method.description}
        for key in SCORES:
            vals = np.array([r["methods"][m][key] for r in rows], dtype=float)
            ok = vals[np.isfinite(vals)]
            entry[key] = {"mean": float(ok.mean()) if ok.size else math.nan,
                          "std": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
                          "n": int(ok.size), "failed": int(vals.size - ok.size)}
        entry["seconds_per_audio_second"] = sum(r["methods"][m]["time"] for r in rows) / total
        out[m] = entry
    return out
