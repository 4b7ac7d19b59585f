"""Rule cost_timing: repeated, interleaved wall and CPU time of the E6 timing estimators on one run (DIFF-5).

Each estimator is timed once per implementation of ``impls`` (``fast``, ``per_sample``: the same gradient kernel
for Diff-In and TracIn, :class:`influence.ghost.GradKernel`) on Diff-In's checkpoints, on one torch thread
(:func:`replication.tasks.e6_cost.time_estimators`); the job itself holds every local core (the rule's threads) so
that no other job runs meanwhile.
"""

from wfio import setup

from influence.data import Dataset
from influence.io import save_csv
from influence.train import Trajectory
from replication.tasks.e6_cost import time_estimators

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
p = sm.params
traj = Trajectory.load(sm.input.run)
table = time_estimators(traj, Dataset.load(sm.input.train), Dataset.load(sm.input.target), list(p.estimators),
                        hparams=dict(p.hparams), repeats=int(p.repeats), warmup=int(p.warmup),
                        impls=list(p.impls) or None, checkpoints=p.checkpoints, threads=1)
for k, v in sm.wildcards.items():
    table.insert(0, k, v)
save_csv(sm.output[0], table)
log.info("median per estimator and implementation over %d rounds (job threads %d, timed on 1):\n%s", int(p.repeats),
         sm.threads, table.groupby(["impl", "estimator"])[["wall_s", "cpu_s"]].median().to_string())
