"""Rule table_E5: one row per theory check (name, pass/fail, criterion, measured and predicted values), and the
full records with the series the E5 notebook draws (``metrics/E5_series.json``: a list of the checks'
``replication.bounds.Check`` records, each with ``check``, ``claims``, ``measured``, ``predicted`` and ``details``)."""

import json

import pandas as pd
from wfio import setup

from influence.io import save_csv, save_json

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
rows, records = [], []
for p in sm.input:
    for r in json.load(open(p)):
        records.append(r)
        rows.append({"check": r["check"], "name": r["name"], "passed": bool(r["passed"]), "criterion": r["criterion"],
                     "claims": ";".join(r.get("claims", [])),
                     "measured": json.dumps(r["measured"], sort_keys=True, default=str),
                     "predicted": json.dumps(r["predicted"], sort_keys=True, default=str)})
cols = ["check", "name", "passed", "criterion", "claims", "measured", "predicted"]
save_csv(sm.output.csv, pd.DataFrame(rows, columns=cols))
save_json(sm.output.series, records)
log.info("%d checks, %d passed", len(rows), sum(r["passed"] for r in rows))
