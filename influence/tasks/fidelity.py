"""E1 fidelity (estimators vs trajectory LOO) and the retraining evaluations shared by E2 and E4.

The workflow's rule scripts are thin adapters around these functions:

* :func:`build_model`, :func:`train_setting`: a named model recipe (architecture, L2, batch size, step
  size, decay, init) + data + epochs + seed → a recorded :class:`~influence.train.Trajectory`.
* :func:`agreement_table`: one row per estimator with the agreement metrics of
  :func:`influence.metrics.agreement` against the LOO loss changes.
* :func:`suspicion`, :func:`detection_table`: noisy-sample detection, every method ranked by its own
  documented "suspicious" direction (influence estimators: most negative score first).
* :func:`cleanse`, :func:`deletion_table`, :func:`coreset_table`: remove samples chosen by a score,
  retrain with the same recipe (same batch size, epochs, step sizes, seed; the schedule is rebuilt for
  the kept samples), and measure test accuracy / target loss.
* :func:`cost_table`: wall time and peak memory read back from the provenance records.

Sign convention: scores are estimated L(θ^{-j}_T) − L(θ_T) for the mean target loss; positive = helpful.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from influence import estimators, metrics
from influence.models import Model, logistic_regression, mlp
from influence.train import Schedule, Trajectory, as_tensors, train

__all__ = [
    "build_model",
    "schedule_for",
    "train_setting",
    "evaluate_model",
    "agreement_table",
    "suspicion_direction",
    "suspicion",
    "detection_table",
    "retrain_subset",
    "cleanse",
    "deletion_table",
    "coreset_table",
    "cost_table",
]

log = logging.getLogger(__name__)

#: Keys of a model recipe (``config['models'][name]``) with their defaults.
RECIPE_DEFAULTS: dict[str, Any] = {
    "hidden": [],
    "l2": 0.0,
    "batch_size": 100,
    "lr": 0.1,
    "decay": "constant",
    "init": "default",
}


def _recipe(spec: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - set(RECIPE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown model recipe keys {sorted(unknown)}; allowed: {sorted(RECIPE_DEFAULTS)}")
    return {**RECIPE_DEFAULTS, **spec}


def build_model(spec: Mapping[str, Any], n_features: int, n_classes: int) -> Model:
    """Logistic regression when ``spec['hidden']`` is empty, else a ReLU MLP with those widths."""
    hidden = tuple(int(h) for h in _recipe(spec)["hidden"])
    return logistic_regression(n_features, n_classes) if not hidden else mlp(n_features, hidden, n_classes)


def schedule_for(spec: Mapping[str, Any], n: int, epochs: int, seed: int) -> Schedule:
    """The SGD schedule of a recipe for ``n`` samples (batch order seeded by ``seed``)."""
    r = _recipe(spec)
    return Schedule(n, int(r["batch_size"]), int(epochs), float(r["lr"]), int(seed), str(r["decay"]))


def train_setting(
    spec: Mapping[str, Any], train_data: Any, n_classes: int, epochs: int, seed: int, *, record: str = "all"
) -> Trajectory:
    """Train a recipe on ``train_data`` in float64 and return the recorded run.

    θ₀ = ``model.init(seed, scheme=spec['init'])``; the schedule from :func:`schedule_for`.
    """
    r = _recipe(spec)
    X, y = as_tensors(train_data, torch.float64)
    model = build_model(r, X.shape[1], n_classes)
    theta0 = model.init(int(seed), torch.float64, scheme=str(r["init"]))
    sched = schedule_for(r, X.shape[0], epochs, seed)
    return train(model, theta0, (X, y), sched, l2=float(r["l2"]), record=record)


def evaluate_model(model: Model, theta: torch.Tensor, data: Any) -> dict[str, float]:
    """Accuracy and mean loss (no L2) of parameters ``theta`` on ``data``."""
    X, y = as_tensors(data, theta.dtype)
    with torch.no_grad():
        return {"accuracy": float(model.accuracy(theta, X, y)), "loss": float(model.loss(theta, X, y))}


# ------------------------------------------------------------------------------------------------- E1
def agreement_table(
    scores: Mapping[str, np.ndarray], truth: np.ndarray, ps: Sequence[float] = (10, 30, 50, 70)
) -> pd.DataFrame:
    """One row per estimator: Kendall τ, Spearman, Pearson, RMSE and top/bottom-p % Jaccard vs ``truth``.

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
        rows.append(row)
    return pd.DataFrame(rows)


def suspicion_direction(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """``'high'`` when a high score is suspicious, ``'low'`` when a low (negative) one is.

    Looked up in ``overrides`` (the config), then in the estimator's ``suspicion`` attribute
    (:func:`influence.estimators.suspicion_direction`: +1 high, −1 low, default −1: influence scores
    follow the project's sign convention, so the most harmful samples are the most suspicious).
    """
    if overrides and name in overrides:
        d = str(overrides[name]).lower()
    else:
        d = "high" if estimators.suspicion_direction(name) > 0 else "low"
    if d not in ("high", "low"):
        raise ValueError(f"suspicion direction of {name!r} must be 'high' or 'low', got {d!r}")
    return d


def suspicion(name: str, scores: np.ndarray, overrides: Mapping[str, str] | None = None) -> np.ndarray:
    """Scores turned into a suspicion ranking (higher = more suspicious) for ``name``."""
    s = np.asarray(scores, dtype=np.float64)
    return s if suspicion_direction(name, overrides) == "high" else -s


def detection_table(
    scores: Mapping[str, np.ndarray], noisy: np.ndarray, overrides: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """AUROC, AP and recall@k (k = number of noisy samples) per estimator."""
    noisy = np.asarray(noisy, dtype=bool)
    rows = []
    for name, s in scores.items():
        row = {"estimator": name, "direction": suspicion_direction(name, overrides), "n_noisy": int(noisy.sum())}
        row.update(metrics.detection(suspicion(name, s, overrides), noisy))
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- retraining
def retrain_subset(
    spec: Mapping[str, Any], train_data: Any, n_classes: int, epochs: int, seed: int, keep: np.ndarray,
    eval_sets: Mapping[str, Any],
) -> dict[str, float]:
    """Retrain the recipe on the kept samples (boolean mask or indices) and evaluate on ``eval_sets``.

    Same batch size, step sizes, epochs and seed as the original run; the batches are those of a fresh
    schedule over the kept samples (removal changes the batch composition, as in the papers' retraining).
    """
    X, y = as_tensors(train_data, torch.float64)
    keep = np.asarray(keep)
    idx = np.flatnonzero(keep) if keep.dtype == bool else np.sort(keep.astype(int))
    if idx.size == 0:
        raise ValueError("cannot retrain on an empty subset")
    traj = train_setting(spec, (X[idx], y[idx]), n_classes, epochs, seed, record="final")
    out: dict[str, float] = {"n_kept": int(idx.size)}
    for split, data in eval_sets.items():
        for k, v in evaluate_model(traj.model, traj.final, data).items():
            out[f"{split}_{k}"] = v
    return out


def _ks(n: int, n_noisy: int, fractions: Iterable[float]) -> list[int]:
    base = n_noisy if n_noisy > 0 else n
    return sorted({min(n - 1, max(0, int(round(f * base)))) for f in fractions})


def cleanse(
    spec: Mapping[str, Any], train_data: Any, n_classes: int, epochs: int, seed: int, susp: np.ndarray | None,
    eval_sets: Mapping[str, Any], fractions: Sequence[float], *, noisy: np.ndarray | None = None,
) -> pd.DataFrame:
    """Remove the k most suspicious samples and retrain, for k = fraction × (number of noisy samples).

    ``susp`` higher = removed first; ``None`` removes k uniformly random samples (seeded). Rows: k,
    fraction, number of truly noisy samples among the removed, and the evaluation metrics.
    """
    X, _ = as_tensors(train_data, torch.float64)
    n = X.shape[0]
    n_noisy = int(np.asarray(noisy).sum()) if noisy is not None else 0
    if susp is None:
        order = np.random.default_rng([seed, 7919]).permutation(n)
    else:
        order = np.argsort(-np.asarray(susp, dtype=np.float64), kind="stable")
    rows = []
    for k in _ks(n, n_noisy, fractions):
        keep = np.ones(n, dtype=bool)
        keep[order[:k]] = False
        row = {"k": k, "fraction": k / max(n_noisy, 1) if n_noisy else k / n}
        if noisy is not None:
            row["noisy_removed"] = int(np.asarray(noisy)[order[:k]].sum())
        row.update(retrain_subset(spec, train_data, n_classes, epochs, seed, keep, eval_sets))
        rows.append(row)
    return pd.DataFrame(rows)


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


# ------------------------------------------------------------------------------------------------- E6
def cost_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Flatten provenance records (``estimator``, ``wall_s``, ``peak_rss_mb``, setting keys) to a table."""
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
        rows.append(row)
    return pd.DataFrame(rows)
