"""Training data: any folder tree of audio, speaker-disjoint splits, deterministic sharded segments.

``LibriSpeech/train-clean-100/<speaker>/<chapter>/*.flac`` works as is: the first sub-folder under
the root is taken as the speaker. Audio is read mono, resampled to the model rate, and kept in
memory as float32; segments are drawn per epoch from a seeded permutation that every rank shares,
and each rank takes its own disjoint slice of every batch, so a resumed run sees exactly the same
data as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ..config import check_speed_factor
from ..io import AUDIO_EXTS, read_audio, resample


def find_audio(root: str | Path) -> list[Path]:
    """All audio files under ``root`` (recursive, sorted); a single file is returned as is."""
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in AUDIO_EXTS else []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS)


def speaker_of(path: Path, root: Path) -> str:
    """First sub-folder of ``path`` under ``root`` (the speaker), else the file itself."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else str(rel)


def _unit_hash(text: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_files(files: list[Path], root: Path, val_fraction: float,
                seed: int = 0) -> tuple[list[Path], list[Path], str]:
    """Hold out ``val_fraction`` for validation: by speaker when the tree shows several speakers
    (first sub-folder), else by file. Returns ``(train, val, how)``; deterministic in ``seed``."""
    speakers = sorted({speaker_of(p, root) for p in files})
    by_speaker = len(speakers) >= 2 and any(len(p.relative_to(root).parts) > 1 for p in files)
    if by_speaker:
        keys = speakers
        n_val = max(1, round(val_fraction * len(keys))) if val_fraction > 0 else 0
        n_val = min(n_val, len(keys) - 1)
        val_keys = set(sorted(keys, key=lambda k: _unit_hash(k, seed))[:n_val])
        val = [p for p in files if speaker_of(p, root) in val_keys]
        how = f"speaker-disjoint ({len(val_keys)} of {len(keys)} speakers held out)"
    else:
        n_val = max(1, round(val_fraction * len(files))) if val_fraction > 0 else 0
        n_val = min(n_val, max(0, len(files) - 1))
        val_set = set(sorted(files, key=lambda p: _unit_hash(str(p), seed))[:n_val])
        val = [p for p in files if p in val_set]
        how = f"by file ({len(val)} of {len(files)} files held out)"
    val_set = set(val)
    return [p for p in files if p not in val_set], val, how


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (polyphase resampling)."""
    x, sr = read_audio(path, mono=True)
    return resample(x, sr, sample_rate).astype(np.float32, copy=False)


@dataclass
class Corpus:
    """Audio held in memory, with the files that could not be read."""

    paths: list[Path]
    audio: list[np.ndarray]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audio)


def load_corpus(files: list[Path], sample_rate: int, min_samples: int = 1) -> Corpus:
    """Read every file; unreadable, empty or non-finite ones are skipped and counted."""
    corpus = Corpus([], [])
    for p in files:
        try:
            x = load_mono(p, sample_rate)
        except Exception as exc:  # soundfile raises several types for bad files
            corpus.skipped.append((p, f"unreadable ({type(exc).__name__}: {exc})"))
            continue
        if len(x) < min_samples:
            corpus.skipped.append((p, f"too short ({len(x)} samples at {sample_rate} Hz; "
                                      f"a window is {min_samples})"))
        elif not np.isfinite(x).all():
            corpus.skipped.append((p, "non-finite samples"))
        else:
            corpus.paths.append(p)
            corpus.audio.append(x)
    return corpus


# Output samples dropped at the start of a speed-perturbed segment: resample_poly's filter
# (10 x max(up, down) taps each side at the up-sampled rate) spans at most ~10 output samples.
_SPEED_MARGIN = 32


def speed_ratio(factor: float) -> tuple[int, int]:
    """``factor`` as a ratio ``(num, den)`` with den <= 100; factor > 1 plays faster."""
    r = Fraction(check_speed_factor(factor)).limit_denominator(100)
    return r.numerator, r.denominator


def speed_segment(audio: np.ndarray, start: int, segment: int, factor: float) -> np.ndarray:
    """``segment`` samples of ``audio`` from ``start`` played ``factor`` times faster.

    Speed perturbation (as in Kaldi's recipes) scales pitch, formants and tempo together; it is
    meant to make a few voices stand in for more (for the shipped network it did not gain on
    validation, see weights/README.md). The result is band-limited
    resampling (``resample_poly``), a real waveform whose phase is as consistent as the
    original's; past the end of the file it is zero-padded like an unperturbed segment.
    """
    out = np.zeros(segment, dtype=np.float32)
    if factor == 1.0:
        piece = audio[start:start + segment]
        out[:len(piece)] = piece
        return out
    num, den = speed_ratio(factor)
    need = int(math.ceil((segment + _SPEED_MARGIN) * num / den)) + 1
    piece = audio[start:start + need]
    y = resample_poly(piece, den, num)[_SPEED_MARGIN:_SPEED_MARGIN + segment]
    out[:len(y)] = y
    return out


class SegmentSampler:
    """Deterministic, sharded batches of fixed-length segments.

    Epoch ``e`` cuts every file into consecutive segments from a random offset, shuffles them
    with ``seed + e``, and splits them into global batches of ``batch_size * world`` segments; rank
    ``r`` takes the ``r``-th slice of each. No segment appears twice within an epoch, ranks never
    share one, and ``batch(step)`` depends only on ``step``. With ``speed_factors``, each segment
    is played at one of them, drawn from a generator seeded by (seed, step, rank).
    """

    def __init__(self, audio: list[np.ndarray], segment: int, batch_size: int, seed: int = 0,
                 rank: int = 0, world: int = 1, speed_factors: tuple[float, ...] = ()):
        if not audio:
            raise ValueError("no audio to sample segments from")
        self.audio, self.segment, self.batch_size = audio, segment, batch_size
        self.seed, self.rank, self.world = seed, rank, world
        self.speed_factors = tuple(check_speed_factor(f) for f in speed_factors)
        self._epoch, self._index = -1, np.empty((0, 2), dtype=np.int64)
        self.steps_per_epoch = max(1, len(self._segments(0)) // (batch_size * world))

    def _segments(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        out = []
        for i, a in enumerate(self.audio):
            n = len(a)
            if n <= self.segment:
                out.append((i, 0))
                continue
            offset = int(rng.integers(0, min(self.segment, n - self.segment) + 1))
            for start in range(offset, n - self.segment + 1, self.segment):
                out.append((i, start))
        idx = np.asarray(out, dtype=np.int64)
        return idx[rng.permutation(len(idx))]

    def batch_index(self, step: int) -> np.ndarray:
        """(batch_size, 2) array of (file, start) for this rank at ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._index = epoch, self._segments(epoch)
        g = self.batch_size * self.world
        lo = within * g + self.rank * self.batch_size
        # modulo only matters for corpora smaller than one global batch
        return self._index[(lo + np.arange(self.batch_size)) % len(self._index)]

    def batch(self, step: int) -> np.ndarray:
        """(batch_size, segment) float32 audio for this rank at ``step``."""
        index = self.batch_index(step)
        factors = np.ones(len(index))
        if self.speed_factors:
            rng = np.random.default_rng([self.seed, step, self.rank, 0x5EED])
            factors = rng.choice(self.speed_factors, size=len(index))
        out = np.empty((self.batch_size, self.segment), dtype=np.float32)
        for row, ((i, start), f) in enumerate(zip(index, factors)):
            out[row] = speed_segment(self.audio[i], int(start), self.segment, float(f))
        return out
