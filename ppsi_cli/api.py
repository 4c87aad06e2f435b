"""Python API: ``load_model``, ``invert`` (whole utterances) and ``StreamingInverter`` (online).

    import ppsi_cli
    model = ppsi_cli.load_model()                  # shipped weights, online variant
    wave = ppsi_cli.invert(magnitude, model=model)  # magnitude: (..., 513, T) linear |STFT|
"""

from __future__ import annotations

import torch

from .config import SolverConfig, StftConfig
from .dsp.features import log_magnitude
from .dsp.phase import bpd, fpd
from .dsp.stft import OverlapAdd, istft, stft
from .integrate import PhaseIntegrator, check_magnitude, integrate
from .model import PhaseDiffNet, predict
from .weights import LoadedModel, load_weights, shipped_weights


def load_model(weights: str | None = None, variant: str = "online",
               device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``weights`` (a file) or the shipped weights of ``variant`` (online | strided)."""
    return load_weights(weights or shipped_weights(variant), device)


def ppsi_spectrogram(net: PhaseDiffNet, mag: torch.Tensor, stft_cfg: StftConfig,
                     solver: SolverConfig | None = None) -> torch.Tensor:
    """Complex STFT (..., K, T) from magnitudes with CNN-predicted phase differences."""
    check_magnitude(mag, stft_cfg)
    b, f = predict(net, mag)
    return integrate(mag, b.to(mag.dtype), f.to(mag.dtype), stft_cfg, solver)


def oracle_spectrogram(spec: torch.Tensor, stft_cfg: StftConfig,
                       solver: SolverConfig | None = None) -> torch.Tensor:
    """Least-squares reconstruction from the true phase differences of ``spec`` (the ceiling)."""
    return integrate(spec.abs(), bpd(spec, stft_cfg), fpd(spec), stft_cfg, solver)


def invert(magnitude: torch.Tensor, model: LoadedModel | None = None, method: str = "ppsi",
           length: int | None = None, solver: SolverConfig | None = None,
           stft_cfg: StftConfig | None = None, **options) -> torch.Tensor:
    """Waveform (..., L) from linear magnitudes (..., K, T).

    ``method``: ``ppsi`` (the model's CNN + least squares; ``model`` defaults to the shipped online
    weights), or a classical baseline name from :data:`ppsi_cli.baselines.BASELINES` with its
    ``options``. ``length`` defaults to ``(T + 1) * hop - win_length`` samples.
    """
    if method == "ppsi":
        model = model or load_model()
        cfg = stft_cfg or model.stft
        spec = ppsi_spectrogram(model.net, magnitude, cfg, solver or model.solver)
        return istft(spec, cfg, length)
    from .baselines import BASELINES

    if method not in BASELINES:
        raise ValueError(f"unknown method {method!r}; choose ppsi or one of {sorted(BASELINES)}")
    cfg = stft_cfg or (model.stft if model else StftConfig())
    check_magnitude(magnitude, cfg)
    return BASELINES[method](magnitude, cfg, length=length, **options)


def copy_synthesis(audio: torch.Tensor, stft_cfg: StftConfig, method: str = "oracle",
                   model: LoadedModel | None = None, solver: SolverConfig | None = None,
                   **options) -> torch.Tensor:
    """Analyse ``audio`` (..., L) and resynthesise it from its magnitudes (same length)."""
    spec = stft(audio, stft_cfg)
    if method == "oracle":
        return istft(oracle_spectrogram(spec, stft_cfg, solver), stft_cfg, audio.shape[-1])
    return invert(spec.abs(), model=model, method=method, length=audio.shape[-1], solver=solver,
                  stft_cfg=stft_cfg, **options)


class StreamingInverter:
    """Online inversion: ``push`` one magnitude frame (..., K), get the samples made final.

    Holds the CNN's context of past log-magnitude frames, the least-squares recursion and the
    overlap-add buffer. Latency: one frame (win_length samples) for the online model, one hop more
    for the strided model. ``flush()`` ends the stream. The concatenated output equals
    :func:`invert` on the whole utterance (to float rounding).
    """

    def __init__(self, model: LoadedModel | None = None, solver: SolverConfig | None = None):
        self.model = model or load_model()
        self.net = self.model.net
        self.stft = self.model.stft
        self.integrator = PhaseIntegrator(self.stft, solver or self.model.solver)
        self.ola = OverlapAdd(self.stft)
        self._logmags: list[torch.Tensor] = []  # newest last, at most `context` frames
        self._pending: torch.Tensor | None = None  # strided: frame waiting for its partner

    def _features(self) -> torch.Tensor:
        ctx = self.net.cfg.context
        frames = self._logmags[-ctx:]
        # before the first frames: the floor of the newest frame, as PhaseDiffNet.features does
        low = frames[-1].amin(dim=-1, keepdim=True)
        frames = [low.expand_as(frames[-1])] * (ctx - len(frames)) + frames
        feats = torch.stack(frames[::-1], dim=-2)  # (..., ctx, K): channel c = frame t-c
        feats = feats - frames[-1].mean(dim=-1, keepdim=True).unsqueeze(-2)
        return feats.unsqueeze(-2)  # (..., ctx, 1, K)

    @torch.no_grad()
    def _net(self) -> torch.Tensor:
        feats = self._features()
        lead = feats.shape[:-3]
        out = self.net.forward_features(feats.reshape(-1, *feats.shape[-3:]))
        return out[..., 0, :].reshape(*lead, out.shape[-3], out.shape[-1])  # (..., outputs, K)

    def _emit(self, mag: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        frame = self.integrator.push(mag, b.to(mag.dtype), f[..., :-1].to(mag.dtype))
        return self.ola.push(frame)

    def push(self, mag: torch.Tensor) -> torch.Tensor:
        check_magnitude(mag.unsqueeze(-1), self.stft)
        dtype = next(self.net.parameters()).dtype
        self._logmags.append(log_magnitude(mag.unsqueeze(-1).to(dtype))[..., 0])
        self._logmags = self._logmags[-self.net.cfg.context:]
        if not self.net.cfg.strided:
            out = self._net()
            return self._emit(mag, out[..., 0, :], out[..., 1, :])
        if self._pending is None:
            self._pending = mag
            return mag.new_zeros(*mag.shape[:-1], 0)
        out = self._net()
        first = self._emit(self._pending, out[..., 0, :], out[..., 1, :])
        second = self._emit(mag, out[..., 2, :], out[..., 3, :])
        self._pending = None
        return torch.cat([first, second], dim=-1)

    def flush(self) -> torch.Tensor:
        """Finish a strided stream with an odd frame count (one silent look-ahead frame)."""
        if self._pending is None:
            return torch.zeros(0)
        pending, self._pending = self._pending, None
        last = self._logmags[-1]
        self._logmags.append(last.amin(dim=-1, keepdim=True).expand_as(last))
        out = self._net()
        return self._emit(pending, out[..., 0, :], out[..., 1, :])
