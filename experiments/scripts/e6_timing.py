"""Rule cost_timing: repeated, interleaved wall and CPU time of the E6 timing estimators on one run (DIFF-5)."""

from wfio import setup

from influence.data import Dataset
from influence.io import save_csv
from influence.tasks.e6_cost import time_estimators
from influence.train import Trajectory

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
p = sm.params
traj = Trajectory.load(sm.input.run)
table = time_estimators(traj, Dataset.load(sm.input.train), Dataset.load(sm.input.target), list(p.estimators),
                        hparams=dict(p.hparams), repeats=int(p.repeats), warmup=int(p.warmup))
for k, v in sm.wildcards.items():
    table.insert(0, k, v)
save_csv(sm.output[0], table)
log.info("median per estimator over %d rounds:\n%s", int(p.repeats),
         table.groupby("estimator")[["wall_s", "cpu_s"]].median().to_string())
