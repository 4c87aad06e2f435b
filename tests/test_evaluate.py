"""``ppsi eval``: the per-method table equals direct metric calls on the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

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
from ppsi_cli.evaluate import paired, parse_pairs
from ppsi_cli.methods import parse_methods
from ppsi_cli.model import PhaseDiffNet
from ppsi_cli.weights import save_weights


@pytest.fixture
def eval_dir(tmp_path, repo_root):
    x, sr = sf.read(repo_root / "examples/audio/arctic_a0009.wav", dtype="float32")
    d = tmp_path / "eval" / "spk"
    d.mkdir(parents=True)
    sf.write(d / "a.flac", x[: 2 * sr], sr)
    sf.write(d / "b.flac", x[len(x) - 2 * sr:], sr)
    return tmp_path / "eval", x[: 2 * sr]


def test_eval_table_matches_direct_metrics(eval_dir, tmp_path):
    root, x = eval_dir
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "w.pt", PhaseDiffNet(ModelConfig()), StftConfig(),
                           SolverConfig())
    out = tmp_path / "e.json"
    r = CliRunner().invoke(app, ["eval", str(root), "--methods", "oracle,gl32,ppsi",
                                 "--weights-online", str(weights), "--json", str(out),
                                 "--compare", "oracle:gl32,ppsi:gl32"])
    assert r.exit_code == 0, r.output
    gl32 = "griffin-lim+iters=32"  # the canonical spelling of gl32
    assert f"oracle − {gl32}" in r.output and f"ppsi − {gl32}" in r.output
    res = json.loads(out.read_text())
    assert res["files"] == 2 and res["audio_seconds"] == pytest.approx(4.0)
    rows = res["rows"]
    d = [row["methods"]["oracle"]["pesq"] - row["methods"][gl32]["pesq"] for row in rows]
    assert res["paired"][f"oracle:{gl32}"]["pesq"]["mean"] == pytest.approx(np.mean(d), abs=1e-9)
    assert res["paired"][f"oracle:{gl32}"]["pesq"]["n"] == 2
    summ = res["summary"]
    assert set(summ) == {"oracle", gl32, "ppsi"}
    # oracle: the ceiling of the least squares
    assert summ["oracle"]["pesq"]["mean"] > 4.5 and summ["oracle"]["estoi"]["mean"] > 0.99
    # gl32 equals a direct call with the same seed, scored by the packages themselves
    cfg = StftConfig()
    spec = stft(torch.from_numpy(x).double(), cfg).to(torch.complex64)
    rec = griffin_lim_stft(spec.abs(), cfg, n_iter=32, generator=torch.Generator().manual_seed(0))
    y = istft(rec, cfg, None).double().numpy()[: len(x)]
    ref = x.astype(np.float64)
    row = next(r for r in rows if r["file"].endswith("a.flac"))["methods"][gl32]
    assert row["pesq"] == pytest.approx(pesq(16000, ref, y, "wb"), abs=1e-6)
    assert row["estoi"] == pytest.approx(stoi(ref, y, 16000, extended=True), abs=1e-6)
    for m in summ.values():
        assert m["seconds_per_audio_second"] > 0 and m["pesq"]["n"] == 2


def test_eval_bad_input(tmp_path):
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "not found" in r.output
    r = CliRunner().invoke(app, ["eval", str(tmp_path), "--methods", "nope"])
    assert r.exit_code == 1 and "unknown method" in r.output
    r = CliRunner().invoke(app, ["eval", str(tmp_path), "--methods", "gl32,pghi",
                                 "--compare", "ppsi:gl32"])
    assert r.exit_code == 1 and "ppsi is not among" in r.output


def test_eval_goes_on_past_unreadable_files(eval_dir, tmp_path):
    """An unreadable file and one shorter than a window each get one red line; the others are
    scored as without them; the run exits 1; the JSON lists the two with their reasons."""
    root, _ = eval_dir
    (root / "spk" / "broken.wav").write_text("not audio")
    sf.write(root / "spk" / "short.wav", np.full(228, 0.1, np.float32), 16000)
    out = tmp_path / "e.json"
    r = CliRunner().invoke(app, ["eval", str(root), "--methods", "pghi", "--json", str(out)])
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(lines) == 2 and "Traceback" not in r.output
    assert "broken.wav: unreadable" in lines[0]
    assert "short.wav: too short (228 samples at 16000 Hz" in lines[1]
    res = json.loads(out.read_text())
    assert res["files"] == 2 and res["summary"]["pghi"]["pesq"]["n"] == 2
    assert [f["file"].rsplit("/", 1)[-1] for f in res["failed"]] == ["broken.wav", "short.wav"]
    (root / "spk" / "a.flac").unlink(), (root / "spk" / "b.flac").unlink()
    r = CliRunner().invoke(app, ["eval", str(root), "--methods", "pghi"])
    assert r.exit_code == 1 and "none of the 2 file(s)" in r.stderr and "Traceback" not in r.output


def _rows(a, b):
    return [{"methods": {"x": {"pesq": u}, "y": {"pesq": v}}} for u, v in zip(a, b)]


def test_paired_difference_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    a = rng.normal(4.0, 0.2, 40)
    b = a - 0.03 + rng.normal(0, 0.05, 40)
    got = paired(_rows(a, b), "x", "y")
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert got["n"] == 40 and got["mean"] == pytest.approx(np.mean(a - b), abs=1e-12)
    assert got["sem"] == pytest.approx(stats.sem(a - b), rel=1e-9)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-6)
    assert got["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-6)
    assert got["share_higher"] == pytest.approx(np.mean(a > b))
    # a file one method failed to score (NaN) leaves the comparison; ties count half
    a2, b2 = np.r_[a, np.nan, 3.0], np.r_[b, 4.0, 3.0]
    got2 = paired(_rows(a2, b2), "x", "y")
    assert got2["n"] == 41 and got2["share_higher"] == pytest.approx(
        (np.sum(a > b) + 0.5) / 41)


def test_parse_pairs_names_the_problem():
    methods = parse_methods("ppsi,ppsi-strided,gl32")
    # any spelling of an evaluated method; the pairs carry the canonical labels
    assert parse_pairs("ppsi:gl32, ppsi-strided:ppsi", methods) == [
        ("ppsi", "griffin-lim+iters=32"), ("ppsi-strided", "ppsi")]
    assert parse_pairs("ppsi:griffin-lim", methods) == [("ppsi", "griffin-lim+iters=32")]
    for bad in ("ppsi", "ppsi:ppsi", ":gl32", "gl32:griffin-lim-32"):
        with pytest.raises(ValueError, match="A:B"):
            parse_pairs(bad, methods)
    with pytest.raises(ValueError, match="gl100 is not among"):
        parse_pairs("ppsi:gl100", methods)


def test_eval_strided_weights_limit_and_jobs(eval_dir, tmp_path):
    """``--weights-strided`` is the model ppsi-strided runs, ``--limit`` picks files, ``--jobs``
    spreads them over processes: the row equals a direct call scored by the packages."""
    from ppsi_cli import invert

    root, x = eval_dir
    torch.manual_seed(1)
    weights = save_weights(tmp_path / "s.pt", PhaseDiffNet(ModelConfig(strided=True)),
                           StftConfig(), SolverConfig())
    out = tmp_path / "e.json"
    r = CliRunner().invoke(app, ["eval", str(root), "--methods", "ppsi-strided,rtpghi",
                                 "--weights-strided", str(weights), "--limit", "1",
                                 "--jobs", "2", "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["files"] == 1 and res["rows"][0]["file"].endswith("a.flac")
    spec = stft(torch.from_numpy(x).double(), StftConfig()).to(torch.complex64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the eval workers: float rounding then agrees
    try:
        y = invert(spec, "ppsi-strided", weights=str(weights), length=len(x)).double().numpy()
    finally:
        torch.set_num_threads(threads)
    row = res["rows"][0]["methods"]["ppsi-strided"]
    assert row["pesq"] == pytest.approx(pesq(16000, x.astype(np.float64), y, "wb"), abs=1e-6)


def test_json_files_are_strict_json(eval_dir, tmp_path):
    """A silent file's PESQ is undefined: the JSON says null (bare NaN, which Python wrote
    before, is refused by jq and JavaScript)."""
    from ppsi_cli.io import json_text

    assert json_text({"a": float("nan"), "b": [1.5, float("inf")], "c": (2,)}, None) == \
        '{"a": null, "b": [1.5, null], "c": [2]}'
    root, _ = eval_dir
    sf.write(root / "spk" / "silent.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "e.json"
    CliRunner().invoke(app, ["eval", str(root), "--methods", "pghi", "--json", str(out)])

    def refuse(name):
        raise ValueError(f"bare {name} in the JSON")

    res = json.loads(out.read_text(), parse_constant=refuse)
    silent = [r for r in res["rows"] if r["file"].endswith("silent.wav")]
    assert silent and silent[0]["methods"]["pghi"]["pesq"] is None


def test_eval_notes_what_reading_changed(eval_dir, tmp_path):
    """A stereo file at another rate is mixed down and resampled to the STFT's rate, as before,
    and now says so: one note line per kind (with its count), the row's notes in the JSON."""
    from scipy.signal import resample_poly

    root, _ = eval_dir
    x, sr = sf.read(next((root / "spk").glob("*.flac")), dtype="float32")
    y = resample_poly(x, 441, 320).astype(np.float32)
    sf.write(root / "spk" / "st.wav", np.stack([y, 0.5 * y], axis=1), 22050)
    out = tmp_path / "e.json"
    r = CliRunner().invoke(app, ["eval", str(root), "--methods", "pghi", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "note: 1 file(s): 2 channels mixed down to mono" in r.stderr
    assert "note: 1 file(s): resampled 22050 Hz -> 16000 Hz" in r.stderr
    rows = {Path(row["file"]).name: row for row in json.loads(out.read_text())["rows"]}
    assert rows["st.wav"]["notes"] == ["2 channels mixed down to mono",
                                       "resampled 22050 Hz -> 16000 Hz"]
    assert all(row["notes"] == [] for name, row in rows.items() if name != "st.wav")
