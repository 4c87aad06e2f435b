"""Bad inputs to ``ppsi invert``: each gives a correct result or one clear line naming the file
and the problem (never a traceback), and the good files of the same run are still written."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from ppsi_cli.cli import app
from ppsi_cli.config import StftConfig
from ppsi_cli.dsp.stft import stft

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = StftConfig()
SR = CFG.sample_rate
K = CFG.n_bins
runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def speech_mag(speech, frames: int = 20) -> np.ndarray:
    x = speech[0][8000:8000 + frames * CFG.hop_length].to(torch.float32)
    return np.ascontiguousarray(stft(x, CFG).abs().numpy()[:, :frames])


def truncate(path: Path, keep: float | int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])


class Evil:
    """Unpickling this would run a command: a loader must refuse it, never run it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _npz(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


def _wav(path: Path, x: np.ndarray, sr: int = SR, subtype: str | None = None) -> None:
    sf.write(path, x, sr, subtype=subtype)


def _saved(save: Callable[[Path], None], keep) -> Callable[[Path, np.ndarray, np.ndarray], None]:
    def make(path: Path, mag: np.ndarray, audio: np.ndarray) -> None:
        save(path, mag, audio)
        truncate(path, keep)
    return make


def _corrupt_npy_header(path: Path, mag: np.ndarray) -> None:
    """A zip archive whose member's NumPy header is garbled (no pickle anywhere)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("magnitude.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4', 'fort\n")


def _with(mag: np.ndarray, index, value) -> np.ndarray:
    mag = mag.copy()
    mag[index] = value
    return mag


#: name -> (make(path, mag, audio), expected): expected is a list of words the one failure
#: line must hold, or ("ok", samples or None = same as the input audio).
CASES: dict[str, tuple[Callable, object]] = {
    "nan.npy": (lambda p, m, a: np.save(p, _with(m, (3, 5), np.nan)), ["NaN"]),
    "inf.npy": (lambda p, m, a: np.save(p, _with(m, (3, 5), np.inf)), ["Inf"]),
    "negative.npy": (lambda p, m, a: np.save(p, _with(m, (3, 5), -1.0)), ["negative"]),
    "bins257.npy": (lambda p, m, a: np.save(p, m[:257]),
                    ["257 bins", "expected 513", "n_fft=512?"]),
    "empty.npy": (lambda p, m, a: np.save(p, np.zeros((K, 0), np.float32)), ["empty"]),
    "zero_bytes.npy": (lambda p, m, a: p.write_bytes(b""), ["empty"]),
    "one_frame.npy": (lambda p, m, a: np.save(p, m[:, :1]), ["1 frame", "at least 4"]),
    "four_frames.npy": (lambda p, m, a: np.save(p, m[:, :4]), ("ok", 5 * 256 - 1024)),
    "complex.npy": (lambda p, m, a: np.save(p, m.astype(np.complex64)), ["complex"]),
    "three_d.npy": (lambda p, m, a: np.save(p, np.stack([m, m])), ["shape", "(bins, frames)"]),
    "leading_one.npy": (lambda p, m, a: np.save(p, m[None]), ("ok", 21 * 256 - 1024)),
    "uint8.npy": (lambda p, m, a: np.save(p, (m * 50).clip(0, 255).astype(np.uint8)),
                  ("ok", 21 * 256 - 1024)),
    "truncated.npy": (_saved(lambda p, m, a: np.save(p, m), 0.5), ["truncated"]),
    "garbage.npy": (lambda p, m, a: p.write_bytes(os.urandom(300)), ["not an .npy"]),
    "pickle.npy": (lambda p, m, a: np.save(p, np.array([{"a": 1}], dtype=object)), ["pickled"]),
    "truncated.npz": (_saved(lambda p, m, a: _npz(p, magnitude=m), 0.5), ["truncated"]),
    "garbage.npz": (lambda p, m, a: p.write_bytes(os.urandom(300)), ["not an .npz"]),
    "pickle.npz": (lambda p, m, a: _npz(p, magnitude=np.array([Evil()], dtype=object)),
                   ["pickled"]),
    "pickle_meta.npz": (lambda p, m, a: _npz(p, magnitude=m,
                                             sample_rate=np.array(SR, dtype=object)),
                        ["pickled"]),
    "no_key.npz": (lambda p, m, a: _npz(p, mag=m), ["no 'magnitude'", "'mag'"]),
    "bad_scale.npz": (lambda p, m, a: _npz(p, magnitude=m, scale="bark"), ["scale", "'bark'"]),
    "nfft512.npz": (lambda p, m, a: _npz(p, magnitude=m, n_fft=512), ["n_fft=512", "1024"]),
    # a file that states its own STFT is inverted with it (the run passes --weights, so the
    # network is the user's choice even outside its family): 20 frames, 21 hops less 1024
    "hop128.npz": (lambda p, m, a: _npz(p, magnitude=m, hop_length=128), ("ok", 21 * 128 - 1024)),
    "db_overflow.npz": (lambda p, m, a: _npz(p, magnitude=m * 0 + 1e5, scale="db"),
                        ["overflow"]),
    "power_negative.npz": (lambda p, m, a: _npz(p, magnitude=m - 1, scale="power"),
                           ["negative"]),
    "pickle.pt": (lambda p, m, a: torch.save({"m": Evil()}, p), ["pickled", "refused"]),
    "text.pt": (lambda p, m, a: p.write_text("hello\n" * 20), ["is not a torch.save file"]),
    "corrupt_header.npz": (lambda p, m, a: _corrupt_npy_header(p, m), ["corrupt"]),
    "dict.pt": (lambda p, m, a: torch.save({"magnitude": torch.from_numpy(m)}, p),
                ["holds a dict"]),
    "truncated.pt": (_saved(lambda p, m, a: torch.save(torch.from_numpy(m), p), 0.5),
                     ["truncated"]),
    "silence.npy": (lambda p, m, a: np.save(p, np.zeros_like(m)), ("ok", 21 * 256 - 1024)),
    "silence.wav": (lambda p, m, a: _wav(p, np.zeros_like(a)), ("ok", None)),
    "zero_length.wav": (lambda p, m, a: _wav(p, a[:0]), ["zero samples"]),
    "one_sample.wav": (lambda p, m, a: _wav(p, a[:1]), ("ok", None)),
    "truncated_header.wav": (_saved(lambda p, m, a: _wav(p, a), 30), ["unreadable audio"]),
    "garbage.wav": (lambda p, m, a: p.write_bytes(os.urandom(500)), ["unreadable audio"]),
    "lying_1hz.wav": (lambda p, m, a: _wav(p, a[:48000], sr=1), ["header claims 1 Hz",
                                                                  "not a plausible"]),
    "garbage.flac": (lambda p, m, a: p.write_bytes(os.urandom(500)), ["unreadable audio"]),
    "garbage.ogg": (lambda p, m, a: p.write_bytes(os.urandom(500)), ["unreadable audio"]),
    "nan.wav": (lambda p, m, a: _wav(p, _with(a, 100, np.nan), subtype="FLOAT"), ["NaN"]),
    "stereo44k.wav": (lambda p, m, a: _wav(p, np.tile(np.stack([a, -a], 1), (3, 1))[:22050],
                                           44100),
                      ("ok", 8000)),
    "take[b]1.npy": (lambda p, m, a: np.save(p, _with(m, (3, 5), np.nan)), ["NaN"]),
}


def where(root: Path, name: str) -> Path:
    return root / "sub" / name.replace(".", "_") / name


def _make_run(tmp_path: Path, speech, names: list[str], weights: Path):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    mag = speech_mag(speech)
    audio = speech[0][8000:16000].numpy().astype(np.float32)
    np.save(src / "good.npy", mag)
    _wav(src / "sub" / "good.wav", audio)
    for name in names:  # a folder each: nan.npy and nan.wav would both make nan.wav
        where(src, name).parent.mkdir()
        CASES[name][0](where(src, name), mag, audio)
    result = run("invert", src, "-o", out, "--weights", weights, "--device", "cpu")
    return src, out, result


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(tmp_path, speech, tiny_weights, name) -> None:
    src, out, result = _make_run(tmp_path, speech, [name], tiny_weights)
    expected = CASES[name][1]
    for good in ("good.wav", "sub/good.wav"):  # the good files of the run are written
        assert sf.info(out / good).frames > 0, result.output
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp"))
    target = where(out, name).with_suffix(".wav")
    if isinstance(expected, tuple):  # a correct result
        assert result.exit_code == 0, result.output
        assert "3 ok, 0 failed" in result.stdout
        y, sr = sf.read(target)
        n = expected[1] if expected[1] is not None else sf.info(where(src, name)).frames
        assert sr == SR and y.shape == (n,) and np.isfinite(y).all()
        if name.startswith("silence"):
            assert np.abs(y).max() == 0.0  # digital silence in, digital silence out
        if name == "stereo44k.wav":
            assert "2 channels mixed down to mono" in result.stderr
            assert "resampled 44100 Hz -> 16000 Hz" in result.stderr
        return
    assert result.exit_code == 1
    assert "2 ok, 1 failed, 0 skipped" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("failed ") and name in line, line
    for word in expected:
        assert word in line, line
    assert not target.exists()


def test_all_bad_inputs_in_one_run(tmp_path, speech, tiny_weights) -> None:
    bad = [n for n, (_, e) in CASES.items() if not isinstance(e, tuple)]
    src, out, result = _make_run(tmp_path, speech, list(CASES), tiny_weights)
    assert result.exit_code == 1
    ok = len(CASES) - len(bad) + 2
    assert f"{ok} ok, {len(bad)} failed, 0 skipped" in result.stdout
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert sorted(Path(line.split(": ")[0]).name for line in failed) == sorted(bad)
    assert len(list(out.rglob("*.wav"))) == ok
    assert not list(tmp_path.rglob("*.tmp"))


def test_failed_write_leaves_no_temp_file(tmp_path, speech, tiny_weights, monkeypatch) -> None:
    """A write that dies half way leaves neither a temp file nor a partial output."""
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "a.npy", speech_mag(speech))
    np.save(src / "b.npy", speech_mag(speech, 30))
    real_write, calls = sf.SoundFile.write, []

    def broken(self, data):
        calls.append(self)
        if len(calls) == 1:  # a.npy comes first: half of it reaches the temp file
            real_write(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", broken)
    result = run("invert", src, "-o", tmp_path / "out", "--weights", tiny_weights,
                 "--device", "cpu")
    assert result.exit_code == 1 and "1 ok, 1 failed" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "a.npy" in lines[0]
    assert lines[0].endswith("cannot write output: no space left on device"), lines[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.wav"]

    out_file = tmp_path / "file"  # the output folder is a file: refused once, up front
    out_file.write_text("x")
    result = run("invert", src, "-o", out_file, "--weights", tiny_weights, "--device", "cpu")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "is a file, not a folder" in lines[0]
    assert out_file.read_text() == "x" and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_output_folder_is_refused_up_front(tmp_path, speech, tiny_weights) -> None:
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "a.npy", speech_mag(speech))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = run("invert", src, "-o", locked / "out", "--weights", tiny_weights)
    assert result.exit_code == 1 and "is not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["invert", "eval"])
def test_json_that_cannot_be_written_is_refused_up_front(tmp_path, speech, command) -> None:
    """Before any file is inverted or scored: a --json under a file, or a --json that is a
    folder, gets one line and exit 1, and no output is written."""
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", speech[0][:8000].numpy(), 16000)
    (tmp_path / "plain").write_text("a file, not a folder")
    args = (["invert", src, "-o", tmp_path / "out", "--method", "pghi"] if command == "invert"
            else ["eval", src, "--methods", "pghi"])
    for target, why in ((tmp_path / "plain" / "s.json", "cannot write --json"),
                        (src, "is a folder")):
        result = run(*args, "--json", target)
        assert result.exit_code == 1 and why in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()


@pytest.mark.slow  # ~40 s on one busy CPU thread (CNN ~0.05 s per audio second)
def test_ten_minute_file(tmp_path, tiny_weights) -> None:
    """10 minutes of noise-modulated tone at 16 kHz: inverted whole, same length, finite.

    The CNN runs in time chunks (``predict_chunked``): in one call this file needed ~7 GB.
    """
    n = 10 * 60 * SR
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    envelope = np.abs(np.convolve(rng.standard_normal(n // 400 + 1), np.ones(8) / 8, "same"))
    tone = np.sin(2 * np.pi * (220 + 30 * np.sin(2 * np.pi * 0.1 * t)) * t)
    x = (0.3 * tone * np.repeat(envelope, 400)[:n] / envelope.max()).astype(np.float32)
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "long.wav", x, SR)
    start = time.perf_counter()
    result = run("invert", src, "-o", tmp_path / "out", "--weights", tiny_weights,
                 "--device", "cpu")
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    y, sr = sf.read(tmp_path / "out" / "long.wav", dtype="float32")
    assert sr == SR and y.shape == (n,) and np.isfinite(y).all()
    # the random model's phase is poor, but the loudness follows the input (0.90 measured)
    env_x, env_y = (np.sqrt(np.mean(v.reshape(-1, SR // 10) ** 2, axis=1)) for v in (x, y))
    assert np.corrcoef(env_x, env_y)[0, 1] > 0.7
    print(f"10 min inverted in {seconds:.1f} s")


def test_huge_magnitudes_never_give_a_nan_file(tmp_path, speech, tiny_weights) -> None:
    """Finite float32 magnitudes near the float32 maximum overflow the synthesis: the file is
    reported, never written; float64 beyond float32 is refused as too large, with no warning."""
    import warnings

    src = tmp_path / "in"
    src.mkdir()
    mag = np.abs(np.random.default_rng(0).standard_normal((K, 20))).astype(np.float32)
    np.save(src / "huge32.npy", mag / mag.max() * np.float32(3e38))
    np.save(src / "huge64.npy", mag.astype(np.float64) * 1e300)
    np.save(src / "fine.npy", mag)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stray RuntimeWarning fails the test
        result = CliRunner().invoke(app, ["invert", str(src), "-o", str(tmp_path / "out"),
                                          "--weights", str(tiny_weights), "--subtype", "FLOAT"])
    assert result.exit_code == 1
    assert "1 ok, 2 failed" in result.stdout
    lines = {line.split(":")[0].split("/")[-1]: line for line in result.stderr.splitlines()}
    assert "NaN or Inf samples" in lines["huge32.npy"] and "nothing written" in lines["huge32.npy"]
    assert "too large" in lines["huge64.npy"] and "Inf" not in lines["huge64.npy"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine.wav"]


@pytest.mark.parametrize("kind", ["pt-expanded", "npz-compressed"])
def test_a_file_that_inflates_is_refused_from_its_header(tmp_path, speech, tiny_weights,
                                                         kind) -> None:
    """A small file that asks for a huge array (a saved expanded view; a compressed .npz of
    zeros) is refused before anything is allocated, and the good file of the batch is written.
    Run in a subprocess under a 6 GiB address-space cap (torch alone maps about 3 GiB), so that a
    regression fails the test instead of taking the machine's memory."""
    import subprocess
    import sys

    src = tmp_path / "in"
    src.mkdir()
    if kind == "pt-expanded":
        torch.save(torch.ones(K, 1).expand(K, 1_000_000), src / "huge.pt")
    else:
        np.savez_compressed(src / "huge.npz", magnitude=np.zeros((K, 600_000), np.float32))
    assert (src / ("huge.pt" if kind == "pt-expanded" else "huge.npz")).stat().st_size < 2e6
    np.save(src / "good.npy", speech_mag(speech))
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30));"
            "from ppsi_cli.cli import main; sys.argv[0] = 'ppsi'; main()")
    r = subprocess.run([sys.executable, "-c", code, "invert", str(src), "-o",
                        str(tmp_path / "out"), "--weights", str(tiny_weights)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "1 ok, 1 failed" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "huge" in lines[0] and "more than the" in lines[0], r.stderr
    assert (tmp_path / "out" / "good.wav").exists()
