"""E4: deletion and coresets — remove samples chosen by a score, retrain, measure.

* :func:`deletion_table`: the deletion task of Diff-In (Tan et al. 2025): remove the top-k helpful or
  harmful samples, compare the predicted change of the target loss with the retrained one.
* :func:`coreset_table`: keep the highest-valued fraction, retrain, measure test accuracy (claims DIFF-4,
  Diff-In coresets, and CG-2, CG-score pruning, are judged on this table).

Every retraining uses the same recipe as the original run (:func:`replication.tasks.common.retrain_subset`:
same batch size, epochs, step sizes, seed; the schedule is rebuilt for the kept samples).

Sign convention: scores are estimated L(θ^{-j}_T) − L(θ_T) for the mean target loss; positive = helpful.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from influence.data import as_tensors
from replication.tasks.common import retrain_subset

__all__ = ["deletion_table", "coreset_table"]


def deletion_table(
    spec: Mapping[str, Any], train_data: Any, target_data: Any, n_classes: int, epochs: int, seed: int,
    scores: np.ndarray, ks: Sequence[int],
) -> pd.DataFrame:
    """Diff-In's deletion task: remove the top-k helpful (largest score) or harmful (smallest) samples.

    Predicted change of the target loss = Σ of the removed samples' scores (first-order additivity);
    actual = retrained target loss − base target loss (same recipe, schedule rebuilt for the kept set).
    """
    s = np.asarray(scores, dtype=np.float64)
    n = s.shape[0]
    base = retrain_subset(spec, train_data, n_classes, epochs, seed, np.ones(n, bool), {"target": target_data})
    rows = []
    for which, order in (("helpful", np.argsort(-s, kind="stable")), ("harmful", np.argsort(s, kind="stable"))):
        for k in sorted({int(k) for k in ks if 0 < int(k) < n}):
            keep = np.ones(n, dtype=bool)
            keep[order[:k]] = False
            r = retrain_subset(spec, train_data, n_classes, epochs, seed, keep, {"target": target_data})
            rows.append({"removed": which, "k": k, "predicted": float(s[order[:k]].sum()),
                         "actual": r["target_loss"] - base["target_loss"]})
    return pd.DataFrame(rows)


def coreset_table(
    spec: Mapping[str, Any], train_data: Any, n_classes: int, epochs: int, seed: int, value: np.ndarray | None,
    eval_sets: Mapping[str, Any], keep_fractions: Sequence[float],
) -> pd.DataFrame:
    """Keep the ``f`` fraction of samples with the *highest* ``value`` and retrain (coresets / pruning).

    Protocol (this project's, the one the ``E4_coreset`` table and claim CG-2 are judged on): a
    **global** ranking over all training samples (not class-wise), the top ``ceil(f · n)`` kept, and
    the kept set retrained with the run's own recipe and epoch count — so a smaller coreset takes
    proportionally fewer SGD steps. This differs from the CG-score authors' pruning protocol (Ki, Choi
    & Chung 2023, data-pruning experiments: class-wise pruning at a fixed number of training steps,
    minibatches drawn with replacement from the kept samples), which is not run here.

    For influence scores the highest value is the most helpful sample (Diff-In's coresets); for CG-score,
    EL2N or forgetting it is the hardest / most irregular one, so low-scored samples are pruned first as
    in those papers. ``value = None`` keeps a seeded random subset (the baseline).
    """
    X, _ = as_tensors(train_data, torch.float64)
    n = X.shape[0]
    order = (np.random.default_rng([seed, 104729]).permutation(n) if value is None
             else np.argsort(-np.asarray(value, dtype=np.float64), kind="stable"))  # highest value first
    rows = []
    for f in keep_fractions:
        m = max(1, min(n, int(math.ceil(f * n))))
        r = retrain_subset(spec, train_data, n_classes, epochs, seed, np.sort(order[:m]), eval_sets)
        rows.append({"keep_fraction": float(f), **r})
    return pd.DataFrame(rows)
