"""Rules deletion / deletion_<run>: Diff-In's deletion task (predicted vs actual target-loss change after removing
the top-k helpful / harmful samples) and coresets (keep the least suspicious fraction and retrain).

``params.estimators`` lists the job's estimators (one for rule ``deletion``; all of the run's with
``batch_estimators``), ``output.deletion`` / ``output.coreset`` their tables in the same order; ``input.scores``
the score files of the real estimators among them (``random_removal`` has none), in order.
"""

import numpy as np
import pandas as pd
from wfio import output_paths, setup

from influence.data import Dataset
from influence.io import save_csv
from replication.tasks.e4_deletion import coreset_table, deletion_table

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
setting = sm.params.setting
epochs, seed = int(setting["epochs"]), int(setting["seed"])
train = Dataset.load(sm.input.train)
target = Dataset.load(sm.input.target)
evals = {"test": Dataset.load(sm.input.test)}
score_files = iter(sm.input.scores)
outs = zip(sm.params.estimators, output_paths(sm.output.deletion), output_paths(sm.output.coreset), strict=True)
for name, del_out, core_out in outs:
    if name == "random_removal":
        deletion = pd.DataFrame(columns=["removed", "k", "predicted", "actual"])
        value = None
    else:
        scores = np.load(next(score_files))
        deletion = deletion_table(sm.params.spec, train, target, train.n_classes, epochs, seed, scores,
                                  list(sm.params.ks))
        value = scores
    coreset = coreset_table(sm.params.spec, train, train.n_classes, epochs, seed, value, evals,
                            list(sm.params.keep_fractions))
    for table in (deletion, coreset):
        for k, v in {**setting, "estimator": name}.items():
            table.insert(0, k, v)
    save_csv(del_out, deletion)
    save_csv(core_out, coreset)
    log.info("%s deletion:\n%s\ncoreset:\n%s", name, deletion.to_string(), coreset.to_string())
