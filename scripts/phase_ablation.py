"""Where does a model's error come from? Swap in the true BPD or FPD and score (VALIDATION data).

    python scripts/phase_ablation.py --weights weights/ppsi-online-b5816675.pt --data data/val-g722

For each file (cut to --seconds), the least squares of the weights' solver config runs four times:
with the model's BPD and FPD, with the true BPD, with the true FPD, and with both true (oracle).
Prints mean WB-PESQ per case: the gap each prediction leaves. The first and last cases are the
``ppsi`` and ``oracle`` methods of ``ppsi_cli.Inverter``; the mixed ones swap one prediction
into the same least squares (``ppsi_cli.integrate.integrate``). Never point it at the
evaluation set.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from ppsi_cli.dsp.phase import bpd, fpd
from ppsi_cli.dsp.stft import istft, stft
from ppsi_cli.integrate import integrate
from ppsi_cli.inverter import Inverter
from ppsi_cli.methods import BY_VARIANT
from ppsi_cli.metrics import pesq_wb
from ppsi_cli.model import predict
from ppsi_cli.train.data import find_audio, load_mono
from ppsi_cli.weights import load_weights, model_variant

CASES = ("model", "true BPD", "true FPD", "oracle")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True, help="validation audio (never the evaluation set)")
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_weights(args.weights)
    cfg = model.stft
    # the network's own method, least squares alone (a look-ahead model refines by default)
    inv = Inverter(BY_VARIANT[model_variant(model)], refine=0, model=model)
    oracle = Inverter("oracle", model=model)
    files = find_audio(args.data)
    idx = sorted(set(np.linspace(0, len(files) - 1, min(args.files, len(files))).round()
                     .astype(int)))
    scores: dict[str, list[float]] = {c: [] for c in CASES}
    for i in idx:
        x = load_mono(files[i], cfg.sample_rate)[: int(args.seconds * cfg.sample_rate)]
        spec = stft(torch.from_numpy(x), cfg)
        mag = spec.abs()
        b, f = predict(model.net, mag)
        tb, tf = bpd(spec, cfg).to(b.dtype), fpd(spec).to(f.dtype)
        ys = {"model": inv(mag, len(x)), "oracle": oracle(spec, len(x)),
              "true BPD": istft(integrate(mag, tb, f, cfg, model.solver), cfg, len(x)),
              "true FPD": istft(integrate(mag, b, tf, cfg, model.solver), cfg, len(x))}
        for case in CASES:
            scores[case].append(pesq_wb(x, ys[case].double().numpy(), cfg.sample_rate))
    print(json.dumps({"files": len(idx), "seconds": args.seconds,
                      **{c: round(float(np.mean(v)), 3) for c, v in scores.items()}}))


if __name__ == "__main__":
    main()
