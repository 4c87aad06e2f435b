"""Tune the least-squares weights (p, g, magnitude floor) of a trained model on VALIDATION data.

    python scripts/tune_solver.py --weights runs/online/weights.pt --data data/val --files 24 \
        --write weights/ppsi-online.pt

Inverts every file with the weights' network and each (p, g, floor) of the grid (one
``ppsi_cli.Inverter`` per setting), and prints mean WB-PESQ / ESTOI per setting, best first. A mel
network (``ppsi train --mel``) is tuned on the NNLS magnitudes of its mel front end, as it is used.
Never point it at the evaluation set.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from ppsi_cli.config import SolverConfig
from ppsi_cli.dsp.stft import stft
from ppsi_cli.inverter import Inverter
from ppsi_cli.metrics import MetricError, estoi, pesq_wb
from ppsi_cli.train.data import find_audio, load_mono
from ppsi_cli.train.objective import network_magnitude
from ppsi_cli.methods import BY_VARIANT
from ppsi_cli.weights import load_weights, model_mel, model_variant, save_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True, help="validation audio (never the evaluation set)")
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=6.0, help="cut each file to this length")
    ap.add_argument("--p", default="0.5,1,1.5,2")
    ap.add_argument("--g", default="1,3,10,30,100")
    ap.add_argument("--floor", default="1e-2,1e-3")
    ap.add_argument("--diag-load", default="1e-6")
    ap.add_argument("--refine", type=int, default=0,
                    help="fast Griffin-Lim iterations after the least squares (tune the refined "
                         "mode as it is used; 0: the least squares alone)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--write", default=None, help="save a copy of the weights with the best setting")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_weights(args.weights)
    cfg = model.stft
    files = find_audio(args.data)
    idx = np.linspace(0, len(files) - 1, min(args.files, len(files))).round().astype(int)
    items = []
    for i in sorted(set(idx)):
        x = load_mono(files[i], cfg.sample_rate)[: int(args.seconds * cfg.sample_rate)]
        spec = stft(torch.from_numpy(x), cfg)
        items.append((x, network_magnitude(spec, cfg, model_mel(model))))
    results = []
    grid = itertools.product(*(map(float, s.split(",")) for s in (
        args.p, args.g, args.floor, args.diag_load)))
    for p, g, floor, load in grid:
        solver = SolverConfig(p=p, g=g, mag_floor=floor, diag_load=load)
        inv = Inverter(BY_VARIANT[model_variant(model)], refine=args.refine, model=model,
                       solver=solver)
        pesqs, estois, failed = [], [], 0
        for x, mag in items:
            try:
                y = inv(mag, len(x)).double().numpy()
                pesqs.append(pesq_wb(x, y, cfg.sample_rate))
                estois.append(estoi(x, y, cfg.sample_rate))
            except (MetricError, np.linalg.LinAlgError):
                failed += 1
        row = {"p": p, "g": g, "mag_floor": floor, "diag_load": load, "refine": args.refine,
               "pesq": float(np.mean(pesqs)), "estoi": float(np.mean(estois)),
               "n": len(pesqs), "failed": failed}
        results.append(row)
        print(json.dumps(row), flush=True)
    results.sort(key=lambda r: -r["pesq"])
    print("best:", json.dumps(results[0]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    if args.write:
        best = results[0]
        solver = SolverConfig(p=best["p"], g=best["g"], mag_floor=best["mag_floor"],
                              diag_load=best["diag_load"])
        meta = {**model.meta, "solver_tuned_on": f"{args.data} ({best['n']} files)",
                "solver_tuning_pesq": round(best["pesq"], 3)}
        save_weights(args.write, model.net, model.stft, solver, meta)
        print("wrote", args.write)


if __name__ == "__main__":
    main()
