"""Python API: ``invert`` (whole utterances), ``Inverter`` (reuse, streams), ``load_model``.

    import ppsi_cli
    wave = ppsi_cli.invert(magnitude)                          # (..., 513, T) -> (..., L)
    wave = ppsi_cli.invert(mag, n_fft=512, hop_length=128, center=True)   # torch's names
    wave = ppsi_cli.invert(magnitude, method="ppsi-strided+refine=32")
    wave = ppsi_cli.invert(log_mel, mel="hifigan")              # (..., 80, T) HiFi-GAN log-mel
    inv = ppsi_cli.Inverter("ppsi")                            # load once, call many times
    stream = inv.stream()                                      # push (..., 513, n) chunks

Everything goes through :class:`~ppsi_cli.inverter.Inverter`, as the CLI does.
"""

from __future__ import annotations

import torch

from .config import MelConfig, SolverConfig, StftConfig, mel_config, stft_config
from .inverter import Inverter
from .methods import Method
from .weights import LoadedModel


def invert(x, method: str | Method = "ppsi", *, length: int | None = None,
           sample_rate: int | None = None, n_fft: int | None = None,
           hop_length: int | None = None, win_length: int | None = None,
           window: str | None = None, center: bool | None = None,
           pad_length: int | None = None, pad_mode: str | None = None,
           stft: StftConfig | None = None, model: LoadedModel | None = None,
           weights: str | None = None, solver: SolverConfig | None = None,
           device: str | torch.device = "cpu",
           mel: "str | MelConfig | dict | None" = None, **options):
    """Waveform (..., L) from linear magnitudes (..., K, T) (or a complex STFT: copy synthesis).

    ``x``: a torch tensor or a NumPy array (the result is of the same kind, on ``x``'s device);
    float16 / bfloat16 are computed in float32, float64 stays float64. The STFT is ``stft`` with
    the settings given in torch's names on top (as in torch, ``n_fft`` alone brings ``win_length
    = n_fft`` and ``hop_length = n_fft // 4``); without either, the weights' STFT.
    ``center=False`` is ppsi's start-referenced framing; torch's and librosa's ``center=False``
    (frames that start at the signal) is ``center=True, pad_length=0``.
    ``method``: any spelling of :mod:`ppsi_cli.methods` (``ppsi``, ``ppsi-strided``, ``oracle``,
    ``griffin-lim``, ``rtisi``, ``rtisi-la``, ``pghi``, ``rtpghi``), options as ``+KEY=VALUE``
    or as keywords (``refine=32``, ``iters=100``). ``length`` defaults to the STFT's default
    (``torch.istft``'s for ``center=True``).
    ``mel``: ``x`` is a mel spectrogram (..., n_mels, T) of this front end: a preset name
    (``hifigan``, ``vocos``, ``librosa``, ``torchaudio``; settings overridable as
    ``"hifigan+f_max=11025"``), a :class:`~ppsi_cli.config.MelConfig`, or a mapping of settings
    (``{"preset": "vocos", "n_mels": 80}``; STFT settings may be among them). The preset's STFT is
    the base the STFT keywords above change; the shipped mel network serves ``ppsi``.
    """
    settings = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                    win_length=win_length, window=window, center=center,
                    pad_length=pad_length, pad_mode=pad_mode)
    if mel is not None:
        mel, mel_stft = mel_config(mel)
        if stft is None and mel_stft:
            stft = stft_config(mel_stft)
    if stft is not None or any(v is not None for v in settings.values()):
        stft = stft_config(settings, stft)
    inv = Inverter(method, model=model, weights=weights, stft=stft, solver=solver,
                   device=device, mel=mel, **options)
    y = inv(x, length)
    return y.to(x.device) if isinstance(x, torch.Tensor) else y
