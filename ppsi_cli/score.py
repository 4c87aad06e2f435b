"""Score estimates against references: pair files, run metrics (in parallel), summarise, save.

Files of two trees are paired by their path relative to the root without the extension, so
``ref/a/b.flac`` pairs with ``est/a/b.wav``. A pair that cannot be scored gets NaN and a reason
for each metric it lacks; NaNs are counted as failures and never averaged in.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .io import AUDIO_EXTS, atomic_path, json_text, read_audio
from .io import resample
from .metrics import METRICS, MetricError, check_pair, resample_notice


@dataclass(frozen=True)
class Pair:
    """A reference file and its estimate; ``key`` is the relative path without extension."""

    key: str
    ref: Path
    est: Path


@dataclass
class PairResult:
    """Scores of one pair: ``values[metric]`` is a float, NaN exactly when ``reasons[metric]``
    says why it could not be computed. ``duration_s`` is the scored (aligned) length."""

    key: str
    ref: str
    est: str
    values: dict[str, float]
    reasons: dict[str, str] = field(default_factory=dict)
    duration_s: float = math.nan
    sample_rate: int | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.reasons)

    def reason_text(self) -> str:
        """All reasons on one line; a reason shared by every metric is given once."""
        if not self.reasons:
            return ""
        distinct = set(self.reasons.values())
        if len(distinct) == 1 and len(self.reasons) == len(self.values):
            return distinct.pop()
        return "; ".join(f"{m}: {r}" for m, r in self.reasons.items())


@dataclass(frozen=True)
class Summary:
    """Statistics of one metric over the pairs that scored: mean, sample std (ddof=1), the
    two-sided 95 % confidence interval of the mean (Student t, n - 1 dof), n, and failures."""

    metric: str
    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    failed: int


# ---------------------------------------------------------------------------------- pairing


def _audio_files(root: Path) -> dict[str, Path]:
    """Audio files under ``root`` by key (relative path without extension, '/' separated)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTS or path.name.startswith(".") or not path.is_file():
            continue
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in found:
            raise ValueError(f"two files in {root} pair as {key!r}: {found[key].name} and "
                             f"{path.name}; keep one")
        found[key] = path
    return found


def pair_files(ref: str | os.PathLike, est: str | os.PathLike
               ) -> tuple[list[Pair], list[Path], list[Path]]:
    """Pair two files, or the audio files of two directories by relative path sans extension.

    Returns ``(pairs, unpaired_ref, unpaired_est)``, pairs sorted by key.
    """
    ref, est = Path(ref), Path(est)
    for name, p in (("reference", ref), ("estimate", est)):
        if not p.exists():
            raise ValueError(f"{name} path {str(p)!r} does not exist")
    if ref.is_file() and est.is_file():
        return [Pair(ref.stem, ref, est)], [], []
    if ref.is_dir() != est.is_dir():
        raise ValueError(f"{str(ref)!r} and {str(est)!r}: give two files or two directories")
    refs, ests = _audio_files(ref), _audio_files(est)
    pairs = [Pair(k, refs[k], ests[k]) for k in sorted(refs.keys() & ests.keys())]
    unpaired_ref = [refs[k] for k in sorted(refs.keys() - ests.keys())]
    unpaired_est = [ests[k] for k in sorted(ests.keys() - refs.keys())]
    return pairs, unpaired_ref, unpaired_est


# ---------------------------------------------------------------------------------- scoring


def score_pair(pair: Pair, metrics: Sequence[str]) -> PairResult:
    """Read one pair and compute ``metrics``; never raises for a bad file."""
    result = PairResult(pair.key, str(pair.ref), str(pair.est), {m: math.nan for m in metrics})

    def fail_all(reason: str) -> PairResult:
        result.reasons = {m: reason for m in metrics}
        return result

    try:
        ref, sr = read_audio(pair.ref)
    except Exception as e:  # soundfile raises several types; the message is what matters
        return fail_all(f"unreadable reference: {e}")
    try:
        est, sr_est = read_audio(pair.est)
    except Exception as e:
        return fail_all(f"unreadable estimate: {e}")
    result.sample_rate = sr
    if sr_est != sr:
        est = resample(est.astype(np.float64), sr_est, sr)
        result.notices.append(f"estimates resampled from {sr_est} Hz to the reference's {sr} Hz")
    try:
        ref, est = check_pair(ref, est, sr)
    except MetricError as e:
        return fail_all(e.reason)
    result.duration_s = len(ref) / sr
    for name in metrics:
        notice = resample_notice(name, sr)
        if notice:
            result.notices.append(notice)
        try:
            result.values[name] = float(METRICS[name].fn(ref, est, sr))
        except MetricError as e:
            result.reasons[name] = e.reason
        except Exception as e:  # a library failure on one file must not stop the batch
            result.reasons[name] = f"{type(e).__name__}: {e}"
        if name not in result.reasons and not math.isfinite(result.values[name]):
            result.reasons[name] = f"not finite ({result.values[name]})"
        if name in result.reasons:
            result.values[name] = math.nan
    return result


def _init_worker() -> None:
    # One thread per worker: the workers are the parallelism.
    import torch

    from .runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)


def score_pairs(pairs: Sequence[Pair], metrics: Sequence[str], jobs: int = 1,
                on_progress: Callable[[int, int, PairResult], None] | None = None
                ) -> list[PairResult]:
    """Score every pair with ``metrics``; results in the order of ``pairs``.

    ``jobs > 1`` runs pairs in that many worker processes (spawned, one torch thread each);
    each pair is computed by the same code, so the numbers equal those of ``jobs = 1``.
    ``on_progress(done, total, result)`` is called in this process after each pair.
    Workers are spawned, so a script calling this with ``jobs > 1`` needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    metrics = list(metrics)
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    total = len(pairs)
    results: list[PairResult | None] = [None] * total
    if jobs == 1 or total <= 1:
        for i, pair in enumerate(pairs):
            results[i] = score_pair(pair, metrics)
            if on_progress:
                on_progress(i + 1, total, results[i])
        return results  # type: ignore[return-value]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, total), mp_context=ctx, initializer=_init_worker) as pool:
        futures = {pool.submit(score_pair, pair, metrics): i for i, pair in enumerate(pairs)}
        for done, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as e:  # a worker died (e.g. a crash inside a C extension)
                p = pairs[i]
                results[i] = PairResult(p.key, str(p.ref), str(p.est),
                                        {m: math.nan for m in metrics},
                                        {m: f"worker failed: {type(e).__name__}: {e}"
                                         for m in metrics})
            if on_progress:
                on_progress(done, total, results[i])
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- summary


def summarize(results: Sequence[PairResult], metrics: Sequence[str]) -> dict[str, Summary]:
    """Per-metric :class:`Summary` over the pairs whose value is finite; failures are counted."""
    from scipy.stats import t as student_t

    out = {}
    for name in metrics:
        vals = np.array([r.values.get(name, math.nan) for r in results], dtype=np.float64)
        ok = vals[np.isfinite(vals)]
        n = len(ok)
        mean = float(ok.mean()) if n else math.nan
        std = float(ok.std(ddof=1)) if n > 1 else math.nan
        half = float(student_t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
        out[name] = Summary(name, mean, std, mean - half, mean + half, n, len(results) - n)
    return out


def unique_notices(results: Iterable[PairResult]) -> list[str]:
    """Distinct notices of all results, in first-seen order."""
    return list(dict.fromkeys(n for r in results for n in r.notices))


# ---------------------------------------------------------------------------------- output


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temp file in the same folder + rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def to_csv(results: Sequence[PairResult], metrics: Sequence[str]) -> str:
    """One row per pair: key, ref, est, duration_s, one column per metric (``nan`` when it
    failed; floats written with ``repr`` so they parse back exactly), reason."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "ref", "est", "duration_s", *metrics, "reason"])
    for r in results:
        w.writerow([r.key, r.ref, r.est, repr(r.duration_s),
                    *(repr(r.values[m]) for m in metrics), r.reason_text()])
    return buf.getvalue()


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_json(results: Sequence[PairResult], metrics: Sequence[str],
            summary: dict[str, Summary] | None = None,
            unpaired_ref: Sequence[Path] = (), unpaired_est: Sequence[Path] = ()) -> str:
    """Strict JSON (NaN -> null, with the reason in ``reasons``): metrics, summary, files."""
    summary = summary if summary is not None else summarize(results, metrics)
    doc = {
        "metrics": list(metrics),
        "summary": {m: {"mean": _num(s.mean), "std": _num(s.std), "ci95": [_num(s.ci_low),
                        _num(s.ci_high)], "n": s.n, "failed": s.failed}
                    for m, s in summary.items()},
        "files": [{"key": r.key, "ref": r.ref, "est": r.est, "duration_s": _num(r.duration_s),
                   "sample_rate": r.sample_rate,
                   "values": {m: _num(r.values[m]) for m in metrics}, "reasons": r.reasons}
                  for r in results],
        "unpaired_ref": [str(p) for p in unpaired_ref],
        "unpaired_est": [str(p) for p in unpaired_est],
    }
    return json_text(doc)
