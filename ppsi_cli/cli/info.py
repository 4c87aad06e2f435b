"""``ppsi info``: parameters, multiply-adds, STFT and latency of a model (or of both variants)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import fail, out


@app.command()
def info(
    weights: Optional[Path] = typer.Option(None, help="A weights file (default: every shipped "
                                           "one, checked against its SHA-256)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe the model(s): file and SHA-256, parameters, multiply-adds per frame, STFT,
    latency."""
    from ..describe import describe_shipped, describe_weights

    try:
        rows = [describe_weights(str(weights))] if weights else describe_shipped()
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if json_out:
        out.print_json(json.dumps(rows[0] if weights else rows))
        return
    for r in rows:
        kind = r["variant"] + (", mel input" if r["input"] == "mel" else "")
        out.print(f"[bold]{kind}[/] ({r['source']})", highlight=False)
        if "sha256" in r:
            out.print(f"  SHA-256             {r['sha256']} (verified)", soft_wrap=True)
        out.print(f"  parameters          {r['parameters']:,}")
        out.print(f"  multiply-adds/frame {r['macs_per_frame']:,} (CNN, amortised over "
                  f"{r['frames_per_pass']} frame(s) per pass)")
        s = r["stft"]
        out.print(f"  STFT                {s['sample_rate']} Hz, {s['window']} "
                  f"{s['win_length']}, hop {s['hop_length']}, n_fft {s['n_fft']}")
        out.print(f"  serves              {r['family']} STFTs (any sample rate and size)")
        out.print(f"  latency             {r['latency_samples']} samples = "
                  f"{r['latency_ms']:.1f} ms")
        out.print(f"  least squares       p={r['solver']['p']}, g={r['solver']['g']}")
