"""Spectrogram files: read ``.npy`` / ``.npz`` / ``.pt`` safely (never unpickling), write them.

- ``.npy``: a real array ``(bins, frames)`` of linear magnitudes.
- ``.npz``: key ``magnitude`` ``(bins, frames)``; optional scalars naming its STFT in torch's
  names (``sample_rate``, ``n_fft``, ``win_length``, ``hop_length``, ``window``, ``center``,
  ``pad_mode``; see :class:`~ppsi_cli.config.StftConfig`) and ``scale`` in ``linear`` (|X|),
  ``power`` (|X|^2), ``log`` (natural log of |X|) or ``db`` (20 log10 |X|).
  A mel spectrogram says ``scale`` ``mel`` or ``log-mel`` (values ``(bands, frames)`` as the
  front end gives them), with its settings as keys (:data:`~ppsi_cli.config.MEL_KEYS`:
  ``n_mels``, ``f_min``, ``f_max``, ``mel_scale``, ``mel_norm``, ``power``, ``log``,
  ``clamp``) and/or ``mel`` = a preset name (:data:`~ppsi_cli.config.MEL_PRESETS`); ``log-mel``
  without ``log`` means the natural log.
- ``.pt``: a real tensor ``(bins, frames)`` saved with ``torch.save`` (loaded ``weights_only``).
A leading dimension of size 1 is dropped. What a file says of its STFT and scale wins over the
defaults; a command-line option that contradicts it is refused, naming both.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import MEL_KEYS, STFT_KEYS, MelConfig, StftConfig, _setting, mel_config, stft_config
from .io import atomic_path

SPEC_EXTS = (".npy", ".npz", ".pt")
SCALES = ("linear", "power", "log", "db", "mel", "log-mel")
#: scales of mel spectrograms: their values stay as stored, the inverter undoes the log
MEL_SCALES = ("mel", "log-mel")
#: metadata keys a .npz may hold besides its array
META_KEYS = (*STFT_KEYS, *MEL_KEYS, "scale", "mel")
#: The most values a spectrogram file may hold, checked from its header before anything is
#: allocated: 2^28 = 268 M (1 GiB of float32; 9.3 hours of 513-bin frames at hop 256, 16 kHz).
MAX_VALUES = 1 << 28


class SpecError(ValueError):
    """A spectrogram file that cannot be used; the message names the problem."""


@dataclass
class Spectrogram:
    magnitude: np.ndarray  # (bins, frames), linear, float32
    meta: dict = field(default_factory=dict)


def _to_linear(x: np.ndarray, scale: str) -> np.ndarray:
    if scale in ("linear", *MEL_SCALES):
        return x
    if scale == "power":
        if (x < 0).any():
            raise SpecError("power spectrogram has negative values")
        return np.sqrt(x)
    if scale == "log":
        return np.exp(x)
    return np.power(10.0, x / 20.0)  # db


def peek(path: str | Path) -> tuple[tuple[int, ...], dict] | None:
    """(shape, metadata) of a spectrogram file from its headers alone, or None when that
    cannot be had cheaply (a .pt, or an unreadable file)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as f:
                return _npy_shape(f), {}
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                meta = {k: _scalar(z[k], k) for k in META_KEYS if k in z.files}
                with z.zip.open("magnitude.npy") as member:
                    return _npy_shape(member), meta
    except Exception:
        return None
    return None


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of a NumPy header; ``f`` is left at the data."""
    version = np.lib.format.read_magic(f)
    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                             np.lib.format.read_array_header_2_0(f))
    return tuple(shape), fortran, np.dtype(dtype)


def _npy_shape(f) -> tuple[int, ...]:
    return _npy_header(f)[0]


def _check_size(shape) -> None:
    n = int(np.prod(shape, dtype=np.float64)) if len(shape) else 1
    if n > MAX_VALUES:
        raise SpecError(f"holds {n:,} values (shape {tuple(shape)}); more than the "
                        f"{MAX_VALUES:,} ppsi reads from one file")


def _check_npy_size(f) -> None:
    """The shape in a NumPy header, checked before the array is read."""
    _check_size(_npy_shape(f))


def _scalar(value: np.ndarray, key: str):
    if value.shape != ():
        raise SpecError(f"metadata {key!r} must be a scalar, got shape {value.shape}")
    return value.item()


def read_spectrogram(path: str | Path, scale: str | None = None) -> Spectrogram:
    """Read a spectrogram file as linear magnitudes; raises :class:`SpecError` with the reason.

    ``scale`` (None: not given) is the scale of a file that does not state its own."""
    path = Path(path)
    ext = path.suffix.lower()
    meta: dict = {}
    try:
        magic = {".npy": ((b"\x93NUMPY",), "an .npy file (no NumPy header)"),
                 ".npz": ((b"PK",), "an .npz file (not a zip archive)"),
                 # torch.save: a zip archive, or a legacy pickle (protocol byte 0x80)
                 ".pt": ((b"PK", b"\x80"), "a torch.save file")}.get(ext)
        if magic is not None:
            with open(path, "rb") as f:
                head = f.read(6)
            if not any(head.startswith(m) for m in magic[0]):  # else the loaders guess
                raise SpecError("is empty (0 bytes)" if not head else f"is not {magic[1]}")
        if ext == ".npy":
            with open(path, "rb") as f:
                _check_npy_size(f)
            arr = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "magnitude" not in z.files:
                    raise SpecError(f"no 'magnitude' array (keys: {sorted(z.files)})")
                with z.zip.open("magnitude.npy") as member:  # compressed: inflate nothing yet
                    _check_npy_size(member)
                arr = z["magnitude"]
                for key in META_KEYS:
                    if key in z.files:
                        meta[key] = _scalar(z[key], key)
        elif ext == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, torch.Tensor):
                raise SpecError(f"holds a {type(obj).__name__}, expected a tensor (bins, frames)")
            _check_size(obj.shape)  # an expanded view saves a tiny storage for a huge shape
            if obj.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
                obj = obj.float()
            arr = obj.detach().numpy()
        else:
            raise SpecError(f"unknown spectrogram extension {ext!r} (use {', '.join(SPEC_EXTS)})")
    except SpecError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise SpecError("contains pickled Python objects; refused (save plain arrays)") from exc
        raise SpecError(f"unreadable or truncated ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise SpecError(f"unreadable or truncated ({type(exc).__name__}: {exc})") from exc
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) met a non-tensor
        raise SpecError("contains pickled Python objects other than tensors; refused "
                        "(save a plain tensor)") from exc
    except Exception as exc:  # whatever else a corrupt file makes a reader raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise SpecError(f"corrupt or unreadable ({type(exc).__name__}: {first})") from exc
    arr = _shaped(arr)
    return Spectrogram(linear_values(arr, _scale_of(meta, scale)), meta)


def _shaped(arr: np.ndarray) -> np.ndarray:
    """``arr`` as (bins, frames) of real numbers, or SpecError naming what it is instead."""
    if arr.dtype.kind == "c":
        raise SpecError("is complex; save magnitudes (np.abs of the STFT)")
    if arr.dtype.kind not in "fiu":
        raise SpecError(f"has dtype {arr.dtype}; expected real numbers")
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise SpecError(f"has shape {arr.shape}; expected (bins, frames)")
    if arr.size == 0:
        raise SpecError(f"is empty (shape {arr.shape})")
    return arr


def _scale_of(meta: dict, scale: str | None) -> str:
    if scale is not None and "scale" in meta and str(meta["scale"]) != scale:
        raise SpecError(f"the file says scale={meta['scale']!r} but --scale {scale}")
    scale = str(meta.get("scale", scale or "linear"))
    if scale not in SCALES:
        raise SpecError(f"scale {scale!r} unknown; use one of {SCALES}")
    return scale


def linear_values(arr: np.ndarray, scale: str) -> np.ndarray:
    """Linear float32 magnitudes of ``arr`` (a whole file or a chunk of its frames) in ``scale``,
    or SpecError: NaN / Inf, overflow of the conversion, values beyond float32. Linear float32
    values pass as they are: the inverter checks them (:func:`~ppsi_cli.dsp.stft.
    check_spectrogram`), so a long file is neither copied nor scanned twice."""
    if scale in ("linear", *MEL_SCALES) and arr.dtype == np.float32:
        return arr
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise SpecError(f"contains {'NaN' if np.isnan(arr).any() else 'Inf'} values")
    with np.errstate(over="ignore"):  # overflow is reported just below
        mag = _to_linear(arr.astype(np.float64), scale)
    if not np.isfinite(mag).all():
        raise SpecError(f"{scale} values overflow when converted to linear magnitude")
    peak, limit = float(np.abs(mag).max()), float(np.finfo(np.float32).max)
    if peak > limit:
        raise SpecError(f"values too large (peak {peak:.3g}; float32, in which ppsi inverts, "
                        f"ends at {limit:.3g})")
    return mag.astype(np.float32)


def log_scale_notice(values: np.ndarray, scale: str, mel: MelConfig | None) -> str | None:
    """A notice for a spectrogram read on a log scale (``log`` / ``db``, or a mel with a log)
    that has no value below 0 (linear ``values`` >= 1 for log / db, the stored values of a mel):
    the log of any audio's spectrogram has quiet bins below 1, so it is likely linear values
    given as logs, which invert to noise far above full scale."""
    if values.size == 0:
        return None
    if mel is not None:
        if mel.log == "none" or float(values.min()) < 0:
            return None
        return (f"no value is below 0, as a log-mel (log={mel.log}) of audio has: a linear mel? "
                "then say log=none (--mel PRESET+log=none)")
    if scale not in ("log", "db") or float(values.min()) < 1:
        return None
    return (f"no value is below 0, as a {scale}-scale spectrogram of audio has: linear "
            "magnitudes? then --scale linear")


class NpyFrames:
    """A long ``.npy`` spectrogram read a chunk of frames at a time with plain reads at the
    frames' offsets (no memory map: pages stay in the kernel's cache, not in this process), so
    memory does not grow with the file's length."""

    def __init__(self, path: str | Path, scale: str | None = None):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                if f.read(6) != b"\x93NUMPY":
                    raise SpecError("is not an .npy file (no NumPy header)")
                f.seek(0)
                shape, self._fortran, self._dtype = _npy_header(f)
                self._offset = f.tell()
                size = os.fstat(f.fileno()).st_size
        except SpecError:
            raise
        except Exception as exc:
            raise SpecError(f"unreadable or truncated ({type(exc).__name__}: {exc})") from exc
        _check_size(shape)
        _shaped(np.ones((1, 1), self._dtype))  # the dtype: real numbers
        squeezed = tuple(shape)
        while len(squeezed) > 2 and squeezed[0] == 1:
            squeezed = squeezed[1:]
        if len(squeezed) != 2 or 0 in squeezed:
            raise SpecError(f"has shape {tuple(shape)}; expected (bins, frames)")
        self.bins, self.frames = squeezed
        if self._offset + self.bins * self.frames * self._dtype.itemsize > size:
            raise SpecError("unreadable or truncated (the data is shorter than its header says)")
        self.scale = _scale_of({}, scale)
        self.meta: dict = {}

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Linear float32 magnitudes of frames ``[start, stop)``, shape (bins, n)."""
        stop = min(stop, self.frames)
        n, k, size = stop - start, self.bins, self._dtype.itemsize
        with open(self.path, "rb") as f:
            fd = f.fileno()
            if self._fortran:  # frame-major: the chunk is one run of bytes
                raw = os.pread(fd, n * k * size, self._offset + start * k * size)
                arr = np.frombuffer(raw, self._dtype).reshape(n, k).T
            else:  # bin-major: one run per bin
                arr = np.stack([np.frombuffer(os.pread(fd, n * size, self._offset + (b *
                                self.frames + start) * size), self._dtype) for b in range(k)])
        return linear_values(np.ascontiguousarray(arr), self.scale)


def file_mel(spec: Spectrogram, option: str | None) -> tuple[MelConfig | None, dict]:
    """``(mel settings, the preset's STFT settings)`` of a spectrogram file, or ``(None, {})``
    for a linear one: what its metadata say (``scale`` mel / log-mel, the mel keys, a ``mel``
    preset), else ``option`` (``--mel``). A file that states a linear scale, or another preset,
    than ``option`` is refused, naming both."""
    meta = spec.meta
    scale = None if meta.get("scale") is None else str(meta["scale"])
    keys = {k: meta[k] for k in MEL_KEYS if k in meta}
    stated = scale in MEL_SCALES or "mel" in meta or bool(keys)
    try:
        if not stated:
            if option and scale is not None:
                raise SpecError(f"the file says scale={scale!r} but --mel {option}")
            return mel_config(option) if option else (None, {})
        preset = str(meta["mel"]) if "mel" in meta else None
        if preset and option and preset != option.split("+")[0].strip().lower():
            raise SpecError(f"the file says mel={preset!r} but --mel {option}")
        if scale == "log-mel" and "log" not in keys and not (preset or option):
            keys["log"] = "ln"
        mel, stft = mel_config(preset or option, keys)
    except SpecError:
        raise
    except ValueError as exc:
        raise SpecError(f"mel metadata: {exc}") from None
    if scale == "mel" and mel.log != "none" or scale == "log-mel" and mel.log == "none":
        raise SpecError(f"the file says scale={scale!r} but log={mel.log!r}")
    return mel, stft


def cli_flag(key: str, value) -> str:
    """The command-line spelling of STFT setting ``key`` = ``value`` (``--n-fft 512``,
    ``--no-center``)."""
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value}"


def file_stft(spec: Spectrogram, options: dict, base: StftConfig) -> StftConfig:
    """The STFT of a spectrogram file: what its metadata say, else the ``options`` (None: not
    given), else ``base``. An option that contradicts the metadata is refused, naming both."""
    meta = {k: v for k, v in spec.meta.items() if k in STFT_KEYS}
    try:
        for key, value in options.items():
            if value is not None and key in meta and _setting(key, meta[key]) != _setting(key,
                                                                                          value):
                raise SpecError(f"the file says {key}={meta[key]!r} but {cli_flag(key, value)}")
        return stft_config({**options, **meta}, base)
    except SpecError:
        raise
    except ValueError as exc:  # a setting in the file that is not one
        raise SpecError(f"STFT metadata: {exc}") from None


def write_spectrogram(path: str | Path, magnitude: np.ndarray, cfg: StftConfig,
                      fmt: str | None = None, mel: MelConfig | None = None) -> Path:
    """Write linear magnitudes ``(bins, frames)`` (or, with ``mel``, the values of that mel
    front end) atomically as npz (with metadata), npy or pt."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    if fmt not in ("npz", "npy", "pt"):
        raise ValueError(f"unknown spectrogram format {fmt!r}; use npz, npy or pt")
    mag = np.ascontiguousarray(magnitude, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if fmt == "npz":
            # center=False, ppsi's framing, is the default: left out, so that a file saying
            # center=False is someone else's (torch's center=False is not it: a notice says so)
            meta = {k: getattr(cfg, k) for k in STFT_KEYS if k != "center" or cfg.center}
            meta["scale"] = "linear"
            if mel is not None:
                meta.update(mel.to_dict(), scale="mel" if mel.log == "none" else "log-mel")
            np.savez(f, magnitude=mag, **{k: v for k, v in meta.items() if v is not None})
        elif fmt == "npy":
            np.save(f, mag, allow_pickle=False)
        else:
            torch.save(torch.from_numpy(mag), f)
    return path
