"""Shared fixtures (real speech clips) and hardware markers that skip cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppsi_cli.io import read_audio

REPO_ROOT = Path(__file__).resolve().parents[1]
AUDIO = REPO_ROOT / "examples" / "audio"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``requires_cuda`` without a CUDA device and ``multi_gpu`` with fewer than two."""
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    few_gpus = pytest.mark.skip(reason=f"needs 2+ CUDA devices, found {n_gpu}")
    for item in items:
        if "requires_cuda" in item.keywords and n_gpu < 1:
            item.add_marker(no_cuda)
        if "multi_gpu" in item.keywords and n_gpu < 2:
            item.add_marker(few_gpus)


def _load(name: str) -> tuple[torch.Tensor, int]:
    x, sr = read_audio(AUDIO / name)
    return torch.from_numpy(x).to(torch.float64), sr


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def speech() -> tuple[torch.Tensor, int]:
    """arctic_a0007: 16 kHz mono speech, ~4 s, float64 (L,)."""
    return _load("arctic_a0007.wav")


@pytest.fixture(scope="session")
def speech2() -> tuple[torch.Tensor, int]:
    """arctic_a0009: a second 16 kHz mono clip, float64 (L,)."""
    return _load("arctic_a0009.wav")


def _tiny_weights(path: Path, strided: bool) -> Path:
    from ppsi_cli.config import ModelConfig, SolverConfig, StftConfig
    from ppsi_cli.model import PhaseDiffNet
    from ppsi_cli.weights import save_weights

    torch.manual_seed(0)  # random weights: quality is irrelevant where these are used
    return save_weights(path, PhaseDiffNet(ModelConfig(strided=strided)), StftConfig(),
                        SolverConfig())


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file of the default online model with seeded random weights."""
    return _tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-online.pt", strided=False)


@pytest.fixture(scope="session")
def tiny_strided_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights file of the default strided model with seeded random weights."""
    return _tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-strided.pt", strided=True)


@pytest.fixture
def one_thread():
    """Run the test on one torch thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
