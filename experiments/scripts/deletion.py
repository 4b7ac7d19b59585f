"""Rule deletion: Diff-In's deletion task (predicted vs actual target-loss change after removing the top-k
helpful / harmful samples) and coresets (keep the least suspicious fraction and retrain)."""

import numpy as np
import pandas as pd
from wfio import setup

from influence.data import Dataset
from influence.io import save_csv
from influence.tasks.e4_deletion import coreset_table, deletion_table

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
wc = sm.wildcards
train = Dataset.load(sm.input.train)
target = Dataset.load(sm.input.target)
evals = {"test": Dataset.load(sm.input.test)}
if wc.estimator == "random_removal":
    deletion = pd.DataFrame(columns=["removed", "k", "predicted", "actual"])
    value = None
else:
    scores = np.load(sm.input.scores[0])
    deletion = deletion_table(sm.params.spec, train, target, train.n_classes, int(wc.epochs), int(wc.seed), scores,
                              list(sm.params.ks))
    value = scores
coreset = coreset_table(sm.params.spec, train, train.n_classes, int(wc.epochs), int(wc.seed), value, evals,
                        list(sm.params.keep_fractions))
for table in (deletion, coreset):
    for k, v in wc.items():
        table.insert(0, k, v)
save_csv(sm.output.deletion, deletion)
save_csv(sm.output.coreset, coreset)
log.info("deletion:\n%s\ncoreset:\n%s", deletion.to_string(), coreset.to_string())
