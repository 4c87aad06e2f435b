"""Batch inversion of files and folders: the library behind ``ppsi invert``.

Inputs are spectrogram files (see :mod:`ppsi_cli.spec_io`) or audio (copy synthesis). Outputs
mirror the input tree as WAV files, written atomically; inputs are never overwritten, an existing
output needs ``force`` (or is skipped with ``skip_existing``), and a bad file is reported and
counted while the rest of the batch goes on. Progress is reported as events to a callback.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf
import torch

from .config import CENTER_FALSE_NOTE, MelConfig, StftConfig, front_end, stft_config
from .dsp.mel import mel_spectrogram
from .dsp.stft import default_length, stft
from .inverter import CHUNK_ROWS, Inverter, resolve_device
from .io import AUDIO_EXTS, audio_writer, read_audio, resample, written_by_ppsi
from .methods import Method, parse_method
from .spec_io import (MEL_SCALES, SCALES, SPEC_EXTS, NpyFrames, Spectrogram, SpecError, cli_flag,
                      file_mel, file_stft, log_scale_notice, peek, read_spectrogram)

INPUT_EXTS = SPEC_EXTS + AUDIO_EXTS


class InputError(ValueError):
    """A file that cannot be inverted; the message says why."""


@dataclass
class InvertOptions:
    """What ``ppsi invert`` was asked for. ``iters``, ``momentum`` and ``refine`` (None: not
    given) override the options of ``method``; :attr:`spec` is the parsed method. ``stft`` holds
    the STFT settings given as options: a spectrogram file's own metadata win over the defaults,
    and an option that contradicts them is an error. ``mel`` (a preset, ``NAME+KEY=VALUE``): the
    mel front end of files that do not state theirs (audio input: its mel is inverted)."""

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
    stft: dict[str, Any] = field(default_factory=dict)  # settings given (None: not given)
    scale: str | None = None  # of files that do not state theirs
    mel: str | None = None  # mel front end of files that do not state theirs
    spec: Method = field(init=False)
    base: StftConfig = field(init=False)  # the STFT of a file that states nothing
    mel_cfg: MelConfig | None = field(init=False)

    def __post_init__(self) -> None:
        self.spec = parse_method(self.method, iters=self.iters, momentum=self.momentum,
                                 refine=self.refine)
        self.mel_cfg, self.base = front_end(self.mel, self.stft)
        if self.mel and self.scale is not None:
            raise ValueError(f"--scale {self.scale} and --mel exclude each other (the mel "
                             "settings say its scale: log=...)")
        if self.scale in MEL_SCALES:  # a mel's scale comes with its front end's settings
            raise ValueError(f"--scale {self.scale}: give a mel spectrogram's front end with "
                             "--mel PRESET (hifigan | vocos | librosa | torchaudio), which "
                             "says its scale")
        linear = tuple(s for s in SCALES if s not in MEL_SCALES)
        if self.scale is not None and self.scale not in linear:
            raise ValueError(f"scale must be one of {', '.join(linear)}, got {self.scale!r}")
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
    planned: int = 0  # files of this run (its shard)
    interrupted: bool = False  # stopped by Ctrl-C / SIGINT: what finished is in ``files``

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
    """Spectrogram and audio files under ``src`` (or ``src`` itself), sorted. A link to nowhere
    with an input's extension is kept: it fails on reading with its own line, not unseen."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FileNotFoundError(f"input not found: {src}")
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in INPUT_EXTS
                  and (p.is_file() or p.is_symlink() and not p.exists()))


def named_output(src: Path, out: Path) -> str:
    """The format ``-o out`` names when it names the output file itself: for one input file, the
    extension of ``out`` ("wav" in ``ppsi invert a.npy -o b.wav``; "" when it has none or is an
    existing folder). Otherwise ``out`` is a folder that mirrors the input tree."""
    if not src.is_file() or out.is_dir():
        return ""
    return out.suffix.lower()[1:]


def plan(src: Path, out_dir: Path, shard: tuple[int, int] = (0, 1)) -> list[tuple[Path, Path]]:
    """(input, output) pairs mirroring the tree (or the one pair of :func:`named_output`);
    ``shard`` I/N takes every N-th file from I.

    The output tree is never an input: an output folder inside the input folder is left out,
    and a WAV that ppsi wrote as the output of a spectrogram beside it (output folder = input
    folder) is that output, not a new input; so reruns into such layouts see the same inputs as
    the first. A WAV there that ppsi did not write stays an input (never overwritten).
    """
    files = find_inputs(src)
    if named_output(src, out_dir) == "wav":
        return [(src, out_dir)][shard[0]::shard[1]]
    base = src if src.is_dir() else src.parent
    src_r, out_r = base.resolve(), out_dir.resolve()
    if out_r != src_r and out_r.is_relative_to(src_r):
        files = [f for f in files if not f.resolve().is_relative_to(out_r)]
    pairs = [(f, out_dir / f.relative_to(base).with_suffix(".wav")) for f in files]
    made = {o.resolve() for f, o in pairs if f.suffix.lower() in SPEC_EXTS}
    pairs = [(f, o) for f, o in pairs if f.resolve() not in made or not written_by_ppsi(f)]
    i, n = shard
    return pairs[i::n]


def check_output_dir(out_dir: Path) -> None:
    """Refuse, up front and in one line, an output location that cannot take files: a file, or
    a folder (or its nearest existing parent) this process may not write to."""
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"-o {out_dir}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"-o {out_dir}: {probe} is not writable")


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
    synthesis, inverted to the audio's length), with the STFT it was made with."""

    x: torch.Tensor
    length: int | None
    cfg: StftConfig
    notices: list[str] = field(default_factory=list)
    scale_stated: bool = True  # False: a spectrogram read as linear without saying so
    mel: MelConfig | None = None  # x is a mel spectrogram of this front end


def spec_settings(spec: Spectrogram, options: InvertOptions
                  ) -> tuple[MelConfig | None, StftConfig]:
    """The mel front end (None: a linear spectrogram) and the STFT of a spectrogram file: what
    its metadata say, else the options, else the defaults (a mel preset's STFT for a mel);
    SpecError where they contradict each other."""
    mel, mel_stft = file_mel(spec, options.mel)
    base = stft_config(mel_stft) if mel is not None else options.base
    return mel, file_stft(spec, options.stft, base)


def load_input(path: Path, options: InvertOptions) -> Item:
    """Read one input file with its STFT settings; raise InputError with the reason."""
    ext = path.suffix.lower()
    if ext in SPEC_EXTS:
        try:
            spec = read_spectrogram(path, options.scale)
            mel, cfg = spec_settings(spec, options)
        except SpecError as exc:
            raise InputError(str(exc)) from None
        stated = "scale" in spec.meta or options.scale is not None or mel is not None
        scale = str(spec.meta.get("scale", options.scale or "linear"))
        notices = [n for n in (log_scale_notice(spec.magnitude, scale, mel),) if n]
        if "center" in spec.meta and not cfg.center:  # the file says center=False: whose?
            notices.append(f"the file says {CENTER_FALSE_NOTE}")
        return Item(torch.from_numpy(spec.magnitude), None, cfg, notices, scale_stated=stated,
                    mel=mel)
    if ext not in AUDIO_EXTS:
        raise InputError(f"unsupported extension {ext!r}")
    cfg = options.base
    try:
        x, sr = read_audio(path, mono=False)
    except ValueError as exc:  # an implausible header
        raise InputError(str(exc)) from None
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
    try:
        spec = stft(audio, cfg)
    except ValueError as exc:  # e.g. too short for reflect padding
        raise InputError(str(exc)) from None
    if options.mel_cfg is not None:  # the mel of the audio is what is inverted
        return Item(mel_spectrogram(spec.abs(), options.mel_cfg, cfg), len(x), cfg, notices,
                    mel=options.mel_cfg)
    return Item(spec, len(x), cfg, notices)


def run_batch(src: Path, out_dir: Path, options: InvertOptions,
              on_event: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """Invert every input under ``src`` into ``out_dir``; never raises for a single bad file."""
    emit = on_event or (lambda e: None)
    inverters = Inverters(options)
    inverters.get(options.base)  # bad weights or device: the whole run fails here, in one line
    src, out_dir = Path(src), Path(out_dir)
    check_output_dir(out_dir.parent if named_output(src, out_dir) == "wav" else out_dir)
    everything = plan(src, out_dir)
    refused = conflicts(everything)
    i, n = options.shard
    pairs = everything[i::n]
    summary = Summary()
    emit({"event": "start", "files": len(pairs), "method": options.spec.label,
          "device": str(inverters.device)})
    start = time.perf_counter()
    todo: list[tuple[Path, Path]] = []
    for inp, outp in pairs:
        if inp in refused:
            r = FileResult(str(inp), str(outp), "failed", refused[inp])
        elif outp.exists() and options.skip_existing and _complete(inp, outp, options):
            r = FileResult(str(inp), str(outp), "skipped", "output exists")
        elif outp.exists() and options.skip_existing:  # empty, truncated or unreadable: redo
            outp.unlink()
            todo.append((inp, outp))
            continue
        elif outp.exists() and not options.force:
            r = FileResult(str(inp), str(outp), "failed",
                           "output exists (use --force to overwrite or --skip-existing)")
        else:
            todo.append((inp, outp))
            continue
        summary.add(r)
        emit({"event": "file", **asdict(r)})
    summary.planned = len(pairs)
    # long .npy files stream through; the others go in groups of similar lengths
    long = {inp for inp, _ in todo if _long(inp, options)}
    try:
        for inp, outp in [pair for pair in todo if pair[0] in long]:
            _run_long(inp, outp, inverters, options, summary, emit)
        todo = [pair for pair in todo if pair[0] not in long]
        for group in _groups(todo, options.batch_size):
            _run_group(group, inverters, options, summary, emit)
    except KeyboardInterrupt:  # what finished stays finished (outputs are atomic)
        summary.interrupted = True
    summary.wall_seconds = time.perf_counter() - start
    emit({"event": "done", **{k: v for k, v in summary.to_dict().items() if k != "files"}})
    return summary


def _complete(inp: Path, outp: Path, options: InvertOptions) -> bool:
    """Whether an existing output is readable and as long as ``inp`` makes it (where that can
    be known from headers alone; else: readable and not empty)."""
    try:
        info = sf.info(str(outp))
    except Exception:
        return False
    if info.frames <= 0:
        return False
    want = None
    if inp.suffix.lower() in AUDIO_EXTS:
        try:
            src = sf.info(str(inp))
            sr = options.base.sample_rate
            want = -(-src.frames * sr // src.samplerate)  # resample_poly's output length
        except Exception:
            return True  # an unreadable input fails on its own when it is redone
    else:
        peeked = peek(inp)
        if peeked is not None and len(peeked[0]) >= 2:
            try:
                _, cfg = spec_settings(Spectrogram(np.empty(0), peeked[1]), options)
                want = default_length(peeked[0][-1], cfg)
            except (SpecError, ValueError):
                return True
    return want is None or info.frames == want


def _groups(todo: list[tuple[Path, Path]], size: int):
    if size <= 1:
        for pair in todo:
            yield [pair]
        return
    by_size = sorted(todo, key=lambda pr: pr[0].stat().st_size)
    for i in range(0, len(by_size), size):
        yield by_size[i:i + size]


class Inverters:
    """One :class:`Inverter` per STFT met in a batch (files may state different ones); an
    STFT no inverter can serve (a network outside its family) keeps its error for its files."""

    def __init__(self, options: InvertOptions):
        self.options = options
        self.device = resolve_device(options.device)
        self._made: dict[tuple, Inverter | ValueError] = {}

    def get(self, cfg: StftConfig, mel: MelConfig | None = None) -> Inverter:
        key = (cfg, mel)
        if key not in self._made:
            try:
                self._made[key] = Inverter(self.options.spec, weights=self.options.weights,
                                           stft=cfg, mel=mel, device=self.device)
            except ValueError as exc:
                if not self._made:  # the first: the run's own settings; refuse the run
                    raise
                self._made[key] = exc
        made = self._made[key]
        if isinstance(made, ValueError):
            raise made
        return made


#: a linear-scale peak above this hints at a power spectrogram read as magnitudes
POWER_HINT_PEAK = 8.0


def _run_group(group, inverters: Inverters, options: InvertOptions, summary: Summary,
               emit) -> None:
    t0 = time.perf_counter()
    loaded: list[tuple[Path, Path, Item]] = []
    for inp, outp in group:
        try:
            item = load_input(inp, options)
            if options.spec.name == "oracle" and not item.x.is_complex():
                raise InputError("method oracle needs audio input (it uses the true phase)"
                                 + (", not a mel spectrogram" if item.mel else ""))
            loaded.append((inp, outp, item))
        except (InputError, ValueError) as exc:
            _report(summary, emit, FileResult(str(inp), str(outp), "failed", str(exc)))
        except MemoryError:  # one file too big for this machine: that file's failure
            _report(summary, emit, FileResult(str(inp), str(outp), "failed",
                                              "out of memory while reading it"))
    by_cfg: dict[tuple, list[tuple[Path, Path, Item]]] = {}
    for entry in loaded:
        by_cfg.setdefault((entry[2].cfg, entry[2].mel), []).append(entry)
    for (cfg, mel), entries in by_cfg.items():
        try:
            inverter = inverters.get(cfg, mel)
            waves = inverter.many([it.x for _, _, it in entries],
                                  [it.length for _, _, it in entries])
            waves = [w.float().cpu().numpy() for w in waves]
        except Exception as exc:  # one bad group must not stop the batch: retry one by one
            if len(entries) > 1:
                for inp, outp, _ in entries:
                    _run_group([(inp, outp)], inverters, options, summary, emit)
                continue
            inp, outp, _ = entries[0]
            why = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            _report(summary, emit, FileResult(str(inp), str(outp), "failed", why))
            continue
        per_file = (time.perf_counter() - t0) / len(loaded)
        for (inp, outp, item), w in zip(entries, waves):
            item.notices.extend(inverter.notices)
            _write(inp, outp, item, w, per_file, options, summary, emit)


def _report(summary: Summary, emit, r: FileResult) -> None:
    summary.add(r)
    emit({"event": "file", **asdict(r)})


class _DropOutput(Exception):
    """The output is dropped; the message says why (default: NaN or Inf samples)."""


def _write(inp: Path, outp: Path, item: Item, w: np.ndarray, seconds: float,
           options: InvertOptions, summary: Summary, emit) -> None:
    """Write one whole waveform (see :func:`_write_chunks`)."""
    _write_chunks(inp, outp, item, [w], seconds, options, summary, emit)


def _write_chunks(inp: Path, outp: Path, item: Item, chunks, seconds: float,
                  options: InvertOptions, summary: Summary, emit) -> None:
    """Write the waveform ``chunks`` (an iterable of NumPy pieces, made as they are written) at
    the spectrogram's sample rate, clipping for PCM; report the file with its notices. A piece
    with NaN or Inf samples drops the output: a NaN WAV or a square wave is not a result."""
    sr, peak, n = item.cfg.sample_rate, 0.0, 0
    try:
        outp.parent.mkdir(parents=True, exist_ok=True)
        with audio_writer(outp, sr, 1, options.subtype, overwrite=options.force) as snd:
            for w in chunks:
                if not np.isfinite(w).all():
                    raise _DropOutput
                if w.size:
                    peak = max(peak, float(w.max()), -float(w.min()))  # no |w| copy
                if options.subtype != "FLOAT" and peak > 1.0:
                    w = np.clip(w, -1.0, 1.0)
                snd.write(w)
                n += len(w)
    except _DropOutput as exc:
        why = exc.args[0] if exc.args else ("the inversion gave NaN or Inf samples (magnitudes "
                                            "too large for float32?); nothing written")
        return _report(summary, emit, FileResult(str(inp), str(outp), "failed", why))
    except FileExistsError:
        r = FileResult(str(inp), str(outp), "failed", "output appeared while this run was "
                       "inverting (another run into the same folder?); left as it is")
        return _report(summary, emit, r)
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        r = FileResult(str(inp), str(outp), "failed", f"cannot write output: {why.lower()}")
        return _report(summary, emit, r)
    notices = list(item.notices)
    if peak > POWER_HINT_PEAK and not item.scale_stated:
        notices.append(f"peak {peak:.0f} is far above full scale: a power spectrogram (|X|^2)? "
                       "then pass --scale power")
    if options.subtype != "FLOAT" and peak > 1.0:
        notices.append(f"clipped: peak {peak:.2f} > 1.0 (use --subtype FLOAT to keep it)")
    _report(summary, emit, FileResult(str(inp), str(outp), "ok", None, n / sr, seconds, notices))


#: .npy spectrograms longer than this many frames (about 2 minutes at 16 kHz, hop 256) are
#: read, inverted and written a chunk of frames at a time: memory independent of the length
LONG_FRAMES = 8192


def _long(inp: Path, options: InvertOptions) -> bool:
    if inp.suffix.lower() != ".npy" or not options.spec.online:
        return False
    peeked = peek(inp)
    return peeked is not None and len(peeked[0]) >= 2 and peeked[0][-1] > LONG_FRAMES


def _run_long(inp: Path, outp: Path, inverters: Inverters, options: InvertOptions,
              summary: Summary, emit) -> None:
    """One long .npy through the inverter's stream: read, inverted and written in chunks."""
    t0 = time.perf_counter()
    try:
        reader = NpyFrames(inp, options.scale)
        item = Item(torch.empty(0), None, options.base, scale_stated=options.scale is not None
                    or options.mel is not None, mel=options.mel_cfg)
        inverter = inverters.get(item.cfg, item.mel)
    except (SpecError, ValueError) as exc:
        return _report(summary, emit, FileResult(str(inp), str(outp), "failed", str(exc)))
    item.notices.extend(inverter.notices)
    if options.spec.name == "oracle":
        return _report(summary, emit, FileResult(str(inp), str(outp), "failed", "method oracle "
                                                 "needs audio input (it uses the true phase)"))
    step = CHUNK_ROWS.get(inverter.device.type, CHUNK_ROWS["cpu"])

    def pieces():
        stream = inverter.stream()
        try:
            for s in range(0, reader.frames, step):
                mag = torch.from_numpy(reader.chunk(s, s + step))
                yield stream.push(mag).float().cpu().numpy()
            yield stream.flush().float().cpu().numpy()
        except (SpecError, ValueError) as exc:  # a bad value far into the file: its own line
            raise _DropOutput(f"{exc}; nothing written") from None

    _write_chunks(inp, outp, item, pieces(), time.perf_counter() - t0, options, summary, emit)


def _shard_worker(args) -> dict[str, Any]:
    from .runtime import keep_freed_memory

    keep_freed_memory()
    src, out_dir, options, device, events = args
    if device == "cpu":  # one thread per worker: the processes share the cores
        torch.set_num_threads(1)
    options.device = device

    def forward(e: dict[str, Any]) -> None:  # each file's result to the parent as it is done
        if e["event"] == "file":
            events.put(e)

    return run_batch(Path(src), Path(out_dir), options, forward).to_dict()


def run_sharded(src: Path, out_dir: Path, options: InvertOptions, devices: list[str],
                on_event: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """One process per entry of ``devices`` (``cuda:N`` for ``--gpus``; ``cpu`` for ``--jobs``,
    one thread each), worker ``g`` inverting shard ``g`` of them (within ``options.shard``).
    ``on_event`` gets each file's result as a worker finishes it."""
    import copy
    import queue

    import torch.multiprocessing as mp

    i, n = options.shard
    ctx = mp.get_context("spawn")
    start = time.perf_counter()
    with ctx.Manager() as manager:
        events = manager.Queue()
        jobs = []
        for g, device in enumerate(devices):
            opt = copy.deepcopy(options)
            opt.shard = (i + g * n, n * len(devices))  # shard i/n split again into the workers
            jobs.append((str(src), str(out_dir), opt, device, events))
        with ctx.Pool(len(devices)) as pool:
            pending = pool.map_async(_shard_worker, jobs)
            done = False
            while not done:
                done = pending.ready()  # then every event is in the queue: drain it, stop
                while True:
                    try:
                        e = events.get(timeout=0 if done else 0.1)
                    except queue.Empty:
                        break
                    if on_event:
                        on_event(e)
            parts = pending.get()
    summary = Summary()
    for part in parts:
        for f in part["files"]:
            summary.add(FileResult(**f))
    summary.wall_seconds = time.perf_counter() - start
    return summary


def make_spectrograms(src: Path, out_dir: Path, fmt: str = "npz", force: bool = False,
                      stft: dict[str, Any] | None = None,
                      mel: str | None = None) -> list[FileResult]:
    """Write the magnitude spectrogram of every audio file under ``src`` (mirroring the tree),
    with the STFT settings ``stft`` (torch's names; None: today's defaults), or its mel
    spectrogram with the front end ``mel`` (a preset, ``NAME+KEY=VALUE``); ``.npz`` files carry
    every setting as metadata."""
    from .spec_io import write_spectrogram

    options = InvertOptions(method="griffin-lim", stft=dict(stft or {}), mel=mel)
    src, out_dir = Path(src), Path(out_dir)
    files = [f for f in find_inputs(src) if f.suffix.lower() in AUDIO_EXTS]
    if not files:
        raise FileNotFoundError(f"no audio files (.wav, .flac, .ogg) under {src}")
    base = src if src.is_dir() else src.parent
    given = ([f"--mel {mel}"] if mel else []) + [cli_flag(k, v) for k, v in (stft or {}).items()
                                                 if v is not None]
    keeps = (f"a .{fmt} file keeps no settings: invert it with {' '.join(given)} (an .npz "
             "keeps them)") if fmt != "npz" and given else None
    one_file = named_output(src, out_dir) == fmt
    results = []
    for f in files:
        dst = out_dir if one_file else out_dir / f.relative_to(base).with_suffix("." + fmt)
        try:
            if dst.exists() and not force:
                raise InputError("output exists (use --force to overwrite)")
            item = load_input(f, options)
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_spectrogram(dst, item.x.abs().numpy() if item.mel is None else item.x.numpy(),
                              item.cfg, fmt, item.mel)
            results.append(FileResult(str(f), str(dst), "ok", None,
                                      item.length / item.cfg.sample_rate,
                                      notices=item.notices + ([keeps] if keeps else [])))
        except (InputError, ValueError, OSError) as exc:
            results.append(FileResult(str(f), str(dst), "failed", str(exc)))
    return results
