"""Rules table_E*: concatenate per-setting tables (and provenance records) into one table per experiment."""

import pandas as pd
from wfio import setup

from influence.io import save_csv
from replication.tasks.e6_cost import cost_table

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)


def concat(paths):
    frames = [pd.read_csv(p) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


if sm.rule == "table_E6":
    table = cost_table(sm.input.provenance, sm.input.loo)
    save_csv(sm.output[0], table)
else:
    for key, out in sm.output.items():
        table = concat(sm.input[key])
        save_csv(out, table)
        log.info("%s: %d rows", out, len(table))
