"""Agreement with ground truth and noisy-label detection metrics.

All functions take plain arrays. Scores follow the project's sign convention (estimated
``L(θ^{-j}) − L(θ)``); detection ranks by a *suspicion* score where higher = more suspicious, so pass
``-scores`` for influence estimators (most harmful first) or the method's own suspicious direction.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "kendall",
    "spearman",
    "pearson",
    "rmse",
    "jaccard_top",
    "jaccard_bottom",
    "agreement",
    "auroc",
    "average_precision",
    "recall_at_k",
    "detection_curve",
    "detection",
]


def _pair(est: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(est, dtype=np.float64).ravel()
    truth = np.asarray(truth, dtype=np.float64).ravel()
    if est.shape != truth.shape:
        raise ValueError(f"estimate and truth differ in length: {est.size} vs {truth.size}")
    if not (np.isfinite(est).all() and np.isfinite(truth).all()):
        raise ValueError("estimate or truth contains NaN/inf")
    return est, truth


def kendall(est: np.ndarray, truth: np.ndarray) -> float:
    """Kendall τ-b rank correlation."""
    return float(stats.kendalltau(*_pair(est, truth))[0])


def spearman(est: np.ndarray, truth: np.ndarray) -> float:
    return float(stats.spearmanr(*_pair(est, truth))[0])


def pearson(est: np.ndarray, truth: np.ndarray) -> float:
    e, t = _pair(est, truth)
    if e.std() == 0 or t.std() == 0:
        return float("nan")
    return float(np.corrcoef(e, t)[0, 1])


def rmse(est: np.ndarray, truth: np.ndarray) -> float:
    e, t = _pair(est, truth)
    return float(np.sqrt(np.mean((e - t) ** 2)))


def _top_set(x: np.ndarray, p: float) -> set[int]:
    if not 0 < p <= 100:
        raise ValueError(f"p must be a percentage in (0, 100], got {p}")
    k = max(1, int(round(len(x) * p / 100)))
    return set(np.argsort(-x, kind="stable")[:k].tolist())


def jaccard_top(est: np.ndarray, truth: np.ndarray, p: float = 10) -> float:
    """Jaccard index of the top-p % (largest values) sets of estimate and truth."""
    e, t = _pair(est, truth)
    a, b = _top_set(e, p), _top_set(t, p)
    return len(a & b) / len(a | b)


def jaccard_bottom(est: np.ndarray, truth: np.ndarray, p: float = 10) -> float:
    """Jaccard index of the bottom-p % (most negative: most harmful) sets."""
    e, t = _pair(est, truth)
    return jaccard_top(-e, -t, p)


def agreement(est: np.ndarray, truth: np.ndarray, ps: tuple[float, ...] = (10, 30, 50, 70)) -> dict[str, float]:
    """All agreement metrics of E1 in one dict."""
    out = {
        "kendall": kendall(est, truth),
        "spearman": spearman(est, truth),
        "pearson": pearson(est, truth),
        "rmse": rmse(est, truth),
    }
    for p in ps:
        out[f"jaccard_top{p:g}"] = jaccard_top(est, truth, p)
        out[f"jaccard_bottom{p:g}"] = jaccard_bottom(est, truth, p)
    return out


def _det(suspicion: np.ndarray, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(suspicion, dtype=np.float64).ravel()
    m = np.asarray(noisy, dtype=bool).ravel()
    if s.shape != m.shape:
        raise ValueError(f"suspicion scores and noise mask differ in length: {s.size} vs {m.size}")
    if not np.isfinite(s).all():
        raise ValueError("suspicion scores contain NaN/inf")
    if m.all() or not m.any():
        raise ValueError("the noise mask must contain both noisy and clean samples")
    return s, m


def auroc(suspicion: np.ndarray, noisy: np.ndarray) -> float:
    """Area under the ROC curve for ranking noisy samples first (ties count one half)."""
    s, m = _det(suspicion, noisy)
    r = stats.rankdata(s)
    n1, n0 = m.sum(), (~m).sum()
    return float((r[m].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(suspicion: np.ndarray, noisy: np.ndarray) -> float:
    """Average precision of the ranking by decreasing suspicion."""
    s, m = _det(suspicion, noisy)
    order = np.argsort(-s, kind="stable")
    hits = m[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].mean())


def recall_at_k(suspicion: np.ndarray, noisy: np.ndarray, k: int | None = None) -> float:
    """Fraction of noisy samples among the k most suspicious (k defaults to the number of noisy ones)."""
    s, m = _det(suspicion, noisy)
    k = int(m.sum()) if k is None else int(k)
    order = np.argsort(-s, kind="stable")[:k]
    return float(m[order].sum() / m.sum())


def detection_curve(suspicion: np.ndarray, noisy: np.ndarray, n_points: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of noisy samples found vs fraction of the data inspected (most suspicious first)."""
    s, m = _det(suspicion, noisy)
    order = np.argsort(-s, kind="stable")
    found = np.concatenate([[0], np.cumsum(m[order])]) / m.sum()
    frac = np.linspace(0, 1, n_points)
    return frac, found[np.round(frac * len(s)).astype(int)]


def detection(suspicion: np.ndarray, noisy: np.ndarray) -> dict[str, float]:
    """AUROC, AP and recall at k = number of noisy samples."""
    return {
        "auroc": auroc(suspicion, noisy),
        "ap": average_precision(suspicion, noisy),
        "recall_at_k": recall_at_k(suspicion, noisy),
    }
