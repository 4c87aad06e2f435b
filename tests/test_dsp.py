"""STFT/ISTFT against their definition and torch.stft, streaming overlap-add, phase differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppsi_cli import StftConfig
from ppsi_cli.dsp import (OverlapAdd, bpd, bpd_to_tpd, fpd, istft, log_magnitude, n_frames, stft,
                          tpd, window, wrap)
from ppsi_cli.dsp.stft import default_length

CONFIGS = [
    StftConfig(),
    StftConfig(n_fft=512, win_length=400, hop_length=100, window="hamming"),
    StftConfig(n_fft=256, win_length=256, hop_length=64, window="blackman"),
]
IDS = ["hann1024", "hamming400in512", "blackman256"]


def _frames_by_definition(x: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """X_t[k] = sum_n x[tH + n - pad] w[n] e^{-j 2 pi k n / N}, x = 0 outside [0, L); (K, T)."""
    w = window(cfg, torch.float64).numpy()
    n_t = n_frames(len(x), cfg)
    frames = np.zeros((n_t, cfg.n_fft))
    for t in range(n_t):
        for n in range(cfg.n_fft):
            i = t * cfg.hop_length + n - cfg.pad
            if 0 <= i < len(x):
                frames[t, n] = x[i]
    n = np.arange(cfg.n_fft)
    k = np.arange(cfg.n_bins)
    basis = np.exp(-2j * np.pi * np.outer(n, k) / cfg.n_fft)  # (N, K), the DFT written out
    return ((frames * w) @ basis).T


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_stft_matches_definition(cfg: StftConfig) -> None:
    x = np.random.default_rng(0).standard_normal(3 * cfg.n_fft + 37)
    got = stft(torch.from_numpy(x), cfg).numpy()
    want = _frames_by_definition(x, cfg)
    assert got.shape == want.shape == (cfg.n_bins, n_frames(len(x), cfg))
    assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max()


def test_short_window_is_centred_as_torch_places_it() -> None:
    cfg = StftConfig()
    w = window(cfg, torch.float64)
    assert w[0] == 0 and w.argmax() == cfg.win_length // 2  # periodic Hann
    short_cfg = StftConfig(n_fft=512, win_length=400, hop_length=100)
    short = window(short_cfg, torch.float64)
    assert short.shape == (512,) and short_cfg.offset == 56
    assert (short[:56] == 0).all() and (short[456:] == 0).all()
    assert torch.equal(short[56:456], torch.hann_window(400, dtype=torch.float64))
    # torch.stft given the 400-sample window centres it in the 512-sample frame the same way
    x = torch.randn(4000, dtype=torch.float64)
    want = torch.stft(x, 512, 100, 400, window=torch.hann_window(400, dtype=torch.float64),
                      center=False, return_complex=True)
    got = torch.fft.rfft(x.unfold(-1, 512, 100) * short, dim=-1).T
    assert (got - want).abs().max() <= 1e-12 * want.abs().max()


def test_stft_matches_torch_stft_center_false(speech) -> None:
    x, _ = speech
    cfg = StftConfig()
    n_t = n_frames(len(x), cfg)
    total = (n_t - 1) * cfg.hop_length + cfg.n_fft
    xp = torch.nn.functional.pad(x, (cfg.pad, total - cfg.pad - len(x)))
    want = torch.stft(xp, cfg.n_fft, cfg.hop_length, cfg.win_length,
                      window=window(cfg, torch.float64), center=False, return_complex=True)
    got = stft(x, cfg)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-12 * want.abs().max()


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
@pytest.mark.parametrize("length", [1, 255, 4000, 16001])
def test_istft_inverts_stft_exactly(cfg: StftConfig, length: int) -> None:
    x = torch.from_numpy(np.random.default_rng(length).standard_normal((2, length)))
    y = istft(stft(x, cfg), cfg, length=length)
    assert y.shape == x.shape and y.dtype == torch.float64
    assert (y - x).abs().max() <= 1e-10


def test_istft_inverts_speech_float32_and_float64(speech) -> None:
    x, _ = speech
    cfg = StftConfig()
    assert (istft(stft(x, cfg), cfg, len(x)) - x).abs().max() <= 1e-10
    x32 = x.float()
    assert (istft(stft(x32, cfg), cfg, len(x)) - x32).abs().max() <= 1e-5


def test_istft_default_length() -> None:
    cfg = StftConfig()
    spec = stft(torch.randn(5000, dtype=torch.float64), cfg)
    n_t = spec.shape[-1]
    assert istft(spec, cfg).shape[-1] == default_length(n_t, cfg) == (n_t + 1) * 256 - 1024


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_streaming_overlap_add_equals_istft(cfg: StftConfig) -> None:
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 5 * cfg.n_fft + 11)))
    spec = stft(x, cfg)  # (3, K, T), leading batch dim
    whole = istft(spec, cfg)
    for chunk in (1, 3, spec.shape[-1]):
        ola = OverlapAdd(cfg)
        pieces = [ola.push(spec[..., t:t + chunk]) for t in range(0, spec.shape[-1], chunk)]
        streamed = torch.cat(pieces + [ola.flush()], dim=-1)[..., :whole.shape[-1]]
        assert streamed.shape == whole.shape
        assert (streamed - whole).abs().max() <= 1e-12
        if chunk == 1:  # every push after the warm-up delivers exactly one hop of final samples
            assert all(p.shape[-1] == cfg.hop_length
                       for p in pieces[cfg.pad // cfg.hop_length + 1:])


def test_istft_rejects_wrong_bins_and_insufficient_overlap() -> None:
    cfg = StftConfig()
    with pytest.raises(ValueError, match=r"257 bins; expected 513 \(n_fft=1024\)"):
        istft(torch.zeros(257, 10, dtype=torch.complex64), cfg)
    no_overlap = StftConfig(n_fft=256, win_length=256, hop_length=256)
    with pytest.raises(ValueError, match="does not overlap enough"):
        istft(torch.zeros(129, 4, dtype=torch.complex64), no_overlap)


def test_wrap_range_and_congruence() -> None:
    pi = math.pi
    edges = torch.tensor([-pi, pi, 3 * pi, -3 * pi, 0.0, 2 * pi], dtype=torch.float64)
    assert torch.allclose(wrap(edges), torch.tensor([pi, pi, pi, pi, 0.0, 0.0],
                                                    dtype=torch.float64), atol=1e-12)
    a = torch.linspace(-40, 40, 100001, dtype=torch.float64)
    w = wrap(a)
    assert (w > -pi).all() and (w <= pi).all()
    turns = (a - w) / (2 * pi)
    assert (turns - turns.round()).abs().max() < 1e-9
    assert torch.equal(wrap(w), w)  # already wrapped angles stay


def test_phase_differences_follow_definitions(speech) -> None:
    x, _ = speech
    cfg = StftConfig()
    spec = stft(x[:16000], cfg)
    phi = torch.angle(spec)
    f = fpd(spec)
    assert f.shape == (cfg.n_bins - 1, spec.shape[-1])
    assert torch.allclose(f, wrap(phi[1:] - phi[:-1]), atol=1e-12)
    d = tpd(spec)
    assert (d[:, 0] == 0).all()
    assert torch.allclose(d[:, 1:], wrap(phi[:, 1:] - phi[:, :-1]), atol=1e-12)
    b = bpd(spec, cfg)
    k = torch.arange(cfg.n_bins, dtype=torch.float64).unsqueeze(-1)
    assert (b[:, 0] == 0).all()
    assert torch.allclose(b[:, 1:], wrap(d[:, 1:] - 2 * math.pi * k * cfg.hop_length / cfg.n_fft),
                          atol=1e-9)
    # BPD -> TPD recovers the wrapped TPD (compare on the circle: +-pi are the same angle)
    back = bpd_to_tpd(b, cfg)[:, 1:]
    assert (wrap(back - d[:, 1:])).abs().max() < 1e-9
    for t in (b, f, back):
        assert (t > -math.pi).all() and (t <= math.pi).all()


def test_bpd_is_zero_for_a_steady_sinusoid_at_a_bin_centre() -> None:
    cfg = StftConfig()
    k0 = 37
    n = torch.arange(8 * cfg.n_fft, dtype=torch.float64)
    x = torch.cos(2 * math.pi * k0 * n / cfg.n_fft + 0.3)
    b = bpd(stft(x, cfg), cfg)
    steady = b[k0, cfg.pad // cfg.hop_length + 1: -(cfg.n_fft // cfg.hop_length)]
    assert steady.numel() > 10 and steady.abs().max() < 1e-9


def test_log_magnitude_floor_is_per_frame() -> None:
    floor = 1e-5
    mag = torch.rand(513, 6, dtype=torch.float64) + 0.1
    mag[:, 1] *= 1e-6  # a quiet frame: its floor follows its own peak, not the loud frames'
    mag[100:200, 2] = 0  # exact zeros inside a frame
    mag[:, 3] = 0  # a digitally silent frame
    mag[5, 4] = 1e-9 * mag[:, 4].max()  # one bin far below the frame's floor
    out = log_magnitude(mag, floor=floor)
    assert torch.isfinite(out).all()
    peak = mag.amax(0)
    for t in (0, 1, 2, 4):
        lo = math.log(floor * peak[t].item())
        assert out[:, t].min() >= lo - 1e-12
        keep = mag[:, t] >= floor * peak[t]
        assert torch.allclose(out[keep, t], torch.log(mag[keep, t]))
        assert torch.allclose(out[~keep, t], torch.full_like(out[~keep, t], lo))
    assert torch.allclose(log_magnitude(mag[:, 1:2], floor=floor), out[:, 1:2])  # frame-local
    assert (out[100:200, 2] == math.log(floor * peak[2].item())).all()
    assert (out[:, 3] == out[0, 3]).all()  # silent frame: constant floor, no -inf
