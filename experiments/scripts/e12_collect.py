"""Rule table_E12: one row per (dataset, model, method, kept fraction, seed) of E12 (metrics/E12_cg_pruning.csv)."""

import pandas as pd
from wfio import setup

from influence.io import read_json, save_csv
from replication.tasks.e12_cg_pruning import RESULT_COLUMNS

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
rows = [{k: r.get(k) for k in RESULT_COLUMNS} for p in sm.input for r in read_json(p)["rows"]]
save_csv(sm.output[0], pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))
log.info("%d E12 rows", len(rows))
