"""Benchmark: the cost of one E10 run (replication.tasks.e10_dvemb) with DVEmb's small CNN, at a few sizes.

Each case is one (epochs, seed) run of :func:`replication.tasks.e10_dvemb.run_protocol` with ``arch: cnn``, as the
rule ``dvemb_run`` runs it (one thread); the sizes that set the default and paper configurations' CNN settings
(experiments/config/*.yaml, block ``dvemb``). Writes a CSV with, per case and seed: process CPU seconds of the
whole run (the figure to read on a shared machine), wall seconds, the wall seconds of each part (training, the two
trajectory LOOs, each estimator, dattri, LDS), the target accuracy against the majority rate, and the per-target
Spearman of SGD-IE, ACC-SGD-IE, our DVEmb and dattri's DVEmb in both removal modes.

Measured (one idle 2-core machine, 1 thread; the figures in the configurations' comments):

- ``default`` (96 images, 8 points, 2 epochs), seeds 0-4: 22.7-25.2 CPU-s a seed, 121 in all; target accuracy
  0.28-0.50 (majority 0.10);
- ``paper-steps`` (256 images, 20 points, 10 epochs = 40 steps): 1195 CPU-s (LOO 141 + 116, SGD-IE and ACC-SGD-IE
  forms 183 each, LDS 111 + 332, registry 86, dattri 9); scaled to the paper size (100 points x 710 steps = 89 x the
  point-steps, 17.6 x the images, 17.8 x the steps): ~13-19 CPU-hours a seed;
- ``paper-memory``: peak RSS 5.4 GB in the LOO and 5.5 GB in the LDS with chunks of 16 (100 replays at once were
  killed for memory at 24 GB).

    python experiments/benchmarks/bench_e10_cnn.py [--cases default paper-steps] [--seeds 0 1 2 3 4]
        [--out results/benchmarks/e10_cnn.csv]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import pandas as pd
import torch

from influence.io import save_csv
from replication.tasks.e10_dvemb import run_protocol

log = logging.getLogger("bench_e10_cnn")

REGISTRY = ["sgd_ie", "dvemb", "tracin", "diffin", "diffin_paper", "ghost", "random"]
#: (epochs, settings) per case; ``default`` / ``smoke`` / ``paper`` are the configurations' CNN settings
CASES = {
    "smoke": (2, {"n_train": 32, "n_target": 16, "n_points": 4, "batch_size": 16, "lr": 0.1,
                  "registry": ["sgd_ie", "dvemb", "tracin", "ghost", "random"], "lds": {"m": 0}}),
    "n256-ep2": (2, {"n_train": 256, "n_target": 100, "n_points": 50, "batch_size": 32, "lr": 0.05,
                     "registry": REGISTRY, "lds": {"m": 10, "extra_seeds": [1]}}),
    "n96-p12": (2, {"n_train": 96, "n_target": 100, "n_points": 12, "batch_size": 16, "lr": 0.1,
                    "registry": REGISTRY, "lds": {"m": 6, "extra_seeds": [1]}}),
    "n96-p20": (2, {"n_train": 96, "n_target": 100, "n_points": 20, "batch_size": 16, "lr": 0.1,
                    "registry": REGISTRY, "lds": {"m": 6, "extra_seeds": [1]}}),
    "default": (2, {"n_train": 96, "n_target": 100, "n_points": 8, "batch_size": 16, "lr": 0.1,
                    "registry": ["sgd_ie", "dvemb", "tracin", "ghost", "random"], "lds": {"m": 0}}),
    # the paper configuration's batch, lr, epochs, targets, estimators and LDS on 256 images (40 steps) and 20
    # points: its parts scale to the paper size by (points x steps) (the LOOs, the forward forms) or (n x epochs)
    # (the registry, dattri) or steps (LDS)
    "paper-steps": (10, {"n_train": 256, "n_target": 500, "n_points": 20, "batch_size": 64, "lr": 0.01,
                         "registry": REGISTRY, "lds": {"m": 20, "extra_seeds": [1, 2]}}),
    # the paper configuration's chunks, every part at its full width (100 points, 20 x 3 LDS runs) for one epoch of
    # 256 images: the peak memory of each part (it does not grow with the steps) and the time per point-step
    "paper-memory": (1, {"n_train": 256, "n_target": 500, "n_points": 100, "batch_size": 64, "lr": 0.01,
                         "registry": REGISTRY, "lds": {"m": 20, "extra_seeds": [1, 2]}, "loo_chunk": 16,
                         "vmap_chunk": 16}),
    # the paper configuration itself: ~13-19 CPU-hours (extrapolated above)
    "paper": (10, {"n_train": 4500, "n_target": 500, "n_points": 100, "batch_size": 64, "lr": 0.01,
                   "registry": REGISTRY, "lds": {"m": 20, "extra_seeds": [1, 2]}, "loo_chunk": 16,
                   "vmap_chunk": 16}),
}


def one(case: str, seed: int) -> dict:
    epochs, settings = CASES[case]
    c0, t0 = time.process_time(), time.perf_counter()
    r = run_protocol({"arch": "cnn", **settings}, epochs, seed)
    row = {"case": case, "seed": seed, "epochs": epochs, "cpu_s": time.process_time() - c0,
           "wall_s": time.perf_counter() - t0, "n_train": r["n_train"], "n_points": r["n_points"],
           "n_target": r["n_target"], "n_steps": r["n_steps"], "n_params": r["n_params"],
           "target_accuracy": r["target_accuracy"], "majority_acc": r["majority_acc"], "learned": r["learned"]}
    for c in r["costs"]:
        row[f"s {c['what']}"] = c["wall_s"]
        row[f"MB {c['what']}"] = c["peak_rss_mb"]
    for x in r["rows"]:
        if x["status"] == "ok":
            row[f"s {x['removal']} {x['library']}/{x['estimator']}/{x['form']}"] = x["wall_s"]
            row[f"MB {x['removal']} {x['library']}/{x['estimator']}/{x['form']}"] = x["peak_rss_mb"]
        if x["form"] == "points":
            row[f"rho {x['removal']} {x['estimator']}"] = x["spearman_per_target"]
    log.info("%s seed %d: %.1f CPU-s, %.1f wall-s, target accuracy %.3f (majority %.3f)", case, seed, row["cpu_s"],
             row["wall_s"], row["target_accuracy"], row["majority_acc"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["smoke", "default"], choices=sorted(CASES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the rule runs with 1)")
    ap.add_argument("--out", default="results/benchmarks/e10_cnn.csv")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(args.threads)
    rows = []
    for case in args.cases:
        for seed in args.seeds:
            rows.append(one(case, seed))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            save_csv(args.out, pd.DataFrame(rows))  # after every run: a long case leaves the earlier ones
    print(pd.DataFrame(rows).T.to_string())


if __name__ == "__main__":
    main()
