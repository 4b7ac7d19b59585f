"""Rule table_E3: one row per curation run (final accuracy, log summary) and the accuracy curves."""

import json

import numpy as np
import pandas as pd
from wfio import setup

from influence.io import save_csv

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
runs, curves = [], []
for p in sm.input:
    r = json.load(open(p))
    row = {"dataset": r["dataset"], "policy": r["policy"], "seed": r["seed"], "final_test_acc": r["final_test_acc"],
           "time_per_step_s": r["time_per_step_s"], "wall_s": r["wall_s"],
           "majority_acc": r.get("majority_acc"), "learned": r.get("learned")}
    row.update({k: v for k, v in r.get("summary", {}).items() if np.isscalar(v)})
    if "spearman_lai_ghost_mean" in r:
        row["spearman_lai_ghost"] = r["spearman_lai_ghost_mean"]
    runs.append(row)
    for e, acc in zip(r["epochs"], r["test_acc"], strict=True):
        curves.append({"dataset": r["dataset"], "policy": r["policy"], "seed": r["seed"], "epoch": e, "test_acc": acc})
save_csv(sm.output.runs, pd.DataFrame(runs))
save_csv(sm.output.curves, pd.DataFrame(curves))
log.info("%d curation runs", len(runs))
