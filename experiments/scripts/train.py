"""Rule train: one recorded SGD run (float64, every step recorded) of a model recipe."""

from wfio import setup

from influence.data import Dataset
from influence.io import save_json
from influence.provenance import environment, measure
from replication.tasks.common import evaluate_model, run_health, train_setting

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
wc = sm.wildcards
train = Dataset.load(sm.input.train)
with measure() as m:
    traj = train_setting(sm.params.spec, train, train.n_classes, int(wc.epochs), int(wc.seed))
traj.meta.update(setting=dict(wc.items()), recipe=dict(sm.params.spec))
health = run_health(traj, train, Dataset.load(sm.input.test))
traj.meta["health"] = health  # in the run's own metadata (a result) and in the summary (read by the claims)
traj.save(sm.output.run)
summary = {"setting": dict(wc.items()), "n_steps": traj.n_steps, "n_params": traj.model.n_params, **m,
           "env": environment()}
for part in ("train", "target", "test"):
    data = train if part == "train" else Dataset.load(sm.input[part])
    for k, v in evaluate_model(traj.model, traj.final, data).items():
        summary[f"{part}_{k}"] = v
summary["health"] = health
save_json(sm.output.summary, summary)
if not health["learned"]:
    log.warning("run %s did not learn: %s (claims on it get the verdict 'invalid run')", dict(wc.items()),
                health["reason"])
log.info("trained %s: test accuracy %.4f in %.2f s", dict(wc.items()), summary["test_accuracy"], m["wall_s"])
