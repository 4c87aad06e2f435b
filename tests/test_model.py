"""The CNN: size, causality, gain invariance, strided inference, streaming == whole utterance."""

from __future__ import annotations

import pytest
import torch

from ppsi_cli import Inverter
from ppsi_cli.config import ModelConfig, SolverConfig, StftConfig
from ppsi_cli.dsp import stft
from ppsi_cli.model import PhaseDiffNet, count_parameters, predict
from ppsi_cli.weights import LoadedModel, load_weights, save_weights


def _net(strided: bool, dtype=torch.float32, seed: int = 0) -> PhaseDiffNet:
    torch.manual_seed(seed)
    return PhaseDiffNet(ModelConfig(strided=strided)).to(dtype).eval()


@pytest.mark.parametrize("strided,params", [(False, 8146), (True, 8180)])
def test_size_and_cost(strided: bool, params: int) -> None:
    net = _net(strided)
    assert count_parameters(net) == params <= 8500
    # stem 4->16 k5, 6 convs 16->16 k5, head 16->outputs k1, per bin, 513 bins
    outs = 4 if strided else 2
    assert net.multiply_adds_per_frame(513) == 513 * (4 * 16 * 5 + 6 * 16 * 16 * 5 + 16 * outs)


@pytest.mark.parametrize("growth,bins", [(1, 17), (2, 33), (3, 57)])
def test_dilated_blocks_see_exactly_their_receptive_field(growth: int, bins: int) -> None:
    cfg = ModelConfig(dilation_growth=growth)
    assert cfg.receptive_bins == bins
    torch.manual_seed(3)
    net = PhaseDiffNet(cfg).eval()
    assert count_parameters(net) == 8146  # dilation is free in parameters and multiply-adds
    logmag = torch.randn(1, 513, 6)
    base = net(logmag)
    centre, half = 256, bins // 2
    for offset in (half, half + 1, -half, -half - 1):
        # poke frame 2, read frame 3: the centring (newest frame's mean) stays the same
        poked = logmag.clone()
        poked[:, centre + offset, 2] += 5.0
        seen = not torch.allclose(net(poked)[..., centre, 3], base[..., centre, 3],
                                  rtol=0, atol=1e-7)
        assert seen == (abs(offset) <= half), (growth, offset)


@pytest.mark.parametrize("strided", [False, True])
def test_causal_and_gain_invariant(speech, strided: bool) -> None:
    x, _ = speech
    mag = stft(x.float(), StftConfig()).abs()[:, 40:100]
    net = _net(strided)
    b, f = predict(net, mag)
    assert b.shape == mag.shape and f.shape == (mag.shape[0] - 1, mag.shape[1])
    changed = mag.clone()
    changed[:, 30:] = torch.rand_like(changed[:, 30:])
    b2, f2 = predict(net, changed)
    # frames < 30 never see frame 30 (strided: frame 29 sees it only as look-ahead)
    last = 29 if strided else 30
    assert torch.equal(b2[:, :last], b[:, :last]) and torch.equal(f2[:, :last], f[:, :last])
    assert not torch.allclose(b2[:, 30:], b[:, 30:])
    b3, f3 = predict(net, 123.0 * mag)
    assert torch.allclose(b3, b, atol=1e-4) and torch.allclose(f3, f, atol=1e-4)


@pytest.mark.parametrize("start,step", [(0, 1), (1, 2), (0, 2), (2, 3)])
def test_features_match_their_definition(start: int, step: int) -> None:
    torch.manual_seed(1)
    net = _net(False)
    logmag = torch.randn(2, 513, 8)
    feats = net.features(logmag, start, step)  # (B, context, T', F)
    frames = list(range(start, 8, step))
    ref = torch.empty(2, 4, len(frames), 513)
    for i, t in enumerate(frames):
        for c in range(4):
            # channel c is frame t - c; before the start, the floor (minimum) of frame t
            src = logmag[:, :, t - c] if t >= c else logmag[:, :, t].amin(-1, keepdim=True)
            ref[:, c, i] = src - logmag[:, :, t].mean(-1, keepdim=True)
    assert torch.allclose(feats, ref, rtol=0, atol=1e-6)  # the mean may round differently


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_cpu_tiles_change_nothing(strided: bool, batch: int) -> None:
    net = _net(strided)
    torch.manual_seed(2)
    feats = net.features(torch.randn(batch, 513, 150))
    whole = net.forward_features(feats)
    for tile in (1, 64, 100):  # tiles of 1 frame, an uneven last tile, one frame per item
        tiled = net.forward_features(feats, tile)
        assert tiled.shape == whole.shape
        assert torch.allclose(tiled, whole, rtol=1e-5, atol=1e-5)


def test_strided_runs_half_the_passes(speech) -> None:
    x, _ = speech
    mag = stft(x.float(), StftConfig()).abs()[:, :51]
    net = _net(True)
    calls = []
    net.stem.register_forward_hook(lambda m, i, o: calls.append(o.shape[-2]))
    predict(net, mag)
    assert calls == [26]  # frames 1, 3, ..., 51 (one silent look-ahead frame for the odd count)


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("frames", [40, 41])
def test_streaming_equals_whole_utterance(speech, strided: bool, frames: int) -> None:
    x, _ = speech
    cfg = StftConfig()
    mag = stft(x, cfg).abs()[:, 60:60 + frames]
    model = LoadedModel(_net(strided, torch.float64), cfg, SolverConfig())
    inv = Inverter("ppsi-strided" if strided else "ppsi", model=model)
    whole = inv(mag)
    stream = inv.stream()
    parts = [stream.push(mag[:, t:t + 1]) for t in range(frames)] + [stream.flush()]
    streamed = torch.cat(parts)
    assert streamed.shape == whole.shape == ((frames + 1) * 256 - 1024,)
    assert torch.allclose(streamed, whole, atol=1e-7 * whole.abs().max())
    # the online model emits one hop per frame once the first window is full
    if not strided:
        assert [p.numel() for p in parts[3:-1]] == [256] * (frames - 3)


def test_weights_round_trip_and_refusals(tmp_path) -> None:
    net = _net(False)
    path = save_weights(tmp_path / "w.pt", net, StftConfig(), SolverConfig(p=1.5, g=20))
    m = load_weights(path)
    assert m.solver.p == 1.5 and m.stft == StftConfig()
    for k, v in net.state_dict().items():
        assert torch.equal(m.net.state_dict()[k], v)
    torch.save({"format": "ppsi-weights", "version": 99}, tmp_path / "v.pt")
    with pytest.raises(ValueError, match="version 99"):
        load_weights(tmp_path / "v.pt")
    torch.save({"hello": 1}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a ppsi weights file"):
        load_weights(tmp_path / "x.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a loadable"):
        load_weights(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["model_config"].update(channels="16"), "ModelConfig.channels must be a int"),
    (lambda p: p["model_config"].update(context=[4]), "ModelConfig.context must be a int"),
    (lambda p: p["model_config"].update(channels=200000), r"channels must be in \[1, 1024\]"),
    (lambda p: p.update(model_config="big"), "expected a mapping of fields"),
    (lambda p: p["stft_config"].update(hop_length=2.5), "StftConfig.hop_length must be a int"),
    (lambda p: p["solver_config"].update(g="x"), "SolverConfig.g must be a float"),
    (lambda p: p.update(state_dict={}), "state dict does not match"),
    (lambda p: p["state_dict"]["head.bias"].fill_(float("nan")), "NaN or Inf parameters"),
], ids=["str", "list", "huge", "not-a-dict", "stft", "solver", "empty-state", "nan"])
def test_hostile_weights_are_one_line(tmp_path, mutate, message) -> None:
    """A weights file whose fields have the wrong type or range, or whose parameters are not
    finite, is refused on load with one line naming the field: by the API, ``info`` and
    ``invert``."""
    from typer.testing import CliRunner

    from ppsi_cli.cli import app

    path = save_weights(tmp_path / "w.pt", _net(False), StftConfig(), SolverConfig())
    payload = torch.load(path, weights_only=True)
    mutate(payload)
    torch.save(payload, path)
    with pytest.raises(ValueError, match=message):
        load_weights(path)
    for args in (["info", "--weights", str(path)],
                 ["invert", str(tmp_path), "-o", str(tmp_path / "o"), "--weights", str(path)]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 1, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "w.pt" in lines[0], r.stderr


@pytest.mark.parametrize("strided", [False, True], ids=["delayed", "strided-delayed"])
@pytest.mark.parametrize("chunk", [1, 3, 40])
def test_delayed_model_sees_exactly_its_look_ahead_and_streams_alike(speech, chunk,
                                                                     strided) -> None:
    """A delayed model (delay d) predicts frame t from frames t + d down to t + d - context + 1:
    changing frame 30 changes frames >= 30 - d and nothing before; any chunking of the stream,
    frame by frame included, gives the whole-utterance result (the last d frames get silent
    look-ahead frames at the end). Strided, the pass at frame 31 (pairs end at odd frames) is
    the first to see frame 30 and predicts frames 28 and 29."""
    from ppsi_cli.config import ModelConfig
    from ppsi_cli.model import NetworkStream, PhaseDiffNet

    x, _ = speech
    cfg = StftConfig()
    mag = stft(x, cfg).abs()[:, 40:81].float()
    torch.manual_seed(3)
    net = PhaseDiffNet(ModelConfig(context=6 if strided else 5, delay=2, strided=strided)).eval()
    assert net.cfg.variant == "offline" and net.cfg.lookahead == 2 + strided
    b, f = predict(net, mag)
    changed = mag.clone()
    changed[:, 30:] = torch.rand_like(changed[:, 30:])
    b2, _ = predict(net, changed)
    assert torch.equal(b2[:, :28], b[:, :28]) and not torch.allclose(b2[:, 28], b[:, 28])
    stream = NetworkStream(net)
    got = [stream.push(mag[None, :, s:s + chunk]) for s in range(0, 41, chunk)]
    got.append(stream.flush())
    m_s, b_s, f_s = (torch.cat([g[i] for g in got if g is not None], -1)[0] for i in range(3))
    assert torch.equal(m_s, mag)
    torch.testing.assert_close(b_s, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(f_s, f, rtol=0, atol=1e-5)
    model = LoadedModel(net.double(), cfg, SolverConfig())  # float64: no rounding to amplify
    inv = Inverter("ppsi-offline+refine=0", model=model)
    whole = inv(mag.double())
    st = inv.stream()
    streamed = torch.cat([st.push(mag[:, t:t + 1].double()) for t in range(41)] + [st.flush()])
    # float64 rounding of the network's passes, grown by the recursion (docs/experiments.md)
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="method ppsi but the weights hold a offline model"):
        Inverter("ppsi", model=model)


def test_gradient_differences_follow_pghis_formulas() -> None:
    """The band's estimate above the CNN's bins: TPD the trapezoid of PGHI's dphi/dt at t-1 and
    t, FPD that of dphi/dk at k and k+1 from the centred time difference (NumPy reference)."""
    import math

    import numpy as np

    from ppsi_cli.baselines import pghi as P
    from ppsi_cli.dsp.phase import wrap

    cfg = StftConfig()
    s = torch.randn(2, cfg.n_bins, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    b, f = P.gradient_differences(s[..., :-2], s[..., 1:-1], s[..., 2:], cfg)
    a = np.swapaxes(s.numpy(), -1, -2)  # (2, T, K)
    tg = P._tgrad(a, cfg)
    fg = P._fgrad(0.5 * (a[:, 2:] - a[:, :-2]), cfg)
    k = np.arange(cfg.n_bins)
    want_b = 0.5 * (tg[:, :-2] + tg[:, 1:-1]) - 2 * math.pi * k * cfg.hop_length / cfg.n_fft
    want_f = 0.5 * (fg[..., 1:] + fg[..., :-1])
    for got, want in ((b, want_b), (f, want_f)):
        diff = wrap(got - torch.from_numpy(np.swapaxes(want, -1, -2)))
        assert diff.abs().max() < 1e-9


@pytest.mark.parametrize("chunk", [1, 2, 5, 41])
def test_band_streams_alike_and_all_bins_is_the_network_alone(speech, chunk) -> None:
    """ppsi-offline with ``band``: the CNN predicts the low bins, the gradient theorem the rest;
    any chunking of the stream equals the whole call (float64), the low band's differences are
    the network's own, and a band at or above Nyquist is the network alone."""
    from ppsi_cli.config import ModelConfig
    from ppsi_cli.model import PhaseDiffNet

    x, _ = speech
    cfg = StftConfig()
    mag = stft(x, cfg).abs()[:, 40:81].double()
    torch.manual_seed(3)
    net = PhaseDiffNet(ModelConfig(context=5, delay=2)).eval().double()
    model = LoadedModel(net, cfg, SolverConfig())
    whole = Inverter("ppsi-offline+refine=0+band=2000", model=model)
    y = whole(mag)
    st = whole.stream()
    parts = [st.push(mag[:, s:s + chunk]) for s in range(0, 41, chunk)] + [st.flush()]
    torch.testing.assert_close(torch.cat(parts), y, rtol=0, atol=1e-7)
    # the source's phase differences: network below the band, the estimate above it
    src = whole._source()
    seen = {}
    push = src.integ.push
    src.integ.push = lambda m, b, f: seen.update(b=b, f=f) or push(m, b, f)
    src.push(mag[None], last=True)
    b_net, f_net = predict(net, mag)
    # bins whose receptive field (kernel 5: +-2 per layer, stem and 3 blocks) ends inside the band
    inner = 129 - 2 * (1 + len(net.cfg.dilations))
    # the same up to the summation order of the head's matrix product over fewer rows
    torch.testing.assert_close(seen["b"][0, :inner], b_net[:inner], rtol=0, atol=1e-12)
    torch.testing.assert_close(seen["f"][0, :inner], f_net[:inner], rtol=0, atol=1e-12)
    assert not torch.allclose(seen["b"][0, 129:], b_net[129:])
    full = Inverter("ppsi-offline+refine=0+band=0", model=model)(mag)
    assert torch.equal(Inverter("ppsi-offline+refine=0+band=8000", model=model)(mag), full)
    assert not torch.allclose(full, y)


def test_band_needs_a_network_that_looks_ahead() -> None:
    from ppsi_cli.config import ModelConfig
    from ppsi_cli.inverter import _NetworkSource
    from ppsi_cli.model import PhaseDiffNet

    model = LoadedModel(PhaseDiffNet(ModelConfig()), StftConfig(), SolverConfig())
    with pytest.raises(ValueError, match="band needs a network that looks ahead"):
        _NetworkSource(model, StftConfig(), SolverConfig(), torch.device("cpu"), bins=129)
