"""Rule table_E9: one row per E9 run (metrics/E9_text.csv) and the test-accuracy curves (metrics/E9_curves.csv)."""

import pandas as pd
from wfio import setup

from influence.io import read_json, save_csv
from replication.tasks.e9_text import RESULT_COLUMNS

CURVE_COLUMNS = ["dataset", "model", "policy", "seed", "noise_rate", "step", "epoch", "test_acc", "val_acc"]

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
runs, curves = [], []
for p in sm.input:
    r = read_json(p)
    runs.append({k: r.get(k) for k in RESULT_COLUMNS}
                | {"protocol": r.get("protocol", "e9"), "n_classes": r.get("n_classes", 2)})
    key = {k: r[k] for k in ("dataset", "model", "policy", "seed", "noise_rate")}
    for s, e, t, v in zip(r["eval_steps"], r["eval_epochs"], r["test_acc"], r["val_acc"], strict=True):
        curves.append({**key, "step": s, "epoch": e, "test_acc": t, "val_acc": v})
save_csv(sm.output.runs, pd.DataFrame(runs, columns=list(RESULT_COLUMNS)))
save_csv(sm.output.curves, pd.DataFrame(curves, columns=CURVE_COLUMNS))
log.info("%d E9 runs", len(runs))
