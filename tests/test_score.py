"""``ppsi score``: pairing, NaN + reason for unscorable pairs, CSV/JSON, --jobs, the HTML report."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ppsi_cli import StftConfig
from ppsi_cli import metrics as M
from ppsi_cli.cli import app
from ppsi_cli.dsp.stft import istft, stft
from ppsi_cli.io import read_audio, write_wav_atomic
from ppsi_cli.report import png_bytes
from ppsi_cli.score import Pair, pair_files, score_pairs, summarize

AUDIO = Path(__file__).resolve().parents[1] / "examples" / "audio"
ALL = "pesq,pesq-nb,estoi,stoi,lsc,si-sdr"
runner = CliRunner()


def _random_phase(x: np.ndarray, seed: int) -> np.ndarray:
    cfg = StftConfig()
    spec = stft(torch.from_numpy(x.astype(np.float64)), cfg)
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(spec.shape, generator=g, dtype=torch.float64) * 2 * math.pi
    y = istft(torch.polar(spec.abs(), phase), cfg, length=len(x)).numpy()
    return 0.5 * x + 0.5 * y  # partly right phase: clearly degraded, still speech-like


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> tuple[Path, Path]:
    """ref/ and est/ with two real-speech pairs (wav vs flac, nested), a silent estimate, a
    too-short pair, an unreadable estimate and one unpaired file on each side."""
    root = tmp_path_factory.mktemp("trees")
    ref, est = root / "ref", root / "est"
    for d in (ref / "a", est / "a", ref / "b", est / "b"):
        d.mkdir(parents=True)
    x7, sr = read_audio(AUDIO / "arctic_a0007.wav")
    x9, _ = read_audio(AUDIO / "arctic_a0009.wav")
    noise = np.random.default_rng(0).standard_normal(len(x7)).astype(np.float32)
    write_wav_atomic(ref / "a" / "s7.wav", x7, sr)
    write_wav_atomic(est / "a" / "s7.flac", x7 + 0.02 * noise, sr)
    write_wav_atomic(ref / "b" / "s9.flac", x9, sr)
    write_wav_atomic(est / "b" / "s9.wav", _random_phase(x9, 1), sr)
    write_wav_atomic(ref / "silent.wav", x9, sr)
    write_wav_atomic(est / "silent.wav", np.zeros_like(x9), sr)
    write_wav_atomic(ref / "short.wav", x7[8000:8000 + int(0.3 * sr)], sr)
    write_wav_atomic(est / "short.wav", x7[8000:8000 + int(0.3 * sr)], sr)
    write_wav_atomic(ref / "broken.wav", x9, sr)
    (est / "broken.wav").write_bytes(b"RIFF....not a wav file")
    write_wav_atomic(ref / "only_ref.wav", x9, sr)
    write_wav_atomic(est / "only_est.ogg", x9, sr)
    (est / "notes.txt").write_text("not audio")
    return ref, est


def test_pair_files_by_relative_path(trees, tmp_path):
    ref, est = trees
    pairs, unpaired_ref, unpaired_est = pair_files(ref, est)
    assert [(p.key, p.ref.name, p.est.name) for p in pairs] == [
        ("a/s7", "s7.wav", "s7.flac"), ("b/s9", "s9.flac", "s9.wav"),
        ("broken", "broken.wav", "broken.wav"), ("short", "short.wav", "short.wav"),
        ("silent", "silent.wav", "silent.wav")]
    assert unpaired_ref == [ref / "only_ref.wav"]
    assert unpaired_est == [est / "only_est.ogg"]
    # single files pair with each other whatever their names
    assert pair_files(ref / "a" / "s7.wav", est / "b" / "s9.wav")[0] == [
        Pair("s7", ref / "a" / "s7.wav", est / "b" / "s9.wav")]
    with pytest.raises(ValueError, match="two files or two directories"):
        pair_files(ref / "a" / "s7.wav", est)
    with pytest.raises(ValueError, match="does not exist"):
        pair_files(ref, tmp_path / "nope")
    dup = tmp_path / "dup"
    dup.mkdir()
    shutil.copy(ref / "a" / "s7.wav", dup / "x.wav")
    shutil.copy(est / "a" / "s7.flac", dup / "x.flac")
    with pytest.raises(ValueError, match="pair as 'x'"):
        pair_files(dup, est)


@pytest.fixture(scope="module")
def scored(trees, tmp_path_factory):
    """The CLI run once with --jobs 1 and once with --jobs 2 (CSV, JSON and report)."""
    ref, est = trees
    out = tmp_path_factory.mktemp("out")
    runs = {}
    for jobs in (1, 2):
        files = {k: out / f"j{jobs}.{k}" for k in ("csv", "json", "html")}
        result = runner.invoke(app, ["score", str(ref), str(est), "--metrics", ALL,
                                     "--jobs", str(jobs), "--csv", str(files["csv"]),
                                     "--json", str(files["json"]), "--report", str(files["html"]),
                                     "--report-files", "2"])
        runs[jobs] = (result, files)
    return runs


def test_cli_scores_and_reports_failures(scored):
    result, files = scored[1]
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, result.stderr  # one red line per failed pair, one summary
    flat = " ".join(result.stderr.split())  # long lines may wrap at the console width
    assert "error: broken: unreadable estimate: " in flat
    assert "error: short: too short: 0.300 s, need at least 0.5 s" in flat
    assert "error: silent: estimate is silent (peak -inf dBFS < -80 dBFS)" in flat
    assert "error: 3 of 5 pairs could not be scored (--allow-failures to exit 0)" in flat
    assert "only_ref.wav has no estimate" in result.stderr
    assert "only_est.ogg has no reference" in result.stderr
    assert "pesq-nb: audio resampled from 16000 Hz to 8000 Hz" in result.stderr
    # the table goes to stdout: every metric with n = 2 scored and 3 failed
    for name in ALL.split(","):
        row = rf"│ {re.escape(name)}\s+│\s+\S+ ± \S+ │\s+\[\S+, \S+\] │ 2 │\s+3 │"
        assert re.search(row, result.stdout), result.stdout


def test_nan_and_reason_for_unscorable_pairs(scored):
    doc = json.loads(scored[1][1]["json"].read_text())
    files = {f["key"]: f for f in doc["files"]}
    for key, reason in (("silent", "estimate is silent"), ("short", "too short: 0.300 s"),
                        ("broken", "unreadable estimate")):
        assert all(v is None for v in files[key]["values"].values())
        assert set(files[key]["reasons"]) == set(ALL.split(","))
        assert all(r.startswith(reason) for r in files[key]["reasons"].values())
    for key in ("a/s7", "b/s9"):
        assert files[key]["reasons"] == {}
        assert all(isinstance(v, float) for v in files[key]["values"].values())
    for name, s in doc["summary"].items():  # NaNs are counted, never averaged in
        vals = [files[k]["values"][name] for k in ("a/s7", "b/s9")]
        assert s["n"] == 2 and s["failed"] == 3
        assert s["mean"] == pytest.approx(np.mean(vals), rel=1e-12)
        assert s["std"] == pytest.approx(np.std(vals, ddof=1), rel=1e-12)
        half = 12.706204736174707 * s["std"] / math.sqrt(2)  # t(0.975, 1 dof)
        assert s["ci95"] == pytest.approx([s["mean"] - half, s["mean"] + half], rel=1e-9)
    assert doc["unpaired_ref"][0].endswith("only_ref.wav")


def test_cli_values_equal_direct_metric_calls(scored, trees):
    ref, est = trees
    doc = json.loads(scored[1][1]["json"].read_text())
    values = {f["key"]: f["values"] for f in doc["files"]}
    x, sr = read_audio(ref / "a" / "s7.wav")
    y, _ = read_audio(est / "a" / "s7.flac")
    for name in ALL.split(","):
        assert values["a/s7"][name] == pytest.approx(M.METRICS[name].fn(x, y, sr), rel=1e-12)
    assert 1.0 < values["b/s9"]["pesq"] < 3.5 and 0.2 < values["b/s9"]["estoi"] < 0.95


def test_csv_and_json_parse_back_to_the_same_numbers(scored):
    _, files = scored[1]
    doc = json.loads(files["json"].read_text())
    rows = list(csv.DictReader(files["csv"].open()))
    assert [r["key"] for r in rows] == [f["key"] for f in doc["files"]]
    for row, f in zip(rows, doc["files"]):
        for name in ALL.split(","):
            from_json = f["values"][name]
            if from_json is None:
                assert math.isnan(float(row[name])) and row["reason"]
            else:
                assert float(row[name]) == from_json
    assert rows[2]["reason"].startswith("unreadable estimate")


def test_jobs_2_gives_the_same_numbers_as_jobs_1(scored):
    docs = {j: json.loads(files["json"].read_text()) for j, (_, files) in scored.items()}
    assert scored[2][0].exit_code == 1
    assert [f["key"] for f in docs[1]["files"]] == [f["key"] for f in docs[2]["files"]]
    for f1, f2 in zip(docs[1]["files"], docs[2]["files"]):
        assert f1["reasons"] == f2["reasons"]
        for name, v in f1["values"].items():
            w = f2["values"][name]
            if v is None or w is None:  # a pair that could not be scored: null in both
                assert v is None and w is None, (name, v, w)
                continue
            # pystoi is not bit-reproducible between calls (~1 ulp); everything else is exact
            assert v == pytest.approx(w, rel=1e-12, abs=0)
            if name not in ("stoi", "estoi"):
                assert v == w


def test_allow_failures_and_bad_options(trees, tmp_path):
    ref, est = trees
    r = runner.invoke(app, ["score", str(ref / "short.wav"), str(est / "short.wav"),
                            "-m", "si-sdr", "--allow-failures"])
    assert r.exit_code == 0 and "too short" in r.stderr
    r = runner.invoke(app, ["score", str(ref), str(est), "-m", "pesq,mos"])
    assert r.exit_code == 2
    assert r.stderr.strip() == ("error: unknown metric 'mos'; choose from pesq, pesq-nb, estoi, "
                                "stoi, lsc, si-sdr")
    r = runner.invoke(app, ["score", str(ref), str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in " ".join(r.stderr.split())
    r = runner.invoke(app, ["score", str(ref), str(est), "--csv", str(tmp_path / "no" / "x.csv")])
    assert r.exit_code == 2 and "does not exist" in " ".join(r.stderr.split())


def test_references_without_an_estimate_fail_the_run(trees, tmp_path):
    """Scores over the estimates that exist are printed, but a run where the system left out
    files exits 1 (a mean over 1 of 2 files is not the system's score) unless allowed."""
    ref, est = trees
    r2 = tmp_path / "ref"
    r2.mkdir()
    for name in ("s7.wav", "left_out.wav"):
        (r2 / name).write_bytes((ref / "a" / "s7.wav").read_bytes())
    r = runner.invoke(app, ["score", str(r2), str(est / "a"), "-m", "lsc"])
    assert r.exit_code == 1 and re.search(r"\b1 pair\b(?!s)", r.stdout), r.output
    flat = " ".join(r.stderr.split())
    assert "left_out.wav has no estimate" in flat
    assert "error: 1 of 2 references have no estimate; the means cover the others" in flat
    r = runner.invoke(app, ["score", str(r2), str(est / "a"), "-m", "lsc", "--allow-failures"])
    assert r.exit_code == 0, r.output


def test_single_files_and_library_api(trees):
    ref, est = trees
    r = runner.invoke(app, ["score", str(ref / "a" / "s7.wav"), str(est / "a" / "s7.flac"),
                            "-m", "si-sdr,lsc"])
    assert r.exit_code == 0, r.output
    assert re.search(r"\b1 pair\b(?!s)", r.stdout), r.stdout
    seen = []
    pairs, _, _ = pair_files(ref / "a", est / "a")
    results = score_pairs(pairs, ["si-sdr"], on_progress=lambda d, t, res: seen.append((d, t)))
    assert seen == [(1, 1)] and not results[0].failed
    s = summarize(results, ["si-sdr"])["si-sdr"]
    assert s.n == 1 and s.failed == 0 and math.isnan(s.std) and math.isnan(s.ci_low)
    with pytest.raises(ValueError, match="unknown metric"):
        score_pairs(pairs, ["mos"])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def test_png_encoder_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = png_bytes(img)
    assert _png_size(data) == (7, 5)
    n = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    idat = data[41:41 + n]
    assert struct.unpack(">I", data[41 + n:45 + n])[0] == zlib.crc32(b"IDAT" + idat)
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(5, 1 + 7 * 3)
    assert (raw[:, 0] == 0).all() and (raw[:, 1:].reshape(5, 7, 3) == img).all()


def test_report_is_self_contained(scored):
    text = scored[1][1]["html"].read_text()
    assert not re.search(r"(src|href)=[\"'](?!data:)", text)  # nothing outside the file
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    wavs = re.findall(r'src="data:audio/wav;base64,([^"]+)"', text)
    assert len(pngs) == 4 and len(wavs) == 4  # 2 pairs x (reference, estimate)
    for p in pngs:
        w, h = _png_size(base64.b64decode(p))
        assert h == (StftConfig().n_bins + 1) // 2 and w > 100  # bins max-pooled in pairs
    assert base64.b64decode(wavs[0])[:4] == b"RIFF"
    for needle in ("Summary", "Per file", "a/s7", "b/s9", "estimate is silent",
                   "only_ref.wav", "20·log10"):
        assert needle in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_chromium(scored, tmp_path):
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--screenshot={shot}", "--window-size=1200,1600",
         scored[1][1]["html"].resolve().as_uri()],
        check=True, capture_output=True, timeout=60)
    assert _png_size(shot.read_bytes()) == (1200, 1600)


def test_cli_help_lists_exactly_the_registered_metrics():
    """The help names the metrics without importing them (fast start-up): the same list."""
    from ppsi_cli.cli.score import METRIC_NAMES

    assert METRIC_NAMES == tuple(M.METRICS)
