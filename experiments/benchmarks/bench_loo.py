"""Benchmark: vectorised trajectory LOO vs a loop of independent single replays.

Cases (issue 2): binary logistic regression on mnist17 (n = 400, batch 100, 20 epochs) and 10-class
logistic regression on mnist5k (n = 1000). Both sides replay the same recorded run in float64; the
loop calls ``train`` once per removed sample (weights of shape (n,)), the vectorised version replays
``chunk`` runs at once (for logistic regression through the closed-form replay engine that
``influence.train`` picks, recorded in ``engine``). Writes a CSV (and a ``.md`` table next to it) with wall
and CPU time, peak RSS and its rise over the process before the block, the speedup (loop extrapolated to all
n / vectorised; ``speedup_cpu`` from process CPU time, the figure to read on a shared machine when
single-threaded) and the max difference. Issue 15 goal: ≥ 10× on ``mnist5k-logreg10``.

Against the machine's own limit (issue 26 item 3): ``gflop``, the FLOPs of the vectorised call counted from the
algorithm (:func:`flops.trajectory_loo_flops`), ``gemm_peak_gflops``, the float64 GEMM rate measured in the same
process at the same thread count (:func:`flops.gemm_peak`), and the achieved ``gflops`` and ``frac_peak`` (on CPU
time when single-threaded, else wall time); ``closed_form`` marks the logistic-regression engines (goal ≥ 50 %).

    python experiments/benchmarks/bench_loo.py [--out results/benchmarks/loo.csv] [--loop-samples 100] [--threads 1]
        [--peak-size 2048]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from flops import fraction, gemm_peak, replay_engine, trajectory_loo_flops

from influence.data import load_dataset, make_splits
from influence.io import save_csv, save_text
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


def run_case(name: str, cfg: dict, loop_samples: int, chunk: int, peak: float = math.nan) -> dict:
    ds = load_dataset(cfg["dataset"])
    sp = make_splits(ds, cfg["n"], 200, 0, seed=0)
    tr, tg = sp["train"], sp["target"]
    model = mlp(tr.n_features, cfg["hidden"], ds.n_classes) if cfg["hidden"] else logistic_regression(
        tr.n_features, ds.n_classes)
    sched = Schedule(cfg["n"], cfg["batch"], cfg["epochs"], cfg["lr"], seed=0)
    traj = train(model, model.init(0), tr, sched, l2=cfg["l2"], record="final")
    idx = np.arange(min(loop_samples, cfg["n"]))
    X = torch.as_tensor(tr.X)
    y = torch.as_tensor(tr.y)
    engine = replay_engine(model, cfg["n"], min(chunk, cfg["n"]), sched)
    c0 = time.process_time()
    with measure() as mv:
        vec = trajectory_loo(traj, tr, tg, chunk=chunk)
    vec_cpu = time.process_time() - c0
    c0 = time.process_time()
    with measure() as ml:
        loop = []
        for j in idx:
            w = torch.ones(cfg["n"], dtype=torch.float64)
            w[j] = 0
            loop.append(train(model, traj.theta0, (X, y), sched, weights=w, l2=cfg["l2"], record="final").final)
    loop_cpu = (time.process_time() - c0) * cfg["n"] / len(idx)
    base = train(model, traj.theta0, (X, y), sched, l2=cfg["l2"], record="final").final
    diff = float(np.abs(vec.delta_theta[idx] - (torch.stack(loop) - base).numpy()).max())
    loop_full = ml["wall_s"] * cfg["n"] / len(idx)
    gflop = trajectory_loo_flops(model, cfg["n"], len(tg), sched, chunk)[0] / 1e9
    threads = torch.get_num_threads()
    rate, frac = fraction(gflop, vec_cpu if threads == 1 else vec.meta["wall_s"], peak)
    row = {
        "case": name, "n": cfg["n"], "p": model.n_params, "steps": sched.n_steps, "chunk": chunk, "engine": engine,
        "vectorised_s": vec.meta["wall_s"], "vectorised_cpu_s": vec_cpu, "vectorised_peak_mb": mv["peak_rss_mb"],
        "vectorised_peak_delta_mb": mv["peak_delta_mb"],
        "loop_s_all_n (extrapolated)": loop_full, "loop_cpu_s_all_n (extrapolated)": loop_cpu,
        "loop_samples": len(idx), "loop_peak_mb": ml["peak_rss_mb"], "loop_peak_delta_mb": ml["peak_delta_mb"],
        "speedup": loop_full / vec.meta["wall_s"], "speedup_cpu": loop_cpu / vec_cpu, "max_abs_diff": diff,
        "gflop": gflop, "gemm_peak_gflops": peak, "gflops": rate, "frac_peak": frac,
        "closed_form": model.is_linear, "threads": threads, "load_avg_1m": os.getloadavg()[0],
    }
    log.info("%s", row)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/benchmarks/loo.csv")
    ap.add_argument("--loop-samples", type=int, default=100, help="single replays timed (then extrapolated to n)")
    ap.add_argument("--chunk", type=int, default=200)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both sides)")
    ap.add_argument("--peak-size", type=int, default=2048, help="n of the n × n float64 GEMM of the peak")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = set(args.cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; known: {list(CASES)}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    peak = gemm_peak(torch.float64, args.threads, args.peak_size)
    log.info("float64 GEMM peak at %d threads: %.1f GFLOP/s", peak["threads"], peak["gflops"])
    rows = [run_case(c, CASES[c], args.loop_samples, args.chunk, peak["gflops"]) for c in args.cases]
    df = pd.DataFrame(rows)
    save_csv(args.out, df, float_format=None)
    table = df.to_markdown(index=False, floatfmt=".3g")
    save_text(Path(args.out).with_suffix(".md"), table + "\n")
    log.info("\n%s\n(total %.1f s, %d torch threads)", table, time.perf_counter() - t0, torch.get_num_threads())


if __name__ == "__main__":
    main()
