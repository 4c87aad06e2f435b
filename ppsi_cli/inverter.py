"""The one path from magnitudes to a waveform, for every method of :mod:`ppsi_cli.methods`.

    inv = Inverter("ppsi")                 # shipped online weights, their STFT and solver
    wave = inv(mag)                        # (..., K, T) magnitudes -> (..., L) waveform
    stream = inv.stream()                  # online form: push (..., K, n) chunks, then flush

The input is validated once, here. Online methods (ppsi, ppsi-strided, oracle, RTISI(-LA),
RTPGHI) run as a stream over chunks of frames, so memory stays bounded whatever the length: a
frame source turns magnitude chunks into complex STFT frames (network + least squares after
Fernandez et al., arXiv 2505.24498, and Masuyama et al., IEEE/ACM TASLP 2023; or a classical
stream) and :class:`~ppsi_cli.dsp.stft.OverlapAdd` turns those into samples. Offline methods
(Griffin-Lim, PGHI, ``refine``) take the whole utterance. A complex input is a copy synthesis:
its magnitudes are used, and ``oracle`` (which needs it) also uses its true phase differences.
"""

from __future__ import annotations

import operator

import numpy as np
import torch

from .config import MelConfig, SolverConfig, StftConfig, mel_config, stft_config
from .dsp.features import floor_frame, log_magnitude
from .dsp.mel import check_mel, mel_filters, mel_to_magnitude
from .dsp.phase import bpd, fpd
from .dsp.stft import OverlapAdd, check_spectrogram, default_length, istft
from .integrate import PhaseIntegrator
from .methods import PEERS, Method, parse_method
from .model import NetworkStream
from .weights import (LoadedModel, family, load_model, load_weights, measured_window_ms,
                      model_family, model_input, model_variant)

#: Frames x items per chunk: bounds the working memory of a stream (1024 frames of 513 bins are
#: ~20 MB of least-squares systems); the result does not depend on it.
CHUNK_ROWS = {"cpu": 1024, "cuda": 65536}


#: :class:`~ppsi_cli.dsp.stft.OverlapAdd`'s ``edge_floor`` for estimated phases
EDGE_FLOOR = 0.25


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA if present) | ``cpu`` | ``cuda[:N]``; CUDA without CUDA is an error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name}: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


def band_bins(band_hz: float, cfg: StftConfig) -> int | None:
    """Bins [0, n) up to ``band_hz`` (the CNN's band), or None for all bins (0 or above them)."""
    if not band_hz:
        return None
    n = int(band_hz * cfg.n_fft / cfg.sample_rate) + 1
    return None if n >= cfg.n_bins else max(2, n)


def check_length(length: int | None) -> int | None:
    """``length`` as an int (None stays None), or ValueError unless it is an integer >= 0."""
    if length is None:
        return None
    try:
        n = operator.index(length)  # int, NumPy and torch integers; not floats
    except TypeError:
        n = -1
    if n < 0 or isinstance(length, bool):
        raise ValueError(f"length must be a number of samples >= 0 (or None), got {length!r}")
    return n


def fit_length(wave: torch.Tensor, length: int | None) -> torch.Tensor:
    """Cut ``wave`` (..., L) to ``length`` samples, or pad it with zeros to them."""
    if length is None or length == wave.shape[-1]:
        return wave
    if length < wave.shape[-1]:
        return wave[..., :length]
    return torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))


class _NetworkSource:
    """ppsi: CNN phase differences, integrated by the least squares.

    ``bins``: the CNN predicts the lowest ``bins`` bins only; above, the phase differences come
    from the log-magnitudes by the gradient theorem (:func:`~ppsi_cli.baselines.pghi.
    gradient_differences`, PGHI's estimate), which needs each frame's successor: a network
    with look-ahead provides it. On 0-2 kHz the CNN costs a quarter; the quality lost depends on
    the voice (docs/experiments.md, 2026-12-02: 0.06 on Allison and on the asterisk validation
    voices, none on the Vorbis-coded ones).
    """

    def __init__(self, model: LoadedModel, cfg: StftConfig, solver: SolverConfig,
                 device: torch.device, bins: int | None = None):
        if bins is not None and model.net.cfg.delay < 1:
            raise ValueError("band needs a network that looks ahead (ppsi-offline's): the "
                             "estimate above the band uses each frame's successor")
        self.cfg, self.bins = cfg, bins
        self.net = NetworkStream(model.net, bins)
        self.integ = PhaseIntegrator(cfg, solver, device)
        # band: log-magnitudes of the last frame returned (the first: itself) and of the frames
        # pushed but not returned yet, (B, K, m)
        self._logmag: torch.Tensor | None = None

    def _frames(self, got, last: bool):
        if got is None or got[0].shape[-1] == 0:
            return None
        mag, b, f = got
        if self.bins is not None:
            n, lm = mag.shape[-1], self._logmag
            if last:  # after the last frame: itself (the time difference becomes one-sided)
                lm = torch.cat([lm, lm[..., -1:]], dim=-1)
            from .baselines.pghi import gradient_differences

            gb, gf = gradient_differences(lm[..., :n], lm[..., 1:n + 1], lm[..., 2:n + 2],
                                          self.cfg)
            b = torch.cat([b, gb[..., self.bins:, :].to(b.dtype)], dim=-2)
            f = torch.cat([f, gf[..., self.bins - 1:, :].to(f.dtype)], dim=-2)
            self._logmag = self._logmag[..., n:]
        return self.integ.push(mag, b.to(mag.dtype), f.to(mag.dtype))

    def push(self, mag: torch.Tensor, last: bool = False):
        if self.bins is not None and mag.shape[-1]:
            lm = log_magnitude(mag)
            first = lm[..., :1] if self._logmag is None else self._logmag
            self._logmag = torch.cat([first, lm], dim=-1)
        return self._frames(self.net.push(mag, last), last)

    def flush(self):
        return self._frames(self.net.flush(), True)


class _OracleSource:
    """The ceiling: the least squares from the true phase differences of a complex STFT."""

    def __init__(self, cfg: StftConfig, solver: SolverConfig, device: torch.device):
        self.cfg = cfg
        self.integ = PhaseIntegrator(cfg, solver, device)
        self._last: torch.Tensor | None = None  # previous complex frame (B, K, 1)

    def push(self, spec: torch.Tensor, last: bool = False):
        b = bpd(spec if self._last is None else torch.cat([self._last, spec], -1), self.cfg)
        b = b[..., b.shape[-1] - spec.shape[-1]:]
        self._last = spec[..., -1:]
        return self.integ.push(spec.abs(), b, fpd(spec))

    def flush(self):
        return None


class _FrameSource:
    """A classical online stream (RTISI-LA, RTPGHI), fed frame by frame (or a chunk of frames at
    once where the stream takes them: ``push_frames``, the same result)."""

    def __init__(self, stream):
        self.stream = stream

    def push(self, mag: torch.Tensor, last: bool = False):
        if hasattr(self.stream, "push_frames"):
            return self.stream.push_frames(mag) if mag.shape[-1] else None
        frames = [self.stream.push(mag[..., i]) for i in range(mag.shape[-1])]
        frames = [f for f in frames if f.shape[-1]]
        return torch.cat(frames, dim=-1) if frames else None

    def flush(self):
        if not hasattr(self.stream, "flush"):
            return None
        frames = self.stream.flush()
        return frames if frames.shape[-1] else None


class Stream:
    """Online inversion: ``push(x (..., K, n))`` returns the samples that became final,
    ``flush()`` the rest once the input has ended. Any chunking (n = 1: frame by frame) computes
    what :class:`Inverter` computes on the whole input (its default length, ``(T + 1) *
    hop_length - win_length`` samples), to rounding: in float32 the network's rounding depends on
    the frames a pass holds and the least squares' recursion carries it forward, so long streams
    drift from the whole call sample by sample at the same quality (README, "Python API")."""

    def __init__(self, inverter: "Inverter"):
        self.inverter = inverter
        self.source = inverter._source()
        self.ola = OverlapAdd(inverter.stft, inverter.edge_floor)
        self._lead: tuple[int, ...] | None = None
        self._done = False
        self._frames = 0  # frames pushed
        self._emitted = 0  # samples returned
        self._numpy = False  # the last chunk pushed was a NumPy array: so are the outputs

    def push(self, x: "torch.Tensor | np.ndarray") -> "torch.Tensor | np.ndarray":
        """The samples the chunk ``x`` (..., K, n) made final (NumPy for NumPy chunks)."""
        self._numpy = isinstance(x, np.ndarray)
        return self._out(self._push(self.inverter._checked(x, whole=False)))

    def _out(self, y: torch.Tensor) -> "torch.Tensor | np.ndarray":
        return y.cpu().numpy() if self._numpy else y

    def _push(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        if self._done:
            raise RuntimeError("stream was flushed; start a new one")
        lead = tuple(x.shape[:-2])
        if self._lead is None:
            self._lead = lead
        elif lead != self._lead:
            raise ValueError(f"chunk has leading shape {lead}; the stream started with "
                             f"{self._lead}")
        if x.shape[-1] == 0 and not last:  # an empty chunk: nothing new
            return self._samples(None)
        self._frames += x.shape[-1]
        x = self.inverter._linear(x)
        return self._samples(self.source.push(x.reshape(-1, *x.shape[-2:]), last))

    def flush(self, length: int | None = None) -> torch.Tensor:
        """The last samples: up to ``length`` in all (default: the STFT's default length of the
        frames pushed; more comes from the overlap the last frames leave, as ``torch.istft``
        gives with ``length``, then zeros). Samples the pushes already returned stay returned: a
        ``length`` below their count gives none here (cut the concatenation)."""
        if self._done:
            raise RuntimeError("stream was already flushed")
        check_length(length)
        self._done = True
        last = self._samples(self.source.flush())
        if self._lead is None:
            return self._out(last)
        tail = self.ola.flush().reshape(*self._lead, -1)
        total = default_length(self._frames, self.inverter.stft) if length is None else length
        need = total - self._emitted
        tail = fit_length(tail, max(0, need))
        self._emitted += tail.shape[-1]
        return self._out(torch.cat([last, tail.to(last.dtype)], dim=-1))

    def _samples(self, frames: torch.Tensor | None) -> torch.Tensor:
        lead = self._lead or ()
        if frames is None:
            return torch.zeros(*lead, 0, device=self.inverter.device)
        out = self.ola.push(frames).reshape(*lead, -1)
        self._emitted += out.shape[-1]
        return out


class Inverter:
    """Magnitudes (..., K, T) -> waveforms (..., L) with one method, weights, STFT and device.

    ``method`` is a spelling of :func:`~ppsi_cli.methods.parse_method` (or a Method) and
    ``options`` override its options. Network methods use ``model`` (a loaded one), else
    ``weights`` (a file), else the shipped weights of their variant; ``stft`` and ``solver``
    default to the model's (without a model: :class:`StftConfig` and :class:`SolverConfig`).

    ``mel`` (a preset name of :data:`~ppsi_cli.config.MEL_PRESETS`, ``NAME+KEY=VALUE``, a
    :class:`MelConfig` or a mapping): the input is a mel spectrogram (..., n_mels, T) of that
    front end; it is turned into linear magnitudes by NNLS (:mod:`ppsi_cli.dsp.mel`), chunk by
    chunk, and the shipped mel network serves the ppsi methods. A preset's STFT is the default.
    """

    def __init__(self, method: str | Method = "ppsi", *, weights: str | None = None,
                 model: LoadedModel | None = None, stft: "StftConfig | dict | None" = None,
                 solver: SolverConfig | None = None, device: str | torch.device = "cpu",
                 mel: "str | MelConfig | dict | None" = None, **options):
        self.method = parse_method(method, **options)
        self.device = resolve_device(device)
        if stft is not None and not isinstance(stft, StftConfig):  # a mapping of settings
            stft = stft_config(dict(stft))
        if self.method.name in PEERS:
            from .peers import require

            require(self.method.name)
        self.mel: MelConfig | None = None
        if mel is not None:
            self.mel, mel_stft = mel_config(mel)
            if stft is None and mel_stft:
                stft = stft_config(mel_stft)
            if self.method.name == "oracle":
                raise ValueError("method oracle needs the complex STFT; a mel spectrogram has "
                                 "no phase")
        given = "mel" if self.mel is not None else "linear"
        chosen = model is not None or weights is not None  # the user picked the network
        if model is None and (weights is not None or self.method.uses_network):
            # without a choice: the shipped network of this variant for the STFT's family
            model = (load_model(weights, self.method.variant, self.device, stft, given)
                     if self.method.uses_network else load_weights(weights, self.device))
        if model is not None:
            model.net.to(self.device)
        self.model = model
        if self.method.uses_network and model_variant(model) != self.method.variant:
            raise ValueError(f"method {self.method.name} but the weights hold a "
                             f"{model_variant(model)} model")
        self.stft = stft or (model.stft if model else StftConfig())
        if self.mel is not None:
            mel_filters(self.mel, self.stft)  # settings that do not fit the STFT: refused here
        self.notices: list[str] = []  # what a user should know of this inverter's results
        if self.method.uses_network and model_input(model) != given:
            self.notices.append(f"the network was trained on {model_input(model)} input, this "
                                f"input is {given}: expect lower quality")
        if self.method.uses_network:
            assert chosen or family(self.stft) == model_family(model), "registry mismatch"
            span = measured_window_ms(model)
            ms = 1000 * self.stft.win_length / self.stft.sample_rate
            if span and not span[0] - 0.5 <= ms <= span[1] + 0.5:
                self.notices.append(
                    f"a {ms:.0f} ms window is outside the {span[0]:g}-{span[1]:g} ms the network "
                    "was measured on; griffin-lim or pghi may do better here")
        self.solver = solver or (model.solver if model else SolverConfig())
        #: estimated phases are synthesised with a bounded gain where few windows cover a
        #: sample (:class:`~ppsi_cli.dsp.stft.OverlapAdd`); the oracle's true phase exactly
        self.edge_floor = 0.0 if self.method.name == "oracle" else EDGE_FLOOR

    # --- the edge: validation, once ------------------------------------------------------
    def _checked(self, x: "torch.Tensor | np.ndarray", whole: bool = True) -> torch.Tensor:
        """``x`` (a tensor or a NumPy array) validated and on the device (complex -> magnitudes
        unless oracle; float16 / bfloat16 / integers computed in float32, complex32 in
        complex64); ``whole``: a whole input, which needs enough frames to make audio (a
        stream's chunk need not)."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch tensor or a NumPy array, got {type(x).__name__}")
        if x.dtype == torch.complex32:
            x = x.to(torch.complex64)
        elif not x.is_complex() and x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float32)
        if self.mel is not None:
            check_mel(x, self.mel, self.stft, empty_ok=not whole)
        else:
            check_spectrogram(x, self.stft, complex_ok=True, empty_ok=not whole)
        if whole and default_length(x.shape[-1], self.stft) < 1:
            need = next(t for t in range(1, x.shape[-1] + self.stft.n_fft + 2)
                        if default_length(t, self.stft) >= 1)
            framing = (f"centred frames, padding {self.stft.pad}" if self.stft.center
                       else "start-referenced frames")
            raise ValueError(f"{x.shape[-1]} frame(s); at least {need} are needed to make audio "
                             f"(win_length {self.stft.win_length}, hop {self.stft.hop_length}, "
                             f"{framing})")
        if self.method.name == "oracle":
            if not x.is_complex():
                raise ValueError("method oracle needs the complex STFT (audio input): it uses "
                                 "the true phase")
        elif x.is_complex():
            x = x.abs()
        # one memory layout, whatever the caller's: float rounding then never depends on it
        return x.to(self.device).contiguous()

    # --- whole utterances ----------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, x: "torch.Tensor | np.ndarray", length: int | None = None
                 ) -> "torch.Tensor | np.ndarray":
        """Waveform (..., L) of ``x`` (..., K, T); L = ``length`` or the default
        ``(T + 1) * hop_length - win_length``. A NumPy input gives a NumPy output."""
        y = self._invert(self._checked(x), check_length(length))
        return y.cpu().numpy() if isinstance(x, np.ndarray) else y

    def _linear(self, x: torch.Tensor) -> torch.Tensor:
        """Linear magnitudes of checked input ``x``: itself, or the NNLS magnitudes of a mel."""
        return x if self.mel is None else mel_to_magnitude(x, self.mel, self.stft, check=False)

    def _invert(self, x: torch.Tensor, length: int | None) -> torch.Tensor:
        if self.method.online:
            return self._streamed(x, length)
        if self.method.name in PEERS:  # the other library takes the input as it is (a mel too)
            from . import peers

            x = x.abs() if x.is_complex() else x
            return peers.invert(self.method.name, x, self.stft, self.mel, length,
                                self.method.opts).to(self.device)
        return istft(self._offline(self._linear(x)), self.stft, length, self.edge_floor)

    def _streamed(self, x: torch.Tensor, length: int | None = None) -> torch.Tensor:
        stream = Stream(self)
        n_items = max(1, x[..., 0, 0].numel())
        chunk = max(2, CHUNK_ROWS.get(self.device.type, CHUNK_ROWS["cpu"]) // n_items // 2 * 2)
        n_t = x.shape[-1]
        # written in place: the output is the only allocation that grows with the length
        total = default_length(n_t, self.stft) if length is None else length
        size = max(total, default_length(n_t, self.stft))  # a shorter length is cut at the end
        out = torch.empty(*x.shape[:-2], size, device=self.device, dtype=x.real.dtype)
        done = 0
        for s in range(0, n_t, chunk):
            part = stream._push(x[..., s:s + chunk], last=s + chunk >= n_t)
            out[..., done:done + part.shape[-1]] = part
            done += part.shape[-1]
        part = stream.flush(total)
        out[..., done:done + part.shape[-1]] = part
        assert done + part.shape[-1] >= total, (done, part.shape, total)
        return out[..., :total]

    def _offline(self, mag: torch.Tensor) -> torch.Tensor:
        """Complex STFT (..., K, T) of an offline method."""
        from .baselines import griffin_lim_stft, pghi_stft

        m, opts = self.method, self.method.opts
        if m.name == "griffin-lim":  # the random initial phase is seeded per call
            gen = torch.Generator(self.device).manual_seed(opts["seed"])
            return griffin_lim_stft(mag, self.stft, n_iter=opts["iters"],
                                    momentum=opts["momentum"], generator=gen)
        if m.name == "pghi":
            return pghi_stft(mag, self.stft, tol=opts["tol"])
        assert m.uses_network and opts["refine"] > 0, m
        stream, lead = Stream(self), mag.shape[:-2]
        flat = mag.reshape(-1, *mag.shape[-2:])
        rec = stream.source.push(flat, last=True).reshape(mag.shape)
        return griffin_lim_stft(mag, self.stft, n_iter=opts["refine"], momentum=opts["momentum"],
                                init_phase=rec).reshape(*lead, *mag.shape[-2:])

    def many(self, items: list[torch.Tensor], lengths: list[int | None] | None = None
             ) -> list[torch.Tensor]:
        """Waveforms of inputs (K, T_i) of different lengths. With start-referenced frames the
        ppsi methods and the oracle run them as one batch, padded after their end with the
        silent frame a strided model looks ahead to (they are causal, and no sample of an item's
        output lies under a frame after its end, so each equals its own call). Otherwise they
        run one by one: centred frames reach ``n_fft // 2`` past the last sample, where the
        padding would add to an item's end; the classical methods look ahead or are offline."""
        lengths = [check_length(n) for n in lengths] if lengths else [None] * len(items)
        numpy_in = [isinstance(x, np.ndarray) for x in items]
        waves = self._many([self._checked(x) for x in items], lengths)
        return [w.cpu().numpy() if n else w for w, n in zip(waves, numpy_in)]

    def _many(self, items: list[torch.Tensor], lengths: list[int | None]
              ) -> list[torch.Tensor]:
        batched = (self.method.name in ("ppsi", "ppsi-strided", "oracle")
                   and not self.stft.center and self.mel is None and len(items) > 1
                   and all(n is None or n <= default_length(x.shape[-1], self.stft)
                           for x, n in zip(items, lengths)))
        if not batched:
            return [self._invert(x, n) for x, n in zip(items, lengths)]
        t_max = max(x.shape[-1] for x in items)
        padded = []
        for x in items:
            extra = t_max - x.shape[-1]
            pad = (torch.zeros_like(x[..., -1]) if x.is_complex() else floor_frame(x[..., -1]))
            padded.append(torch.cat([x, pad.unsqueeze(-1).expand(*x.shape[:-1], extra)], -1))
        waves = self._invert(torch.stack(padded), None)
        return [fit_length(w[:default_length(x.shape[-1], self.stft)], n)
                for w, x, n in zip(waves, items, lengths)]

    # --- online --------------------------------------------------------------------------
    def stream(self) -> Stream:
        """The online form (online methods only)."""
        if not self.method.online:
            raise ValueError(f"method {self.method.label} is offline: it has no stream")
        return Stream(self)

    def _source(self):
        m, opts = self.method, self.method.opts
        if m.uses_network:
            return _NetworkSource(self.model, self.stft, self.solver, self.device,
                                  band_bins(opts.get("band", 0), self.stft))
        if m.name == "oracle":
            return _OracleSource(self.stft, self.solver, self.device)
        from .baselines import RtisiLaStream, RtpghiStream

        if m.name == "rtpghi":
            return _FrameSource(RtpghiStream(self.stft, opts["tol"]))
        lookahead = 0 if m.name == "rtisi" else opts["lookahead"]
        return _FrameSource(RtisiLaStream(self.stft, lookahead, opts["iters"], opts["momentum"]))
