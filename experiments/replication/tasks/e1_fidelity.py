"""E1: fidelity of every estimator to the trajectory-specific leave-one-out ground truth.

:func:`agreement_table`: one row per estimator with the agreement metrics of
:func:`influence.metrics.agreement` (Kendall τ, Spearman, Pearson, RMSE, top/bottom-p % Jaccard) against
the LOO loss changes of :func:`influence.loo.trajectory_loo`. The recorded runs come from
:func:`replication.tasks.common.train_setting`.

Sign convention: scores are estimated L(θ^{-j}_T) − L(θ_T) for the mean target loss; positive = helpful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from influence import metrics

__all__ = ["agreement_table", "top_k_agreement", "TOP_K"]

#: Diff-In's protocol (Tan et al., 2025): agreement with LOO on the k points the estimator ranks most influential.
TOP_K = 30


def top_k_agreement(est: np.ndarray, truth: np.ndarray, k: int = TOP_K) -> dict[str, float]:
    """Spearman and Pearson correlation with ``truth`` on the ``k`` samples of largest |``est``| (the points the
    estimator ranks most influential, either sign; ties broken by index; all samples when fewer than k):
    ``spearman_top{k}``, ``pearson_top{k}`` (NaN when either side is constant on those samples)."""
    est, truth = np.asarray(est, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    top = np.argsort(-np.abs(est), kind="stable")[: min(int(k), est.size)]
    return {f"spearman_top{k}": metrics.spearman(est[top], truth[top]),
            f"pearson_top{k}": metrics.pearson(est[top], truth[top])}


def agreement_table(
    scores: Mapping[str, np.ndarray], truth: np.ndarray, ps: Sequence[float] = (10, 30, 50, 70), top_k: int = TOP_K
) -> pd.DataFrame:
    """One row per estimator: Kendall τ, Spearman, Pearson, RMSE and top/bottom-p % Jaccard vs ``truth``, and
    Spearman / Pearson on the ``top_k`` samples of largest |score| (:func:`top_k_agreement`, Diff-In's protocol).

    ``truth`` holds the LOO loss changes (NaN where LOO was not computed: only those samples count).
    """
    truth = np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(truth)
    if keep.sum() < 3:
        raise ValueError(f"need LOO values for at least 3 samples, got {int(keep.sum())}")
    rows = []
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        if s.shape != truth.shape:
            raise ValueError(f"estimator {name!r}: {s.shape[0]} scores for {truth.shape[0]} training samples")
        row = {"estimator": name, "n_compared": int(keep.sum())}
        row.update(metrics.agreement(s[keep], truth[keep], tuple(ps)))
        row.update(top_k_agreement(s[keep], truth[keep], top_k))
        rows.append(row)
    return pd.DataFrame(rows)
