"""Rule cg_pruning_run: every seed of E12 (CG-score pruning, the authors' class-wise fixed-step protocol) on one
dataset and model (replication.tasks.e12_cg_pruning.run_seed); the dataset is read once for all seeds."""

import time

import torch  # noqa: F401  (imported before wfio.setup, which then fixes torch's thread count)
from wfio import setup

from influence.data import load_dataset
from influence.io import save_json
from influence.provenance import environment
from replication.tasks.e12_cg_pruning import run_seed

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
spec = dict(sm.params.spec)
cpu0 = time.process_time()
data = load_dataset(spec["name"])
rows, per_seed = [], []
for seed in map(int, sm.params.seeds):
    out = run_seed(spec["name"], seed, n_train=int(spec["n_train"]), n_test=int(spec["n_test"]),
                   keep_fractions=list(sm.params.keep_fractions), arch=dict(sm.params.arch), run=dict(sm.params.run),
                   cg=dict(sm.params.cg), selections=list(sm.params.selections), directions=list(sm.params.directions),
                   learned_margin=float(sm.params.learned_margin), data=data)
    rows += out["rows"]
    per_seed.append({"seed": seed, "cg_seconds": out["cg_seconds"], "cpu_seconds": out["cpu_seconds"],
                     "cg_scores_head": out["cg_scores_head"]})
    full = out["rows"][0]
    log.info("%s seed %d: full-data test accuracy %.4f (majority %.3f), %.1f CPU-s", spec["name"], seed,
             full["test_accuracy"], full["majority_rate"], out["cpu_seconds"])
save_json(sm.output[0], {"rows": rows, "seeds": per_seed, "cpu_seconds": time.process_time() - cpu0,
                         "data": {"source": data.meta.get("source"), **spec}, "env": environment()})
