"""Other libraries' inversions, run on ppsi's inputs so that they can be compared in one run
(``ppsi eval --methods librosa``, ``ppsi bench invert``): the method a user would reach for
instead of ppsi. Optional: the method refuses, in one line, where its library is not installed.

- ``librosa``: ``librosa.griffinlim`` on linear magnitudes, ``librosa.feature.inverse.
  mel_to_audio`` on a mel spectrogram (run as its two steps, ``mel_to_stft`` (librosa's NNLS)
  then ``griffinlim``, so that the random initial phase can be seeded), with the STFT and mel
  settings of the input. ppsi's framings map onto librosa's: centred frames with the
  default padding are ``center=True`` with the same ``pad_mode``; any other framing (ppsi's
  start-referenced frames, HiFi-GAN's padding) is ``center=False`` with the first ``pad``
  samples dropped, so the output is aligned with the original signal.
- ``torchaudio``: ``torchaudio.functional.griffinlim`` on linear magnitudes. Its frames are
  centred (``torch.stft(center=True)``, reflect padding); on ppsi's other framings its output is
  moved by the difference of the paddings, so it is aligned with the original signal, and the
  padding it reflects differs from the zeros of those framings at the two ends.
- ``pghipy``: ``pghipy.pghi`` (Průša et al.'s heap integration compiled by numba) gives the
  phase of the magnitudes, with ppsi's Gaussian ``gamma`` of the window; ppsi's ISTFT makes the
  waveform. pghipy's gradients follow its own STFT (frames centred on the window, a Gaussian
  window), so on other STFTs its phase is approximate: a speed reference more than a quality one.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from .config import MelConfig, StftConfig
from .dsp.mel import mel_values
from .dsp.stft import default_length

#: method name -> the module it needs
LIBRARIES = {"librosa": "librosa", "pghipy": "pghipy", "torchaudio": "torchaudio"}
#: peers not in the ``peers`` extra: torchaudio's wheel must match the installed torch (and
#: its PyPI wheel pulls a CUDA build of torch)
_OWN_INSTALL = {"torchaudio": "a torchaudio built for your torch"}


def available(name: str) -> bool:
    """Whether peer ``name``'s library imports (an installed torchaudio built for another torch
    fails to load its library)."""
    try:
        importlib.import_module(LIBRARIES[name])
    except Exception:  # noqa: BLE001 (ImportError, or OSError from a mismatched native library)
        return False
    return True


def require(name: str) -> None:
    """ValueError in one line when the library of peer ``name`` is missing."""
    if not available(name):
        how = _OWN_INSTALL.get(name, f"pip install {LIBRARIES[name]}, or pip install "
                                     "'ppsi[peers]'")
        raise ValueError(f"method {name} needs the {LIBRARIES[name]} package ({how}); it is "
                         "not installed or does not load")


def invert(name: str, x: torch.Tensor, cfg: StftConfig, mel: MelConfig | None,
           length: int | None, options: dict) -> torch.Tensor:
    """Peer ``name``'s waveform (..., length) of ``x`` (..., K or n_mels, T)."""
    if name == "librosa":
        return librosa_invert(x, cfg, mel, length, options["iters"], options["momentum"],
                              options["seed"])
    if mel is not None:
        raise ValueError(f"method {name} takes linear magnitudes, not a mel spectrogram")
    if name == "torchaudio":
        return torchaudio_invert(x, cfg, length, options["iters"], options["momentum"],
                                 options["seed"])
    return pghipy_invert(x, cfg, length, options["tol"])


def torchaudio_invert(x: torch.Tensor, cfg: StftConfig, length: int | None, iters: int,
                      momentum: float, seed: int) -> torch.Tensor:
    """torchaudio's fast Griffin-Lim of magnitudes ``x`` (..., K, T): waveform (..., length),
    its random initial phase drawn from ``seed`` (the global generator is left as it was)."""
    from torchaudio.functional import griffinlim

    from .dsp.stft import window

    n = default_length(x.shape[-1], cfg) if length is None else length
    span = cfg.hop_length * (x.shape[-1] - 1)  # torchaudio's length for these frames
    if span == 0:
        raise ValueError("method torchaudio needs at least 2 frames")
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        y = griffinlim(x, window(cfg, x.dtype, x.device), cfg.n_fft, cfg.hop_length, cfg.n_fft,
                       1.0, iters, momentum, span, True)
    # torchaudio's frame t starts n_fft // 2 before t hop, the input's pad before: the same
    # frames hold sample j of the signal at torchaudio's sample j - shift
    shift = cfg.n_fft // 2 - cfg.pad
    y = torch.nn.functional.pad(y, (max(0, shift), max(0, n - shift - span)))
    return y[..., max(0, -shift):max(0, -shift) + n]


def pghipy_invert(x: torch.Tensor, cfg: StftConfig, length: int | None,
                  tol: float) -> torch.Tensor:
    import pghipy

    from .baselines.pghi import gamma
    from .dsp.stft import istft

    flat = x.detach().cpu().reshape(-1, *x.shape[-2:]).double().numpy()
    phase = np.stack([pghipy.pghi(np.ascontiguousarray(m.T), win_length=cfg.n_fft,
                                  hop_length=cfg.hop_length, gamma=gamma(cfg), tol=tol).T
                      for m in flat])
    spec = torch.polar(x.reshape(flat.shape), torch.from_numpy(phase).to(x.dtype))
    return istft(spec, cfg, length).reshape(*x.shape[:-2], -1)


def _librosa_window(cfg: StftConfig):
    return {"hann": "hann", "hamming": "hamming", "blackman": "blackman",
            "sqrt-hann": np.sqrt(np.hanning(cfg.win_length + 1)[:-1])}[cfg.window]


def librosa_invert(x: torch.Tensor, cfg: StftConfig, mel: MelConfig | None, length: int | None,
                   iters: int, momentum: float, seed: int) -> torch.Tensor:
    """librosa's inversion of ``x`` (..., K or n_mels, T): waveform (..., length)."""
    import librosa

    n = default_length(x.shape[-1], cfg) if length is None else length
    native = cfg.center and cfg.pad == cfg.n_fft // 2
    drop = 0 if native else cfg.pad
    common = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                  window=_librosa_window(cfg), center=native, n_iter=iters)
    if native:  # (uncentred frames keep librosa's own length, n_fft + hop (T - 1), cut below)
        common.update(pad_mode=cfg.pad_mode, length=n)
    flat = x.detach().cpu().reshape(-1, *x.shape[-2:]).numpy()
    out = []
    for item in flat:
        if mel is not None:
            item = librosa.feature.inverse.mel_to_stft(
                mel_values(torch.from_numpy(item), mel).numpy(), sr=cfg.sample_rate,
                n_fft=cfg.n_fft, power=mel.power, fmin=mel.f_min,
                fmax=mel.upper(cfg.sample_rate), htk=mel.mel_scale == "htk",
                norm="slaney" if mel.mel_norm == "slaney" else None)
        y = librosa.griffinlim(item, momentum=momentum, random_state=seed, **common)
        y = np.asarray(y[drop:drop + n], dtype=np.float32)
        out.append(torch.nn.functional.pad(torch.from_numpy(y), (0, n - len(y))))
    return torch.stack(out).reshape(*x.shape[:-2], n)
