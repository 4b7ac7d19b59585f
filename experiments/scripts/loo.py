"""Rule loo: trajectory leave-one-out for one shard of the training samples (masked replays).

Writes the result (``shard<k>.npz``: arrays and method settings, the same bytes for the same inputs) and its
provenance sidecar (``shard<k>.npz.json``: wall time, peak memory, library versions).
"""

from wfio import setup

from influence.data import Dataset
from influence.loo import shard_indices, trajectory_loo
from influence.train import Trajectory

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
p = sm.params
traj = Trajectory.load(sm.input.run)
train = Dataset.load(sm.input.train)
target = Dataset.load(sm.input.target)
idx = shard_indices(len(train), int(p.n_shards), int(sm.wildcards.shard),
                    None if p.subset is None else int(p.subset), seed=int(sm.wildcards.seed))
res = trajectory_loo(traj, train, target, idx, chunk=int(p.chunk))
res.meta.update(shard=int(sm.wildcards.shard), n_shards=int(p.n_shards))
res.save(sm.output.loo)
res.save_provenance(sm.output.provenance, shard=int(sm.wildcards.shard), n_shards=int(p.n_shards),
                    threads=int(sm.threads))
log.info("LOO for %d samples in %.2f s", len(idx), res.meta["wall_s"])
