"""Copy trained weights into ``weights/`` as a shipped file: metadata added, named by its hash.

    python scripts/ship_weights.py runs/mel_hifigan/weights_tuned.pt --name ppsi-online-mel \
        --window-ms 42,47 --note "ppsi eval on Allison, 2026-12-01: see weights/README.md"

Adds ``family`` (the window and hop / win_length of the weights' STFT) and ``measured`` (the
window durations it was evaluated on) to the metadata, writes ``weights/NAME-<sha8>.pt`` and
prints the :data:`ppsi_cli.weights.SHIPPED` entry to add (variant and input are read from the
network: strided, delayed = offline; a ``mel`` entry in the metadata = mel input).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ppsi_cli.weights import (family, load_weights, model_input, model_variant, save_weights,
                              sha256)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("--name", required=True, help="file name stem, e.g. ppsi-online-mel")
    ap.add_argument("--window-ms", required=True, help="measured window durations, LO,HI")
    ap.add_argument("--note", default="", help="where the measurements are")
    ap.add_argument("--out", default="weights")
    args = ap.parse_args()
    model = load_weights(args.weights)
    window, ratio = family(model.stft)
    lo, hi = (float(v) for v in args.window_ms.split(","))
    meta = {**model.meta, "variant": model_variant(model),
            "family": {"window": window, "hop_over_win": str(ratio)},
            "measured": {"window_ms": [lo, hi], "on": args.note}}
    tmp = Path(args.out) / f"{args.name}.tmp.pt"
    save_weights(tmp, model.net, model.stft, model.solver, meta)
    digest = sha256(tmp)
    final = tmp.with_name(f"{args.name}-{digest[:8]}.pt")
    tmp.rename(final)
    extra = ', input="mel"' if model_input(model) == "mel" else ""
    print(f"wrote {final}")
    print(f'    Shipped("{model_variant(model)}", "{window}", Fraction({ratio.numerator}, '
          f'{ratio.denominator}), "{final.name}",\n            "{digest}"{extra}),')


if __name__ == "__main__":
    main()
