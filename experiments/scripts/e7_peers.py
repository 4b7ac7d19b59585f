"""Rule peers_task: run one E7 task (A or B of peers.md) with our estimators and the peer libraries.

Writes the side-by-side table (one row per method: library, status, wall time, peak RSS, agreement with
the task's ground truth), the ground-truth cost table and the peer library versions.
"""

import torch  # noqa: F401  (imported first so that wfio.setup fixes its thread count)
from wfio import setup, write_csv, write_json

from influence.tasks import peers

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)

task = sm.wildcards.task
cfg = dict(sm.params.cfg or {})
ours = getattr(sm.params, "ours", None) or None
peer_names = getattr(sm.params, "peers", None) or None
log.info("E7 task %s, overrides %s, peer versions %s", task, cfg, peers.peer_versions())
run = peers.run_task_a if task == "A" else peers.run_task_b
table, cost = run(cfg, ours=ours, peers=peer_names)
write_csv(sm.output.table, table)
write_csv(sm.output.cost, cost)
write_json(sm.output.versions, peers.peer_versions())
