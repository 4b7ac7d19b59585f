"""Rule online_cost: per-step time and tensor footprint of every curation policy on the transformers (LAI-4)."""

import pandas as pd
from wfio import setup

from influence.io import save_csv
from influence.tasks.online_cost import step_costs

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
p = sm.params
rows = []  # a disabled experiment has no policies: an empty table
for kind, model in (p.models.items() if p.policies else []):
    rows += step_costs(kind, model=dict(model), batch_size=int(p.batch_size), target_size=int(p.target_size),
                       policies=tuple(p.policies), repeats=int(p.repeats), warmup=int(p.warmup), seed=int(p.seed))
save_csv(sm.output[0], pd.DataFrame(rows))
log.info("%d timed steps over %d models", len(rows), len(p.models))
