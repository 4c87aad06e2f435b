"""The installed ``ppsi`` command (as users get it from the wheel) runs the main job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ppsi_exe() -> str:
    exe = shutil.which("ppsi")
    if exe is None:
        pytest.skip("the ppsi command is not installed (pip install .)")
    return exe


def test_installed_package_ships_its_weights(ppsi_exe, tmp_path):
    # outside the checkout, so the import resolves to the installed package
    code = ("import ppsi_cli, ppsi_cli.weights as w; "
            "print(ppsi_cli.__file__); print(w.shipped_weights('online'))")
    r = _run([sys.executable, "-c", code], tmp_path)
    assert r.returncode == 0, r.stderr
    pkg, weights = r.stdout.split()
    if Path(pkg).resolve().is_relative_to(REPO):
        pytest.skip("editable install: the package is the checkout")
    assert Path(weights).resolve().is_relative_to(Path(pkg).resolve().parent)
    from ppsi_cli.weights import SHIPPED

    info = json.loads(_run([ppsi_exe, "info", "--json"], tmp_path).stdout)
    # every registered file is in the wheel, loads (so its SHA-256 was checked) and says so
    assert [(row["variant"], row["family"], row["sha256"]) for row in info] == [
        (e.variant, e.family_name, e.sha256) for e in SHIPPED]
    assert all(row["parameters"] <= 8500 for row in info)


def test_readme_main_job(ppsi_exe, tmp_path):
    out = tmp_path / "out"
    r = _run([ppsi_exe, "invert", str(REPO / "examples" / "specs"), "-o", str(out),
              "--device", "cpu", "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("arctic_a0007", "arctic_a0009"):
        x, sr = sf.read(out / f"{name}.wav")
        ref, _ = sf.read(REPO / "examples" / "audio" / f"{name}.wav")
        assert sr == 16000 and abs(len(x) - len(ref)) < 1024 and abs(x).max() > 0.01


def test_installed_bench_finds_its_speech_anywhere(ppsi_exe, tmp_path):
    """The wheel holds the two example clips: ``ppsi bench invert`` times on them from any
    folder (it failed outside the checkout: "examples/audio/*.wav is not here")."""
    r = _run([ppsi_exe, "bench", "invert", "--methods", "griffin-lim+iters=2", "--seconds",
              "1", "--repeats", "1", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows[0]["method"] == "griffin-lim+iters=2" and rows[0]["audio_seconds"] == 1.0
