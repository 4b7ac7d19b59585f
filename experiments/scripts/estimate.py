"""Rule estimate: one estimator on one recorded run; scores (.npy) + provenance (.json)."""

import hashlib

from wfio import setup

from influence import estimators
from influence.data import Dataset
from influence.io import save_json, save_npy
from influence.train import Trajectory

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
wc = sm.wildcards
name = wc.estimator
if name not in estimators.names():
    raise KeyError(f"estimator {name!r} is in the config but not registered; known: {', '.join(estimators.names())}")
traj = Trajectory.load(sm.input.run)
train = Dataset.load(sm.input.train)
target = Dataset.load(sm.input.target)
hparams = dict(sm.params.hparams)
scores, record = estimators.run(name, traj, train, target, **hparams)
if scores.shape != (len(train),):
    raise ValueError(f"estimator {name!r} returned shape {scores.shape}, expected ({len(train)},)")
save_npy(sm.output.scores, scores)
record.update(setting=dict(wc.items()), seed=int(wc.seed), config_hash=sm.params.config_hash,
              n_train=len(train), n_params=traj.model.n_params, n_steps=traj.n_steps,
              scores_sha256=hashlib.sha256(scores.tobytes()).hexdigest())
save_json(sm.output.provenance, record)
log.info("%s: %d scores in %.2f s, peak RSS %.0f MB", name, len(scores), record["wall_s"], record["peak_rss_mb"])
