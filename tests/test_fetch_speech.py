"""The data builder's KLettres rules: silence trimming, joining, and voices never crossing sets."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fetch_speech.py"


@pytest.fixture(scope="module")
def fs():
    spec = importlib.util.spec_from_file_location("fetch_speech", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tone(seconds: float, sr: int = 16000, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_trim_silence_keeps_the_sound_and_margins(fs):
    sr = fs.SR
    x = np.concatenate([np.zeros(sr), tone(0.5), np.zeros(sr)]).astype(np.float32)
    y = fs.trim_silence(x, margin_s=0.05)
    # 0.5 s of tone plus up to 50 ms either side (10 ms frames)
    assert 0.5 * sr <= len(y) <= 0.62 * sr
    np.testing.assert_array_equal(y[int(0.05 * sr): int(0.05 * sr) + 100], x[sr: sr + 100])
    assert len(fs.trim_silence(np.zeros(sr, np.float32))) == 0


def test_join_clips_puts_gaps_between_clips_only(fs):
    a, b = tone(0.2), tone(0.3)
    y = fs.join_clips([a, np.zeros(0, np.float32), b])
    gap = int(fs.JOIN_GAP_S * fs.SR)
    assert len(y) == len(a) + gap + len(b)
    np.testing.assert_array_equal(y[len(a): len(a) + gap], 0)
    np.testing.assert_array_equal(y[-len(b):], b)


def test_klettres_held_out_languages_never_reach_training(fs, tmp_path):
    base = tmp_path / fs.KLETTRES["root"]
    for lang in ("de", "fr", "tn"):
        for sub in ("alpha", "syllab"):
            d = base / lang / sub
            d.mkdir(parents=True)
            for i in range(7):  # 7 x 1.5 s: groups of >= 8 s -> 2 joined files per folder
                sf.write(str(d / f"{i}.ogg"), tone(1.5, 44100), 44100, format="OGG",
                         subtype="VORBIS")
    out = tmp_path / "data"
    jobs = fs.plan_joined(fs.KLETTRES, tmp_path, out, {"train", "val-unseen"})
    dests = [Path(j[2]).relative_to(out).parts for j in jobs]
    assert all(j[0] == "concat" for j in jobs)
    assert {(p[0], p[1], p[2]) for p in dests} == {
        ("val-unseen", "klettres-unseen", "de"), ("train", "klettres", "fr")}
    assert len(jobs) == 8  # 2 languages x 2 folders x 2 groups; tn is skipped
    assert sorted(len(j[1]) for j in jobs) == [1, 1, 1, 1, 6, 6, 6, 6]
    # only the requested set is planned
    only_train = fs.plan_joined(fs.KLETTRES, tmp_path, out, {"train"})
    assert {Path(j[2]).relative_to(out).parts[0] for j in only_train} == {"train"}


def test_ktuberling_keeps_unseen_languages_and_copies_out(fs, tmp_path):
    base = tmp_path / fs.KTUBERLING["root"]
    for lang, rate in (("fr", 44100), ("nn", 48000), ("nl", 44100), ("sr", 22050),
                       ("sr@latin", 22050), ("it", 8000)):
        d = base / lang
        d.mkdir(parents=True)
        for i in range(3):
            sf.write(str(d / f"w{i}.wav"), tone(1.5, rate), rate)
    out = tmp_path / "data"
    jobs = fs.plan_joined(fs.KTUBERLING, tmp_path, out, {"train", "val-unseen"})
    dests = {Path(j[2]).relative_to(out).parts[:3] for j in jobs}
    # nl is a val-unseen language (dropped, not moved there); sr@latin copies sr; 8 kHz skipped
    assert dests == {("train", "ktuberling", "fr"), ("train", "ktuberling", "nn"),
                     ("train", "ktuberling", "sr")}
    assert all(len(j[1]) == 3 for j in jobs)


def test_extra_fillets_voice_is_training_only(fs, tmp_path):
    base = tmp_path / fs.DEB_VOICES["fillets-nl"]["root"]
    for level in ("city", "cave", "barrel", "share/border"):
        d = base / level / "nl"
        d.mkdir(parents=True)
        for i in range(10):
            (d / f"x-m-{i}.ogg").write_bytes(b"")
    out = tmp_path / "data"
    jobs = fs.plan_deb_voice("fillets-nl", tmp_path, out, {"train", "val"}, val_frac=0.5)
    parts = [Path(j[2]).relative_to(out).parts for j in jobs]
    assert len(jobs) == 30  # share/border is not <level>/nl/: the pattern is the Czech one
    assert {p[:2] for p in parts} == {("train", "fillets-nl")}
    assert {p[2] for p in parts} == {"city", "cave", "barrel"} and all(len(p) == 4 for p in parts)
    assert fs.plan_deb_voice("fillets-nl", tmp_path, out, {"val"}, val_frac=0.5) == []
