"""Python API: ``invert`` (whole utterances), ``Inverter`` (reuse, streams), ``load_model``.

    import ppsi_cli
    wave = ppsi_cli.invert(magnitude)                          # (..., 513, T) -> (..., L)
    wave = ppsi_cli.invert(magnitude, method="ppsi-strided+refine=32")
    inv = ppsi_cli.Inverter("ppsi")                            # load once, call many times
    stream = inv.stream()                                      # push (..., 513, n) chunks

Everything goes through :class:`~ppsi_cli.inverter.Inverter`, as the CLI does.
"""

from __future__ import annotations

import torch

from .config import SolverConfig, StftConfig
from .inverter import Inverter
from .methods import Method
from .weights import LoadedModel


def invert(x: torch.Tensor, method: str | Method = "ppsi", *, length: int | None = None,
           model: LoadedModel | None = None, weights: str | None = None,
           stft: StftConfig | None = None, solver: SolverConfig | None = None,
           device: str | torch.device = "cpu", **options) -> torch.Tensor:
    """Waveform (..., L) from linear magnitudes (..., K, T) (or a complex STFT: copy synthesis).

    ``method``: any spelling of :mod:`ppsi_cli.methods` (``ppsi``, ``ppsi-strided``, ``oracle``,
    ``griffin-lim``, ``rtisi``, ``rtisi-la``, ``pghi``, ``rtpghi``, options as ``+KEY=VALUE``
    or as keywords, e.g. ``refine=32``, ``iters=100``). ``length`` defaults to
    ``(T + 1) * hop_length - win_length`` samples. The result is on ``x``'s device.
    """
    inv = Inverter(method, model=model, weights=weights, stft=stft, solver=solver,
                   device=device, **options)
    return inv(x, length).to(x.device)
