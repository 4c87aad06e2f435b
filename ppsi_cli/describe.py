"""Model facts for ``ppsi info``: parameters, multiply-adds per frame, STFT, latency."""

from __future__ import annotations

from typing import Any

from .config import SolverConfig, StftConfig
from .model import PhaseDiffNet, count_parameters
from .weights import SHIPPED, family_name, load_model, load_weights, model_input


def describe(net: PhaseDiffNet, stft: StftConfig, solver: SolverConfig,
             source: str, input: str = "linear") -> dict[str, Any]:
    """Algorithmic latency: a frame needs ``win_length`` samples; strided models wait one hop
    more for their look-ahead frame, delayed ones ``delay`` hops more. ``input``: linear
    magnitudes, or mel (NNLS magnitudes of a mel spectrogram)."""
    strided = net.cfg.strided
    frames_per_pass = 2 if strided else 1
    latency = stft.win_length + net.cfg.lookahead * stft.hop_length
    return {
        "variant": net.cfg.variant,
        "input": input,
        "source": source,
        "parameters": count_parameters(net),
        "macs_per_frame": net.multiply_adds_per_frame(stft.n_bins) // frames_per_pass,
        "frames_per_pass": frames_per_pass,
        "latency_samples": latency,
        "latency_ms": 1000.0 * latency / stft.sample_rate,
        "family": family_name(stft),
        "stft": stft.to_dict(),
        "solver": solver.to_dict(),
        "model": net.cfg.to_dict(),
    }


def describe_weights(path: str) -> dict[str, Any]:
    m = load_weights(path)
    return describe(m.net, m.stft, m.solver, path, model_input(m))


def describe_shipped() -> list[dict[str, Any]]:
    """Every entry of the registry :data:`ppsi_cli.weights.SHIPPED`, loaded (so its SHA-256
    is checked): file, hash, the family it serves and the model's facts."""
    rows = []
    for entry in SHIPPED:
        m = load_model(variant=entry.variant, stft=StftConfig(
            window=entry.window, n_fft=1024, win_length=1024,
            hop_length=int(1024 * entry.hop_over_win)), input=entry.input)
        rows.append({**describe(m.net, m.stft, m.solver, m.path, entry.input), "file": entry.file,
                     "sha256": entry.sha256, "family": entry.family_name})
    return rows
