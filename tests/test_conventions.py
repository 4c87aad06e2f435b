"""Every STFT convention users bring (``../shared/CONVENTIONS.md``), checked against torch and
librosa themselves: framing, window placement, lengths, sample rates, scales, metadata, API types.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly
from typer.testing import CliRunner

import ppsi_cli
from ppsi_cli.cli import app
from ppsi_cli.config import StftConfig, stft_config
from ppsi_cli.dsp.stft import default_length, istft, n_frames, stft, window

runner = CliRunner()

# (sample rate, n_fft, win_length, hop, window, center, pad_mode)
CONVENTIONS = [
    (16000, 1024, 1024, 256, "hann", True, "reflect"),      # torch.stft defaults at ppsi's size
    (16000, 1024, 1024, 256, "hann", True, "constant"),     # librosa >= 0.10 defaults
    (16000, 512, 400, 100, "hann", True, "reflect"),        # DCCRN / MP-SENet: win < n_fft
    (16000, 511, 511, 128, "hann", True, "constant"),       # odd n_fft
    (16000, 512, 512, 256, "sqrt-hann", True, "reflect"),   # GTCRN, 50 % overlap
    (22050, 1024, 1024, 256, "hann", True, "reflect"),      # HiFi-GAN / VITS rate
    (24000, 2048, 1200, 300, "hann", True, "reflect"),      # StyleTTS 2
    (48000, 960, 960, 480, "sqrt-hann", True, "reflect"),   # DeepFilterNet-like
    (16000, 512, 400, 100, "hamming", False, "reflect"),    # start-referenced, centred window
    (22050, 1023, 900, 225, "blackman", False, "reflect"),  # odd n_fft, start-referenced
]
IDS = [f"{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[4]}-{'center' if c[5] else 'start'}-{c[6]}"
       for c in CONVENTIONS]


def _cfg(c) -> StftConfig:
    sr, n_fft, win, hop, name, center, pad_mode = c
    return StftConfig(sample_rate=sr, n_fft=n_fft, win_length=win, hop_length=hop, window=name,
                      center=center, pad_mode=pad_mode)


def _torch_window(cfg: StftConfig) -> torch.Tensor:
    """The win_length-sample window as a torch user passes it (torch centres it in n_fft)."""
    w = torch.hann_window(cfg.win_length, dtype=torch.float64) if "hann" in cfg.window else {
        "hamming": torch.hamming_window, "blackman": torch.blackman_window}[cfg.window](
        cfg.win_length, dtype=torch.float64)
    return w.sqrt() if cfg.window == "sqrt-hann" else w


def _speech(speech, sr: int) -> torch.Tensor:
    x = speech[0].numpy()[:24000]
    return torch.from_numpy(resample_poly(x, sr, 16000) if sr != 16000 else x.copy())


@pytest.mark.parametrize("c", CONVENTIONS, ids=IDS)
def test_stft_and_istft_equal_torch_and_librosa(speech, c) -> None:
    cfg = _cfg(c)
    x = _speech(speech, cfg.sample_rate)
    w = _torch_window(cfg)
    assert torch.equal(window(cfg, torch.float64)[cfg.offset:cfg.offset + cfg.win_length], w)
    ours = stft(x, cfg)
    assert ours.shape[-1] == n_frames(len(x), cfg)
    if cfg.center:
        ref = torch.stft(x, cfg.n_fft, cfg.hop_length, cfg.win_length, w, center=True,
                         pad_mode=cfg.pad_mode, return_complex=True)
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max() <= 1e-9 * ref.abs().max()
        # torch.istft: default length and length=len(x)
        for length in (None, len(x)):
            y_ref = torch.istft(ref, cfg.n_fft, cfg.hop_length, cfg.win_length, w, center=True,
                                length=length)
            y = istft(ref, cfg, length)
            assert y.shape == y_ref.shape
            assert (y - y_ref).abs().max() <= 1e-9
        assert istft(ref, cfg).shape[-1] == default_length(ref.shape[-1], cfg)
        if cfg.pad_mode == "constant":  # librosa pads with zeros
            lib = librosa.stft(x.numpy(), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                               win_length=cfg.win_length, window=w.numpy(), center=True,
                               pad_mode="constant")
            assert np.abs(ours.numpy() - lib).max() <= 1e-6 * np.abs(lib).max()
            y_lib = librosa.istft(lib, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                  win_length=cfg.win_length, window=w.numpy(), center=True,
                                  length=len(x))
            assert np.abs(istft(ours, cfg, len(x)).numpy() - y_lib).max() <= 1e-6
    # every framing: analysis and synthesis are an exact pair
    assert (istft(ours, cfg, len(x)) - x).abs().max() <= 1e-9


@pytest.mark.parametrize("c", CONVENTIONS, ids=IDS)
def test_oracle_reconstruction_is_aligned_sample_for_sample(speech, c) -> None:
    """The least squares from the true phase differences gives the signal back where it is
    not silent: aligned, with the length asked for, through the public API and torch's names."""
    cfg = _cfg(c)
    x = _speech(speech, cfg.sample_rate)
    spec = stft(x, cfg)  # float64 (equals torch.stft / librosa.stft by the test above)
    y = ppsi_cli.invert(spec, "oracle", length=len(x), sample_rate=cfg.sample_rate,
                        n_fft=cfg.n_fft, win_length=cfg.win_length,
                        hop_length=cfg.hop_length, window=cfg.window, center=cfg.center)
    assert y.shape == x.shape and y.dtype == torch.float64
    # the least squares starts each run of frames at phase 0 in bin 0 (DC is real: 0 or pi),
    # so the signal comes back up to its sign
    err = min(float((y - x).norm()), float((y + x).norm())) / float(x.norm())
    assert err < 1e-3, err  # the ceiling: WB-PESQ 4.64 on the evaluation set
    assert ppsi_cli.invert(spec, "oracle", stft=cfg).shape[-1] == default_length(
        spec.shape[-1], cfg)


def test_torch_defaults_follow_torch() -> None:
    """n_fft alone brings win_length = n_fft and hop = n_fft // 4, as in torch.stft."""
    cfg = stft_config({"n_fft": 512, "center": "true", "sample_rate": "22050"})
    assert (cfg.win_length, cfg.hop_length, cfg.center, cfg.sample_rate) == (512, 128, True,
                                                                               22050)
    for bad, message in (({"sample_rate": "16k"}, "sample_rate='16k' is not an integer"),
                         ({"center": "maybe"}, "center='maybe' is not true or false"),
                         ({"window": "kaiser"}, "window must be one of"),
                         ({"n_fft": 256, "win_length": 400}, "win_length <= n_fft"),
                         ({"hop": 3}, "unknown STFT setting")):
        with pytest.raises(ValueError, match=message):
            stft_config(bad)


def test_api_types_follow_the_input(speech) -> None:
    x = speech[0][:16000].float()
    mag = stft(x, StftConfig(center=True)).abs()
    ref = ppsi_cli.invert(mag, center=True)
    y_np = ppsi_cli.invert(mag.numpy(), center=True)  # numpy in, numpy out
    assert isinstance(y_np, np.ndarray) and y_np.dtype == np.float32
    np.testing.assert_allclose(y_np, ref.numpy(), atol=1e-6)
    y16 = ppsi_cli.invert(mag.half(), center=True)  # half precision: computed in float32
    assert y16.dtype == torch.float32 and y16.shape == ref.shape
    assert ppsi_cli.invert(mag.bfloat16(), center=True).dtype == torch.float32
    y64 = ppsi_cli.invert(mag.double(), "griffin-lim+iters=2", center=True)
    assert y64.dtype == torch.float64
    batch = ppsi_cli.invert(torch.stack([mag, mag]).unsqueeze(0), center=True)  # (1, 2, K, T)
    assert batch.shape == (1, 2, ref.shape[-1])
    assert len(ref) == default_length(mag.shape[-1], StftConfig(center=True)) == 256 * 62


def test_ppsi_serves_the_shipped_families_only(speech) -> None:
    """--method ppsi picks the shipped network of the STFT's family; outside every shipped
    family it refuses, naming the classical methods that work there."""
    from ppsi_cli.weights import SHIPPED, model_family

    hamming = stft_config({"n_fft": 512, "window": "hamming"})
    mag = stft(speech[0][:16000].float(), hamming).abs()
    with pytest.raises(ValueError, match=r"no shipped ppsi online network for hamming at 75 % "
                                         r"overlap \(shipped: hann at 75 % overlap.*\); use "
                                         r"method griffin-lim, pghi or rtisi-la for this STFT"):
        ppsi_cli.invert(mag, stft=hamming)
    assert ppsi_cli.invert(mag, "pghi", stft=hamming).shape == (
        default_length(mag.shape[-1], hamming),)  # the classical methods work everywhere
    from ppsi_cli.methods import BY_VARIANT

    for entry in SHIPPED:
        cfg = stft_config({"n_fft": 512, "window": entry.window,
                           "hop_length": int(512 * entry.hop_over_win), "sample_rate": 22050})
        mel = "hifigan+n_mels=40" if entry.input == "mel" else None  # the input picks it too
        inv = ppsi_cli.Inverter(BY_VARIANT[entry.variant], stft=cfg, mel=mel)
        assert model_family(inv.model) == entry.family and inv.model.path.endswith(entry.file)


# ---------------------------------------------------------------- the command line


def _write_22k(tmp_path, speech) -> tuple[np.ndarray, np.ndarray]:
    """22.05 kHz speech and its torch.stft(center=True) magnitude (HiFi-GAN's rate)."""
    x = resample_poly(speech[0].numpy()[:32000], 441, 320)
    mag = torch.stft(torch.from_numpy(x), 1024, 256, window=torch.hann_window(
        1024, dtype=torch.float64), center=True, return_complex=True).abs().float().numpy()
    return x, mag


def test_cli_takes_settings_from_metadata_or_options(tmp_path, speech) -> None:
    x, mag = _write_22k(tmp_path, speech)
    src = tmp_path / "in"
    src.mkdir()
    np.savez(src / "meta.npz", magnitude=mag, sample_rate="22050", center=True)
    np.save(src / "plain.npy", mag)
    np.savez(src / "power.npz", magnitude=mag ** 2, sample_rate=22050, center=1, scale="power")
    out = tmp_path / "out"
    # meta.npz and power.npz say it themselves; plain.npy needs the options
    r = runner.invoke(app, ["invert", str(src), "-o", str(out), "--sample-rate", "22050",
                            "--center", "--method", "griffin-lim+iters=8", "--subtype", "FLOAT"])
    assert r.exit_code == 0, r.output
    waves = {}
    for name in ("meta", "plain", "power"):
        y, sr = sf.read(out / f"{name}.wav")
        assert sr == 22050 and len(y) == 256 * (mag.shape[1] - 1)  # torch.istft's length
        waves[name] = y
    np.testing.assert_allclose(waves["meta"], waves["plain"], atol=1e-6)
    np.testing.assert_allclose(waves["power"], waves["meta"], atol=1e-4)


def test_cli_refuses_options_that_contradict_a_file(tmp_path, speech) -> None:
    _, mag = _write_22k(tmp_path, speech)
    np.savez(tmp_path / "a.npz", magnitude=mag, sample_rate=22050, center=True, scale="linear")
    for args, message in ((["--sample-rate", "16000"],
                           "the file says sample_rate=22050 but --sample-rate 16000"),
                          (["--no-center"], "the file says center=True but --no-center"),
                          (["--scale", "power"], "the file says scale='linear' but --scale power")):
        r = runner.invoke(app, ["invert", str(tmp_path / "a.npz"), "-o", str(tmp_path / "o"),
                                *args])
        assert r.exit_code == 1, r.output
        lines = [ln for ln in r.stderr.strip().splitlines()
                 if not ln.startswith("notice --no-center")]
        assert len(lines) == 1 and message in lines[0], r.stderr
        assert not (tmp_path / "o" / "a.wav").exists()
    np.savez(tmp_path / "b.npz", magnitude=mag, sample_rate="22k")
    r = runner.invoke(app, ["invert", str(tmp_path / "b.npz"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "sample_rate='22k' is not an integer" in r.stderr


def test_cli_copy_synthesis_at_the_audio_settings_is_aligned(tmp_path, speech) -> None:
    x = resample_poly(speech[0].numpy()[:32000], 3, 2).astype(np.float32)  # 24 kHz
    sf.write(tmp_path / "a.wav", x, 24000, subtype="FLOAT")
    r = runner.invoke(app, ["invert", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"),
                            "--method", "oracle", "--sample-rate", "24000", "--center",
                            "--subtype", "FLOAT"])
    assert r.exit_code == 0, r.output
    y, sr = sf.read(tmp_path / "out" / "a.wav")
    assert sr == 24000 and len(y) == len(x)
    err = min(np.linalg.norm(y - x), np.linalg.norm(y + x)) / np.linalg.norm(x)  # up to sign
    assert err < 1e-3, err  # aligned sample for sample, to the last one


def test_spec_writes_every_setting_and_invert_reads_them(tmp_path, speech) -> None:
    sf.write(tmp_path / "a.wav", speech[0].numpy()[:16000], 16000)
    r = runner.invoke(app, ["spec", str(tmp_path / "a.wav"), "-o", str(tmp_path / "s"),
                            "--sample-rate", "22050", "--n-fft", "512", "--center"])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "s" / "a.npz") as z:
        meta = {k: z[k].item() for k in z.files if k != "magnitude"}
        assert z["magnitude"].shape[0] == 257
    assert meta == {"sample_rate": 22050, "n_fft": 512, "win_length": 512, "hop_length": 128,
                    "window": "hann", "center": True, "pad_mode": "reflect", "scale": "linear"}
    r = runner.invoke(app, ["invert", str(tmp_path / "s"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert sf.info(tmp_path / "o" / "a.wav").samplerate == 22050


def test_a_power_spectrogram_read_as_magnitudes_gets_a_notice(tmp_path, speech) -> None:
    mag = stft(speech[0][:16000].float(), StftConfig()).abs().numpy()
    np.save(tmp_path / "p.npy", mag ** 2)
    r = runner.invoke(app, ["invert", str(tmp_path / "p.npy"), "-o", str(tmp_path / "o"),
                            "--method", "pghi"])
    assert r.exit_code == 0 and "power spectrogram" in r.stderr and "--scale power" in r.stderr
    r = runner.invoke(app, ["invert", str(tmp_path / "p.npy"), "-o", str(tmp_path / "o2"),
                            "--method", "pghi", "--scale", "power"])
    assert r.exit_code == 0 and "power spectrogram" not in r.stderr


def test_every_stft_option_reaches_the_inversion(tmp_path, speech) -> None:
    """--n-fft --win-length --hop-length --window --sample-rate --center on invert, and on eval:
    the output is the API's with the same StftConfig (an ignored option would change it)."""
    cfg = StftConfig(sample_rate=22050, n_fft=512, win_length=400, hop_length=100,
                     window="hamming", center=True)
    x = _speech(speech, 22050).float()  # 1.5 s
    mag = stft(x, cfg).abs()
    np.save(tmp_path / "a.npy", mag.numpy())
    args = ["--sample-rate", "22050", "--n-fft", "512", "--win-length", "400", "--hop-length",
            "100", "--window", "hamming", "--center"]
    r = runner.invoke(app, ["invert", str(tmp_path / "a.npy"), "-o", str(tmp_path / "o"),
                            "--method", "pghi", "--subtype", "FLOAT", *args])
    assert r.exit_code == 0, r.output
    y, sr = sf.read(tmp_path / "o" / "a.wav")
    assert sr == 22050
    np.testing.assert_allclose(y, ppsi_cli.invert(mag, "pghi", stft=cfg).numpy(), atol=1e-6)
    # eval analyses its audio with the same options and records them
    sf.write(tmp_path / "e.wav", x.numpy(), 22050)
    r = runner.invoke(app, ["eval", str(tmp_path / "e.wav"), "--methods", "oracle,pghi",
                            "--json", str(tmp_path / "e.json"), *args])
    assert r.exit_code == 0, r.output
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    assert result["stft"] == cfg.to_dict()
    assert result["summary"]["oracle"]["pesq"]["mean"] > 4.4


@pytest.mark.parametrize("center", [False, True])
def test_batched_inputs_equal_one_by_one_in_either_framing(speech, center) -> None:
    """``Inverter.many`` (``--batch-size``) gives each item what its own call gives, lengths
    included; centred frames reach past an item's end, so they are not padded together."""
    cfg = stft_config({"center": center})
    inv = ppsi_cli.Inverter("oracle", stft=cfg)
    xs = [speech[0][8000:8000 + n] for n in (8000, 5300, 6500)]
    specs = [stft(x, cfg) for x in xs]
    for x, s, y in zip(xs, specs, inv.many(specs, [len(x) for x in xs])):
        assert y.shape == x.shape
        assert torch.allclose(y, inv(s, len(x)), atol=1e-9)


@pytest.mark.parametrize("n_fft,hop,win", [(1024, 256, 1024), (512, 100, 400)])
def test_torch_center_false_is_center_pad_length_zero(speech, tmp_path, n_fft, hop, win) -> None:
    """torch's / librosa's ``center=False`` frames (no padding) are ``center=True,
    pad_length=0``: the output has their span and is aligned with the audio; estimated phases
    are tapered where only window tails cover the first and last samples (before: divided by a
    window sum near 0, peaks 6-26 for a 0.6 peak and LSC -7.4 to +6.7 dB; now below -16 dB),
    the true phase is exact."""
    from ppsi_cli.metrics import lsc

    x = speech[0].float()
    spec = torch.stft(x, n_fft, hop, win, window=torch.hann_window(win), center=False,
                      return_complex=True)
    n_t = spec.shape[-1]
    span = hop * (n_t - 1) + n_fft
    kw = dict(center=True, pad_length=0, n_fft=n_fft, hop_length=hop, win_length=win)
    exact = ppsi_cli.invert(spec, "oracle", **kw)
    assert exact.shape == (span,)
    # all but the samples under window values below 1e-4 (w(0) = 0: sample 0 has no window)
    assert (exact - x[:span])[64:-64].abs().max() <= 1e-4
    for method in ("ppsi", "griffin-lim+iters=16"):
        y = ppsi_cli.invert(spec.abs(), method, **kw)
        assert y.shape == (span,)
        assert y.abs().max() <= 1.2 * x.abs().max(), method
        assert lsc(x[:span].numpy(), y.numpy(), 16000, _cfg_of(n_fft, hop, win)) < -15, method
    np.save(tmp_path / "s.npy", spec.abs().numpy())  # the CLI: --center --pad-length 0
    result = CliRunner().invoke(app, ["invert", str(tmp_path / "s.npy"), "-o",
                                      str(tmp_path / "s.wav"), "--n-fft", str(n_fft),
                                      "--hop-length", str(hop), "--win-length", str(win),
                                      "--center", "--pad-length", "0", "--subtype", "FLOAT"])
    assert result.exit_code == 0, result.output
    y, _ = sf.read(tmp_path / "s.wav", dtype="float32")
    ref = ppsi_cli.invert(spec.abs(), **kw).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-6)


def _cfg_of(n_fft: int, hop: int, win: int) -> StftConfig:
    return StftConfig(n_fft=n_fft, hop_length=hop, win_length=win)


def test_no_center_names_its_framing(speech, tmp_path) -> None:
    """``--no-center`` reads like torch's center=False; a notice says what it is."""
    sf.write(tmp_path / "a.wav", speech[0][:8000].numpy(), 16000)
    result = CliRunner().invoke(app, ["invert", str(tmp_path / "a.wav"), "-o",
                                      str(tmp_path / "out"), "--no-center", "--method",
                                      "griffin-lim+iters=2"])
    assert result.exit_code == 0, result.output
    assert "--center --pad-length 0" in result.stderr


def test_inverter_takes_numpy_and_stft_mappings_as_invert_does(speech) -> None:
    """``Inverter`` (call, ``many``, streams) takes what ``invert`` takes: NumPy in gives NumPy
    out with the same samples, an STFT as a mapping of torch's names."""
    mag = stft(speech[0][:16000].float(), StftConfig(center=True)).abs()
    inv = ppsi_cli.Inverter("ppsi", stft={"center": True})
    assert inv.stft == StftConfig(center=True)
    want = inv(mag).numpy()
    got = inv(mag.numpy())
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ppsi_cli.invert(mag.numpy(), center=True), want)
    assert all(isinstance(w, np.ndarray) for w in inv.many([mag.numpy(), mag[:, :20].numpy()]))
    stream = inv.stream()
    parts = [stream.push(mag[:, i:i + 7].numpy()) for i in range(0, mag.shape[-1], 7)]
    parts.append(stream.flush())
    assert all(isinstance(p, np.ndarray) for p in parts)
    np.testing.assert_allclose(np.concatenate(parts)[:len(want)], want, atol=1e-4)


def test_an_npz_saying_center_false_gets_a_notice(speech, tmp_path) -> None:
    """A file that says center=False may mean torch's (frames from the signal's start): a
    notice says what it is here. ppsi's own files leave the default framing unsaid, so they
    get none, and read back the same."""
    x = speech[0][:16000].float()
    mag = stft(x, StftConfig()).abs().numpy()
    np.savez(tmp_path / "theirs.npz", magnitude=mag, center=False)
    sf.write(tmp_path / "a.wav", x.numpy(), 16000)
    assert CliRunner().invoke(app, ["spec", str(tmp_path / "a.wav"), "-o",
                                    str(tmp_path / "ours.npz")]).exit_code == 0
    with np.load(tmp_path / "ours.npz") as z:
        assert "center" not in z.files and int(z["hop_length"]) == 256
    result = CliRunner().invoke(app, ["invert", str(tmp_path), "-o", str(tmp_path / "out"),
                                      "--method", "griffin-lim+iters=2", "--subtype", "FLOAT"])
    assert result.exit_code == 0, result.output
    assert "theirs.npz: the file says center=False is ppsi's" in result.stderr
    assert "ours.npz: the file says" not in result.stderr
    ours, _ = sf.read(tmp_path / "out" / "ours.wav")
    theirs, _ = sf.read(tmp_path / "out" / "theirs.wav")
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("method", ["ppsi", "rtisi-la", "griffin-lim+iters=4", "oracle"])
@pytest.mark.parametrize("kw", [{}, {"center": True}, {"center": True, "pad_length": 0}],
                         ids=["start", "centred", "pad0"])
def test_length_below_the_default_cuts_in_every_framing(speech, method, kw) -> None:
    """``length`` shorter than the default cuts the whole output (the online methods of centred
    framings failed an internal assertion); the samples are the first ones of the default."""
    cfg = stft_config(kw)
    spec = stft(speech[0][:16000].float(), cfg)
    x = spec if method == "oracle" else spec.abs()
    full = ppsi_cli.invert(x, method, **kw)
    cut = ppsi_cli.invert(x, method, length=9000, **kw)
    assert cut.shape == (9000,) and full.shape[-1] > 9000
    torch.testing.assert_close(cut, full[:9000], atol=1e-5, rtol=0)


def test_the_fewest_frames_follow_the_framing() -> None:
    """The frames a whole input needs are those that make at least one sample: 4 for ppsi's
    start-referenced Hann 1024/256, 2 centred, 1 with torch's center=False (one 64 ms clip)."""
    for kw, need in (({}, 4), ({"center": True}, 2), ({"center": True, "pad_length": 0}, 1)):
        assert ppsi_cli.invert(torch.rand(513, need), **kw).shape[-1] > 0
        if need > 1:
            with pytest.raises(ValueError, match=f"at least {need} are needed"):
                ppsi_cli.invert(torch.rand(513, need - 1), **kw)
