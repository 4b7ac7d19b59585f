"""Rule evaluate_fidelity: agreement of every estimator of one run with its trajectory LOO.

The table holds results only (no timings: the LOO wall time is in ``loo.npz.json``, read by E6), so the same
inputs give the same bytes. Each row also carries the run's test accuracy and the test set's majority-class rate
(``test_accuracy``, ``majority_rate``: its health, from ``summary.json``), so a regime is named by what the run
reached.
Columns ``spearman_top30`` / ``pearson_top30``: Diff-In's protocol, agreement on the 30 samples of largest |score|.
"""

import numpy as np
from wfio import setup

from influence.estimators.diffin import add_negated_forms
from influence.io import read_json, save_csv
from influence.loo_result import LOOResult
from replication.tasks.e1_fidelity import agreement_table

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
loo = LOOResult.load(sm.input.loo)
scores = {k: np.load(v) for k, v in sm.input.items() if k not in ("loo", "summary")}
scores = add_negated_forms(scores)  # the other sign of Diff-In's Eq. 9 as a supplementary row (diffin_paper_negated)
n = len(next(iter(scores.values()))) if scores else int(loo.indices.max()) + 1
table = agreement_table(scores, loo.scores(n), ps=tuple(sm.params.ps))
for k, v in sm.wildcards.items():
    table.insert(0, k, v)
health = read_json(sm.input.summary)["health"]
table["test_accuracy"] = float(health["test_accuracy"])
table["majority_rate"] = float(health["majority_rate"])
save_csv(sm.output[0], table)
log.info("agreement with LOO:\n%s", table[["estimator", "kendall", "spearman", "rmse"]].to_string())
