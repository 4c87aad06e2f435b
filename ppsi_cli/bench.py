"""Benchmarks: tridiagonal solvers on random Hermitian PD systems; whole inversions on speech.

``bench_solvers`` returns one plain dict per (solver, batch size); the CLI renders them
(``ppsi bench solvers``). ``bench_invert`` times every inversion method on real speech, in
seconds per audio second, with the ppsi CNN and least-squares parts apart (``ppsi bench
invert``). Solver times are per single system (total time / systems solved), so a batched
solver's advantage shows up directly; ``vs_dense`` and ``vs_reference`` say how many times faster
than the dense baseline and the SciPy reference, both measured in the same run.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from .config import ModelConfig, SolverConfig, StftConfig
from .model import PhaseDiffNet
from .solvers import SOLVERS, resolve
from .weights import LoadedModel, load_weights, shipped_weights

#: Solvers in the order they are reported.
BENCH_SOLVERS = ("reference", "lapack", "ldl", "thomas", "triton", "dense")
#: Dense solves build (batch, K, K) matrices: K = 513 complex128 is 4 MB per system.
DENSE_MAX_BATCH = 16


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (None: leave as is), then restore."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def random_systems(batch: int, k: int, dtype: torch.dtype = torch.complex128,
                   device: torch.device | str = "cpu", seed: int = 0):
    """``batch`` random Hermitian positive-definite tridiagonal systems of size ``k``.

    Built like the phase least squares (:mod:`ppsi_cli.integrate`), A = Lam + D^H Gam D with
    D[i, i] = -u_i, D[i, i+1] = 1, random positive weights and ratios |u| in [0.5, 2]. Returns
    ``(lower (B, K-1), diag (B, K), upper (B, K-1), rhs (B, K))`` with ``upper = conj(lower)``;
    ``diag`` has ``dtype`` (real values) so every solver sees one dtype.
    """
    g = torch.Generator().manual_seed(seed)
    wide = torch.float64

    def rand(n: int) -> torch.Tensor:
        return torch.rand(batch, n, generator=g, dtype=wide)

    lam, gam, u = 0.05 + rand(k), 10 * rand(k - 1), 0.5 + 1.5 * rand(k - 1)
    if dtype.is_complex:
        u = u * torch.exp(2j * math.pi * rand(k - 1))
    diag = lam.clone()
    diag[:, :-1] += gam * u.abs() ** 2
    diag[:, 1:] += gam
    lower = -gam * u
    rhs = torch.randn(batch, k, generator=g, dtype=wide)
    if dtype.is_complex:
        rhs = torch.complex(rhs, torch.randn(batch, k, generator=g, dtype=wide))
    lower, diag, rhs = (t.to(dtype=dtype, device=device) for t in (lower, diag, rhs))
    return lower, diag, lower.conj().resolve_conj(), rhs


def available_solvers(device: torch.device | str = "cpu") -> list[str]:
    """The benchmarked solvers that can run on ``device`` (triton only on CUDA with triton, ldl
    only with numba)."""
    names = []
    for name in BENCH_SOLVERS:
        try:
            resolve(name, device)
        except ValueError:
            continue
        names.append(name)
    return names


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, min_time: float = 0.2,
              repeats: int | None = None) -> tuple[float, int]:
    """Seconds per call of ``fn`` after one warm-up call, and the number of timed calls.

    With ``repeats`` the call is timed exactly that many times; otherwise it is repeated until
    the timed total reaches ``min_time`` seconds (at least once).
    """
    fn()
    _sync(device)
    done, total = 0, 0.0
    while True:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        total += time.perf_counter() - t0
        done += 1
        if (repeats is not None and done >= repeats) or (repeats is None and total >= min_time):
            return total / done, done


def bench_solvers(device: torch.device | str = "cpu", k: int = 513,
                  batches: Iterable[int] = (1, 64, 1024), dtype: torch.dtype = torch.complex128,
                  repeats: int | None = None, min_time: float = 0.2, threads: int | None = 1,
                  solvers: Iterable[str] | None = None, dense_max_batch: int = DENSE_MAX_BATCH,
                  seed: int = 0,
                  on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Time each solver on ``batch`` random Hermitian PD systems of size ``k``, per batch size.

    Returns one dict per (solver, batch): ``solver``, ``batch``, ``seconds_per_solve`` (time of
    one call / systems in it), ``vs_dense`` and ``vs_reference`` (how many times faster than those
    at the same batch size; NaN when that solver was not run), ``systems_timed``, ``repeats``,
    ``device``, ``dtype``, ``k``, ``threads`` and a ``note`` ("" or why the number is special).
    The dense baseline is timed on at most ``dense_max_batch`` systems (its memory grows as
    batch x K^2), and its per-solve time is used for larger batches. ``threads`` sets torch's
    intra-op threads for the run (restored afterwards; None leaves them as they are).
    ``on_result`` is called with each dict as soon as it is measured (for progress).
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {str(device)!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batches = list(batches)
    if not batches or min(batches) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {batches}")
    if dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        raise ValueError(f"dtype must be float32, float64, complex64 or complex128, got {dtype}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if dense_max_batch < 1:
        raise ValueError(f"dense_max_batch must be >= 1, got {dense_max_batch}")
    names = available_solvers(device)
    if solvers is not None:
        wanted = list(solvers)
        unknown = [s for s in wanted if s not in SOLVERS]
        if unknown:
            raise ValueError(f"unknown solver(s) {unknown}; choose from {list(BENCH_SOLVERS)}")
        missing = [s for s in wanted if s not in names]
        if missing:
            raise ValueError(f"solver(s) {missing} cannot run on {device}")
        names = [n for n in names if n in wanted]

    with torch_threads(threads):
        rows: list[dict] = []
        cache: dict[tuple[str, int], tuple[float, int]] = {}
        for batch in batches:
            systems = random_systems(batch, k, dtype, device, seed=seed)
            per_solve: dict[str, float] = {}
            group = []
            for name in names:
                n = min(batch, dense_max_batch) if name == "dense" else batch
                if (name, n) not in cache:  # dense at 64 and 1024 is the same sub-batch
                    sub = tuple(t[:n] for t in systems)
                    fn = SOLVERS[name]
                    cache[(name, n)] = time_call(lambda: fn(*sub), device, min_time, repeats)
                seconds, reps = cache[(name, n)]
                per_solve[name] = seconds / n
                note = ""
                if n < batch:
                    note = f"timed on {n} of {batch} systems"
                elif name in ("reference", "lapack", "ldl") and device.type == "cuda":
                    note = "runs on CPU, one system at a time; includes the transfers"
                group.append(dict(solver=name, batch=batch, seconds_per_solve=seconds / n,
                                  systems_timed=n, repeats=reps, device=str(device),
                                  dtype=str(dtype).removeprefix("torch."), k=k,
                                  threads=torch.get_num_threads(), note=note))
            for row in group:
                s = row["seconds_per_solve"]
                row["vs_dense"] = per_solve["dense"] / s if "dense" in per_solve else math.nan
                row["vs_reference"] = (per_solve["reference"] / s if "reference" in per_solve
                                       else math.nan)
                rows.append(row)
                if on_result is not None:
                    on_result(row)
        return rows


# --- whole inversion: ``ppsi bench invert`` -------------------------------------------------

#: Methods in the order they are reported (spellings of :mod:`ppsi_cli.methods`).
INVERT_METHODS = "ppsi,ppsi-strided,oracle,rtisi-la,rtisi,gl32,gl100,pghi,rtpghi"
#: Methods timed by default on CUDA (batched on the device); the others loop over files.
CUDA_METHODS = "ppsi,ppsi-strided,oracle"
CUDA_BATCHES = (1, 16, 256)


def example_clips() -> list[Path]:
    """The two CMU ARCTIC clips of ``examples/audio``: installed with the package (the wheel
    holds them), else beside the package when it runs from the checkout, else under the current
    folder."""
    here = Path(__file__).resolve()
    roots = [here.parent, here.parents[1]]
    try:
        roots.append(Path.cwd())
    except OSError:  # the current folder was removed
        pass
    for root in roots:
        clips = sorted((root / "examples" / "audio").glob("*.wav"))
        if clips:
            return clips
    return []


def speech_clip(seconds: float, files: Iterable[Path] | None = None,
                cfg: StftConfig | None = None) -> torch.Tensor:
    """``seconds`` of speech (float32, mono, resampled to ``cfg.sample_rate``): the clips
    concatenated, repeated as needed, cut to length."""
    from .train.data import load_corpus

    cfg = cfg or StftConfig()
    files = list(files) if files is not None else example_clips()
    if not files:
        raise FileNotFoundError("no speech clips to time on (examples/audio/*.wav is not here); "
                                "pass --audio FILE")
    corpus = load_corpus([Path(f) for f in files], cfg.sample_rate)
    if corpus.skipped:
        path, why = corpus.skipped[0]
        raise ValueError(f"--audio {path}: {why}")
    x = torch.cat([torch.from_numpy(a) for a in corpus.audio])
    n = int(round(seconds * cfg.sample_rate))
    if n < cfg.win_length:
        raise ValueError(f"seconds must give at least one window ({cfg.win_length} samples), "
                         f"got {seconds}")
    return x.repeat(-(-n // x.numel()))[:n].contiguous()


def bench_model(variant: str, weights: str | Path | None = None,
                device: torch.device | str = "cpu",
                stft: StftConfig | None = None) -> tuple[LoadedModel, str]:
    """The model to time for ``variant`` (online | strided | offline) and where it came from.

    ``weights`` if it holds that variant, else the shipped weights for ``stft``'s family, else
    seeded random weights of the default config: speed does not depend on the weights' values.
    """
    from .weights import model_variant

    if weights is not None:
        model = load_weights(weights, device)
        if model_variant(model) == variant:
            return model, f"weights {Path(weights).name}"
    try:
        return load_weights(shipped_weights(variant, stft), device), "shipped weights"
    except (FileNotFoundError, ValueError):  # none shipped for this variant and family
        pass
    torch.manual_seed(0)
    cfg = {"strided": ModelConfig(strided=True),
           "offline": ModelConfig(context=5, delay=2)}.get(variant, ModelConfig())
    net = PhaseDiffNet(cfg).eval().to(device)
    return LoadedModel(net, StftConfig(), SolverConfig()), "random weights (default config)"


def _median_times(fns: list[Callable[[], object]], device: torch.device,
                  repeats: int) -> list[float]:
    """Median seconds per call of each of ``fns``, timed interleaved (a load that comes and
    goes during the run then touches all of them alike)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            record.append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] for t in times]


def _method_fns(inv, x: torch.Tensor, chunk: int | None = None):
    """``(total, cnn, ls)`` callables timing ``inv`` (an Inverter) on ``x`` (B, K, T), the
    complex STFT for the oracle, else magnitudes; cnn and ls (the network and the least
    squares alone) are None except for ppsi methods. ``chunk``: total feeds the online stream
    ``chunk`` frames per push (then flushes), as a real-time caller does, and keeps the seconds
    of every push in its ``pushes`` list."""
    from .integrate import integrate
    from .inverter import band_bins
    from .model import predict

    def streamed():
        stream = inv.stream()
        for t in range(0, x.shape[-1], chunk):
            t0 = time.perf_counter()
            stream.push(x[..., t:t + chunk])
            _sync(x.device)
            streamed.pushes.append(time.perf_counter() - t0)
        stream.flush()

    streamed.pushes = []

    total = streamed if chunk else (lambda: inv(x))
    if not inv.method.uses_network:
        return total, None, None
    b, f = predict(inv.model.net, x)
    bins = band_bins(inv.method.opts.get("band", 0), inv.stft)  # the network on its band
    return (total, lambda: predict(inv.model.net, x, bins),
            lambda: integrate(x, b, f, inv.stft, inv.solver))


def bench_invert(device: torch.device | str = "cpu", seconds: float = 10.0,
                 methods: str | Iterable[str] | None = None, weights: str | Path | None = None,
                 threads: int | None = 1, batches: Iterable[int] | None = None,
                 repeats: int = 5, audio: Iterable[Path] | None = None,
                 stft: StftConfig | None = None, peers: bool = False,
                 chunk: int | None = None,
                 on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Time whole inversions (magnitudes -> waveform) of ``seconds`` of real speech per method.

    ``chunk``: time the online methods as streams fed ``chunk`` frames per push (1: frame by
    frame, a real-time caller's cost per hop; without it the whole input is one call); offline
    methods are refused then, and the default list is the online methods.

    ``peers``: also time the other libraries' methods that are installed (:mod:`ppsi_cli.peers`:
    librosa beside each Griffin-Lim row, with its iterations; pghipy beside PGHI), and give
    each of ppsi's classical rows ``vs_peer``: its time over its fastest peer's (below 1: ppsi
    is faster).

    On CPU each method runs on one clip (batch 1) with ``threads`` torch threads; on CUDA on
    batches of ``batches`` clips (default 1, 16, 256). Each time is the median of ``repeats``
    runs after one warm-up run on the first two seconds; all methods of a batch size run in the
    same rounds, one after the other (rows come batch size by batch size). Returns one dict per
    (method, batch): ``method``, ``batch``, ``device``, ``threads``, ``audio_seconds`` (per run),
    ``seconds_per_audio_second``, ``realtime_factor`` (audio seconds per second), for ppsi
    methods also ``cnn_seconds_per_audio_second`` (:func:`ppsi_cli.model.predict`, on the
    method's ``band``) and
    ``ls_seconds_per_audio_second`` (:func:`ppsi_cli.integrate.integrate`), and ``weights``
    (where the model came from; "" for the others). With ``chunk`` also ``push_audio_ms`` (the
    audio one push brings: a real-time caller's deadline per push), ``pushes`` (timed) and
    ``push_ms`` (median, p99 and max over every timed push: what a deadline sees, beside the
    mean that seconds per audio second gives). The STFT of the input is not timed: the methods
    start from magnitudes (oracle from the complex STFT).
    """
    from .dsp.stft import stft as analyse
    from .inverter import Inverter
    from .methods import parse_methods

    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {str(device)!r}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    text = methods if methods is not None else (
        CUDA_METHODS if device.type == "cuda" else INVERT_METHODS)
    names = parse_methods(text if isinstance(text, str) else ",".join(text))
    if chunk is not None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 frame, got {chunk}")
        if methods is None:
            names = [m for m in names if m.online]
        offline = [m.label for m in names if not m.online]
        if offline or peers:
            raise ValueError("chunk times online streams; offline: "
                             f"{', '.join(offline) or 'the peers'}")
    if peers:
        names += _peer_methods(names)
    sizes = list(batches) if batches is not None else (
        list(CUDA_BATCHES) if device.type == "cuda" else [1])
    if not sizes or min(sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {sizes}")

    cfg = stft or StftConfig()
    clip = speech_clip(seconds, audio, cfg)
    audio_seconds = clip.numel() / cfg.sample_rate
    with torch_threads(threads):
        invs = []
        for method in names:
            model, source = None, ""
            if method.uses_network:
                model, source = bench_model(method.variant, weights, device, cfg)
            invs.append((Inverter(method, model=model, device=device, stft=cfg), source))
        spec1 = analyse(clip.to(device), cfg)
        rows = []
        for batch in sizes:
            # one file: unbatched, as ppsi invert inverts it (the solver's fast path)
            specs = spec1 if batch == 1 else spec1.expand(batch, *spec1.shape).contiguous()
            fns, spans = [], []
            for inv, _ in invs:
                x = specs if inv.method.name == "oracle" else specs.abs()
                # warm-up on 2 s: more frames than one CPU tile of the CNN (shapes get primed)
                lead = 2 * cfg.sample_rate // cfg.hop_length
                _method_fns(inv, x[..., :lead], chunk)[0]()
                mine = [f for f in _method_fns(inv, x, chunk) if f is not None]
                spans.append((len(fns), len(mine)))
                fns += mine
            # every method of this batch size timed in the same rounds, so a ratio between two
            # of them (vs_peer) does not move with the machine's load during the run
            timed = _median_times(fns, device, repeats)
            work = audio_seconds * batch
            for (inv, source), (at, n) in zip(invs, spans):
                row = dict(method=inv.method.label, batch=batch, device=str(device),
                           threads=torch.get_num_threads(), audio_seconds=audio_seconds,
                           chunk_frames=chunk)
                row["seconds_per_audio_second"] = timed[at] / work
                row["realtime_factor"] = 1.0 / row["seconds_per_audio_second"]
                if n == 3:
                    row["cnn_seconds_per_audio_second"] = timed[at + 1] / work
                    row["ls_seconds_per_audio_second"] = timed[at + 2] / work
                if chunk is not None:
                    row.update(_push_times(fns[at].pushes, chunk, cfg))
                row["weights"] = source
                rows.append(row)
                if on_result is not None:
                    on_result(row)
        if peers:
            _vs_peer(rows, names)
        return rows


def _push_times(pushes: list[float], chunk: int, cfg: StftConfig) -> dict:
    """``push_audio_ms`` (the audio a push brings), ``pushes`` and ``push_ms`` (median, p99,
    max in ms) of a stream's pushes."""
    ms = sorted(1000 * t for t in pushes)
    return {"push_audio_ms": 1000 * chunk * cfg.hop_length / cfg.sample_rate, "pushes": len(ms),
            "push_ms": {"median": ms[len(ms) // 2], "p99": ms[math.ceil(0.99 * len(ms)) - 1],
                        "max": ms[-1]}}


def _shared(peer, mine) -> dict:
    """The options two methods share (a peer's iterations, momentum, tolerance)."""
    return {k: v for k, v in peer.opts.items() if k in mine.opts and k != "seed"}


def _peer_methods(names) -> list:
    """The installed peers of the methods among ``names`` (with their shared options), not
    already listed."""
    from .methods import PEERS, parse_method
    from .peers import available

    extra = []
    for peer, mine in PEERS.items():
        if not available(peer):
            continue
        for m in names:
            if m.name == mine:
                twin = parse_method(peer)
                twin = parse_method(peer, **{k: m.opts[k] for k in _shared(twin, m)})
                if twin not in names and twin not in extra:
                    extra.append(twin)
    return extra


def _vs_peer(rows: list[dict], names) -> None:
    """``vs_peer`` of each row of a method a peer also does: its time / the fastest such peer's
    (same shared options, same batch)."""
    from .methods import PEERS

    by_label = {m.label: m for m in names}
    for row in rows:
        mine = by_label[row["method"]]
        for other in rows:
            peer = by_label[other["method"]]
            if (PEERS.get(peer.name) == mine.name and other["batch"] == row["batch"]
                    and all(mine.opts[k] == v for k, v in _shared(peer, mine).items())):
                ratio = row["seconds_per_audio_second"] / other["seconds_per_audio_second"]
                if ratio >= row.get("vs_peer", ratio):  # the fastest peer: the highest ratio
                    row["vs_peer"], row["peer"] = ratio, other["method"]
