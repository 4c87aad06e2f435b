"""Typed configurations: STFT, least-squares solver, CNN model and training."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def _from_dict(cls, data: dict[str, Any] | None):
    """Build a dataclass from a dict (a file's), refusing unknown keys and values whose type is
    not the field's (judged by its default: bool, int, float, str; None where the default is
    None) with a message naming the field."""
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping of fields, got {type(data).__name__}")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(fields)}")
    for name, value in data.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is None or isinstance(default, (tuple, list)) or not isinstance(
                default, (bool, int, float, str)):
            continue  # nested configs and optional fields check themselves
        ok = (isinstance(value, bool) if isinstance(default, bool) else
              isinstance(value, int) and not isinstance(value, bool)
              if isinstance(default, int) else
              isinstance(value, (int, float)) and not isinstance(value, bool)
              if isinstance(default, float) else isinstance(value, str))
        if not ok:
            raise ValueError(f"{cls.__name__}.{name} must be a {type(default).__name__}, got "
                             f"{value!r}")
    return cls(**data)


WINDOWS = ("hann", "sqrt-hann", "hamming", "blackman")
PAD_MODES = ("reflect", "constant")


#: what ``center=False`` is here, for a user who means torch's (said where it is given explicitly)
CENTER_FALSE_NOTE = ("center=False is ppsi's start-referenced framing (frames begin win_length - "
                     "hop samples before the signal); a torch / librosa center=False "
                     "spectrogram is center=True, pad_length=0")


@dataclass(frozen=True)
class StftConfig:
    """STFT analysis/synthesis settings, in torch's names (``../shared/CONVENTIONS.md``).

    A window shorter than ``n_fft`` sits centred in the FFT frame, as torch and librosa place it.
    Two framings:

    - ``center=False`` (ppsi's own, start-referenced): ``win_length - hop_length`` zeros before the
      signal, frame t covers samples ``[tH - (W - H), tH + H)``, so every sample lies under a full
      set of windows; T frames give ``(T + 1) H - W`` samples.
    - ``center=True`` (the torch / librosa default): ``n_fft // 2`` samples of padding on each side
      (``pad_mode`` reflect as torch, constant zeros as librosa), frame t centred on sample tH;
      T frames give ``H (T - 1)`` samples (one more for odd ``n_fft``), as ``torch.istft``
      returns without ``length``. ``pad_length`` sets another padding: HiFi-GAN's mel front end
      pads ``(n_fft - hop) / 2`` and frames the result with ``center=False``, which is
      ``center=True, pad_length=(n_fft - hop) // 2`` here (T frames give ``H T`` samples).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    window: str = "hann"
    center: bool = False
    pad_mode: str = "reflect"
    pad_length: int | None = None

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 0 < self.hop_length <= self.win_length <= self.n_fft:
            raise ValueError(
                "need 0 < hop_length <= win_length <= n_fft, got "
                f"hop_length={self.hop_length}, win_length={self.win_length}, n_fft={self.n_fft}"
            )
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {self.window!r}")
        if not isinstance(self.center, bool):
            raise ValueError(f"center must be True or False, got {self.center!r}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be reflect or constant, got {self.pad_mode!r}")
        if self.pad_length is not None:
            if isinstance(self.pad_length, bool) or not isinstance(self.pad_length, int):
                raise ValueError(f"pad_length must be an integer, got {self.pad_length!r}")
            if not self.center:
                raise ValueError("pad_length is the padding of centred frames; it needs "
                                 "center=True")
            if not 0 <= self.pad_length < self.n_fft:
                raise ValueError(f"pad_length must be in [0, n_fft), got {self.pad_length}")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def offset(self) -> int:
        """Where the window starts inside the FFT frame (centred, as torch and librosa)."""
        return (self.n_fft - self.win_length) // 2

    @property
    def centre(self) -> float:
        """Position of the window's centre inside the FFT frame, in samples (phase conventions
        of the phase-gradient methods)."""
        return self.offset + self.win_length / 2

    @property
    def pad(self) -> int:
        """Samples of the padded signal before the first original sample."""
        if self.center:
            return self.n_fft // 2 if self.pad_length is None else self.pad_length
        return self.win_length - self.hop_length + self.offset

    @property
    def zero_lead(self) -> int:
        """Leading padded samples known to be zero (all of them but with reflect padding)."""
        return 0 if self.center and self.pad_mode == "reflect" else self.pad

    @property
    def overlap(self) -> float:
        """Share of a window that the next one overlaps, 1 - hop / win_length."""
        return 1.0 - self.hop_length / self.win_length

    @property
    def hop_ms(self) -> float:
        return 1000.0 * self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "StftConfig":
        return _from_dict(cls, data)


#: StftConfig's fields, in torch's names: the STFT settings a user can give
STFT_KEYS = ("sample_rate", "n_fft", "win_length", "hop_length", "window", "center", "pad_mode",
             "pad_length")


def _setting(key: str, value: Any) -> Any:
    """One STFT setting from an option, a file or a keyword: ints may come as strings ("16000")
    or integral floats, ``center`` as true/false/1/0; anything else is refused by name."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # NumPy / torch scalars
    if key in ("sample_rate", "n_fft", "win_length", "hop_length", "pad_length"):
        if isinstance(value, bool):
            raise ValueError(f"{key}={value!r} is not an integer")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if not isinstance(value, int):
            raise ValueError(f"{key}={value!r} is not an integer")
        return value
    if key == "center":
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in ("true", "false", "1", "0"):
            return text in ("true", "1")
        raise ValueError(f"center={value!r} is not true or false")
    return str(value)


def stft_config(given: dict[str, Any], base: "StftConfig | None" = None) -> "StftConfig":
    """``base`` (default: ``StftConfig()``) with the settings in ``given`` (None: not given).

    As in torch, a given ``n_fft`` brings ``win_length = n_fft`` and ``hop_length =
    win_length // 4`` unless those are given too. Raises ValueError naming a bad setting.
    """
    base = base or StftConfig()
    unknown = sorted(set(given) - set(STFT_KEYS))
    if unknown:
        raise ValueError(f"unknown STFT setting(s) {unknown}; known: {', '.join(STFT_KEYS)}")
    values = {k: _setting(k, v) for k, v in given.items() if v is not None}
    if "n_fft" in values:
        values.setdefault("win_length", values["n_fft"])
    if "win_length" in values and "n_fft" in values:
        values.setdefault("hop_length", values["win_length"] // 4)
    return dataclasses.replace(base, **values)


MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", "none")
MEL_LOGS = ("none", "ln", "log10", "db")


@dataclass(frozen=True)
class MelConfig:
    """A mel front end (:mod:`ppsi_cli.dsp.mel`): ``n_mels`` triangular filters from ``f_min`` to
    ``f_max`` (None: Nyquist) on the Slaney (librosa's default) or HTK (torchaudio's) mel scale,
    normalised to unit area (``mel_norm`` slaney) or not; applied to ``|X| ** power``; then
    ``log``: none, ``ln`` / ``log10`` of the values clamped at ``clamp``, or ``db`` (``10 log10``
    of a power mel, ``20 log10`` of a magnitude mel, clamped likewise). Named front ends:
    :data:`MEL_PRESETS`."""

    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: str = "slaney"
    mel_norm: str = "slaney"
    power: float = 1.0
    log: str = "none"
    clamp: float = 1e-5

    def __post_init__(self) -> None:
        if isinstance(self.n_mels, bool) or not isinstance(self.n_mels, int) or \
                not 1 <= self.n_mels <= 1024:
            raise ValueError(f"n_mels must be an integer in [1, 1024], got {self.n_mels!r}")
        if not (isinstance(self.f_min, (int, float)) and 0 <= self.f_min):
            raise ValueError(f"f_min must be a frequency >= 0 Hz, got {self.f_min!r}")
        if self.f_max is not None and not (isinstance(self.f_max, (int, float))
                                           and self.f_max > self.f_min):
            raise ValueError(f"f_max must be a frequency above f_min ({self.f_min:g} Hz), got "
                             f"{self.f_max!r}")
        for name, allowed in (("mel_scale", MEL_SCALES), ("mel_norm", MEL_NORMS),
                              ("log", MEL_LOGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, name)!r}")
        if self.power not in (1, 2):
            raise ValueError(f"power must be 1 (magnitude) or 2 (power), got {self.power!r}")
        if not (isinstance(self.clamp, (int, float)) and 0 < self.clamp < 1):
            raise ValueError(f"clamp must be in (0, 1), got {self.clamp!r}")

    def upper(self, sample_rate: int) -> float:
        """``f_max`` in Hz (Nyquist when None)."""
        return sample_rate / 2 if self.f_max is None else float(self.f_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "MelConfig":
        return _from_dict(cls, data)


#: MelConfig's fields: the mel settings a user can give (file keys, API keywords)
MEL_KEYS = tuple(f.name for f in dataclasses.fields(MelConfig))

#: name -> (mel settings, STFT settings) of the front ends TTS models are trained on:
#: HiFi-GAN's ``meldataset.mel_spectrogram`` (reflect padding of (n_fft - hop) / 2, then frames
#: with center=False), Vocos' ``MelSpectrogramFeatures`` (torchaudio, center=True), and the
#: defaults of ``librosa.feature.melspectrogram`` and ``torchaudio.transforms.MelSpectrogram``
#: (their STFT settings are the tools' defaults; a user's own replace them).
MEL_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "hifigan": (dict(n_mels=80, f_min=0.0, f_max=8000.0, mel_scale="slaney", mel_norm="slaney",
                     power=1.0, log="ln", clamp=1e-5),
                dict(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256,
                     window="hann", center=True, pad_mode="reflect", pad_length=384)),
    "vocos": (dict(n_mels=100, f_min=0.0, f_max=None, mel_scale="htk", mel_norm="none",
                   power=1.0, log="ln", clamp=1e-7),
              dict(sample_rate=24000, n_fft=1024, win_length=1024, hop_length=256,
                   window="hann", center=True, pad_mode="reflect")),
    "librosa": (dict(n_mels=128, f_min=0.0, f_max=None, mel_scale="slaney", mel_norm="slaney",
                     power=2.0, log="none"),
                dict(sample_rate=22050, n_fft=2048, win_length=2048, hop_length=512,
                     window="hann", center=True, pad_mode="constant")),
    "torchaudio": (dict(n_mels=128, f_min=0.0, f_max=None, mel_scale="htk", mel_norm="none",
                        power=2.0, log="none"),
                   dict(sample_rate=16000, n_fft=400, win_length=400, hop_length=200,
                        window="hann", center=True, pad_mode="reflect")),
}


def _mel_setting(key: str, value: Any) -> Any:
    """One mel setting from an option, a file or a keyword (strings parsed), or ValueError."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if key not in MEL_KEYS:
        raise ValueError(f"unknown mel setting {key!r}; known: {', '.join(MEL_KEYS)}")
    if key == "f_max" and (value is None or str(value).strip().lower() in ("none", "")):
        return None
    if key == "n_mels":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"n_mels={value!r} is not an integer")
        return value
    if key in ("f_min", "f_max", "power", "clamp"):
        if isinstance(value, bool):
            raise ValueError(f"{key}={value!r} is not a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}={value!r} is not a number") from None
    return str(value).strip().lower()


def mel_config(spec: "str | MelConfig | dict[str, Any] | None",
               given: dict[str, Any] | None = None) -> tuple[MelConfig, dict[str, Any]]:
    """``(MelConfig, STFT settings)`` of a mel front end: ``spec`` is a preset name of
    :data:`MEL_PRESETS` (optionally ``NAME+KEY=VALUE+...``, the method syntax), a MelConfig, or
    a mapping of settings (with an optional ``preset`` key); ``given`` overrides key by key.
    The STFT settings are the preset's (empty without one): a base the user's own replace."""
    values: dict[str, Any] = {}
    stft: dict[str, Any] = {}
    if isinstance(spec, MelConfig):
        values = spec.to_dict()
    elif isinstance(spec, dict):
        values = dict(spec)
        name = values.pop("preset", None)
        if name is not None:
            base, stft = mel_config(str(name))
            values = {**base.to_dict(), **values}
    elif isinstance(spec, str):
        name, *parts = spec.strip().split("+")
        name = name.strip().lower()
        if name not in MEL_PRESETS:
            raise ValueError(f"unknown mel preset {name!r}; choose one of "
                             f"{', '.join(MEL_PRESETS)}")
        mel, stft = MEL_PRESETS[name]
        values, stft = dict(mel), dict(stft)
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ValueError(f"mel {spec!r}: write settings as +KEY=VALUE, got {part!r}")
            values[key.strip()] = value
    elif spec is not None:
        raise ValueError(f"mel: expected a preset name, a MelConfig or a mapping, got "
                         f"{type(spec).__name__}")
    values.update({k: v for k, v in (given or {}).items() if v is not None})
    stft_keys = {k: values.pop(k) for k in list(values) if k in STFT_KEYS}
    stft.update(stft_keys)
    parsed = {k: _mel_setting(k, v) for k, v in values.items()}
    return MelConfig(**parsed), stft


def front_end(mel: "str | MelConfig | dict | None",
              given: dict[str, Any]) -> tuple[MelConfig | None, StftConfig]:
    """``(mel settings or None, STFT)`` of a command: the STFT ``given`` (settings, None: not
    given) on top of the mel preset's STFT (without a mel: the defaults)."""
    mel_cfg, mel_stft = mel_config(mel) if mel else (None, {})
    return mel_cfg, stft_config(given, stft_config(mel_stft))


@dataclass(frozen=True)
class SolverConfig:
    """Weighted least-squares phase integration (:mod:`ppsi_cli.integrate`).

    lambda_k = (a_t[k] a_{t-1}[k])^p,  gamma_k = g (a_t[k] a_t[k+1])^p, with magnitudes a
    normalised per frame by their maximum and floored at ``mag_floor``; each diagonal entry is
    scaled by ``1 + diag_load`` so that float32 rounding in the LDL^H pivots (a few eps of the
    entry) cannot push them below zero. A relative load leaves the weakest bins' weights alone:
    a load by a fraction of the frame's largest entry swamped them and cost 0.02 WB-PESQ on
    validation speech. Defaults (p=1, g=10, floor 1e-2) keep the Jacobi-scaled condition number
    of real speech frames below ~3e3; the M23 setting (p=2, g=500, floor 1e-4) reaches 1e9+ and
    fails in float32.
    """

    p: float = 1.0
    g: float = 10.0
    mag_floor: float = 1e-2
    diag_load: float = 1e-6
    silence_threshold: float = 1e-10
    solver: str = "auto"

    def __post_init__(self) -> None:
        if not (self.p >= 0 and math.isfinite(self.p)):
            raise ValueError(f"p must be a finite number >= 0, got {self.p}")
        if not (self.g > 0 and math.isfinite(self.g)):
            raise ValueError(f"g must be a finite number > 0, got {self.g}")
        if not 0 < self.mag_floor < 1:
            raise ValueError(f"mag_floor must be in (0, 1), got {self.mag_floor}")
        if not 0 <= self.diag_load < 1:
            raise ValueError(f"diag_load must be in [0, 1), got {self.diag_load}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SolverConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ModelConfig:
    """The causal phase-difference CNN (:mod:`ppsi_cli.model`).

    ``context`` past frames (the current one included) are the input channels; convolutions run
    along frequency. ``strided`` models also see one future frame and predict two frames at once.
    ``delay`` models predict frame t from the pass whose newest frame is t + delay: they see
    ``delay`` frames after the one they predict (for ``context = 2 delay + 1``, as many after as
    before: the centred time differences the phase follows), at ``delay`` hops more latency.
    A strided delayed model predicts frames t - 1 - delay and t - delay from the pass at t.
    """

    context: int = 4
    channels: int = 16
    kernel_size: int = 5
    blocks: int = 3
    strided: bool = False
    dilation_growth: int = 1
    delay: int = 0

    @property
    def dilations(self) -> tuple[int, ...]:
        """Dilation along frequency of each gated block: ``dilation_growth ** i``."""
        return tuple(self.dilation_growth ** i for i in range(self.blocks))

    @property
    def receptive_bins(self) -> int:
        """Bins along frequency one output sees (the stem's kernel plus every block's)."""
        half = self.kernel_size // 2
        return 1 + 2 * half * (1 + sum(self.dilations))

    def __post_init__(self) -> None:
        # upper bounds: far above any ~8k-parameter network, low enough that a hostile file
        # cannot ask for gigabytes
        for name, top in (("context", 64), ("channels", 1024), ("kernel_size", 255),
                          ("blocks", 64), ("dilation_growth", 16)):
            if not 1 <= getattr(self, name) <= top:
                raise ValueError(f"ModelConfig.{name} must be in [1, {top}], got "
                                 f"{getattr(self, name)}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if not 0 <= self.delay < self.context:
            raise ValueError(f"ModelConfig.delay must be in [0, context), got {self.delay} "
                             f"(context {self.context})")

    @property
    def lookahead(self) -> int:
        """Frames of look-ahead (latency beyond one frame): ``delay``, one more if strided."""
        return self.delay + int(self.strided)

    @property
    def variant(self) -> str:
        """``offline`` (delayed: look-ahead, strided or not), ``strided`` or ``online``."""
        return "offline" if self.delay else "strided" if self.strided else "online"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ModelConfig":
        return _from_dict(cls, data)


# Von Mises loss weights per bin (see train/objective.py)
LOSS_WEIGHTS = ("none", "magnitude", "power")
# Allowed speed-perturbation factors (see train/data.py)
SPEED_FACTOR_RANGE = (0.5, 2.0)


def check_speed_factor(factor: float) -> float:
    """``factor`` as a float, or ValueError if it lies outside ``SPEED_FACTOR_RANGE``."""
    lo, hi = SPEED_FACTOR_RANGE
    if not lo <= factor <= hi:
        raise ValueError(f"speed factor must be in [{lo:g}, {hi:g}], got {factor}")
    return float(factor)


@dataclass
class TrainConfig:
    """Training settings; ``ppsi train`` options mirror these fields."""

    data: str = ""
    out: str = "runs/ppsi"
    val_data: str | None = None
    val_fraction: float = 0.1
    segment_seconds: float = 1.0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-6
    grad_clip: float = 10.0
    loss_weight: str = "magnitude"
    fpd_weight: float = 0.5
    ls_loss: float = 0.0
    speed_factors: tuple[float, ...] = ()
    warmup_steps: int = 500
    max_steps: int = 20000
    max_minutes: float | None = None
    stop_after: int | None = None
    seed: int = 0
    log_every: int = 50
    val_every: int = 500
    eval_every: int = 2000
    eval_files: int = 4
    ckpt_every: int = 500
    device: str = "cpu"
    amp: bool = True
    init_from: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    stft: StftConfig = field(default_factory=StftConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    mel: MelConfig | None = None  # a mel network: trained on the NNLS magnitudes of this mel

    def __post_init__(self) -> None:
        if self.loss_weight not in LOSS_WEIGHTS:
            raise ValueError(f"loss weighting must be one of {LOSS_WEIGHTS}, "
                             f"got {self.loss_weight!r}")
        if not 0 < self.fpd_weight < 1:
            raise ValueError(f"fpd_weight must be in (0, 1), got {self.fpd_weight}")
        if not 0 <= self.ls_loss <= 1:
            raise ValueError(f"ls_loss must be in [0, 1], got {self.ls_loss}")
        if not self.segment_seconds * self.stft.sample_rate >= self.stft.win_length:
            raise ValueError(f"segment_seconds must hold a window ({self.stft.win_length} "
                             f"samples at {self.stft.sample_rate} Hz: at least "
                             f"{self.stft.win_length / self.stft.sample_rate:.3g} s), got "
                             f"{self.segment_seconds}")
        self.speed_factors = tuple(check_speed_factor(f) for f in self.speed_factors)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        model = ModelConfig.from_dict(data.pop("model", None))
        stft = StftConfig.from_dict(data.pop("stft", None))
        solver = SolverConfig.from_dict(data.pop("solver", None))
        mel = data.pop("mel", None)
        cfg = _from_dict(cls, data)
        cfg.model, cfg.stft, cfg.solver = model, stft, solver
        cfg.mel = None if mel is None else MelConfig.from_dict(mel)
        return cfg
