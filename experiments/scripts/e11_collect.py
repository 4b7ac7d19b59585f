"""Rule table_E11: the E11 parts into metrics/E11_sec71.csv (one row per dataset x noise x model x epochs x seed x
estimator)."""

import pandas as pd
from wfio import setup

from influence.io import save_csv

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
df = pd.concat([pd.read_csv(p) for p in sm.input], ignore_index=True)
save_csv(sm.output[0], df)
log.info("%d E11 rows", len(df))
