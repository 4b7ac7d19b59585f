"""Rules estimate / estimate_<run>: estimators on one recorded run; per estimator scores (.npy) + provenance (.json).

``params.estimators`` lists the estimators of the job (one for rule ``estimate``; all of the run's with
``batch_estimators``), ``output.scores`` / ``output.provenance`` their files in the same order. The data
and the run are loaded once; each estimator is timed and its peak memory measured on its own.
"""

import hashlib

from wfio import output_paths, setup

from influence import estimators
from influence.data import Dataset
from influence.io import save_json, save_npy
from influence.train import Trajectory

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
names = list(sm.params.estimators)
unknown = [n for n in names if n not in estimators.names()]
if unknown:
    raise KeyError(f"estimators {unknown} are in the config but not registered; known: {', '.join(estimators.names())}")
outs = list(zip(names, sm.params.hparams, sm.params.config_hash, output_paths(sm.output.scores),
                output_paths(sm.output.provenance), strict=True))
traj = Trajectory.load(sm.input.run)
train = Dataset.load(sm.input.train)
target = Dataset.load(sm.input.target)
for name, hparams, chash, scores_path, provenance_path in outs:
    scores, record = estimators.run(name, traj, train, target, **dict(hparams))
    if scores.shape != (len(train),):
        raise ValueError(f"estimator {name!r} returned shape {scores.shape}, expected ({len(train)},)")
    save_npy(scores_path, scores)
    setting = {**sm.params.setting, "estimator": name}
    record.update(setting=setting, seed=int(setting["seed"]), config_hash=chash, n_train=len(train),
                  n_params=traj.model.n_params, n_steps=traj.n_steps,
                  scores_sha256=hashlib.sha256(scores.tobytes()).hexdigest())
    save_json(provenance_path, record)
    log.info("%s: %d scores in %.2f s, peak RSS %.0f MB", name, len(scores), record["wall_s"], record["peak_rss_mb"])
