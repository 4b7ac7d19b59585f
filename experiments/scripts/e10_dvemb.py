"""Rule dvemb_run: one (epochs, seed) run of E10, DVEmb's MNIST-MLP protocol (replication.tasks.e10_dvemb)."""

import torch  # noqa: F401  (imported before wfio.setup, which then fixes torch's thread count)
from wfio import setup

from influence.io import save_json
from replication.tasks.e10_dvemb import run_protocol

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
epochs, seed = int(sm.wildcards.epochs), int(sm.wildcards.seed)
out = run_protocol(dict(sm.params.settings), epochs, seed)
out["threads"] = int(sm.threads)
save_json(sm.output[0], out)
for row in out["rows"]:
    if row["form"] == "points":
        log.info("ep%d seed%d %s %s/%s: per-target Spearman %.3f", epochs, seed, row["removal"], row["library"],
                 row["estimator"], row["spearman_per_target"])
