"""Benchmark: vectorised trajectory LOO vs a loop of independent single replays.

Cases (issue 2): binary logistic regression on mnist17 (n = 400, batch 100, 20 epochs) and 10-class
logistic regression on mnist5k (n = 1000). Both sides replay the same recorded run in float64; the
loop calls ``train`` once per removed sample (weights of shape (n,)), the vectorised version replays
``chunk`` runs at once. Prints a table with wall time, peak RSS, speedup and the max difference.

    python experiments/benchmarks/bench_loo.py [--out results/benchmarks/loo.csv] [--loop-samples 100]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd
import torch

from influence.data import load_dataset, make_splits
from influence.io import save_csv
from influence.loo import trajectory_loo
from influence.models import logistic_regression, mlp
from influence.provenance import measure
from influence.train import Schedule, train

log = logging.getLogger("bench_loo")

CASES = {
    "mnist17-logreg": dict(dataset="mnist17", n=400, hidden=(), batch=100, epochs=20, lr=0.1, l2=1e-3),
    "mnist5k-logreg10": dict(dataset="mnist5k", n=1000, hidden=(), batch=100, epochs=20, lr=0.1, l2=1e-3),
    "mnist17-mlp8-8": dict(dataset="mnist17", n=400, hidden=(8, 8), batch=100, epochs=20, lr=0.1, l2=1e-3),
}


def run_case(name: str, cfg: dict, loop_samples: int, chunk: int) -> dict:
    ds = load_dataset(cfg["dataset"])
    sp = make_splits(ds, cfg["n"], 200, 0, seed=0)
    tr, tg = sp["train"], sp["target"]
    model = mlp(tr.n_features, cfg["hidden"], ds.n_classes) if cfg["hidden"] else logistic_regression(
        tr.n_features, ds.n_classes)
    sched = Schedule(cfg["n"], cfg["batch"], cfg["epochs"], cfg["lr"], seed=0)
    traj = train(model, model.init(0), tr, sched, l2=cfg["l2"], record="final")
    idx = np.arange(min(loop_samples, cfg["n"]))
    with measure() as mv:
        vec = trajectory_loo(traj, tr, tg, chunk=chunk)
    with measure() as ml:
        X = torch.as_tensor(tr.X)
        y = torch.as_tensor(tr.y)
        loop = []
        for j in idx:
            w = torch.ones(cfg["n"], dtype=torch.float64)
            w[j] = 0
            loop.append(train(model, traj.theta0, (X, y), sched, weights=w, l2=cfg["l2"], record="final").final)
    base = train(model, traj.theta0, (X, y), sched, l2=cfg["l2"], record="final").final
    diff = float(np.abs(vec.delta_theta[idx] - (torch.stack(loop) - base).numpy()).max())
    loop_full = ml["wall_s"] * cfg["n"] / len(idx)
    row = {
        "case": name, "n": cfg["n"], "p": model.n_params, "steps": sched.n_steps, "chunk": chunk,
        "vectorised_s": vec.meta["wall_s"], "vectorised_peak_mb": mv["peak_rss_mb"],
        "loop_s_all_n (extrapolated)": loop_full, "loop_samples": len(idx), "loop_peak_mb": ml["peak_rss_mb"],
        "speedup": loop_full / vec.meta["wall_s"], "max_abs_diff": diff,
    }
    log.info("%s", row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/benchmarks/loo.csv")
    ap.add_argument("--loop-samples", type=int, default=100, help="single replays timed (then extrapolated to n)")
    ap.add_argument("--chunk", type=int, default=200)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(torch.get_num_threads())
    t0 = time.perf_counter()
    rows = [run_case(c, CASES[c], args.loop_samples, args.chunk) for c in args.cases]
    df = pd.DataFrame(rows)
    save_csv(args.out, df, float_format=None)
    log.info("\n%s\n(total %.1f s, %d torch threads)", df.to_markdown(index=False, floatfmt=".3g"),
             time.perf_counter() - t0, torch.get_num_threads())


if __name__ == "__main__":
    main()
