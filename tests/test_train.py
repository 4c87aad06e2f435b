"""Training: objective, data pipeline, 2-process gloo DDP, exact resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly
from typer.testing import CliRunner

from ppsi_cli.cli import app
from ppsi_cli.config import SolverConfig, StftConfig
from ppsi_cli.dsp import bpd, fpd, stft
from ppsi_cli.train.data import (SegmentSampler, find_audio, load_corpus, speed_ratio,
                                 speed_segment, split_files)
from ppsi_cli.train.objective import (least_squares_loss, model_least_squares_loss, model_loss,
                                      phase_targets, von_mises_loss)

runner = CliRunner()
SR = 16000


def _tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A harmonic tone with a slow vibrato and amplitude modulation: learnable phase structure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 8))
    return (0.2 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


@pytest.fixture
def toy_tree(tmp_path: Path) -> Path:
    """A fake LibriSpeech tree: <speaker>/<chapter>/*.flac, plus one unreadable file."""
    root = tmp_path / "LibriSpeech" / "train-clean-100"
    for s, spk in enumerate(["19", "26", "32"]):
        for c in range(2):
            d = root / spk / f"{100 + c}"
            d.mkdir(parents=True)
            for u in range(2):
                x = _tone(1.2, 110 + 40 * s + 13 * c + 7 * u, seed=s * 10 + c * 3 + u)
                sf.write(d / f"{spk}-{100 + c}-{u:04d}.flac", x, SR)
    (root / "26" / "100" / "26-100-9999.flac").write_bytes(b"not audio at all")
    return root


def _train_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "-o", str(out), "--max-steps", str(steps),
            "--batch-size", "4", "--segment-seconds", "0.25", "--channels", "4", "--blocks", "1",
            "--warmup-steps", "5", "--lr", "0.01", "--log-every", "5", "--val-every", "1000",
            "--eval-every", "0", "--ckpt-every", "1000", *extra]


def _events(out: Path, kind: str) -> list[dict]:
    lines = (out / "train.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def test_loss_is_minus_one_per_valid_bin_when_prediction_equals_target(speech):
    x, _ = speech
    for weighting in ("none", "magnitude", "power"):
        _, b, f, w_b, w_f = phase_targets(x[None, :SR].float(), StftConfig(), weighting)
        out = torch.stack([b, torch.nn.functional.pad(f, (0, 0, 0, 1))], dim=1)
        assert model_loss(out, b, f, w_b, w_f, strided=False).item() == pytest.approx(-1, abs=1e-6)
        prev = torch.nn.functional.pad(out[..., :-1], (1, 0))  # column t holds frame t-1
        out4 = torch.cat([prev, out], dim=1)
        assert model_loss(out4, b, f, w_b, w_f, strided=True).item() == pytest.approx(-1, abs=1e-6)
        # a delayed model's column t holds frame t - 2: right when scored with delay 2 only
        late = torch.nn.functional.pad(out[..., :-2], (2, 0))
        assert model_loss(late, b, f, w_b, w_f, strided=False, delay=2).item() == \
            pytest.approx(-1, abs=1e-6)
        assert model_loss(late, b, f, w_b, w_f, strided=False).item() > -0.5
        # strided and delayed: column t holds frames t - 3 and t - 2
        late4 = torch.cat([torch.nn.functional.pad(out[..., :-3], (3, 0)), late], dim=1)
        assert model_loss(late4, b, f, w_b, w_f, strided=True, delay=2).item() == \
            pytest.approx(-1, abs=1e-6)
        assert model_loss(late4, b, f, w_b, w_f, strided=True).item() > -0.5
        # the FPD share weighs the two terms: BPD right (-1) and FPD off by pi (+1)
        flipped = torch.stack([b, torch.nn.functional.pad(f + np.pi, (0, 0, 0, 1))], dim=1)
        for share in (0.25, 0.5, 0.8):
            assert model_loss(flipped, b, f, w_b, w_f, strided=False, fpd_weight=share).item() \
                == pytest.approx(2 * share - 1, abs=1e-5)
        # a prediction off by pi everywhere scores +1, by pi/2 scores 0
        assert von_mises_loss(b + np.pi, b, w_b).item() == pytest.approx(1, abs=1e-5)
        assert von_mises_loss(b + np.pi / 2, b, w_b).item() == pytest.approx(0, abs=1e-5)


def test_power_weights_are_the_squared_magnitude_weights(speech):
    x, _ = speech
    audio = x[None, :SR].float()
    spec = stft(audio, StftConfig())
    _, _, _, m_b, m_f = phase_targets(audio, StftConfig(), "magnitude")
    _, _, _, p_b, p_f = phase_targets(audio, StftConfig(), "power")
    assert torch.allclose(p_b, m_b ** 2) and torch.allclose(p_f, m_f ** 2)
    # FPD weight of bins k, k+1 in frame t: |X_t[k]| |X_t[k+1]| / max_k |X_t[k]|^2
    mag = spec.abs()[0]
    t = 20
    ref = mag[1:, t] * mag[:-1, t] / mag[:, t].max() ** 2
    assert torch.allclose(p_f[0, :, t], ref, rtol=1e-5, atol=1e-12)


def test_least_squares_loss_scores_the_solved_phase(speech):
    x, _ = speech
    cfg, solver = StftConfig(), SolverConfig()
    spec = stft(x[None, :SR].float(), cfg)
    b, f = bpd(spec, cfg), fpd(spec)
    # true differences + true previous frame: the least squares returns the true phase
    assert least_squares_loss(b, f, spec, cfg, solver).item() == pytest.approx(-1, abs=1e-4)
    out = torch.stack([b, torch.nn.functional.pad(f, (0, 0, 0, 1))], dim=1)
    out4 = torch.cat([torch.nn.functional.pad(out[..., :-1], (1, 0)), out], dim=1)  # t-1, t
    assert model_least_squares_loss(out4, spec, cfg, solver, strided=True).item() == \
        pytest.approx(-1, abs=1e-4)
    # noisy differences score worse, and the gradient reaches both predictions
    torch.manual_seed(0)
    nb = (b + 0.7 * torch.randn_like(b)).requires_grad_()
    nf = (f + 0.7 * torch.randn_like(f)).requires_grad_()
    loss = least_squares_loss(nb, nf, spec, cfg, solver)
    assert -0.95 < loss.item() < -0.2
    loss.backward()
    for g in (nb.grad, nf.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    # zero-valued differences are far worse than noisy ones
    assert least_squares_loss(0 * b, 0 * f, spec, cfg, solver).item() > loss.item()


def test_targets_match_phase_differences_and_mask_silence():
    x = torch.from_numpy(_tone(1.0, 150, 0))[None]
    x[:, 6000:10000] = 0  # digital silence in the middle
    cfg = StftConfig()
    _, b, f, w_b, w_f = phase_targets(x, cfg, "none")
    spec = stft(x, cfg)
    assert torch.equal(b, bpd(spec, cfg)) and torch.equal(f, fpd(spec))
    silent = spec.abs().amax(dim=-2)[0] == 0
    assert silent.any()
    assert (w_f[0][:, silent] == 0).all() and (w_b[0][:, silent] == 0).all()
    assert (w_b[0, :, 0] == 0).all()  # no BPD at frame 0
    after = torch.nonzero(silent[:-1] & ~silent[1:])[0].item() + 1
    assert (w_b[0, :, after] == 0).all()  # nor right after silence


def test_loader_on_librispeech_tree_split_and_skips(toy_tree: Path):
    files = find_audio(toy_tree)
    assert len(files) == 13
    train, val, how = split_files(files, toy_tree, 0.34, seed=0)
    assert "speaker-disjoint" in how
    spk = lambda ps: {p.relative_to(toy_tree).parts[0] for p in ps}  # noqa: E731
    assert spk(train).isdisjoint(spk(val)) and len(spk(val)) == 1
    assert sorted(train + val) == files
    corpus = load_corpus(files, SR)
    assert len(corpus.audio) == 12 and len(corpus.skipped) == 1
    assert "unreadable" in corpus.skipped[0][1] and corpus.skipped[0][0].name == "26-100-9999.flac"
    # a flat folder splits by file
    flat = [Path(f"/x/{i}.wav") for i in range(10)]
    tr, va, how = split_files(flat, Path("/x"), 0.2)
    assert "by file" in how and len(va) == 2 and set(tr).isdisjoint(va)


def test_sampler_shards_without_duplicates_and_is_deterministic():
    audio = [np.arange(n, dtype=np.float32) for n in (4000, 2500, 9000, 3000)]
    ranks = [SegmentSampler(audio, 500, 3, seed=1, rank=r, world=2) for r in range(2)]
    seen = set()
    for step in range(ranks[0].steps_per_epoch):
        for s in ranks:
            for i, start in s.batch_index(step):
                assert (i, start) not in seen
                seen.add((int(i), int(start)))
    again = SegmentSampler(audio, 500, 3, seed=1, rank=1, world=2)
    assert np.array_equal(again.batch(7), ranks[1].batch(7))


def test_two_process_gloo_run_identical_weights_and_loss_decreases(toy_tree: Path, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, _train_args(toy_tree, out, 60, "--procs", "2"))
    assert res.exit_code == 0, res.output
    done = _events(out, "done")[0]
    sums = done["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    losses = [e["loss"] for e in _events(out, "step")]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.05
    assert (out / "weights.pt").is_file() and (out / "config.json").is_file()
    info = runner.invoke(app, ["info", "--weights", str(out / "weights.pt"), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["parameters"] == sum(
        p.numel() for p in __import__("ppsi_cli.weights", fromlist=["x"]).load_weights(
            out / "weights.pt").net.parameters())


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(toy_tree: Path, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert runner.invoke(app, _train_args(toy_tree, full, 16)).exit_code == 0
    r = runner.invoke(app, _train_args(toy_tree, part, 16, "--stop-after", "7"))
    assert r.exit_code == 0, r.output
    assert torch.load(part / "checkpoint.pt", weights_only=True)["step"] == 7
    r = runner.invoke(app, _train_args(toy_tree, part, 16, "--resume",
                                       str(part / "checkpoint.pt")))
    assert r.exit_code == 0, r.output
    a = torch.load(full / "weights.pt", weights_only=True)["state_dict"]
    b = torch.load(part / "weights.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_strided_init_from_online(toy_tree: Path, tmp_path):
    online = tmp_path / "online"
    assert runner.invoke(app, _train_args(toy_tree, online, 3, "--blocks", "2")).exit_code == 0
    strided = tmp_path / "strided"
    r = runner.invoke(app, _train_args(toy_tree, strided, 3, "--blocks", "2", "--strided",
                                       "--init-from", str(online / "weights.pt")))
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(app, ["info", "--weights", str(strided / "weights.pt"),
                                          "--json"]).stdout)
    assert info["variant"] == "strided" and info["latency_samples"] == 1024 + 256
    # a dilated model must start from a dilated one: same shapes, different function
    r = runner.invoke(app, _train_args(toy_tree, tmp_path / "dil", 3, "--blocks", "2",
                                       "--strided", "--dilation-growth", "2", "--init-from",
                                       str(online / "weights.pt")))
    assert r.exit_code != 0 and "dilated" in r.output and "Traceback" not in r.output


def test_delayed_init_from_online_puts_frame_t_at_its_channel(toy_tree: Path, tmp_path):
    """An online model (context 4: frames t..t-3) starts a delayed one (context 5, delay 2:
    frames t+2..t-2) with its channels at frames t..t-2, the look-ahead channels zero."""
    from ppsi_cli.train.loop import init_from_weights
    from ppsi_cli.config import ModelConfig
    from ppsi_cli.model import PhaseDiffNet
    from ppsi_cli.weights import load_weights

    online = tmp_path / "online"
    assert runner.invoke(app, _train_args(toy_tree, online, 3)).exit_code == 0
    src = load_weights(online / "weights.pt").net.stem.weight
    net = PhaseDiffNet(ModelConfig(context=5, delay=2, channels=4, blocks=1))
    init_from_weights(net, str(online / "weights.pt"))
    assert torch.equal(net.stem.weight[:, 2:5], src[:, :3])
    assert not net.stem.weight[:, :2].any()
    # a delayed source starts a longer look-ahead shifted by the difference of the delays
    longer = PhaseDiffNet(ModelConfig(context=7, delay=4, channels=4, blocks=1))
    with torch.no_grad():
        net.stem.weight.normal_()
    delayed = tmp_path / "delayed.pt"
    from ppsi_cli.config import SolverConfig, StftConfig
    from ppsi_cli.weights import save_weights
    save_weights(delayed, net, StftConfig(), SolverConfig())
    init_from_weights(longer, str(delayed))
    assert torch.equal(longer.stem.weight[:, 2:7], net.stem.weight)
    assert not longer.stem.weight[:, :2].any()
    out = tmp_path / "delayed"
    r = runner.invoke(app, _train_args(toy_tree, out, 3, "--context", "5", "--delay", "2",
                                       "--init-from", str(online / "weights.pt")))
    assert r.exit_code == 0, r.output
    info = json.loads(runner.invoke(app, ["info", "--weights", str(out / "weights.pt"),
                                          "--json"]).stdout)
    assert info["variant"] == "offline" and info["latency_samples"] == 1024 + 2 * 256


@pytest.mark.parametrize("case", ["missing", "empty", "gpus", "resume-missing",
                                  "resume-incompatible", "resume-garbage", "fpd-weight",
                                  "ls-loss", "loss-weight", "segment", "out-is-a-file",
                                  "too-short"])
def test_bad_input_one_line_and_nonzero_exit(case, toy_tree: Path, tmp_path):
    out = tmp_path / "run"
    if case == "segment":
        args, needle = _train_args(toy_tree, out, 2), "segment_seconds must hold a window"
        args[args.index("--segment-seconds") + 1] = "0"
    elif case == "out-is-a-file":
        out.write_text("not a folder")
        args, needle = _train_args(toy_tree, out, 2), "a file, not a run folder"
    elif case == "too-short":  # files shorter than a window: the reason and the file, named
        (tmp_path / "short").mkdir()
        sf.write(tmp_path / "short" / "s.wav", _tone(0.05, 200, seed=1), SR)
        args, needle = _train_args(tmp_path / "short", out, 2), "s.wav: too short (800 samples"
    elif case == "missing":
        args, needle = _train_args(tmp_path / "nope", out, 2), "not found"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args, needle = _train_args(tmp_path / "empty", out, 2), "no audio files"
    elif case == "gpus":
        if torch.cuda.device_count() >= 4:
            pytest.skip("this machine has 4 GPUs")
        args, needle = _train_args(toy_tree, out, 2, "--gpus", "4"), "--gpus 4"
    elif case == "resume-missing":
        args, needle = _train_args(toy_tree, out, 2, "--resume", str(tmp_path / "c.pt")), \
            "no checkpoint"
    elif case == "fpd-weight":
        args, needle = _train_args(toy_tree, out, 2, "--fpd-weight", "1.5"), "fpd_weight"
    elif case == "ls-loss":
        args, needle = _train_args(toy_tree, out, 2, "--ls-loss", "2"), "ls_loss"
    elif case == "loss-weight":
        args, needle = _train_args(toy_tree, out, 2, "--loss-weight", "loud"), "loss weighting"
    elif case == "resume-garbage":
        (tmp_path / "c.pt").write_bytes(b"garbage")
        args, needle = _train_args(toy_tree, out, 2, "--resume", str(tmp_path / "c.pt")), \
            "not a readable checkpoint"
    else:
        other = tmp_path / "other"
        assert runner.invoke(app, _train_args(toy_tree, other, 2)).exit_code == 0
        args = _train_args(toy_tree, out, 2, "--resume", str(other / "checkpoint.pt"))
        args[args.index("--channels") + 1] = "8"
        needle = "incompatible checkpoint"
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], r.output


def test_least_squares_loss_trains_from_the_cli(toy_tree: Path, tmp_path):
    out = tmp_path / "ls"
    r = runner.invoke(app, _train_args(toy_tree, out, 10, "--ls-loss", "0.5", "--fpd-weight",
                                       "0.6", "--log-every", "2"))
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ls_loss"] == 0.5 and cfg["fpd_weight"] == 0.6
    losses = [e["loss"] for e in _events(out, "step")]
    assert len(losses) == 5 and all(-1 <= v <= 1 for v in losses)


def test_speed_segment_scales_frequency_and_keeps_identity():
    sr, seg = 16000, 8000
    t = np.arange(3 * sr) / sr
    x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    same = speed_segment(x, 123, seg, 1.0)
    assert np.array_equal(same, x[123:123 + seg])
    for factor in (0.85, 0.9, 1.1, 1.15):
        y = speed_segment(x, 4000, seg, factor)
        assert y.shape == (seg,) and y.dtype == np.float32
        spec = np.abs(np.fft.rfft(y * np.hanning(seg)))
        peak = np.argmax(spec) * sr / seg
        assert abs(peak - 1000.0 * factor) <= 2.0, (factor, peak)
        # no edge transient: the amplitude stays that of the sine throughout
        assert np.max(np.abs(y[:64])) < 1.01 and np.max(np.abs(y[:64])) > 0.9
        # reference: the whole signal resampled at once, cut at the matching output sample
        # (a start that is a multiple of num maps to a whole output sample)
        num, den = speed_ratio(factor)
        y = speed_segment(x, 200 * num, seg, factor)
        ref = resample_poly(x, den, num)
        lo = 200 * den + 32
        assert np.max(np.abs(y[1000:7000] - ref[lo + 1000:lo + 7000])) < 1e-3
    tail = speed_segment(x, len(x) - 1000, seg, 1.1)
    assert np.all(tail[1000:] == 0) and np.max(np.abs(tail[:800])) > 0.9


def test_sampler_speed_factors_are_seeded_and_rejected_out_of_range():
    audio = [np.random.default_rng(0).standard_normal(20000).astype(np.float32)]
    a = SegmentSampler(audio, 1000, 4, seed=3, speed_factors=(0.9, 1.1))
    b = SegmentSampler(audio, 1000, 4, seed=3, speed_factors=(0.9, 1.1))
    plain = SegmentSampler(audio, 1000, 4, seed=3)
    assert np.array_equal(a.batch(5), b.batch(5))
    assert not np.allclose(a.batch(5), plain.batch(5))
    assert np.array_equal(a.batch_index(5), plain.batch_index(5))
    with pytest.raises(ValueError, match="speed factor"):
        SegmentSampler(audio, 1000, 4, speed_factors=(3.0,))
    res = runner.invoke(app, ["train", "--data", "x", "--speed-perturb", "0.9,fast"])
    assert res.exit_code != 0 and "--speed-perturb" in res.output


def test_train_learns_the_stft_it_is_given_and_its_weights_say_so(toy_tree: Path, tmp_path):
    """STFT options: the audio is resampled to --sample-rate, the weights file records the
    STFT, and the network then serves that family (here Hann at 50 % overlap) for any size."""
    from ppsi_cli import Inverter
    from ppsi_cli.config import StftConfig
    from ppsi_cli.weights import load_weights

    out = tmp_path / "half"
    r = runner.invoke(app, _train_args(toy_tree, out, 4, "--sample-rate", "22050", "--n-fft",
                                       "512", "--hop-length", "256", "--center"))
    assert r.exit_code == 0, r.output
    model = load_weights(out / "weights.pt")
    assert model.stft == StftConfig(sample_rate=22050, n_fft=512, win_length=512,
                                    hop_length=256, center=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["stft"]["sample_rate"] == 22050
    other = StftConfig(sample_rate=16000, n_fft=320, win_length=320, hop_length=160)
    mag = torch.rand(other.n_bins, 12)
    assert Inverter("ppsi", weights=str(out / "weights.pt"), stft=other)(mag).shape == (
        13 * 160 - 320,)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(config="a string"), "not a mapping"),
    (lambda c: c.update(model={}), "does not fit this model"),
    (lambda c: c["model"].update({k: v.reshape(-1) for k, v in c["model"].items()
                                  if k.endswith("weight")}), "does not fit this model"),
], ids=["config-str", "empty-state", "bad-shapes"])
def test_a_broken_checkpoint_is_one_line_on_resume(toy_tree: Path, tmp_path, mutate, message):
    part = tmp_path / "part"
    assert runner.invoke(app, _train_args(toy_tree, part, 6, "--stop-after", "3")).exit_code == 0
    ckpt = torch.load(part / "checkpoint.pt", weights_only=True)
    mutate(ckpt)
    torch.save(ckpt, part / "checkpoint.pt")
    r = runner.invoke(app, _train_args(toy_tree, part, 6, "--resume", str(part / "checkpoint.pt")))
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and message in lines[0], r.stderr


def test_mel_training_feeds_nnls_magnitudes_and_declares_its_front_end(toy_tree: Path, tmp_path,
                                                                       speech):
    """``--mel``: the network's input is the log of the NNLS magnitudes of the mel (not of
    |X|), targets stay the true phase differences, and the weights file declares the front
    end, so the inverter takes it as a mel network."""
    from ppsi_cli.config import mel_config, stft_config
    from ppsi_cli.dsp.features import log_magnitude
    from ppsi_cli.dsp.mel import mel_spectrogram, mel_to_magnitude
    from ppsi_cli.weights import load_weights, model_input, model_mel

    mel, st = mel_config("vocos")
    cfg = stft_config(st)
    x = torch.from_numpy(resample_poly(speech[0].numpy(), 3, 2).astype(np.float32))[None]
    plain = phase_targets(x, cfg, "magnitude")
    with_mel = phase_targets(x, cfg, "magnitude", mel)
    spec = stft(x, cfg)
    nnls = mel_to_magnitude(mel_spectrogram(spec.abs(), mel, cfg), mel, cfg)
    torch.testing.assert_close(with_mel[0], log_magnitude(nnls))
    assert (with_mel[0] - plain[0]).abs().max() > 1.0  # the input changed ...
    for a, b in zip(with_mel[1:], plain[1:]):  # ... targets and weights did not
        torch.testing.assert_close(a, b)
    out = tmp_path / "mel"
    r = runner.invoke(app, _train_args(toy_tree, out, 3, "--mel", "vocos+n_mels=40",
                                       "--sample-rate", "16000"))
    assert r.exit_code == 0, r.output
    model = load_weights(out / "weights.pt")
    assert model_input(model) == "mel" and model_mel(model).n_mels == 40
    assert model.stft.sample_rate == 16000 and model.stft.center
    r = runner.invoke(app, ["train", "--data", str(toy_tree), "--mel", "melgan"])
    assert r.exit_code == 1 and "unknown mel preset 'melgan'" in r.output


def test_a_run_folder_is_not_overwritten_without_force(toy_tree: Path, tmp_path):
    """A second ``ppsi train -o RUN`` into a finished run is refused in one line and leaves it
    as it was; ``--force`` starts over, ``--resume`` continues."""
    out = tmp_path / "run"
    assert runner.invoke(app, _train_args(toy_tree, out, 2)).exit_code == 0
    before = (out / "weights.pt").read_bytes()
    r = runner.invoke(app, _train_args(toy_tree, out, 2, "--seed", "3"))
    assert r.exit_code == 1 and "holds a run (weights.pt)" in r.output and "--force" in r.output
    assert (out / "weights.pt").read_bytes() == before
    r = runner.invoke(app, _train_args(toy_tree, out, 2, "--seed", "3", "--force"))
    assert r.exit_code == 0 and (out / "weights.pt").read_bytes() != before
