"""Rule evaluate_detection: AUROC / AP / recall@k of every estimator for the corrupted samples of one run."""

import numpy as np
from wfio import setup

from influence.estimators.diffin import add_negated_forms
from influence.io import save_csv
from replication.tasks.e2_detection import detection_table

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
mask = np.load(sm.input.mask)
scores = {k: np.load(v) for k, v in sm.input.items() if k != "mask"}
scores = add_negated_forms(scores)  # diffin_self's other end (diffin_self_negated) as a supplementary row
table = detection_table(scores, mask, overrides=dict(sm.params.directions))
for k, v in sm.wildcards.items():
    table.insert(0, k, v)
save_csv(sm.output[0], table)
log.info("detection:\n%s", table[["estimator", "direction", "auroc", "ap"]].to_string())
