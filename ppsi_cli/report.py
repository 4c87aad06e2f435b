"""A self-contained HTML score report: tables, spectrograms (inline PNG) and audio (inline WAV).

No dependency beyond numpy/soundfile: PNGs are encoded here (zlib + CRC chunks), images and
audio are embedded as base64 data URIs, so the one file can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import struct
import zlib
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import soundfile as sf

from .config import StftConfig
from .io import read_audio
from .io import resample
from .metrics import METRICS
from .score import PairResult, Summary, summarize, write_text_atomic

# viridis at 0, 1/4, 1/2, 3/4, 1 (perceptually ordered, readable in grey scale)
_CMAP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                 dtype=np.float64)
DYNAMIC_RANGE_DB = 80.0


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB image (height, width, 3) of uint8 as PNG (8 bit, no interlace)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be (height, width, 3), got shape {rgb.shape}")
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
            + chunk(b"IEND", b""))


def colorize(v: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (any shape) to viridis RGB uint8 (..., 3)."""
    pos = np.clip(v, 0.0, 1.0) * (len(_CMAP) - 1)
    lo = np.minimum(pos.astype(np.int64), len(_CMAP) - 2)
    frac = (pos - lo)[..., None]
    return np.round(_CMAP[lo] * (1 - frac) + _CMAP[lo + 1] * frac).astype(np.uint8)


def spectrogram_db(x: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """Magnitude spectrogram in dB (n_fft // 2 + 1, frames) of a 1-D signal."""
    import torch

    from .dsp.stft import stft

    mag = stft(torch.from_numpy(np.asarray(x, dtype=np.float32)), cfg).abs().numpy()
    return 20.0 * np.log10(np.maximum(mag, 1e-10))


def spectrogram_png(db: np.ndarray, top_db: float, max_rows: int = 300) -> bytes:
    """PNG of a dB spectrogram (F, T), low frequencies at the bottom, [top_db - 80, top_db]
    mapped to the colour scale; adjacent bins are max-pooled down to at most ``max_rows``."""
    k = -(-db.shape[0] // max_rows)
    if k > 1:
        pad = -db.shape[0] % k
        db = np.pad(db, ((0, pad), (0, 0)), constant_values=-np.inf)
        db = db.reshape(-1, k, db.shape[1]).max(axis=1)
    v = (db - (top_db - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB
    return png_bytes(colorize(v[::-1]))


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _wav_bytes(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _metric_label(name: str) -> str:
    """``pesq [MOS] ↑``: name, unit and which direction is better."""
    m = METRICS[name]
    arrow = "↑" if m.higher_is_better else "↓"
    unit = f" [{m.unit}]" if m.unit else ""
    return f"{html.escape(name)}{unit} {arrow}"


def _metric_head(name: str) -> str:
    return f'<th title="{html.escape(METRICS[name].description)}">{_metric_label(name)}</th>'


def pick_examples(results: Sequence[PairResult], metrics: Sequence[str], count: int
                  ) -> list[tuple[str, PairResult]]:
    """Up to ``count`` scored pairs to show: the worst half and the best half by the first
    metric, worst first, labelled ``"worst"`` / ``"best"``."""
    if count <= 0 or not metrics:
        return []
    first = metrics[0]
    ok = [r for r in results if math.isfinite(r.values.get(first, math.nan))]
    sign = 1.0 if METRICS[first].higher_is_better else -1.0
    ranked = sorted(ok, key=lambda r: sign * r.values[first])  # worst first
    k = min(count, len(ranked))
    n_worst = (k + 1) // 2
    best = ranked[len(ranked) - (k - n_worst):][::-1] if k > n_worst else []
    return [("worst", r) for r in ranked[:n_worst]] + [("best", r) for r in best]


def _example_html(label: str, r: PairResult, metrics: Sequence[str], clip_seconds: float) -> str:
    ref, sr = read_audio(r.ref)
    est, sr_est = read_audio(r.est)
    if sr_est != sr:
        est = resample(est.astype(np.float64), sr_est, sr).astype(np.float32)
    n = int(round(clip_seconds * sr))
    clipped = len(ref) > n or len(est) > n
    ref, est = ref[:n], est[:n]
    cfg = StftConfig(sample_rate=sr)
    db_ref, db_est = spectrogram_db(ref, cfg), spectrogram_db(est, cfg)
    top = float(db_ref.max())  # one colour scale for both, from the reference
    scores = " · ".join(f"{html.escape(m)} {_fmt(r.values[m])}" for m in metrics)
    note = f" (first {clip_seconds:g} s)" if clipped else ""
    cells = []
    for side, x, db in (("reference", ref, db_ref), ("estimate", est, db_est)):
        png = _data_uri("image/png", spectrogram_png(db, top))
        cells.append(
            f'<figure><figcaption>{side}{note}</figcaption>'
            f'<img alt="{side} spectrogram" src="{png}">'
            f'<audio controls preload="metadata" src="{_data_uri("audio/wav", _wav_bytes(x, sr))}">'
            f'</audio></figure>')
    return (f'<section class="example"><h3><span class="tag {label}">{label}</span> '
            f'{html.escape(r.key)}</h3><p class="scores">{scores}</p>'
            f'<div class="pair">{"".join(cells)}</div>'
            f'<p class="axis">0 – {sr / 2000:g} kHz (bottom to top), hop {cfg.hop_ms:g} ms, '
            f'{DYNAMIC_RANGE_DB:g} dB range below the reference peak</p></section>')


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}.meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f6}
tr.failed td{background:#fdecea}td.reason{text-align:left;color:#b3261e}
.pair{display:flex;gap:1rem}.pair figure{flex:1;margin:0;min-width:0}
.pair img{width:100%;height:220px;image-rendering:auto;display:block;border:1px solid #ccc}
.pair audio{width:100%;margin-top:.3rem}figcaption{font-weight:600;margin-bottom:.2rem}
.example{margin-bottom:2rem}.scores{margin:.2rem 0 .5rem;color:#333}
.axis{color:#777;font-size:.85em}
.tag{font-size:.75em;padding:.1rem .4rem;border-radius:.3rem;color:#fff;vertical-align:middle}
.tag.worst{background:#b3261e}.tag.best{background:#2e7d32}
.fail{color:#b3261e;font-weight:600}code{background:#f4f4f6;padding:0 .2rem}
"""


def render_report(results: Sequence[PairResult], metrics: Sequence[str],
                  summary: dict[str, Summary] | None = None, *,
                  unpaired_ref: Sequence[os.PathLike | str] = (),
                  unpaired_est: Sequence[os.PathLike | str] = (),
                  examples: int = 4, clip_seconds: float = 10.0,
                  title: str = "ppsi score report") -> str:
    """The report as one HTML string (summary, examples with spectrograms/audio, per-file)."""
    summary = summary if summary is not None else summarize(results, metrics)
    esc = html.escape
    n_failed = sum(r.failed for r in results)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    minutes = sum(r.duration_s for r in results if math.isfinite(r.duration_s)) / 60
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1><p class='meta'>{len(results)} pairs, {minutes:.1f} min "
             f"of audio, <span class='{'fail' if n_failed else ''}'>{n_failed} failed</span>"
             f" · {when}</p>"]

    parts.append("<h2>Summary</h2><table><tr><th>metric</th><th>mean ± std</th>"
                 "<th>95 % CI of the mean</th><th>n</th><th>failed</th></tr>")
    for m, s in summary.items():
        parts.append(f"<tr><td>{_metric_label(m)}</td><td>{_fmt(s.mean)} ± {_fmt(s.std)}</td>"
                     f"<td>[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]</td><td>{s.n}</td>"
                     f"<td class='{'fail' if s.failed else ''}'>{s.failed}</td></tr>")
    parts.append("</table>")

    picked = pick_examples(results, metrics, examples)
    if picked:
        parts.append(f"<h2>Listen and look</h2><p class='meta'>Worst and best pairs by "
                     f"<b>{esc(metrics[0])}</b>.</p>")
        for label, r in picked:
            try:
                parts.append(_example_html(label, r, metrics, clip_seconds))
            except Exception as e:  # the file changed since scoring: say so, keep the report
                parts.append(f"<p class='fail'>{esc(r.key)}: cannot render ({esc(str(e))})</p>")

    parts.append("<h2>Per file</h2><table><tr><th>file</th><th>seconds</th>"
                 + "".join(_metric_head(m) for m in metrics) + "<th>reason</th></tr>")
    for r in results:
        parts.append(f"<tr class='{'failed' if r.failed else ''}'><td title='{esc(r.est)}'>"
                     f"{esc(r.key)}</td><td>{_fmt(r.duration_s, 2)}</td>"
                     + "".join(f"<td>{_fmt(r.values[m])}</td>" for m in metrics)
                     + f"<td class='reason'>{esc(r.reason_text())}</td></tr>")
    parts.append("</table>")

    for name, files in (("References without an estimate", unpaired_ref),
                        ("Estimates without a reference", unpaired_est)):
        if files:
            parts.append(f"<h2>{name} ({len(files)})</h2><ul>"
                         + "".join(f"<li><code>{esc(str(p))}</code></li>" for p in files)
                         + "</ul>")

    parts.append("<h2>Definitions</h2><ul>"
                 "<li><b>pesq</b>: wide-band PESQ (ITU-T P.862.2) at 16 kHz; "
                 "<b>pesq-nb</b>: narrow-band (P.862) at 8 kHz.</li>"
                 "<li><b>estoi</b> / <b>stoi</b>: (extended) short-time objective intelligibility, "
                 "pystoi.</li>"
                 "<li><b>lsc</b>: 20·log10(‖|Y|−|X|‖<sub>F</sub> / ‖|X|‖<sub>F</sub>) dB "
                 "over the model STFT (16 kHz, n_fft 1024, hop 256, Hann), clamped to ±120 dB.</li>"
                 "<li><b>si-sdr</b>: scale-invariant SDR in dB, zero-mean signals, clamped to "
                 "±120 dB.</li>"
                 "<li>Pairs are truncated to the shorter signal; lengths more than 10 % apart, "
                 "pairs under 0.5 s and silent signals are not scored (NaN, counted as "
                 "failed).</li>"
                 "<li>95 % CI: Student t interval of the mean over the pairs that scored.</li>"
                 "</ul></body></html>\n")
    return "".join(parts)


def write_report(path: str | os.PathLike, results: Sequence[PairResult],
                 metrics: Sequence[str], summary: dict[str, Summary] | None = None,
                 **kwargs) -> None:
    """Render the report (see :func:`render_report`) and write it atomically to ``path``."""
    write_text_atomic(path, render_report(results, metrics, summary, **kwargs))
