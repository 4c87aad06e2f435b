"""Self-describing weight files: save, load safely (``weights_only=True``), find shipped ones.

A file holds ``{"format": "ppsi-weights", "version": 1, "model_config", "stft_config",
"solver_config", "state_dict", "meta"}``. Shipped files live in ``weights/`` (installed as
``ppsi_cli/weights``), are named in :data:`SHIPPED` with their SHA-256, and are verified against
it whenever they are loaded. Their model card is ``weights/README.md``.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import MelConfig, ModelConfig, SolverConfig, StftConfig
from .io import atomic_path
from .model import PhaseDiffNet

FORMAT = "ppsi-weights"
VERSION = 1

@dataclass(frozen=True)
class Shipped:
    """One shipped weights file: the variant and STFT family it serves, its name, its SHA-256."""

    variant: str  # online | strided | offline (look-ahead)
    window: str
    hop_over_win: Fraction
    file: str
    sha256: str
    input: str = "linear"  # linear magnitudes, or "mel": NNLS magnitudes of a mel spectrogram

    @property
    def family(self) -> tuple[str, Fraction]:
        return self.window, self.hop_over_win

    @property
    def family_name(self) -> str:
        return f"{self.window} at {float(100 * (1 - self.hop_over_win)):g} % overlap"


#: The shipped weights (files in ``weights/``); the first of a variant is its default.
SHIPPED: tuple[Shipped, ...] = (
    Shipped("online", "hann", Fraction(1, 4), "ppsi-online-b5816675.pt",
            "b5816675fa23994426282a66df322ed06c4b68e550a8e46db32ec5f0e217f3f2"),
    Shipped("strided", "hann", Fraction(1, 4), "ppsi-strided-ad4c4be7.pt",
            "ad4c4be7abcf4ba52f6a995335164d6eca286985af843327bdb436157296e8e2"),
    Shipped("online", "hann", Fraction(1, 2), "ppsi-online-hann50-50796ca9.pt",
            "50796ca9d865321d42430df6139aa2c50cd554c65c9bdb879000bfd7046e2310"),
    Shipped("online", "sqrt-hann", Fraction(1, 2), "ppsi-online-sqrthann50-52014395.pt",
            "52014395e72f98951f2ff600bbb8a0d5dfad3cdb1f274e70e37e27a79eb097de"),
    Shipped("online", "hann", Fraction(1, 8), "ppsi-online-hann87-153a05ac.pt",
            "153a05ac0f3565b218be788238a6382735c57f02e1844cda3883fc82031faf43"),
    Shipped("online", "hann", Fraction(1, 4), "ppsi-online-mel-dbd3ce4f.pt",
            "dbd3ce4f52e2ed1e5f5adf5d0cef19cccd1cd7e006e7e3979eef0587a0339a5f", input="mel"),
    Shipped("offline", "hann", Fraction(1, 4), "ppsi-offline-9c6164a4.pt",
            "9c6164a49c73c3a06f2d9a55217fdb2edfbe6186a277371f1f158941f134e85b"),
)


@dataclass
class LoadedModel:
    """A network with the STFT and solver settings it was trained and tuned for."""

    net: PhaseDiffNet
    stft: StftConfig
    solver: SolverConfig
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


def save_weights(path: str | Path, net: PhaseDiffNet, stft: StftConfig, solver: SolverConfig,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write a weights file atomically; returns its path."""
    net = getattr(net, "module", net)  # unwrap DDP
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": net.cfg.to_dict(),
        "stft_config": stft.to_dict(),
        "solver_config": solver.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": dict(meta or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a weights file without unpickling code; refuse anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, not a torch file
        raise ValueError(f"{path}: not a loadable ppsi weights file ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a ppsi weights file (missing format={FORMAT!r})")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path}: weights format version {payload.get('version')}; "
                         f"this ppsi reads version {VERSION}")
    try:
        net = PhaseDiffNet(ModelConfig.from_dict(payload.get("model_config")))
        stft = StftConfig.from_dict(payload.get("stft_config"))
        solver = SolverConfig.from_dict(payload.get("solver_config"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: state dict does not match its model config ({why})") from None
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise ValueError(f"{path}: the weights hold NaN or Inf parameters")
    net.eval().to(device)
    meta = payload.get("meta", {})
    return LoadedModel(net, stft, solver, dict(meta) if isinstance(meta, dict) else {}, str(path))


def weights_dir() -> Path:
    """Folder of the shipped weights: inside the installed package, else the checkout's."""
    here = Path(__file__).resolve().parent
    installed = here / "weights"
    return installed if installed.is_dir() else here.parent / "weights"


def family(stft: StftConfig) -> tuple[str, Fraction]:
    """The STFT family a network serves: its window and hop / win_length. Within a family the
    phase differences keep their scale across sample rates and sizes (measured in the model card,
    ``weights/README.md``); across families they do not."""
    return stft.window, Fraction(stft.hop_length, stft.win_length)


def family_name(stft: StftConfig) -> str:
    window, ratio = family(stft)
    return f"{window} at {float(100 * (1 - ratio)):g} % overlap"


def model_family(model: LoadedModel) -> tuple[str, Fraction]:
    """The family a weights file declares (``meta["family"]``), else that of its STFT."""
    declared = model.meta.get("family")
    if isinstance(declared, dict) and {"window", "hop_over_win"} <= set(declared):
        return str(declared["window"]), Fraction(str(declared["hop_over_win"]))
    return family(model.stft)


def measured_window_ms(model: LoadedModel) -> tuple[float, float] | None:
    """The window durations (ms) the weights were measured on (``meta["measured"]``), if any."""
    measured = model.meta.get("measured")
    try:
        lo, hi = measured["window_ms"]
        return float(lo), float(hi)
    except (TypeError, KeyError, ValueError):
        return None


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_for(variant: str = "online", stft: StftConfig | None = None,
                input: str = "linear") -> Shipped:
    """The shipped entry of ``variant`` for ``input`` (linear | mel) that serves ``stft``'s
    family (None: the default one); ValueError naming the families there are when none does."""
    entries = [e for e in SHIPPED if e.variant == variant]
    if not entries:
        raise ValueError(f"no shipped weights variant {variant!r}; choose one of "
                         f"{', '.join(dict.fromkeys(e.variant for e in SHIPPED))}")
    entries = [e for e in entries if e.input == input]
    what = "mel " if input == "mel" else ""
    if not entries:
        have = ", ".join(f"ppsi{'' if e.variant == 'online' else '-' + e.variant}"
                         for e in SHIPPED if e.input == input)
        raise ValueError(f"no shipped ppsi {variant} network for {what}input (there is: "
                         f"{have or 'none'}); use that, method griffin-lim or pghi (--method), or "
                         "weights of your own (--weights FILE, weights= in the API)")
    if stft is None:
        return entries[0]
    for entry in entries:
        if entry.family == family(stft):
            return entry
    have = ", ".join(e.family_name for e in entries)
    raise ValueError(f"no shipped ppsi {variant} {what}network for {family_name(stft)} "
                     f"(shipped: {have}); use method griffin-lim, pghi or rtisi-la for this "
                     "STFT (--method), or weights of your own (--weights FILE, weights= in the "
                     "API)")


def shipped_weights(variant: str = "online", stft: StftConfig | None = None,
                    input: str = "linear") -> Path:
    """Path of the shipped weights of ``variant`` for ``stft`` and ``input`` (see
    :func:`shipped_for`), checked by SHA-256."""
    entry = shipped_for(variant, stft, input)
    path = weights_dir() / entry.file
    if not path.is_file():
        raise FileNotFoundError(f"shipped weights {entry.file} missing from {weights_dir()}; "
                                "reinstall ppsi or pass weights of your own (--weights FILE, "
                                "weights= in the API)")
    found = sha256(path)
    if found != entry.sha256:
        raise ValueError(f"shipped weights {path} fail their SHA-256 check (found {found[:12]}…, "
                         f"expected {entry.sha256[:12]}…); reinstall ppsi")
    return path


def load_model(weights: str | Path | None = None, variant: str = "online",
               device: str | torch.device = "cpu", stft: StftConfig | None = None,
               input: str = "linear") -> LoadedModel:
    """Load ``weights`` (a file) or the shipped, hash-checked weights of ``variant`` for
    ``input`` (linear | mel) that serve ``stft``'s family (None: the default ones)."""
    return load_weights(weights if weights is not None else
                        shipped_weights(variant, stft, input), device)


def model_mel(model: LoadedModel) -> MelConfig | None:
    """The mel front end a network was trained on (``meta["mel"]``, written by ``ppsi train
    --mel``: its input was the NNLS magnitudes of such mels), or None."""
    declared = model.meta.get("mel")
    try:
        return MelConfig.from_dict(declared) if isinstance(declared, dict) else None
    except (ValueError, TypeError):
        return None


def model_variant(model: LoadedModel) -> str:
    """``offline`` (a delayed network: look-ahead), ``strided`` or ``online``."""
    return model.net.cfg.variant


def model_input(model: LoadedModel) -> str:
    """``mel`` for a network trained on mel input (:func:`model_mel`), else ``linear``."""
    return "linear" if model_mel(model) is None else "mel"
