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
      returns without ``length``.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    window: str = "hann"
    center: bool = False
    pad_mode: str = "reflect"

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
            return self.n_fft // 2
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
STFT_KEYS = ("sample_rate", "n_fft", "win_length", "hop_length", "window", "center", "pad_mode")


def _setting(key: str, value: Any) -> Any:
    """One STFT setting from an option, a file or a keyword: ints may come as strings ("16000")
    or integral floats, ``center`` as true/false/1/0; anything else is refused by name."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # NumPy / torch scalars
    if key in ("sample_rate", "n_fft", "win_length", "hop_length"):
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
    """

    context: int = 4
    channels: int = 16
    kernel_size: int = 5
    blocks: int = 3
    strided: bool = False
    dilation_growth: int = 1

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

    @property
    def lookahead(self) -> int:
        """Frames of look-ahead (latency beyond one frame), 1 for strided models."""
        return 1 if self.strided else 0

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

    def __post_init__(self) -> None:
        if self.loss_weight not in LOSS_WEIGHTS:
            raise ValueError(f"loss weighting must be one of {LOSS_WEIGHTS}, "
                             f"got {self.loss_weight!r}")
        if not 0 < self.fpd_weight < 1:
            raise ValueError(f"fpd_weight must be in (0, 1), got {self.fpd_weight}")
        if not 0 <= self.ls_loss <= 1:
            raise ValueError(f"ls_loss must be in [0, 1], got {self.ls_loss}")
        self.speed_factors = tuple(check_speed_factor(f) for f in self.speed_factors)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        model = ModelConfig.from_dict(data.pop("model", None))
        stft = StftConfig.from_dict(data.pop("stft", None))
        solver = SolverConfig.from_dict(data.pop("solver", None))
        cfg = _from_dict(cls, data)
        cfg.model, cfg.stft, cfg.solver = model, stft, solver
        return cfg
