"""Metrics vs direct pesq/pystoi calls and vs their definitions (LSC, SI-SDR) on real speech."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pesq import pesq
from pystoi import stoi as pystoi
from scipy.signal import resample_poly

from ppsi_cli import StftConfig
from ppsi_cli import metrics as M
from ppsi_cli.dsp.stft import istft, stft
from ppsi_cli.io import read_audio, write_wav_atomic

AUDIO = Path(__file__).resolve().parents[1] / "examples" / "audio"


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, int]:
    x, sr = read_audio(AUDIO / "arctic_a0007.wav")
    assert sr == 16000
    return x.astype(np.float64), sr


def noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(x))
    return x + n * np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))


def random_phase(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The magnitude of ``x`` with uniformly random phase, back to a waveform."""
    cfg = StftConfig()
    spec = stft(torch.from_numpy(x), cfg)
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(spec.shape, generator=g, dtype=torch.float64) * 2 * math.pi
    return istft(torch.polar(spec.abs(), phase), cfg, length=len(x)).numpy()


@pytest.fixture(scope="module", params=["noise", "random_phase"])
def pair(request, clip):
    x, sr = clip
    est = noisy(x, 10.0) if request.param == "noise" else random_phase(x)
    return x, est, sr


def test_pesq_wb_matches_package(pair):
    x, y, sr = pair
    assert M.pesq_wb(x, y, sr) == pesq(16000, x, y, "wb")
    assert 1.0 < M.pesq_wb(x, y, sr) < 4.0  # degraded, not trivially perfect


def test_pesq_nb_matches_package_at_8k(pair):
    x, y, sr = pair
    assert M.pesq_nb(x, y, sr) == pesq(8000, resample_poly(x, 1, 2), resample_poly(y, 1, 2), "nb")


@pytest.mark.parametrize("fn,extended", [(M.estoi, True), (M.stoi, False)])
def test_stoi_matches_pystoi(pair, fn, extended):
    x, y, sr = pair
    value = fn(x, y, sr)
    # pystoi itself is not bit-reproducible (repeated identical calls differ by ~1 ulp)
    assert value == pytest.approx(pystoi(x, y, sr, extended=extended), rel=1e-12)
    assert 0.0 < value < 0.99


def _lsc_definition(x: np.ndarray, y: np.ndarray) -> float:
    """20 log10(‖|Y|-|X|‖_F / ‖|X|‖_F) with a numpy STFT of the documented framing."""
    n_fft, hop = 1024, 256
    pad = n_fft - hop
    frames = (pad + len(x) - 1) // hop + 1
    total = (frames - 1) * hop + n_fft
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann

    def mag(s):
        sp = np.pad(s, (pad, total - pad - len(s)))
        idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
        return np.abs(np.fft.rfft(sp[idx] * w, axis=-1))

    a, b = mag(x), mag(y)
    return 20 * np.log10(np.linalg.norm(b - a) / np.linalg.norm(a))


def test_lsc_matches_definition(pair):
    x, y, sr = pair
    assert M.lsc(x, y, sr) == pytest.approx(_lsc_definition(x, y), abs=1e-6)
    assert M.lsc(x, y, sr) > -30


def test_si_sdr_matches_definition(pair):
    x, y, sr = pair
    # independent form: SI-SDR = 10 log10(rho^2 / (1 - rho^2)), rho the correlation coefficient
    rho = np.corrcoef(x, y)[0, 1]
    assert M.si_sdr(x, y, sr) == pytest.approx(10 * np.log10(rho**2 / (1 - rho**2)), abs=1e-8)


def test_si_sdr_is_scale_invariant(clip):
    x, sr = clip
    y = noisy(x, 5.0)
    assert M.si_sdr(x, 0.3 * y, sr) == pytest.approx(M.si_sdr(x, y, sr), abs=1e-9)
    assert M.si_sdr(x, y, sr) == pytest.approx(5.0, abs=0.2)


def test_wide_band_pesq_of_narrow_band_audio_is_refused(clip):
    """8 kHz audio upsampled to 16 kHz has no wide band: WB-PESQ is not meaningful (it gave
    4.19 with a mere notice); NB-PESQ is the metric there."""
    x, sr = clip
    x8, y8 = resample_poly(x, 1, 2), resample_poly(noisy(x, 20.0), 1, 2)
    with pytest.raises(M.MetricError, match="wide-band PESQ needs audio of at least 16000 Hz, "
                                            "this is 8000 Hz"):
        M.pesq_wb(x8, y8, 8000)
    assert 1.0 < M.pesq_nb(x8, y8, 8000) < 4.6


def test_si_sdr_of_a_constant_estimate_is_the_worst(clip):
    """A DC estimate holds nothing of the reference: -120 dB, not +120 (a silent one is not
    scored at all)."""
    x, sr = clip
    assert M.si_sdr(x, np.full_like(x, 0.25), sr) == -M.DB_LIMIT
    with pytest.raises(M.MetricError, match="silent"):
        M.si_sdr(x, np.zeros_like(x), sr)
    assert M.si_sdr(x, x + 0.25, sr) == M.DB_LIMIT  # a DC offset alone changes nothing


def test_identical_signals(clip):
    x, sr = clip
    assert M.estoi(x, x, sr) == pytest.approx(1.0, abs=1e-9)
    assert M.stoi(x, x, sr) == pytest.approx(1.0, abs=1e-9)
    assert M.lsc(x, x, sr) == -M.DB_LIMIT == -120.0  # the documented floor
    assert M.si_sdr(x, x, sr) == M.DB_LIMIT == 120.0
    assert M.pesq_wb(x, x, sr) > 4.5


def test_resampled_input_and_notice(clip):
    x, sr = clip
    y = noisy(x, 10.0)
    x44, y44 = resample_poly(x, 441, 160), resample_poly(y, 441, 160)
    assert M.pesq_wb(x44, y44, 44100) == pesq(
        16000, resample_poly(x44, 160, 441), resample_poly(y44, 160, 441), "wb")
    assert M.pesq_wb(x44, y44, 44100) == pytest.approx(M.pesq_wb(x, y, sr), abs=0.1)
    # the resampling filters attenuate the white noise near 8 kHz a little: lower LSC
    assert M.lsc(x44, y44, 44100) == pytest.approx(M.lsc(x, y, sr), abs=0.5)
    assert M.resample_notice("pesq", 44100) == "pesq: audio resampled from 44100 Hz to 16000 Hz"
    assert M.resample_notice("pesq-nb", 16000) == (
        "pesq-nb: audio resampled from 16000 Hz to 8000 Hz")
    assert M.resample_notice("pesq", 16000) is None
    assert M.resample_notice("estoi", 44100) is None


def test_length_rule(clip):
    x, sr = clip
    y = noisy(x, 10.0)
    longer = np.concatenate([y, np.zeros(int(0.05 * len(x)))])
    assert M.si_sdr(x, longer, sr) == M.si_sdr(x, y, sr)  # truncated to the shorter
    n = int(0.95 * len(x))
    assert M.lsc(x[:n], y, sr) == M.lsc(x[:n], y[:n], sr)
    with pytest.raises(M.MetricError, match="length mismatch"):
        M.pesq_wb(x, y[: int(0.85 * len(x))], sr)


@pytest.mark.parametrize("name", list(M.METRICS))
def test_unscorable_pairs_raise(clip, name):
    x, sr = clip
    fn = M.METRICS[name].fn
    with pytest.raises(M.MetricError, match="estimate is silent"):
        fn(x, np.zeros_like(x), sr)
    with pytest.raises(M.MetricError, match="reference is silent"):
        fn(np.full_like(x, 1e-6), x, sr)
    with pytest.raises(M.MetricError, match="too short"):
        fn(x[: int(0.3 * sr)], x[: int(0.3 * sr)], sr)
    with pytest.raises(M.MetricError, match="NaN"):
        fn(x, np.where(np.arange(len(x)) == 5, np.nan, x), sr)


def test_stoi_too_few_frames_is_an_error_not_1e5(clip):
    x, sr = clip
    # 0.6 s that is mostly -60 dB: pystoi drops the quiet frames and would return 1e-5
    start = int(np.argmax(np.abs(x)))
    ref = np.full(int(0.6 * sr), 1e-3)
    ref[: int(0.1 * sr)] += x[start: start + int(0.1 * sr)]
    with pytest.raises(M.MetricError, match="too short for STOI"):
        M.estoi(ref, noisy(ref, 10.0), sr)


def test_parse_metrics():
    assert M.parse_metrics(" pesq,ESTOI , lsc,pesq") == ["pesq", "estoi", "lsc"]
    with pytest.raises(ValueError, match="unknown metric 'pesq-wb'; choose from pesq, pesq-nb"):
        M.parse_metrics("pesq-wb")
    with pytest.raises(ValueError, match="no metric"):
        M.parse_metrics(" , ")


def test_io_round_trip(clip, tmp_path):
    x, sr = clip
    stereo = np.stack([x, 0.5 * x]).astype(np.float32)
    write_wav_atomic(tmp_path / "s.flac", stereo, sr)
    mono, sr2 = read_audio(tmp_path / "s.flac")
    both, _ = read_audio(tmp_path / "s.flac", mono=False)
    assert sr2 == sr and both.shape == (2, len(x)) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, 0.75 * x, atol=2 / 32768)
    assert [p.name for p in tmp_path.iterdir()] == ["s.flac"]  # no temp file left
    with pytest.raises(ValueError, match="suffix"):
        write_wav_atomic(tmp_path / "s.mp3", x, sr)
