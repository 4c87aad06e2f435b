"""Pins the shipped models' quality on the two ARCTIC example clips (never trained or tuned on).

Measured with the shipped weights through ``ppsi_cli.invert`` (2026-12-01; WB-PESQ by the
``pesq`` package, ESTOI by ``pystoi``); a change that costs more than 0.05 WB-PESQ or 0.005 ESTOI
on either clip fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pesq import pesq
from pystoi import stoi

from ppsi_cli import StftConfig, invert
from ppsi_cli.dsp.stft import stft

MEASURED = {  # (clip fixture, method): (WB-PESQ, ESTOI)
    ("speech", "ppsi"): (3.836, 0.9652),
    ("speech2", "ppsi"): (3.814, 0.9889),
    ("speech", "ppsi-strided"): (3.811, 0.9689),
    ("speech2", "ppsi-strided"): (3.776, 0.9900),
}


@pytest.mark.parametrize("clip, method", sorted(MEASURED))
def test_shipped_weights_keep_their_quality(request, clip, method) -> None:
    x, sr = request.getfixturevalue(clip)
    x = x.to(torch.float32)
    y = invert(stft(x, StftConfig()).abs(), method, length=len(x)).double().numpy()
    ref = x.double().numpy()
    wb, es = pesq(sr, ref, y, "wb"), stoi(ref, y, sr, extended=True)
    want_wb, want_es = MEASURED[(clip, method)]
    assert wb >= want_wb - 0.05, (wb, want_wb)
    assert es >= want_es - 0.005, (es, want_es)
    assert np.isfinite(y).all()
