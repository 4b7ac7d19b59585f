"""Rule table_E10: metrics/E10_dvemb.csv (every run, removal mode and method, DVEmb's published values) and
metrics/E10_lds.csv (trajectory-specific and multi-seed LDS)."""

import pandas as pd
from wfio import setup

from influence.io import read_json, save_csv
from replication.tasks.e10_dvemb import COLUMNS, LDS_COLUMNS, tables

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
rows, lds_rows = tables([read_json(p) for p in sm.input])
save_csv(sm.output.runs, pd.DataFrame(rows, columns=list(COLUMNS)))
save_csv(sm.output.lds, pd.DataFrame(lds_rows, columns=list(LDS_COLUMNS)))
log.info("%d E10 rows, %d LDS rows", len(rows), len(lds_rows))
