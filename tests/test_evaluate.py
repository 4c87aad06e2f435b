"""``ppsi eval``: the per-method table equals direct metric calls on the same outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from pesq import pesq
from pystoi import stoi
from typer.testing import CliRunner

from ppsi_cli.baselines import griffin_lim_stft
from ppsi_cli.cli import app
from ppsi_cli.config import ModelConfig, SolverConfig, StftConfig
from ppsi_cli.dsp import istft, stft
from ppsi_cli.model import PhaseDiffNet
from ppsi_cli.weights import save_weights


@pytest.fixture
def eval_dir(tmp_path, repo_root):
    x, sr = sf.read(repo_root / "examples/audio/arctic_a0009.wav", dtype="float32")
    d = tmp_path / "eval" / "spk"
    d.mkdir(parents=True)
    sf.write(d / "a.flac", x[: 2 * sr], sr)
    return tmp_path / "eval", x[: 2 * sr]


def test_eval_table_matches_direct_metrics(eval_dir, tmp_path):
    root, x = eval_dir
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "w.pt", PhaseDiffNet(ModelConfig()), StftConfig(),
                           SolverConfig())
    out = tmp_path / "e.json"
    r = CliRunner().invoke(app, ["eval", str(root), "--methods", "oracle,gl32,ppsi",
                                 "--weights-online", str(weights), "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["files"] == 1 and res["audio_seconds"] == pytest.approx(2.0)
    summ = res["summary"]
    assert set(summ) == {"oracle", "gl32", "ppsi"}
    # oracle: the ceiling of the least squares
    assert summ["oracle"]["pesq"]["mean"] > 4.5 and summ["oracle"]["estoi"]["mean"] > 0.99
    # gl32 equals a direct call with the same seed, scored by the packages themselves
    cfg = StftConfig()
    spec = stft(torch.from_numpy(x).double(), cfg).to(torch.complex64)
    rec = griffin_lim_stft(spec.abs(), cfg, n_iter=32, generator=torch.Generator().manual_seed(0))
    y = istft(rec, cfg, None).double().numpy()[: len(x)]
    ref = x.astype(np.float64)
    assert summ["gl32"]["pesq"]["mean"] == pytest.approx(pesq(16000, ref, y, "wb"), abs=1e-6)
    assert summ["gl32"]["estoi"]["mean"] == pytest.approx(stoi(ref, y, 16000, extended=True),
                                                          abs=1e-6)
    for m in summ.values():
        assert m["seconds_per_audio_second"] > 0 and m["pesq"]["n"] == 1


def test_eval_bad_input(tmp_path):
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "not found" in r.output
    r = CliRunner().invoke(app, ["eval", str(tmp_path), "--methods", "nope"])
    assert r.exit_code == 1 and "unknown method" in r.output
