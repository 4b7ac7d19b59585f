"""Rule table_E8: one row per E8 run (metrics/E8_lm.csv), the validation-loss curves (metrics/E8_curves.csv), one
row per Shapley step (metrics/E8_shapley.csv) and the per-sample Shapley values and scores
(metrics/E8_shapley_values.csv). Empty inputs give tables with their headers only."""

import pandas as pd
from wfio import setup

from influence.io import read_json, save_csv
from replication.tasks.e8_lm import RESULT_COLUMNS, SHAPLEY_COLUMNS, VALUE_COLUMNS

CURVE_COLUMNS = ["dataset", "model", "policy", "seed", "noise_kind", "noise_rate", "step", "val_loss"]

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
runs, curves = [], []
for p in sm.input.runs:
    r = read_json(p)
    runs.append({k: r.get(k) for k in RESULT_COLUMNS})
    key = {k: r[k] for k in ("dataset", "model", "policy", "seed", "noise_kind", "noise_rate")}
    for s, v in zip(r["curve_steps"], r["curve_val_loss"], strict=True):
        curves.append({**key, "step": s, "val_loss": v})
rows, values = [], []
for p in sm.input.shapley:
    r = read_json(p)
    rows += [{k: row.get(k) for k in SHAPLEY_COLUMNS} for row in r["rows"]]
    values += [{k: v.get(k) for k in VALUE_COLUMNS} for v in r["values"]]
save_csv(sm.output.runs, pd.DataFrame(runs, columns=list(RESULT_COLUMNS)))
save_csv(sm.output.curves, pd.DataFrame(curves, columns=CURVE_COLUMNS))
save_csv(sm.output.shapley, pd.DataFrame(rows, columns=list(SHAPLEY_COLUMNS)))
save_csv(sm.output.values, pd.DataFrame(values, columns=list(VALUE_COLUMNS)))
log.info("%d E8 runs, %d Shapley steps", len(runs), len(rows))
