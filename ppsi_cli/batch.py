"""Batch inversion of files and folders: the library behind ``ppsi invert``.

Inputs are spectrogram files (see :mod:`ppsi_cli.spec_io`) or audio (copy synthesis). Outputs
mirror the input tree as WAV files, written atomically; inputs are never overwritten, an existing
output needs ``force`` (or is skipped with ``skip_existing``), and a bad file is reported and
counted while the rest of the batch goes on. Progress is reported as events to a callback.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy.signal import resample_poly

from .api import oracle_spectrogram
from .config import StftConfig
from .dsp.stft import istft, stft
from .integrate import check_magnitude, integrate
from .io import AUDIO_EXTS, read_audio, write_wav_atomic
from .model import PhaseDiffNet, predict
from .spec_io import SPEC_EXTS, SpecError, check_against, read_spectrogram
from .weights import LoadedModel, load_weights, shipped_weights

METHODS = ("ppsi", "ppsi-strided", "oracle", "rtisi-la", "rtisi", "griffin-lim", "pghi", "rtpghi")
INPUT_EXTS = SPEC_EXTS + AUDIO_EXTS


class InputError(ValueError):
    """A file that cannot be inverted; the message says why."""


@dataclass
class InvertOptions:
    method: str = "ppsi"
    weights: str | None = None
    device: str = "cpu"
    iters: int = 32
    momentum: float = 0.99
    refine: int = 0
    subtype: str = "PCM_16"
    force: bool = False
    skip_existing: bool = False
    batch_size: int = 1
    shard: tuple[int, int] = (0, 1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"shard {i}/{n} is not valid: need 0 <= I < N")
        if self.force and self.skip_existing:
            raise ValueError("--force and --skip-existing exclude each other")
        if self.refine < 0 or self.iters < 1 or self.batch_size < 1:
            raise ValueError("refine must be >= 0, iters and batch size >= 1")
        if self.subtype not in ("PCM_16", "PCM_24", "FLOAT"):
            raise ValueError(f"subtype must be PCM_16, PCM_24 or FLOAT, got {self.subtype!r}")


@dataclass
class FileResult:
    input: str
    output: str | None
    status: str  # ok | failed | skipped
    error: str | None = None
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    notices: list[str] = field(default_factory=list)


@dataclass
class Summary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    files: list[FileResult] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        """Audio seconds produced per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def add(self, r: FileResult) -> None:
        self.files.append(r)
        setattr(self, r.status, getattr(self, r.status) + 1)
        self.audio_seconds += r.audio_seconds

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["realtime_factor"] = self.realtime_factor
        return d


def find_inputs(src: Path) -> list[Path]:
    """Spectrogram and audio files under ``src`` (or ``src`` itself), sorted."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FileNotFoundError(f"input not found: {src}")
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_EXTS)


def plan(src: Path, out_dir: Path, shard: tuple[int, int] = (0, 1)) -> list[tuple[Path, Path]]:
    """(input, output) pairs mirroring the tree; ``shard`` I/N takes every N-th file from I."""
    files = find_inputs(src)
    base = src if src.is_dir() else src.parent
    pairs = [(f, out_dir / f.relative_to(base).with_suffix(".wav")) for f in files]
    i, n = shard
    return pairs[i::n]


def conflicts(pairs: list[tuple[Path, Path]]) -> dict[Path, str]:
    """Inputs whose output would overwrite an input file or is claimed by an earlier input.

    Computed on the whole (unsharded) plan so that every shard agrees; maps input -> reason.
    """
    inputs = {inp.resolve() for inp, _ in pairs}
    claimed: dict[Path, Path] = {}
    bad: dict[Path, str] = {}
    for inp, outp in pairs:
        key = outp.resolve()
        if key in inputs:
            bad[inp] = f"output {outp} would overwrite an input file"
        elif key in claimed:
            bad[inp] = (f"output {outp} is already the output of {claimed[key]} "
                        "(same name, other extension); rename one")
        else:
            claimed[key] = inp
    return bad


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def load_for(options: InvertOptions, device: torch.device) -> LoadedModel | None:
    """The model a method needs (ppsi methods), else None (the default STFT is used)."""
    if options.method not in ("ppsi", "ppsi-strided"):
        return load_weights(options.weights, device) if options.weights else None
    variant = "strided" if options.method == "ppsi-strided" else "online"
    return load_weights(options.weights or shipped_weights(variant), device)


@dataclass
class Item:
    """One loaded input: magnitudes (K, T) float32, or audio too for copy synthesis."""

    mag: torch.Tensor
    length: int | None
    spec: torch.Tensor | None = None  # complex STFT, audio inputs only
    notices: list[str] = field(default_factory=list)


def load_input(path: Path, cfg: StftConfig) -> Item:
    """Read one input file and bring it to the model's STFT; raise InputError with the reason."""
    ext = path.suffix.lower()
    if ext in SPEC_EXTS:
        try:
            spec = read_spectrogram(path)
            check_against(spec, cfg)
        except SpecError as exc:
            raise InputError(str(exc)) from None
        return Item(torch.from_numpy(spec.magnitude), None)
    if ext not in AUDIO_EXTS:
        raise InputError(f"unsupported extension {ext!r}")
    try:
        x, sr = read_audio(path, mono=False)
    except Exception as exc:
        why = str(exc).replace(f"Error opening {str(path)!r}: ", "")  # the line names the file
        raise InputError(f"unreadable audio ({type(exc).__name__}: {why})") from None
    notices = []
    if x.shape[-1] == 0:
        raise InputError("audio has zero samples")
    if not np.isfinite(x).all():
        raise InputError("audio contains NaN or Inf samples")
    if x.shape[0] > 1:
        notices.append(f"{x.shape[0]} channels mixed down to mono")
    x = x.mean(axis=0)
    if sr != cfg.sample_rate:
        g = math.gcd(sr, cfg.sample_rate)
        x = resample_poly(x, cfg.sample_rate // g, sr // g).astype(np.float32)
        notices.append(f"resampled {sr} Hz -> {cfg.sample_rate} Hz")
    audio = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    spec = stft(audio, cfg)
    return Item(spec.abs(), len(x), spec, notices)


def invert_items(items: list[Item], model: LoadedModel | None, cfg: StftConfig,
                 options: InvertOptions, device: torch.device) -> list[np.ndarray]:
    """Waveforms for a group of loaded inputs (batched on the device for ppsi and oracle)."""
    method = options.method
    if method in ("ppsi", "ppsi-strided", "oracle"):
        t_max = max(it.mag.shape[-1] for it in items)
        # frames after an item's end change none of its samples; padding with the look-ahead
        # floor predict() uses makes a batch give exactly what one by one gives
        mags = torch.stack([pad_frames(it.mag, t_max) for it in items]).to(device)
        # one item: unbatched systems, which take the solver's fast path on CPU (2-3x faster)
        single = len(items) == 1
        if method == "oracle":
            if any(it.spec is None for it in items):
                raise InputError("method oracle needs audio input (it uses the true phase)")
            specs = torch.stack([torch.nn.functional.pad(it.spec, (0, t_max - it.spec.shape[-1]))
                                 for it in items]).to(device)
            rec = oracle_spectrogram(_unbatch(specs, single), cfg, model.solver if model else None)
        else:
            check_magnitude(mags, cfg)
            rows = CHUNK_ROWS_CUDA if mags.device.type == "cuda" else CHUNK_ROWS_CPU
            b, f = predict_chunked(model.net, mags, rows)
            rec = integrate(*(_unbatch(x.to(mags.dtype), single) for x in (mags, b, f)), cfg,
                            model.solver)
        rec = rec.reshape(len(items), *rec.shape[-2:])
        if options.refine:
            from .baselines.griffin_lim import griffin_lim_stft

            rec = griffin_lim_stft(mags, cfg, n_iter=options.refine, momentum=options.momentum,
                                   init_phase=torch.angle(rec))
        waves = istft(rec, cfg, None)
        out = []
        for i, it in enumerate(items):
            n = it.length if it.length is not None else istft_len(it.mag.shape[-1], cfg)
            w = waves[i, :n]
            if w.shape[-1] < n:
                w = torch.nn.functional.pad(w, (0, n - w.shape[-1]))
            out.append(w.float().cpu().numpy())
        return out
    from .baselines import BASELINES

    fn = BASELINES[method]
    kwargs: dict[str, Any] = {}
    if method == "griffin-lim":  # the random initial phase is seeded per file
        kwargs = {"n_iter": options.iters, "momentum": options.momentum,
                  "generator": torch.Generator(device).manual_seed(options.seed)}
    out = []
    for it in items:
        w = fn(it.mag.to(device), cfg, length=it.length, **kwargs)
        out.append(w.float().cpu().numpy())
    return out


#: Frames x items per CNN call: bounds memory on long files (10 min = 37,500 frames would
#: need ~7 GB at once on CPU); the result is the same as one call.
CHUNK_ROWS_CPU = 8192
CHUNK_ROWS_CUDA = 65536


def predict_chunked(net: PhaseDiffNet, mag: torch.Tensor, max_rows: int = CHUNK_ROWS_CPU
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ppsi_cli.model.predict` over time chunks of about ``max_rows / batch`` frames.

    Chunks overlap by the CNN's context (rounded up to even, so strided passes keep their
    parity), which makes the result equal to one call on the whole input (to float rounding).
    """
    lead, (n_f, n_t) = mag.shape[:-2], mag.shape[-2:]
    mag = mag.reshape(-1, n_f, n_t)
    overlap = net.cfg.context + net.cfg.context % 2
    chunk = max(2 * overlap, max_rows // mag.shape[0] // 2 * 2)
    if n_t <= chunk:
        b, f = predict(net, mag)
    else:
        parts = []
        for s in range(0, n_t, chunk):
            lo = max(0, s - overlap)
            b, f = predict(net, mag[..., lo:s + chunk])
            parts.append((b[..., s - lo:], f[..., s - lo:]))
        b, f = (torch.cat(p, dim=-1) for p in zip(*parts))
    return b.reshape(*lead, n_f, n_t), f.reshape(*lead, n_f - 1, n_t)


def _unbatch(x: torch.Tensor, single: bool) -> torch.Tensor:
    return x[0] if single else x


def pad_frames(mag: torch.Tensor, frames: int) -> torch.Tensor:
    """Magnitudes (K, T) padded to ``frames`` with constant frames at the floor of the last one
    (the silent look-ahead :func:`~ppsi_cli.model.predict` gives a strided model)."""
    extra = frames - mag.shape[-1]
    if extra <= 0:
        return mag
    last = mag[..., -1]
    floor = torch.maximum(last.amin(), last.amax().clamp_min(1e-20) * 1e-5)
    return torch.cat([mag, floor.expand(*mag.shape[:-1], extra)], dim=-1)


def istft_len(frames: int, cfg: StftConfig) -> int:
    return max(0, (frames + 1) * cfg.hop_length - cfg.win_length)


def run_batch(src: Path, out_dir: Path, options: InvertOptions,
              on_event: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """Invert every input under ``src`` into ``out_dir``; never raises for a single bad file."""
    emit = on_event or (lambda e: None)
    device = resolve_device(options.device)
    model = load_for(options, device)
    cfg = model.stft if model else StftConfig()
    if options.method in ("ppsi", "ppsi-strided") and model.net.cfg.strided != (
            options.method == "ppsi-strided"):
        kind = "strided" if model.net.cfg.strided else "online"
        raise ValueError(f"--method {options.method} but the weights hold a {kind} model")
    torch.manual_seed(options.seed)
    src, out_dir = Path(src), Path(out_dir)
    everything = plan(src, out_dir)
    refused = conflicts(everything)
    i, n = options.shard
    pairs = everything[i::n]
    summary = Summary()
    emit({"event": "start", "files": len(pairs), "method": options.method,
          "device": str(device)})
    start = time.perf_counter()
    todo: list[tuple[Path, Path]] = []
    for inp, outp in pairs:
        if inp in refused:
            r = FileResult(str(inp), str(outp), "failed", refused[inp])
        elif outp.exists() and options.skip_existing:
            r = FileResult(str(inp), str(outp), "skipped", "output exists")
        elif outp.exists() and not options.force:
            r = FileResult(str(inp), str(outp), "failed",
                           "output exists (use --force to overwrite or --skip-existing)")
        else:
            todo.append((inp, outp))
            continue
        summary.add(r)
        emit({"event": "file", **asdict(r)})
    # group inputs so that one batch of similar lengths is inverted together
    for group in _groups(todo, options.batch_size):
        _run_group(group, model, cfg, options, device, summary, emit)
    summary.wall_seconds = time.perf_counter() - start
    emit({"event": "done", **{k: v for k, v in summary.to_dict().items() if k != "files"}})
    return summary


def _groups(todo: list[tuple[Path, Path]], size: int):
    if size <= 1:
        for pair in todo:
            yield [pair]
        return
    by_size = sorted(todo, key=lambda pr: pr[0].stat().st_size)
    for i in range(0, len(by_size), size):
        yield by_size[i:i + size]


def _run_group(group, model, cfg, options, device, summary: Summary, emit) -> None:
    t0 = time.perf_counter()
    loaded: list[tuple[Path, Path, Item]] = []
    for inp, outp in group:
        try:
            item = load_input(inp, cfg)
            if options.method == "oracle" and item.spec is None:
                raise InputError("method oracle needs audio input (it uses the true phase)")
            loaded.append((inp, outp, item))
        except (InputError, ValueError) as exc:
            r = FileResult(str(inp), str(outp), "failed", str(exc))
            summary.add(r)
            emit({"event": "file", **asdict(r)})
    if not loaded:
        return
    try:
        waves = invert_items([it for _, _, it in loaded], model, cfg, options, device)
    except Exception as exc:  # one bad group must not stop the batch: retry one by one
        if len(loaded) > 1:
            for inp, outp, _ in loaded:
                _run_group([(inp, outp)], model, cfg, options, device, summary, emit)
            return
        inp, outp, _ = loaded[0]
        r = FileResult(str(inp), str(outp), "failed", f"{type(exc).__name__}: {exc}")
        summary.add(r)
        emit({"event": "file", **asdict(r)})
        return
    per_file = (time.perf_counter() - t0) / len(loaded)
    for (inp, outp, item), w in zip(loaded, waves):
        notices = list(item.notices)
        peak = float(np.abs(w).max()) if w.size else 0.0
        if options.subtype != "FLOAT" and peak > 1.0:
            notices.append(f"clipped: peak {peak:.2f} > 1.0 (use --subtype FLOAT to keep it)")
            w = np.clip(w, -1.0, 1.0)
        try:
            outp.parent.mkdir(parents=True, exist_ok=True)
            write_wav_atomic(outp, w, cfg.sample_rate, options.subtype)
            r = FileResult(str(inp), str(outp), "ok", None, len(w) / cfg.sample_rate, per_file,
                           notices)
        except Exception as exc:
            r = FileResult(str(inp), str(outp), "failed", f"cannot write output ({exc})")
        summary.add(r)
        emit({"event": "file", **asdict(r)})


def _shard_worker(args) -> dict[str, Any]:
    src, out_dir, options, gpu = args
    options.device = f"cuda:{gpu}"
    return run_batch(Path(src), Path(out_dir), options).to_dict()


def run_sharded(src: Path, out_dir: Path, options: InvertOptions, gpus: int,
                on_event: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """One process per GPU, each inverting shard ``g`` of ``gpus`` (within ``options.shard``)."""
    import copy

    import torch.multiprocessing as mp

    i, n = options.shard
    jobs = []
    for g in range(gpus):
        opt = copy.deepcopy(options)
        opt.shard = (i + g * n, n * gpus)  # shard i/n split again into gpus parts
        jobs.append((str(src), str(out_dir), opt, g))
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(gpus) as pool:
        parts = pool.map(_shard_worker, jobs)
    summary = Summary()
    for part in parts:
        for f in part["files"]:
            r = FileResult(**f)
            summary.add(r)
            if on_event:
                on_event({"event": "file", **f})
    summary.wall_seconds = time.perf_counter() - start
    return summary


def make_spectrograms(src: Path, out_dir: Path, fmt: str = "npz", force: bool = False,
                      cfg: StftConfig | None = None) -> list[FileResult]:
    """Write the magnitude spectrogram of every audio file under ``src`` (mirroring the tree)."""
    from .spec_io import write_spectrogram

    cfg = cfg or StftConfig()
    src, out_dir = Path(src), Path(out_dir)
    files = [f for f in find_inputs(src) if f.suffix.lower() in AUDIO_EXTS]
    if not files:
        raise FileNotFoundError(f"no audio files (.wav, .flac, .ogg) under {src}")
    base = src if src.is_dir() else src.parent
    results = []
    for f in files:
        dst = out_dir / f.relative_to(base).with_suffix("." + fmt)
        try:
            if dst.exists() and not force:
                raise InputError("output exists (use --force to overwrite)")
            item = load_input(f, cfg)
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_spectrogram(dst, item.mag.numpy(), cfg, fmt)
            results.append(FileResult(str(f), str(dst), "ok", None, item.length / cfg.sample_rate,
                                      notices=item.notices))
        except (InputError, ValueError, OSError) as exc:
            results.append(FileResult(str(f), str(dst), "failed", str(exc)))
    return results
