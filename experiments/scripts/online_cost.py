"""Rule online_cost: per-step time and tensor footprint of every curation policy on the transformers (LAI-4).

The steps are timed on one torch thread (:func:`replication.tasks.online_cost.step_costs`); the job itself holds
every local core (the rule's threads) so that no other job runs meanwhile.
"""

import pandas as pd
from wfio import setup

from influence.io import save_csv
from replication.tasks.online_cost import step_costs

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
p = sm.params
rows = []  # a disabled experiment has no policies: an empty table
for kind, model in (p.models.items() if p.policies else []):
    rows += step_costs(kind, model=dict(model), batch_size=int(p.batch_size), target_size=int(p.target_size),
                       policies=tuple(p.policies), repeats=int(p.repeats), warmup=int(p.warmup), seed=int(p.seed),
                       threads=1)
save_csv(sm.output[0], pd.DataFrame(rows))
log.info("%d timed steps over %d models (job threads %d, timed on 1)", len(rows), len(p.models), sm.threads)
