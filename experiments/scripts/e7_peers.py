"""Rule peers_task: run one E7 task (A or B, see replication.tasks.e7_peers) with our estimators and the peer libraries.

Writes the side-by-side table (one row per method: library, status, wall time, peak RSS, agreement with
the task's ground truth), the ground-truth cost table and the peer library versions.
"""

import torch  # noqa: F401  (imported first so that wfio.setup fixes its thread count)
from wfio import setup

from influence.io import save_csv, save_json
from replication.tasks import e7_peers as peers

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)

task = sm.wildcards.task
cfg = dict(sm.params.cfg or {})
ours = getattr(sm.params, "ours", None) or None
peer_names = getattr(sm.params, "peers", None) or None
log.info("E7 task %s, overrides %s, peer versions %s", task, cfg, peers.peer_versions())
run = peers.run_task_a if task == "A" else peers.run_task_b
table, cost = run(cfg, ours=ours, peers=peer_names)
save_csv(sm.output.table, table)
save_csv(sm.output.cost, cost)
save_json(sm.output.versions, peers.peer_versions())
