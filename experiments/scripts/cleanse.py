"""Rules cleanse / cleanse_<run>: remove the k most suspicious samples by an estimator (or a baseline) and retrain.

Baselines: ``oracle`` removes truly corrupted samples first, ``random_removal`` a seeded random subset.
``params.estimators`` lists the job's estimators (one for rule ``cleanse``; all of the run's with
``batch_estimators``), ``output`` their tables in the same order; ``input.scores`` the score files of the
real estimators among them, in order.
"""

import numpy as np
from wfio import setup

from influence.data import Dataset
from influence.estimators import suspicion
from influence.io import save_csv
from replication.tasks.e2_detection import cleanse

BASELINES = ("oracle", "random_removal")

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
setting = sm.params.setting
train = Dataset.load(sm.input.train)
mask = np.load(sm.input.mask)
evals = {"test": Dataset.load(sm.input.test), "target": Dataset.load(sm.input.target)}
score_files = iter(sm.input.scores)
for name, out in zip(sm.params.estimators, sm.output, strict=True):
    if name == "oracle":
        susp = mask.astype(np.float64)
    elif name == "random_removal":
        susp = None
    else:
        susp = suspicion(name, np.load(next(score_files)), dict(sm.params.directions))
    table = cleanse(sm.params.spec, train, train.n_classes, int(setting["epochs"]), int(setting["seed"]), susp, evals,
                    list(sm.params.fractions), noisy=mask)
    for k, v in {**setting, "estimator": name}.items():
        table.insert(0, k, v)
    save_csv(out, table)
    log.info("cleansing by %s:\n%s", name, table.to_string())
