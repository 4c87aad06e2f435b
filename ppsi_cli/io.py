"""Audio file reading and atomic writing (soundfile); strict JSON text."""

from __future__ import annotations

import glob
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_EXTS = (".wav", ".flac", ".ogg")


#: Sample rates a header may claim (Hz): outside, it is lying or broken, and resampling from it
#: would ask for absurd memory (a 96 KB file at "1 Hz" resampled to 16 kHz is 12 GB)
SAMPLE_RATE_RANGE = (1000, 768000)


def json_text(obj, indent: int | None = 2) -> str:
    """``obj`` as strict JSON (NaN and infinities as null, which every JSON reader takes; Python
    writes them as bare ``NaN``, which jq and JavaScript refuse), ending in a newline when
    indented."""
    def strict(o):
        if isinstance(o, float):
            return o if math.isfinite(o) else None
        if isinstance(o, dict):
            return {k: strict(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [strict(v) for v in o]
        return o

    text = json.dumps(strict(obj), indent=indent, allow_nan=False)
    return text + "\n" if indent is not None else text


#: The ``software`` tag of every file ppsi writes
SOFTWARE = "ppsi"


def written_by_ppsi(path: str | os.PathLike) -> bool:
    """Whether an audio file carries ppsi's ``software`` tag (an earlier run's output)."""
    try:
        with sf.SoundFile(str(path)) as snd:
            return str(snd.copy_metadata().get("software", "")).startswith(SOFTWARE)
    except Exception:
        return False


def read_audio(path: str | os.PathLike, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 in [-1, 1] and its sample rate in Hz.

    With ``mono`` (default) channels are averaged to shape (samples,); otherwise the shape is
    (channels, samples). A header whose sample rate lies outside :data:`SAMPLE_RATE_RANGE` is
    refused (ValueError) before any sample is read.
    """
    sr = sf.info(str(path)).samplerate
    lo, hi = SAMPLE_RATE_RANGE
    if not lo <= sr <= hi:
        raise ValueError(f"header claims {sr} Hz; not a plausible sample rate ({lo}-{hi} Hz)")
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    if mono:
        return data.mean(axis=1, dtype=np.float32), int(sr)
    return np.ascontiguousarray(data.T), int(sr)


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``, imported on first use) from ``sr``
    to ``target`` Hz along the last axis; ``x`` itself when the rates agree."""
    if sr == target:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(int(sr), int(target))
    return resample_poly(x, target // g, sr // g, axis=-1)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files of ``path`` (``.NAME.PID.XXXX.tmp``) whose writer no longer runs:
    left by a process killed inside its rename window. Live writers' files are kept."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path`` with the usual file mode, named with this process's id
    (so a later run can tell a stale one); stale ones of ``path`` are removed first."""
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
    return fd, tmp


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (usual file mode); on success it is renamed onto
    ``path``, on any error it is removed, so a reader never sees a half-written file."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def audio_writer(path: str | os.PathLike, sr: int, channels: int = 1,
                 subtype: str = "PCM_16", overwrite: bool = True) -> Iterator[sf.SoundFile]:
    """A SoundFile on a temp file beside ``path``: write to it (all at once or chunk by chunk);
    when the block ends it is flushed to disk and put in place, and on any error removed, so a
    reader never sees a half-written file. The format follows the suffix (OGG is always Vorbis,
    ``subtype`` is then ignored). Without ``overwrite`` the file is linked into place, which
    fails with FileExistsError if ``path`` appeared meanwhile (another run): checked when it is
    written, not only when the run was planned.
    """
    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {path.name!r}: suffix must be one of {AUDIO_EXTS}")
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            with sf.SoundFile(f, "w", sr, channels, subtype if fmt != "OGG" else "VORBIS",
                              format=fmt) as snd:
                snd.software = SOFTWARE  # how a later run tells its own outputs from inputs
                yield snd
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name is
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError if another writer got there first
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_wav_atomic(path: str | os.PathLike, x: np.ndarray, sr: int,
                     subtype: str = "PCM_16", overwrite: bool = True) -> None:
    """Write ``x`` (samples,) or (channels, samples) to ``path`` through :func:`audio_writer`."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x.T  # soundfile wants (samples, channels)
    elif x.ndim != 1:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {x.shape}")
    with audio_writer(path, sr, 1 if x.ndim == 1 else x.shape[1], subtype, overwrite) as snd:
        snd.write(x)
