"""The one vocabulary of inversion methods and their options, parsed in one place.

A method is written ``NAME`` or ``NAME+KEY=VALUE+...``, e.g. ``ppsi``, ``ppsi-strided+refine=32``,
``griffin-lim+iters=100+momentum=0``. Old spellings stay as aliases: ``gl32`` / ``griffin-lim-32``
(= ``griffin-lim+iters=32``) and ``ppsi+gl32`` (= ``ppsi+refine=32``). Two spellings of the same
method parse to equal :class:`Method` values; :attr:`Method.label` is the canonical spelling.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

#: name -> (description, {option: default}); every option of a method is listed here.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "ppsi": ("ppsi online: causal CNN + least squares", {"refine": 0, "momentum": 0.99}),
    "ppsi-strided": ("ppsi strided: CNN every second frame, one hop of look-ahead",
                     {"refine": 0, "momentum": 0.99}),
    "ppsi-offline": ("ppsi with look-ahead (the CNN sees 2 frames after the one it predicts; "
                     "band=HZ: only on the bins up to HZ, PGHI's gradient estimate above), "
                     "then fast Griffin-Lim (refine, default 16): offline",
                     {"refine": 16, "momentum": 0.99, "band": 0.0}),
    "oracle": ("least squares from the true phase differences (needs the complex STFT)", {}),
    "griffin-lim": ("fast Griffin-Lim (offline; momentum 0 is plain Griffin-Lim)",
                    {"iters": 32, "momentum": 0.99, "seed": 0}),
    "rtisi": ("RTISI (online, no look-ahead)", {"iters": 5, "momentum": 0.7}),
    "rtisi-la": ("RTISI-LA (online; look-ahead default: ceil(win / hop) - 1 frames)",
                 {"lookahead": None, "iters": 5, "momentum": 0.7}),
    "pghi": ("phase gradient heap integration (offline)", {"tol": 1e-6}),
    "rtpghi": ("real-time PGHI (online)", {"tol": 1e-6}),
    "librosa": ("librosa's griffinlim, or mel_to_audio on mel input (offline; a peer, needs "
                "librosa)", {"iters": 32, "momentum": 0.99, "seed": 0}),
    "pghipy": ("pghipy's PGHI (numba) with its own phase conventions (offline; a peer, needs "
               "pghipy)", {"tol": 1e-6}),
    "torchaudio": ("torchaudio's griffinlim (offline; a peer, needs a torchaudio built for your "
                   "torch)", {"iters": 32, "momentum": 0.99, "seed": 0}),
}
#: option -> type, for parsing strings and checking values
_TYPES = {"refine": int, "iters": int, "seed": int, "lookahead": int, "momentum": float,
          "tol": float, "band": float}
#: options always spelled out in labels (a Griffin-Lim figure means nothing without them)
_SHOWN = {"griffin-lim": ("iters",), "librosa": ("iters",), "torchaudio": ("iters",)}
#: methods that run frame by frame (``Inverter.stream``) unless refined
ONLINE = ("ppsi", "ppsi-strided", "ppsi-offline", "oracle", "rtisi", "rtisi-la", "rtpghi")
#: methods that use a trained network -> the variant of shipped weights each uses
NETWORK = {"ppsi": "online", "ppsi-strided": "strided", "ppsi-offline": "offline"}
#: variant of weights -> the method that runs them
BY_VARIANT = {variant: name for name, variant in NETWORK.items()}
#: other libraries' inversions (:mod:`ppsi_cli.peers`) -> the ppsi method each does the work of
PEERS = {"librosa": "griffin-lim", "pghipy": "pghi", "torchaudio": "griffin-lim"}

_ALIASES = [
    (re.compile(r"^(?:gl|griffin-lim-)(\d+)$"), lambda m: ("griffin-lim", {"iters": m[1]})),
    (re.compile(r"^(ppsi|ppsi-strided|ppsi-offline)\+gl(\d+)$"),
     lambda m: (m[1], {"refine": m[2]})),
]


@dataclass(frozen=True)
class Method:
    """A method name with all of its options (defaults filled in)."""

    name: str
    options: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def online(self) -> bool:
        return self.name in ONLINE and not self.opts.get("refine")

    @property
    def uses_network(self) -> bool:
        return self.name in NETWORK

    @property
    def variant(self) -> str | None:
        """Shipped weights variant a network method uses (online | strided | offline)."""
        return NETWORK.get(self.name)

    def _set(self) -> list[str]:
        """``KEY=VALUE`` of the options that differ from their defaults (or are always shown)."""
        defaults = METHODS[self.name][1]
        # floats without "e+" (1e+06 -> 1e06): a "+" would split the spelling when parsed back
        return [f"{k}={v:g}".replace("e+", "e") if isinstance(v, float) else f"{k}={v}"
                for k, v in self.options if v != defaults[k] or k in _SHOWN.get(self.name, ())]

    @property
    def label(self) -> str:
        """Canonical spelling: the name, then the options that differ from their defaults."""
        return "+".join([self.name, *self._set()])

    @property
    def description(self) -> str:
        """The method's description, then the options this instance sets (as in its label)."""
        shown = ", ".join(self._set())
        return METHODS[self.name][0] + (f"; {shown}" if shown else "")


def _coerce(name: str, key: str, value: Any) -> Any:
    kind = _TYPES[key]
    if isinstance(value, str):
        try:
            value = kind(value)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"method {name}: {key}={value!r} is not {what}") from None
    elif value is not None:
        if kind is int and (isinstance(value, bool) or int(value) != value):
            raise ValueError(f"method {name}: {key} must be an integer, got {value!r}")
        value = kind(value)
    low = {"refine": 0, "iters": 1, "seed": 0, "lookahead": 0, "tol": 0.0, "band": 0.0}.get(key)
    if value is None and key == "lookahead":
        return None
    if key == "momentum" and not 0 <= value <= 1:
        raise ValueError(f"method {name}: momentum must be in [0, 1], got {value}")
    if low is not None and value < low:
        raise ValueError(f"method {name}: {key} must be >= {low}, got {value}")
    if key == "band" and not math.isfinite(value):
        raise ValueError(f"method {name}: band must be a finite frequency in Hz, got {value}")
    if key == "tol" and not value < 1:
        raise ValueError(f"method {name}: tol must be in [0, 1), got {value}")
    return value


def parse_method(text: str | Method, **overrides: Any) -> Method:
    """``text`` (a spelling above) with ``overrides`` (options, None = not given) -> Method.

    Raises ValueError with one line naming the problem: an unknown name, an option the method
    does not have, a value of the wrong type or out of range.
    """
    if isinstance(text, Method):
        name, given = text.name, dict(text.options)
    else:
        text = text.strip()
        name, given = text, {}
        for pattern, expand in _ALIASES:
            match = pattern.match(text)
            if match:
                name, given = expand(match)
                break
        else:
            name, *parts = text.split("+")
            for part in parts:
                key, sep, value = part.partition("=")
                if not sep or not key:
                    raise ValueError(f"method {text!r}: write options as +KEY=VALUE, got {part!r}")
                given[key] = value
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)} "
                         "(aliases: glN, ppsi+glN)")
    defaults = METHODS[name][1]
    given.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        have = ", ".join(defaults) or "none"
        raise ValueError(f"method {name} has no option {', '.join(unknown)} (its options: {have})")
    values = {k: _coerce(name, k, given.get(k, d)) if k in given else d
              for k, d in defaults.items()}
    return Method(name, tuple(values.items()))


def parse_methods(text: str) -> list[Method]:
    """Comma-separated methods -> list, refusing duplicates (two spellings of one method)."""
    out: list[Method] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        m = parse_method(item)
        if m in out:
            raise ValueError(f"method {item!r} is listed twice (as {m.label})")
        out.append(m)
    if not out:
        raise ValueError("no method given")
    return out
