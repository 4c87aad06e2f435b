"""Classical baselines: quality on real speech, warm start, streaming == whole, silence, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pesq import pesq

from ppsi_cli import Inverter, invert
from ppsi_cli.baselines import RtisiLaStream, RtpghiStream, griffin_lim_stft, phase_gradients
from ppsi_cli.config import StftConfig
from ppsi_cli.dsp.phase import wrap
from ppsi_cli.dsp.stft import default_length, istft, stft

CFG = StftConfig()  # Hann 1024, hop 256, 16 kHz
CLASSICAL = ("rtisi-la", "rtisi", "griffin-lim", "pghi", "rtpghi")


def wb_pesq(ref: torch.Tensor, est: torch.Tensor) -> float:
    n = min(ref.shape[-1], est.shape[-1])
    return float(pesq(16000, ref[:n].double().numpy(), est[:n].double().numpy(), "wb"))


def spectral_convergence_db(mag: torch.Tensor, y: torch.Tensor) -> float:
    """20 log10 || |STFT(y)| - mag ||_F / || mag ||_F over the frames of ``mag``."""
    est = stft(y.to(torch.float64), CFG).abs()[..., : mag.shape[-1]]
    mag = mag.to(torch.float64)
    return 20 * math.log10(float(torch.linalg.norm(est - mag) / torch.linalg.norm(mag)))


@pytest.fixture(autouse=True)
def one_thread():
    """These small FFT loops run best on one thread (two threads on a busy 2-core machine were
    measured 25x slower); the previous setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["speech", "speech2"])
def clip(request) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(signal float32 (L,), complex STFT (F, T), magnitude (F, T)) of each ARCTIC clip."""
    x, sr = request.getfixturevalue(request.param)
    assert sr == CFG.sample_rate
    x = x.to(torch.float32)
    spec = stft(x, CFG)
    return x, spec, spec.abs()


@pytest.fixture(scope="module")
def short(speech) -> tuple[torch.Tensor, torch.Tensor]:
    """0.6 s of arctic_a0007 from 1 s on: (signal (L,), magnitude (F, T)), float32."""
    x = speech[0][16000:25600].to(torch.float32)
    return x, stft(x, CFG).abs()


# ---------------------------------------------------------------- quality on real speech


def test_fast_griffin_lim_from_random_phase(clip):
    x, _, mag = clip
    y = invert(mag, "griffin-lim", iters=100, length=len(x))
    assert wb_pesq(x, y) >= 3.8


def test_fast_griffin_lim_warm_start_keeps_oracle_quality(clip):
    x, spec, mag = clip
    y = istft(griffin_lim_stft(mag, CFG, n_iter=10, init_phase=spec.angle(), length=len(x)),
              CFG, len(x))
    assert wb_pesq(x, y) >= 4.4
    # the true phase is a fixed point: the output stays the signal (applied once, momentum
    # state starting at the initial estimate)
    assert torch.allclose(y, x, atol=1e-4 * float(x.abs().max()))
    # the complex STFT as the warm start (its unit phasors) gives the same as its angle
    y2 = istft(griffin_lim_stft(mag, CFG, n_iter=10, init_phase=spec, length=len(x)), CFG, len(x))
    assert torch.allclose(y2, y, atol=1e-5 * float(x.abs().max()))


def test_rtisi_la_quality_and_convergence_beats_rtisi(clip):
    x, _, mag = clip
    y_la = invert(mag, "rtisi-la+lookahead=3+iters=5", length=len(x))
    y_0 = invert(mag, "rtisi", iters=5, length=len(x))
    assert wb_pesq(x, y_la) >= 3.3
    assert spectral_convergence_db(mag, y_la) <= spectral_convergence_db(mag, y_0)


def test_pghi_quality(clip):
    x, _, mag = clip
    assert wb_pesq(x, invert(mag, "pghi", length=len(x))) >= 3.2


def test_rtpghi_quality(clip):
    x, _, mag = clip
    assert wb_pesq(x, invert(mag, "rtpghi", length=len(x))) >= 3.0


# ---------------------------------------------------------------- digital silence


def test_output_after_digital_silence_keeps_its_energy(speech):
    """0.2 s of exact zeros in the middle must not silence (or boost) what follows."""
    x = speech[0].to(torch.float32)
    cut, gap = 24000, 3200
    xg = torch.cat([x[:cut], torch.zeros(gap), x[cut:]])
    mag = stft(xg, CFG).abs()
    assert int((mag.amax(0) == 0).sum()) >= 8  # some frames are exactly silent
    ref = float((xg[cut + gap:].double() ** 2).sum())
    for name in CLASSICAL:
        y = invert(mag, name, length=len(xg))
        after = float((y[cut + gap:].double() ** 2).sum())
        assert abs(10 * math.log10(after / ref)) <= 3.0, name
        onset = float((y[cut + gap:cut + gap + 1600].double() ** 2).sum())
        onset_ref = float((xg[cut + gap:cut + gap + 1600].double() ** 2).sum())
        assert abs(10 * math.log10(onset / onset_ref)) <= 3.0, name


# ---------------------------------------------------------------- streaming == whole utterance


@pytest.mark.parametrize("lookahead", [3, 0])
def test_rtisi_la_stream_commits_after_its_lookahead(short, lookahead):
    """The frame source commits nothing during its look-ahead, one frame per push after it and
    the rest on flush; overlap-adding its frames gives the inverter's waveform."""
    _, mag = short
    stream = RtisiLaStream(CFG, lookahead=lookahead)
    chunks = [stream.push(mag[:, t]) for t in range(mag.shape[-1])]
    assert [c.shape[-1] for c in chunks] == [0] * lookahead + [1] * (mag.shape[-1] - lookahead)
    frames = torch.cat(chunks + [stream.flush()], dim=-1)
    assert frames.shape == mag.shape
    assert torch.allclose(frames.abs(), mag, atol=1e-5)  # the committed frame keeps |X|
    y = invert(mag, "rtisi-la", lookahead=lookahead)
    assert y.shape == (default_length(mag.shape[-1], CFG),)
    assert torch.allclose(istft(frames, CFG), y, atol=1e-6)
    with pytest.raises(RuntimeError):
        stream.push(mag[:, 0])


@pytest.mark.parametrize("method", ["rtisi-la", "rtisi", "rtpghi"])
@pytest.mark.parametrize("chunk", [1, 5])
def test_online_baseline_streams_equal_whole(short, method, chunk):
    """The inverter's stream, fed ``chunk`` frames at a time, gives the whole call's samples."""
    _, mag = short
    inv = Inverter(method)
    stream = inv.stream()
    parts = [stream.push(mag[:, s:s + chunk]) for s in range(0, mag.shape[-1], chunk)]
    samples = torch.cat(parts + [stream.flush()])
    assert torch.allclose(samples, inv(mag), atol=1e-6)


def test_rtpghi_frames_leave_at_once(short):
    _, mag = short
    stream = RtpghiStream(CFG)
    frames = [stream.push(mag[:, t]) for t in range(mag.shape[-1])]
    assert all(f.shape[-1] == 1 for f in frames)  # causal: every frame leaves at once
    assert torch.allclose(istft(torch.cat(frames, -1), CFG), invert(mag, "rtpghi"), atol=1e-6)


# ---------------------------------------------------------------- batches, devices, seeds


def _batch(speech, dtype=torch.float64) -> torch.Tensor:
    """Three different 0.5 s clips as a (3, F, T) magnitude batch."""
    x = speech[0].to(dtype)
    return torch.stack([stft(x[s:s + 8000], CFG).abs() for s in (8000, 20000, 36000)])


@pytest.mark.parametrize("method", ["rtisi-la", "pghi", "rtpghi"])
def test_batched_equals_one_by_one(speech, method):
    """In float64 (float32 rounding differs between batched and single FFTs, and RTISI-LA's
    iterations amplify it into audible-free but visible sample differences)."""
    mags = _batch(speech)
    inv = Inverter(method)
    together = inv(mags)
    alone = torch.stack([inv(m) for m in mags])
    assert together.dtype == torch.float64
    assert torch.allclose(together, alone, atol=1e-9)
    assert torch.allclose(inv(mags[:1]), alone[:1], atol=1e-9)  # batch of one


def test_griffin_lim_batched_equals_one_by_one(speech):
    mags = _batch(speech)
    phase = torch.rand(mags.shape, generator=torch.Generator().manual_seed(1)) * 6.28
    together = griffin_lim_stft(mags, CFG, n_iter=8, init_phase=phase)
    alone = torch.stack([griffin_lim_stft(m, CFG, n_iter=8, init_phase=p)
                         for m, p in zip(mags, phase)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_griffin_lim_seeded_random_start(short):
    _, mag = short
    run = lambda seed: invert(mag, f"griffin-lim+iters=4+seed={seed}")
    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))
    assert torch.equal(invert(mag, "gl4"), run(0))  # seed 0 unless given


def test_griffin_lim_momentum_zero_is_plain_and_monotone(short):
    """Plain Griffin-Lim never increases the spectral inconsistency (Griffin & Lim 1984)."""
    _, mag = short
    g = torch.Generator().manual_seed(0)
    spec = griffin_lim_stft(mag, CFG, n_iter=0, generator=g)
    errors = []
    for _ in range(5):
        spec = griffin_lim_stft(mag, CFG, n_iter=1, momentum=0.0, init_phase=spec)
        errors.append(spectral_convergence_db(mag, istft(spec, CFG)))
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:]))


@pytest.mark.requires_cuda
def test_griffin_lim_cuda_matches_cpu(short):
    _, mag = short
    phase = torch.rand(mag.shape, generator=torch.Generator().manual_seed(2)) * 6.28
    cpu = griffin_lim_stft(mag, CFG, n_iter=5, init_phase=phase)
    gpu = griffin_lim_stft(mag.cuda(), CFG, n_iter=5, init_phase=phase.cuda())
    assert gpu.is_cuda
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


# ---------------------------------------------------------------- phase-gradient convention


def _gradient_errors(x: np.ndarray, rel: float = 0.1) -> tuple[float, float]:
    """RMS error (rad) of the trapezoidal phase steps predicted from |X| against the true
    STFT phase differences (time, frequency), over bins above ``rel`` x the peak."""
    spec = stft(torch.from_numpy(x), CFG)
    mag, phi = spec.abs(), spec.angle()
    tg, fg = phase_gradients(mag, CFG)
    dt = wrap(phi[:, 1:] - phi[:, :-1] - 0.5 * (tg[:, 1:] + tg[:, :-1]))
    df = wrap(phi[1:] - phi[:-1] - 0.5 * (fg[1:] + fg[:-1]))
    wt, wf = mag[:, 1:] * mag[:, :-1], mag[1:] * mag[:-1]
    mt, mf = wt > rel * wt.max(), wf > rel * wf.max()
    return float(dt[mt].pow(2).mean().sqrt()), float(df[mf].pow(2).mean().sqrt())


def test_phase_gradients_follow_true_phase_of_chirp_and_tone():
    n = np.arange(32000) / 16000
    chirp = np.cos(2 * np.pi * (300 * n + 1500 * n ** 2))
    e_time, e_freq = _gradient_errors(chirp)
    assert e_time < 0.2 and e_freq < 0.1
    # a stationary tone advances by 2 pi f H / sr per hop at its peak bin
    f0 = 1000.3
    tone = np.cos(2 * np.pi * f0 * n + 0.3)
    spec = stft(torch.from_numpy(tone), CFG)
    tg, fg = phase_gradients(spec.abs(), CFG)
    k = round(f0 * CFG.n_fft / CFG.sample_rate)
    true = wrap(spec[k, 11:-10].angle() - spec[k, 10:-11].angle())
    step = wrap(0.5 * (tg[k, 11:-10] + tg[k, 10:-11]))
    assert float((true - step).abs().max()) < 0.05
    assert abs(float(wrap(torch.tensor(2 * np.pi * f0 * 256 / 16000))) - float(true[5])) < 1e-3
    # neighbouring bins of the tone: phase steps along frequency are -pi W / N (frame start
    # convention); dropping that term would be off by pi
    assert float(wrap(spec[k + 1, 20].angle() - spec[k, 20].angle()
                      - 0.5 * (fg[k + 1, 20] + fg[k, 20])).abs()) < 0.1


def test_pghi_inverts_a_chirp():
    """A fast chirp (3 bins per hop): PGHI -35 dB; RTPGHI's backward time difference lags the
    moving ridge (-8.5 dB), so it is held to less."""
    n = np.arange(16000) / 16000
    x = torch.from_numpy(np.cos(2 * np.pi * (300 * n + 1500 * n ** 2))).to(torch.float32)
    mag = stft(x, CFG).abs()
    assert spectral_convergence_db(mag, invert(mag, "pghi")) < -25
    assert spectral_convergence_db(mag, invert(mag, "rtpghi")) < -6


# ---------------------------------------------------------------- interface


def test_shapes_and_length(short):
    x, mag = short
    n_t = mag.shape[-1]
    for name in CLASSICAL:
        kw = {"iters": 2} if name == "griffin-lim" else {}
        y = invert(mag, name, **kw)
        assert y.shape == (default_length(n_t, CFG),) == ((n_t + 1) * 256 - 1024,), name
        assert torch.isfinite(y).all(), name
        assert invert(mag, name, length=len(x), **kw).shape == (len(x),), name
    with pytest.raises(ValueError, match="unknown method 'lws'"):
        invert(mag, "lws")


@pytest.mark.parametrize("name", CLASSICAL)
def test_bad_input_is_refused_with_a_message(name, short):
    _, mag = short
    with pytest.raises(ValueError, match=r"257 bins \(n_fft=512\?\); expected 513"):
        invert(mag[:257], name)
    with pytest.raises(ValueError, match="negative"):
        invert(-mag, name)


def test_all_zero_input_gives_silence():
    mag = torch.zeros(CFG.n_bins, 12)
    for name in CLASSICAL:
        y = invert(mag, name)
        assert torch.equal(y, torch.zeros_like(y)), name


@pytest.mark.parametrize("tol", [1e-6, 0.05])
def test_compiled_heap_integration_equals_the_python_loop(speech, tol) -> None:
    """With numba, PGHI's heap runs compiled, islands found by a flood fill instead of a sort
    of every bin: the phase must be the Python loop's to the bit (digital silence and a high
    tolerance make many islands)."""
    pytest.importorskip("numba")
    import numpy as np

    from ppsi_cli.baselines import pghi as P

    x, _ = speech
    cfg = StftConfig()
    mag = stft(x, cfg).abs()
    mag[:, 60:70] = 0
    assert P._compiled() is not None
    # coarsely quantised magnitudes tie often: the heap must break ties as the Python one
    for m in (mag, torch.round(mag * 2) / 2):
        tg, fg = P.phase_gradients(m, cfg)
        a, tg, fg = (P._flat_batch(t)[0] for t in (m, tg, fg))
        np.testing.assert_array_equal(P._heap_offline(a, tg, fg, tol),
                                      P._heap_offline_python(a, tg, fg, tol))


@pytest.mark.parametrize("tol", [1e-6, 0.05])
def test_compiled_rtpghi_equals_the_python_loop(speech, tol, monkeypatch) -> None:
    """With numba, RTPGHI runs its frames' heaps compiled: the frames must be the Python loop's
    to the bit, through digital silence and ties (quantised magnitudes), for a batch of two."""
    pytest.importorskip("numba")
    from ppsi_cli.baselines import pghi as P

    x, _ = speech
    mag = stft(x, CFG).abs()
    mag[:, 60:70] = 0
    mags = torch.stack([mag, torch.round(mag * 2) / 2])
    assert P._compiled() is not None
    compiled = RtpghiStream(CFG, tol).push_frames(mags)
    monkeypatch.setattr(P, "_COMPILED", [None])
    python = RtpghiStream(CFG, tol)
    # the Python loop, a few frames at a time: chunks carry the state as one push does
    parts = [python.push_frames(mags[..., s:s + 37]) for s in range(0, mags.shape[-1], 37)]
    assert torch.equal(compiled, torch.cat(parts, -1))


def test_pghipy_peer_inverts_to_the_length_asked(speech) -> None:
    pytest.importorskip("pghipy")
    import ppsi_cli

    x, sr = speech
    cfg = StftConfig()
    y = ppsi_cli.invert(stft(x, cfg).abs().float(), "pghipy", length=len(x))
    assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().max() > 0.01


def _torchaudio_or_skip():
    from ppsi_cli.peers import available

    if not available("torchaudio"):
        pytest.skip("no torchaudio that loads beside this torch")
    import torchaudio

    return torchaudio


def test_torchaudio_peer_is_torchaudios_griffinlim_aligned(speech) -> None:
    """On centred frames the peer is torchaudio's griffinlim itself (same seed, same samples);
    on ppsi's start-referenced frames its output is moved onto the original signal: closer to
    it than the same output one hop off."""
    torchaudio = _torchaudio_or_skip()
    x, _ = speech
    x = x[:16000].float()
    centred = StftConfig(center=True)
    mag = stft(x, centred).abs()
    torch.manual_seed(3)
    ours = invert(mag, "torchaudio+iters=8+seed=3", stft=centred, length=256 * (mag.shape[-1] - 1))
    state = torch.random.get_rng_state()
    torch.manual_seed(3)
    theirs = torchaudio.functional.griffinlim(mag, torch.hann_window(1024), 1024, 256, 1024, 1.0,
                                              8, 0.99, 256 * (mag.shape[-1] - 1), True)
    torch.random.set_rng_state(state)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)  # windows: float64-made vs float32
    cfg = StftConfig()
    y = invert(stft(x, cfg).abs(), "torchaudio+iters=32", length=len(x))
    assert y.shape == x.shape

    def corr(a, b):
        return float((a * b).sum() / (a.norm() * b.norm()))

    env = torch.nn.functional.avg_pool1d(x.abs()[None], 256, 64)[0]
    aligned = corr(torch.nn.functional.avg_pool1d(y.abs()[None], 256, 64)[0], env)
    moved = corr(torch.nn.functional.avg_pool1d(y[256:].abs()[None], 256, 64)[0],
                 env[:-4])
    assert aligned > 0.95 and aligned > moved + 0.02, (aligned, moved)


@pytest.mark.parametrize("method", ["ppsi", "rtisi-la", "rtpghi"])
def test_an_empty_chunk_is_nothing_new(short, method):
    """A stream takes a chunk of zero frames (a real-time caller with nothing yet) and returns no
    samples; the rest is as without it. A whole call still needs frames."""
    _, mag = short
    inv = Inverter(method)
    stream = inv.stream()
    parts = [stream.push(mag[:, :0]), stream.push(mag[:, :7]), stream.push(mag[:, 7:7]),
             stream.push(mag[:, 7:]), stream.flush()]
    assert parts[0].shape == parts[2].shape == (0,)
    assert torch.allclose(torch.cat(parts), inv(mag), atol=1e-6)
    with pytest.raises(ValueError, match="zero frames"):
        inv(mag[:, :0])
