"""Batch inversion of files and folders: the library behind ``ppsi invert``.

Inputs are spectrogram files (see :mod:`ppsi_cli.spec_io`) or audio (copy synthesis). Outputs
mirror the input tree as WAV files, written atomically; inputs are never overwritten, an existing
output needs ``force`` (or is skipped with ``skip_existing``), and a bad file is reported and
counted while the rest of the batch goes on. Progress is reported as events to a callback.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import StftConfig
from .dsp.stft import stft
from .inverter import Inverter
from .io import AUDIO_EXTS, read_audio, resample, write_wav_atomic
from .methods import Method, parse_method
from .spec_io import SPEC_EXTS, SpecError, check_against, read_spectrogram

INPUT_EXTS = SPEC_EXTS + AUDIO_EXTS


class InputError(ValueError):
    """A file that cannot be inverted; the message says why."""


@dataclass
class InvertOptions:
    """What ``ppsi invert`` was asked for. ``iters``, ``momentum`` and ``refine`` (None: not
    given) override the options of ``method``; :attr:`spec` is the parsed method."""

    method: str = "ppsi"
    weights: str | None = None
    device: str = "cpu"
    iters: int | None = None
    momentum: float | None = None
    refine: int | None = None
    subtype: str = "PCM_16"
    force: bool = False
    skip_existing: bool = False
    batch_size: int = 1
    shard: tuple[int, int] = (0, 1)
    spec: Method = field(init=False)

    def __post_init__(self) -> None:
        self.spec = parse_method(self.method, iters=self.iters, momentum=self.momentum,
                                 refine=self.refine)
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"shard {i}/{n} is not valid: need 0 <= I < N")
        if self.force and self.skip_existing:
            raise ValueError("--force and --skip-existing exclude each other")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
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


@dataclass
class Item:
    """One loaded input: magnitudes (K, T) float32, or the complex STFT of audio (copy
    synthesis, inverted to the audio's length)."""

    x: torch.Tensor
    length: int | None
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
        x = resample(x, sr, cfg.sample_rate).astype(np.float32)
        notices.append(f"resampled {sr} Hz -> {cfg.sample_rate} Hz")
    audio = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Item(stft(audio, cfg), len(x), notices)


def run_batch(src: Path, out_dir: Path, options: InvertOptions,
              on_event: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """Invert every input under ``src`` into ``out_dir``; never raises for a single bad file."""
    emit = on_event or (lambda e: None)
    inverter = Inverter(options.spec, weights=options.weights, device=options.device)
    src, out_dir = Path(src), Path(out_dir)
    everything = plan(src, out_dir)
    refused = conflicts(everything)
    i, n = options.shard
    pairs = everything[i::n]
    summary = Summary()
    emit({"event": "start", "files": len(pairs), "method": options.spec.label,
          "device": str(inverter.device)})
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
        _run_group(group, inverter, options, summary, emit)
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


def _run_group(group, inverter: Inverter, options: InvertOptions, summary: Summary,
               emit) -> None:
    t0 = time.perf_counter()
    cfg = inverter.stft
    loaded: list[tuple[Path, Path, Item]] = []
    for inp, outp in group:
        try:
            item = load_input(inp, cfg)
            if options.spec.name == "oracle" and not item.x.is_complex():
                raise InputError("method oracle needs audio input (it uses the true phase)")
            loaded.append((inp, outp, item))
        except (InputError, ValueError) as exc:
            r = FileResult(str(inp), str(outp), "failed", str(exc))
            summary.add(r)
            emit({"event": "file", **asdict(r)})
    if not loaded:
        return
    try:
        waves = inverter.many([it.x for _, _, it in loaded], [it.length for _, _, it in loaded])
        waves = [w.float().cpu().numpy() for w in waves]
    except Exception as exc:  # one bad group must not stop the batch: retry one by one
        if len(loaded) > 1:
            for inp, outp, _ in loaded:
                _run_group([(inp, outp)], inverter, options, summary, emit)
            return
        inp, outp, _ = loaded[0]
        why = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        r = FileResult(str(inp), str(outp), "failed", why)
        summary.add(r)
        emit({"event": "file", **asdict(r)})
        return
    per_file = (time.perf_counter() - t0) / len(loaded)
    for (inp, outp, item), w in zip(loaded, waves):
        notices = list(item.notices)
        peak = max(float(w.max()), -float(w.min())) if w.size else 0.0  # no |w| copy
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
            write_spectrogram(dst, item.x.abs().numpy(), cfg, fmt)
            results.append(FileResult(str(f), str(dst), "ok", None, item.length / cfg.sample_rate,
                                      notices=item.notices))
        except (InputError, ValueError, OSError) as exc:
            results.append(FileResult(str(f), str(dst), "failed", str(exc)))
    return results
