"""``ppsi bench solvers`` in-process on a tiny setting, and the library function behind it."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from ppsi_cli import StftConfig
from ppsi_cli.bench import bench_solvers, random_systems
from ppsi_cli.cli import app
from ppsi_cli.dsp.stft import n_frames
from ppsi_cli.solvers import solve_reference

CFG = StftConfig()

runner = CliRunner()
FAST = ["--k", "33", "--batches", "1,3", "--min-time", "0"]


def test_bench_solvers_json() -> None:
    result = runner.invoke(app, ["bench", "solvers", "--json", *FAST])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    pairs = [(r["solver"], r["batch"]) for r in rows]
    assert len(pairs) == len(set(pairs))  # one object per (solver, batch)
    assert {s for s, _ in pairs} >= {"reference", "lapack", "thomas", "dense"}
    assert {b for _, b in pairs} == {1, 3}
    for batch in (1, 3):
        group = {r["solver"]: r for r in rows if r["batch"] == batch}
        dense = group["dense"]["seconds_per_solve"]
        ref = group["reference"]["seconds_per_solve"]
        for r in group.values():
            assert r["k"] == 33 and r["dtype"] == "complex128" and r["threads"] == 1
            assert r["seconds_per_solve"] > 0
            assert r["vs_dense"] == pytest.approx(dense / r["seconds_per_solve"], rel=1e-12)
            assert r["vs_reference"] == pytest.approx(ref / r["seconds_per_solve"], rel=1e-12)
        assert group["dense"]["vs_dense"] == group["reference"]["vs_reference"] == 1.0


def test_bench_solvers_table_and_dtype() -> None:
    result = runner.invoke(app, ["bench", "solvers", "--dtype", "complex64", "--threads", "2",
                                 *FAST])
    assert result.exit_code == 0, result.output
    for text in ("µs per solve", "× vs dense", "× vs reference", "lapack", "thomas",
                 "complex64", "2 thread(s)"):
        assert text in result.stdout
    assert torch.get_num_threads() >= 1  # restored, still valid


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_bench_cuda_without_cuda_is_one_red_line() -> None:
    result = runner.invoke(app, ["bench", "solvers", "--device", "cuda", *FAST])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda: no CUDA device" in lines[0]


@pytest.mark.parametrize("args, message", [
    (["--batches", "1,x"], "--batches: 'x' is not a batch size"),
    (["--batches", "0"], "--batches: '0' is not a batch size"),
    (["--device", "tpu"], "--device must be cpu or cuda"),
    (["--dtype", "int8"], "--dtype must be one of"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bench_bad_options(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "solvers", *FAST, *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_bench_library_sub_batches_dense_and_restores_threads() -> None:
    before = torch.get_num_threads()
    rows = bench_solvers(k=17, batches=(3,), solvers=["thomas", "dense"], dense_max_batch=2,
                         repeats=2, threads=1)
    assert torch.get_num_threads() == before
    by = {r["solver"]: r for r in rows}
    assert set(by) == {"thomas", "dense"}
    assert by["dense"]["systems_timed"] == 2 and by["dense"]["note"] == "timed on 2 of 3 systems"
    assert by["thomas"]["systems_timed"] == 3 and by["thomas"]["note"] == ""
    assert all(r["repeats"] == 2 and math.isnan(r["vs_reference"]) for r in rows)
    with pytest.raises(ValueError, match=r"solver\(s\) \['triton'\] cannot run on cpu"):
        bench_solvers(solvers=["triton"], k=5, batches=(1,))
    with pytest.raises(ValueError, match=r"batch sizes must be >= 1, got \[0\]"):
        bench_solvers(k=5, batches=(0,))


def test_random_systems_are_hermitian_positive_definite() -> None:
    lower, diag, upper, rhs = random_systems(4, 9, torch.complex128, seed=1)
    assert torch.equal(upper, lower.conj())
    mat = torch.diag_embed(diag) + torch.diag_embed(lower, -1) + torch.diag_embed(upper, 1)
    assert torch.allclose(mat, mat.mH)
    assert torch.linalg.eigvalsh(mat).min() > 0
    x = solve_reference(lower, diag, upper, rhs)
    assert torch.allclose(mat @ x.unsqueeze(-1), rhs.unsqueeze(-1))


def test_bench_invert_json(tiny_weights) -> None:
    """``ppsi bench invert`` on 1 s of speech: one row per method, the ppsi split adds up."""
    result = runner.invoke(app, ["bench", "invert", "--json", "--seconds", "1", "--methods",
                                 "ppsi,oracle", "--weights", str(tiny_weights), "--repeats", "1"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["method"] for r in rows] == ["ppsi", "oracle"]
    for r in rows:
        assert r["batch"] == 1 and r["device"] == "cpu" and r["threads"] == 1
        assert r["audio_seconds"] == pytest.approx(1.0)
        assert 0 < r["seconds_per_audio_second"] < 10
        assert r["realtime_factor"] == pytest.approx(1 / r["seconds_per_audio_second"])
    ppsi, oracle = rows
    assert ppsi["weights"] == f"weights {tiny_weights.name}" and oracle["weights"] == ""
    assert "cnn_seconds_per_audio_second" not in oracle
    parts = ppsi["cnn_seconds_per_audio_second"] + ppsi["ls_seconds_per_audio_second"]
    assert 0 < parts < 3 * ppsi["seconds_per_audio_second"]  # separate runs: timing noise


def test_bench_invert_table_and_errors(tiny_weights) -> None:
    result = runner.invoke(app, ["bench", "invert", "--seconds", "0.5", "--methods",
                                 "ppsi,ppsi-strided", "--weights", str(tiny_weights),
                                 "--repeats", "1"])
    assert result.exit_code == 0, result.output
    words = " ".join(result.stdout.split())  # the caption wraps
    for text in ("s per audio s", "CNN s/s", "LS s/s", "ppsi-strided", "Strided CNN =",
                 f"weights {tiny_weights.name}"):
        assert text in words, text
    assert "Target" not in words  # internal targets are not the user's business
    # the strided variant: no weights given, so shipped ones or random ones, said so
    assert "shipped weights" in words or "random weights (default config)" in words
    for args, message in ((["--methods", "ppsi,magic"], "--methods: unknown method 'magic'"),
                          (["--seconds", "0"], "--seconds must be > 0"),
                          (["--batches", "16"], "--batches: only on CUDA")):
        result = runner.invoke(app, ["bench", "invert", *args])
        assert result.exit_code == 2 and message in result.stderr, result.output


def test_bench_invert_streamed_chunks(tiny_strided_weights) -> None:
    """--chunk: the online methods timed as streams fed N frames per push; offline methods and
    peers refused (they have no stream)."""
    from ppsi_cli.bench import bench_invert

    rows = bench_invert(seconds=0.5, methods=["ppsi-strided", "rtpghi"], repeats=1, chunk=1,
                        weights=tiny_strided_weights)
    assert [(r["method"], r["chunk_frames"]) for r in rows] == [("ppsi-strided", 1),
                                                                 ("rtpghi", 1)]
    assert all(r["seconds_per_audio_second"] > 0 for r in rows)
    # per push: every push of the timed runs, the deadline a push's audio sets
    frames = n_frames(int(0.5 * CFG.sample_rate), CFG)
    for r in rows:
        assert r["pushes"] == frames and r["push_audio_ms"] == 16.0
        p = r["push_ms"]
        assert 0 < p["median"] <= p["p99"] <= p["max"]
        # the pushes are part of the run: their sum cannot exceed it
        assert p["median"] * frames / 2 <= 1000 * r["seconds_per_audio_second"] * 0.5
    default = bench_invert(seconds=0.5, repeats=1, chunk=4, weights=tiny_strided_weights)
    assert all(r["pushes"] == -(-frames // 4) and r["push_audio_ms"] == 64.0 for r in default)
    assert {r["method"] for r in default} == {"ppsi", "ppsi-strided", "oracle", "rtisi-la",
                                              "rtisi", "rtpghi"}  # the online defaults
    for kwargs, message in (({"methods": ["gl32"]}, "offline: griffin-lim"),
                            ({"methods": ["ppsi"], "peers": True}, "offline: the peers"),
                            ({"methods": ["ppsi"], "chunk": 0}, "chunk must be >= 1")):
        with pytest.raises(ValueError, match=message):
            bench_invert(seconds=0.5, repeats=1, **{"chunk": 2, **kwargs})
    result = runner.invoke(app, ["bench", "invert", "--chunk", "1", "--methods", "gl32"])
    assert result.exit_code == 1 and "offline: griffin-lim" in result.stderr
    result = runner.invoke(app, ["bench", "invert", "--chunk", "2", "--methods", "rtpghi",
                                 "--seconds", "0.5", "--repeats", "1"])
    assert result.exit_code == 0 and "push median ms" in result.stdout and "32 ms" in result.stdout


def test_bench_invert_library_batches(tiny_strided_weights) -> None:
    """The batched path (CUDA's, run here on CPU): one row per (method, batch), batch size by
    batch size (the methods of one size are timed in the same rounds)."""
    from ppsi_cli.bench import bench_invert

    before = torch.get_num_threads()
    rows = bench_invert(seconds=0.5, methods=["ppsi-strided", "oracle"], batches=[1, 2],
                        repeats=1, weights=tiny_strided_weights)
    assert torch.get_num_threads() == before
    assert [(r["method"], r["batch"]) for r in rows] == [
        ("ppsi-strided", 1), ("oracle", 1), ("ppsi-strided", 2), ("oracle", 2)]
    assert all(r["seconds_per_audio_second"] > 0 for r in rows)
    with pytest.raises(ValueError, match="unknown method"):
        bench_invert(methods=["nope"])


def test_example_clips_fall_back_to_the_current_folder(tmp_path, monkeypatch) -> None:
    """An installed package has no examples beside it; run from a checkout, it finds its clips."""
    from ppsi_cli import bench

    clip = tmp_path / "examples" / "audio" / "a.wav"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"")
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "site" / "ppsi_cli" / "bench.py"))
    monkeypatch.chdir(tmp_path / "examples")
    assert bench.example_clips() == []
    monkeypatch.chdir(tmp_path)
    assert bench.example_clips() == [clip]


def test_bench_invert_takes_the_stft_options() -> None:
    """The STFT options reach the benchmark: a 50 % overlap STFT at 22.05 kHz is timed with
    the shipped network of its family (the example clips resampled to its rate)."""
    result = runner.invoke(app, ["bench", "invert", "--json", "--seconds", "0.5", "--methods",
                                 "ppsi,pghi", "--repeats", "1", "--n-fft", "512",
                                 "--hop-length", "256", "--sample-rate", "22050"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["method"] for r in rows] == ["ppsi", "pghi"]
    assert rows[0]["weights"] == "shipped weights"
    assert rows[0]["audio_seconds"] == pytest.approx(0.5, abs=1e-3)


def test_bench_invert_peers_time_librosa_beside_griffin_lim() -> None:
    """--peers adds librosa's griffinlim (and torchaudio's, where it loads) with the iterations
    of each Griffin-Lim row, measured in the same run, and gives ppsi's row its time over the
    fastest peer's."""
    from ppsi_cli.peers import available

    pytest.importorskip("librosa")
    result = runner.invoke(app, ["bench", "invert", "--json", "--seconds", "1", "--repeats", "1",
                                 "--methods", "griffin-lim+iters=4,pghi", "--peers"])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    pghipy = available("pghipy")  # the other peers, where installed
    gl_peers = {"librosa+iters=4"} | ({"torchaudio+iters=4"} if available("torchaudio") else set())
    assert set(rows) == {"griffin-lim+iters=4", "pghi"} | gl_peers | (
        {"pghipy"} if pghipy else set())
    gl = rows["griffin-lim+iters=4"]
    fastest = min(gl_peers, key=lambda m: rows[m]["seconds_per_audio_second"])
    assert gl["peer"] == fastest and ("vs_peer" in rows["pghi"]) == pghipy
    assert gl["vs_peer"] == pytest.approx(gl["seconds_per_audio_second"]
                                          / rows[fastest]["seconds_per_audio_second"])


def test_bench_invert_unreadable_audio_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = runner.invoke(app, ["bench", "invert", "--audio", str(bad), "--methods", "pghi",
                                 "--repeats", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--audio {bad}: unreadable" in lines[0], result.stderr
