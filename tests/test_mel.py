"""Mel input: filters and front ends against librosa / torchaudio, NNLS against SciPy, the
inversion aligned with the original audio, mel files and options, and bad mel input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls as scipy_nnls
from typer.testing import CliRunner

import ppsi_cli
from ppsi_cli.cli import app
from ppsi_cli.config import MEL_PRESETS, MelConfig, StftConfig, mel_config, stft_config
from ppsi_cli.dsp.mel import mel_filters, mel_spectrogram, mel_to_magnitude, mel_values
from ppsi_cli.dsp.stft import default_length, istft, n_frames, stft
from ppsi_cli.io import resample
from ppsi_cli.metrics import estoi

librosa = pytest.importorskip("librosa")
runner = CliRunner()


def _preset(name: str) -> tuple[MelConfig, StftConfig]:
    mel, st = mel_config(name)
    return mel, stft_config(st)


def _audio(speech, sr: int) -> torch.Tensor:
    x, rate = speech
    return torch.from_numpy(resample(x.numpy(), rate, sr).astype(np.float32))


# --- filters ---------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Empty filters detected")  # torchaudio's 128 bands at 400
@pytest.mark.parametrize("name", list(MEL_PRESETS))
def test_preset_filters_equal_librosa(name):
    mel, cfg = _preset(name)
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=mel.n_mels,
                              fmin=mel.f_min, fmax=mel.f_max, htk=mel.mel_scale == "htk",
                              norm="slaney" if mel.mel_norm == "slaney" else None,
                              dtype=np.float64)
    ours = mel_filters(mel, cfg, torch.float64).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12 * ref.max())


@pytest.mark.parametrize("settings", [
    dict(n_mels=40, f_min=60.0, f_max=7600.0, mel_scale="slaney", mel_norm="none"),
    dict(n_mels=64, f_min=125.0, f_max=None, mel_scale="htk", mel_norm="slaney"),
], ids=["slaney-nonorm", "htk-norm"])
def test_other_settings_and_an_odd_fft_equal_librosa(settings):
    mel, cfg = MelConfig(**settings), StftConfig(sample_rate=16000, n_fft=511, win_length=511,
                                                 hop_length=128)
    ref = librosa.filters.mel(sr=16000, n_fft=511, n_mels=mel.n_mels, fmin=mel.f_min,
                              fmax=mel.f_max, htk=mel.mel_scale == "htk",
                              norm="slaney" if mel.mel_norm == "slaney" else None,
                              dtype=np.float64)
    np.testing.assert_allclose(mel_filters(mel, cfg, torch.float64).numpy(), ref, rtol=1e-10,
                               atol=1e-12 * ref.max())


@pytest.mark.parametrize("name", ["vocos", "torchaudio"])
def test_htk_presets_equal_torchaudio(name):
    """torchaudio computes its filters in float32: equal to float32 rounding."""
    F = pytest.importorskip("torchaudio.functional")
    mel, cfg = _preset(name)
    ref = F.melscale_fbanks(cfg.n_bins, mel.f_min, mel.upper(cfg.sample_rate), mel.n_mels,
                            cfg.sample_rate, norm=None, mel_scale="htk").T
    torch.testing.assert_close(mel_filters(mel, cfg), ref, rtol=1e-5, atol=1e-6)


# --- front ends --------------------------------------------------------------------------------
def test_hifigan_front_end_is_reproduced(speech):
    """HiFi-GAN's meldataset.mel_spectrogram, written out: reflect padding of (n_fft - hop) / 2,
    torch.stft with center=False, sqrt(re^2 + im^2 + 1e-9), librosa filters, log of values
    clamped at 1e-5. Its 1e-9 under the root is all that differs."""
    mel, cfg = _preset("hifigan")
    y = _audio(speech, 22050).double()
    pad = (1024 - 256) // 2
    yp = torch.nn.functional.pad(y[None, None], (pad, pad), mode="reflect")[0, 0]
    spec = torch.stft(yp, 1024, 256, 1024, torch.hann_window(1024, dtype=torch.float64),
                      center=False, return_complex=True)
    fb = torch.from_numpy(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0,
                                              fmax=8000, dtype=np.float64))
    ref = torch.log((fb @ torch.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)).clamp_min(1e-5))
    ours = mel_spectrogram(stft(y, cfg).abs(), mel, cfg)
    assert ours.shape == ref.shape and ours.shape[-1] == len(y) // 256
    loud = ref > np.log(1e-2)  # where the 1e-9 under the root is negligible
    torch.testing.assert_close(ours[loud], ref[loud], rtol=0, atol=1e-6)
    assert (ours - ref).abs().max() < 0.3


def test_vocos_and_librosa_front_ends_are_reproduced(speech):
    mel, cfg = _preset("vocos")
    y = _audio(speech, 24000).double()
    spec = torch.stft(y, 1024, 256, 1024, torch.hann_window(1024, dtype=torch.float64),
                      center=True, pad_mode="reflect", return_complex=True).abs()
    fb = torch.from_numpy(librosa.filters.mel(sr=24000, n_fft=1024, n_mels=100, htk=True,
                                              norm=None, dtype=np.float64))
    ref = torch.log((fb @ spec).clamp_min(1e-7))
    torch.testing.assert_close(mel_spectrogram(stft(y, cfg).abs(), mel, cfg), ref, rtol=0,
                               atol=1e-9)
    mel, cfg = _preset("librosa")
    y = _audio(speech, 22050).double()
    ref = librosa.feature.melspectrogram(y=y.numpy(), sr=22050)
    ours = mel_spectrogram(stft(y, cfg).abs(), mel, cfg).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * ref.max())


def test_hifigan_framing_makes_hop_frames_and_inverts_to_its_length(speech):
    _, cfg = _preset("hifigan")
    y = _audio(speech, 22050).double()
    assert n_frames(len(y), cfg) == len(y) // 256 == stft(y, cfg).shape[-1]
    assert default_length(10, cfg) == 2560
    torch.testing.assert_close(istft(stft(y, cfg), cfg, len(y)), y, rtol=0, atol=1e-9)


# --- NNLS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MEL_PRESETS))
def test_nnls_magnitude_reproduces_the_mel_and_is_as_good_as_scipy(speech, name):
    """The mel of the recovered |X| ** power matches the input per frame: relative error
    median <= 1e-4, 95th percentile <= 1e-2, max <= 3e-2 (bands empty at this FFT size cannot
    be matched). On 12 frames its residual is within 2 % of the mel's norm of SciPy's exact
    NNLS (Lawson-Hanson)."""
    mel, cfg = _preset(name)
    y = _audio(speech, cfg.sample_rate)
    m_in = mel_spectrogram(stft(y, cfg).abs(), mel, cfg)
    s = mel_to_magnitude(m_in, mel, cfg)
    assert s.shape == (cfg.n_bins, m_in.shape[-1]) and (s >= 0).all()
    m = mel_values(m_in, mel)
    fb = mel_filters(mel, cfg)
    rel = (fb @ s ** mel.power - m).norm(dim=0) / m.norm(dim=0)
    assert rel.median() <= 1e-4 and rel.quantile(0.95) <= 1e-2 and rel.max() <= 3e-2, rel
    A = fb.double().numpy()
    for t in np.linspace(0, m.shape[-1] - 1, 12).astype(int):
        b = m[:, t].double().numpy()
        _, best = scipy_nnls(A, b)
        ours = np.linalg.norm(A @ (s[:, t].double().numpy() ** mel.power) - b)
        assert ours - best <= 2e-2 * np.linalg.norm(b), (t, ours, best)
    # a batch (its items run as more columns of the sparse products) gives each item's result
    half = m_in.shape[-1] // 2
    both = mel_to_magnitude(torch.stack([m_in[:, :half], m_in[:, half:2 * half]]), mel, cfg)
    torch.testing.assert_close(both[0], mel_to_magnitude(m_in[:, :half], mel, cfg), rtol=1e-5,
                               atol=1e-6 * float(s.max()))
    torch.testing.assert_close(both[1], s[:, half:2 * half], rtol=1e-5, atol=1e-6 * float(s.max()))


# --- inversion -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hifigan", "vocos"])
def test_reference_mel_to_ppsi_is_aligned_with_the_audio(speech, name):
    """The reference front end's mel (librosa filters on torch.stft) -> ppsi_cli.invert with
    the preset -> a waveform aligned with the original: ESTOI (which a shift of a few ms
    ruins) high, and far lower for the output moved by one hop."""
    mel, cfg = _preset(name)
    y = _audio(speech, cfg.sample_rate)
    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=1024, n_mels=mel.n_mels,
                             fmin=mel.f_min, fmax=mel.f_max, htk=mel.mel_scale == "htk",
                             norm="slaney" if mel.mel_norm == "slaney" else None)
    m = np.log(np.maximum(fb @ stft(y, cfg).abs().numpy(), mel.clamp)).astype(np.float32)
    out = ppsi_cli.invert(m, mel=name, length=len(y))
    assert isinstance(out, np.ndarray) and out.shape == (len(y),)
    score = estoi(y.numpy(), out, cfg.sample_rate)
    shifted = estoi(y.numpy()[256:], out[:-256], cfg.sample_rate)
    assert score >= 0.85 and score > shifted + 0.1, (score, shifted)


def test_mel_network_is_picked_for_mel_input_and_streams_alike(speech):
    from ppsi_cli.weights import model_input

    inv = ppsi_cli.Inverter("ppsi", mel="hifigan")
    assert model_input(inv.model) == "mel" and inv.notices == []
    assert inv.stft == _preset("hifigan")[1]
    mel, cfg = _preset("hifigan")
    # float64 and 40 frames: the online recursion lets float rounding grow over long inputs,
    # most on the smooth NNLS magnitudes (docs/experiments.md), so only exact arithmetic can
    # show that chunking changes nothing
    inv.model.net.double()
    m = mel_spectrogram(stft(_audio(speech, 22050).double(), cfg).abs(), mel, cfg)[:, 80:120]
    whole = inv(m)
    stream = inv.stream()
    parts = [stream.push(m[:, s:s + 7]) for s in range(0, m.shape[-1], 7)] + [stream.flush()]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=1e-6)
    # the linear network on mel input works, with a notice
    lin = ppsi_cli.Inverter("ppsi", mel="hifigan",
                            weights=str(ppsi_cli.weights.shipped_weights("online", cfg)))
    assert any("trained on linear input" in n for n in lin.notices)


@pytest.mark.parametrize("method", ["griffin-lim+iters=4", "pghi", "rtisi-la+iters=1",
                                    "ppsi+refine=2"])
def test_every_method_takes_mel_input(speech, method):
    mel, cfg = _preset("vocos")
    y = _audio(speech, 24000)[:24000]
    m = mel_spectrogram(stft(y, cfg).abs(), mel, cfg)
    out = ppsi_cli.invert(m, method, mel="vocos", length=len(y))
    assert out.shape == y.shape and torch.isfinite(out).all()
    assert estoi(y.numpy(), out.numpy(), 24000) > 0.6


@pytest.mark.parametrize("name", ["hifigan", "vocos"])
def test_librosa_peer_is_mel_to_audio_aligned(speech, name):
    """The peer method is librosa's mel_to_audio (its two steps, mel_to_stft then griffinlim,
    with the random phase seeded) on the input's settings, aligned with the audio (HiFi-GAN's
    padding: uncentred frames, the padding dropped)."""
    mel, cfg = _preset(name)
    y = _audio(speech, cfg.sample_rate)
    m = mel_spectrogram(stft(y, cfg).abs(), mel, cfg)
    ours = ppsi_cli.invert(m.numpy(), "librosa+iters=3", mel=name, length=len(y))
    if name == "vocos":
        S = librosa.feature.inverse.mel_to_stft(np.exp(m.numpy()), sr=24000, n_fft=1024,
                                                power=1.0, htk=True, norm=None, fmax=12000)
        ref = librosa.griffinlim(S, n_iter=3, hop_length=256, n_fft=1024, length=len(y),
                                 pad_mode="reflect", random_state=0)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    full = ppsi_cli.invert(m.numpy(), "librosa", mel=name, length=len(y))
    assert estoi(y.numpy(), full, cfg.sample_rate) > 0.85


# --- files and the CLI ---------------------------------------------------------------------------
def test_spec_then_invert_mel_files_and_npy_with_the_option(speech, tmp_path):
    import soundfile as sf

    x, sr = speech
    sf.write(tmp_path / "a.wav", x.numpy(), sr)
    r = runner.invoke(app, ["spec", str(tmp_path / "a.wav"), "-o", str(tmp_path / "mels"),
                            "--mel", "hifigan"])
    assert r.exit_code == 0, r.output
    z = np.load(tmp_path / "mels" / "a.npz")
    assert z["magnitude"].shape[0] == 80 and str(z["scale"]) == "log-mel"
    assert int(z["pad_length"]) == 384 and str(z["mel_scale"]) == "slaney"
    np.save(tmp_path / "b.npy", z["magnitude"])
    r = runner.invoke(app, ["invert", str(tmp_path / "mels" / "a.npz"), "-o",
                            str(tmp_path / "out"), "--method", "griffin-lim+iters=8"])
    assert r.exit_code == 0, r.output
    r2 = runner.invoke(app, ["invert", str(tmp_path / "b.npy"), "-o", str(tmp_path / "out"),
                             "--mel", "hifigan", "--method", "griffin-lim+iters=8"])
    assert r2.exit_code == 0, r2.output
    a, rate = sf.read(tmp_path / "out" / "a.wav")
    b, _ = sf.read(tmp_path / "out" / "b.wav")
    assert rate == 22050 and len(a) == 256 * z["magnitude"].shape[1]
    np.testing.assert_array_equal(a, b)
    ref = resample(x.numpy(), sr, 22050)
    assert estoi(ref[:len(a)], a[:len(ref)], 22050) > 0.8


@pytest.mark.parametrize("arrays, option, message", [
    (dict(magnitude=np.zeros((80, 50), np.float32), scale="log-mel", n_mels=100,
          sample_rate=24000), None, "has 80 bands; the mel settings say n_mels=100"),
    (dict(magnitude=np.ones((513, 50), np.float32), scale="log-mel", mel="hifigan"), None,
     "513 bins: a linear spectrogram of n_fft=1024? then pass it without mel settings"),
    (dict(magnitude=-np.ones((80, 50), np.float32)), "hifigan+log=none", "a log-mel? say which "
     "log"),
    (dict(magnitude=np.ones((80, 50), np.float32), scale="linear"), "hifigan",
     "the file says scale='linear' but --mel hifigan"),
    (dict(magnitude=np.ones((80, 50), np.float32), scale="log-mel", log="none"), None,
     "scale='log-mel' but log='none'"),
    (dict(magnitude=np.full((80, 50), 500, np.float32), mel="hifigan"), None, "overflows"),
    (dict(magnitude=np.ones((80, 50), np.float32), mel="melgan"), None,
     "unknown mel preset 'melgan'"),
], ids=["bands", "linear-as-mel", "log-without-log", "linear-file", "scale-vs-log", "overflow",
        "preset"])
def test_bad_mel_input_is_one_line(tmp_path, arrays, option, message):
    np.savez(tmp_path / "x.npz", **arrays)
    args = ["invert", str(tmp_path / "x.npz"), "-o", str(tmp_path / "out"), "--method", "pghi"]
    r = runner.invoke(app, args + (["--mel", option] if option else []))
    assert r.exit_code == 1, r.output
    assert message in " ".join(r.output.split()), r.output
    assert not (tmp_path / "out" / "x.wav").exists()


def test_skip_existing_keeps_a_mel_file_that_names_only_its_preset(tmp_path):
    """The preset's STFT (22.05 kHz, hop 256) sets the length a complete output has, as it does
    for the inversion: a finished output is skipped, not redone."""
    (tmp_path / "in").mkdir()
    np.savez(tmp_path / "in" / "m.npz", magnitude=np.full((80, 60), -5, np.float32),
             mel="hifigan", scale="log-mel")
    args = ["invert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "pghi"]
    assert runner.invoke(app, args).exit_code == 0
    first = (tmp_path / "out" / "m.wav").stat()
    r = runner.invoke(app, args + ["--skip-existing"])
    assert r.exit_code == 0 and "0 ok, 0 failed, 1 skipped" in r.output, r.output
    again = (tmp_path / "out" / "m.wav").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


@pytest.mark.parametrize("scale", ["mel", "log-mel"])
def test_scale_option_of_a_mel_is_refused(tmp_path, scale):
    """A mel's scale comes from its front end (--mel): --scale mel alone would invert the values
    as linear magnitudes."""
    np.save(tmp_path / "m.npy", np.ones((80, 40), np.float32))
    r = runner.invoke(app, ["invert", str(tmp_path / "m.npy"), "-o", str(tmp_path / "o"),
                            "--scale", scale])
    assert r.exit_code == 1 and f"--scale {scale}: give a mel spectrogram's front end with " \
        "--mel PRESET" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "o").exists()


def test_mel_given_as_linear_is_named(tmp_path):
    np.save(tmp_path / "m.npy", np.ones((80, 40), np.float32))
    r = runner.invoke(app, ["invert", str(tmp_path / "m.npy"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--mel PRESET" in " ".join(r.output.split()), r.output
    with pytest.raises(ValueError, match="mel spectrogram has 80 bands; the mel settings say "
                                         "n_mels=100"):
        ppsi_cli.invert(np.ones((80, 40), np.float32), mel="vocos")
    with pytest.raises(ValueError, match="oracle needs the complex STFT"):
        ppsi_cli.Inverter("oracle", mel="vocos")


def test_mel_settings_parse_and_refuse_by_name():
    mel, st = mel_config("hifigan+f_max=11025+n_mels=128")
    assert mel.f_max == 11025.0 and mel.n_mels == 128 and st["sample_rate"] == 22050
    mel, st = mel_config({"preset": "vocos", "n_mels": 80, "sample_rate": 16000})
    assert mel.n_mels == 80 and mel.mel_scale == "htk" and st["sample_rate"] == 16000
    for bad, msg in [("hifigan+power=3", "power must be 1"), ("vocos+mel_scale=bark",
                     "mel_scale must be one of"), ("hifigan+n_mels=x", "n_mels='x' is not"),
                     ("hifigan+width=3", "unknown mel setting 'width'"),
                     ("librosa+f_max=30000", None)]:
        if msg is None:  # above Nyquist: known when the STFT is
            with pytest.raises(ValueError, match="above the Nyquist"):
                ppsi_cli.invert(np.ones((128, 10), np.float32), "pghi", mel=bad)
            continue
        with pytest.raises(ValueError, match=msg):
            mel_config(bad)
