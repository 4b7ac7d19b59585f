"""Rule cleanse: remove the k most suspicious samples by one estimator (or a baseline) and retrain.

Baselines: ``oracle`` removes truly corrupted samples first, ``random_removal`` a seeded random subset.
"""

import numpy as np
from wfio import setup

from influence.data import Dataset
from influence.estimators import suspicion
from influence.io import save_csv
from influence.tasks.e2_detection import cleanse

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
wc = sm.wildcards
train = Dataset.load(sm.input.train)
mask = np.load(sm.input.mask)
evals = {"test": Dataset.load(sm.input.test), "target": Dataset.load(sm.input.target)}
if wc.estimator == "oracle":
    susp = mask.astype(np.float64)
elif wc.estimator == "random_removal":
    susp = None
else:
    susp = suspicion(wc.estimator, np.load(sm.input.scores[0]), dict(sm.params.directions))
table = cleanse(sm.params.spec, train, train.n_classes, int(wc.epochs), int(wc.seed), susp, evals,
                list(sm.params.fractions), noisy=mask)
for k, v in wc.items():
    table.insert(0, k, v)
save_csv(sm.output[0], table)
log.info("cleansing:\n%s", table.to_string())
