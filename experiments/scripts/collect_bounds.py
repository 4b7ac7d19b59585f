"""Rule table_E5: one row per theory check (name, pass/fail, criterion, measured and predicted values)."""

import json

import pandas as pd
from wfio import setup

from influence.io import save_csv

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
rows = []
for p in sm.input:
    for r in json.load(open(p)):
        rows.append({"check": r["check"], "name": r["name"], "passed": bool(r["passed"]), "criterion": r["criterion"],
                     "claims": ";".join(r.get("claims", [])),
                     "measured": json.dumps(r["measured"], sort_keys=True, default=str),
                     "predicted": json.dumps(r["predicted"], sort_keys=True, default=str)})
cols = ["check", "name", "passed", "criterion", "claims", "measured", "predicted"]
save_csv(sm.output[0], pd.DataFrame(rows, columns=cols))
log.info("%d checks, %d passed", len(rows), sum(r["passed"] for r in rows))
