"""Agreement and detection metrics against scikit-learn, scipy-free reference formulas and hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from influence import metrics


@pytest.fixture
def scores(rng):
    truth = rng.normal(size=40)
    est = truth + 0.7 * rng.normal(size=40)
    return est, truth


def _kendall_pairs(a, b):
    """τ by counting concordant / discordant pairs (no ties in continuous data)."""
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in itertools.combinations(range(len(a)), 2))
    return s / (len(a) * (len(a) - 1) / 2)


def test_rank_correlations_match_reference_formulas(scores):
    est, truth = scores
    assert metrics.kendall(est, truth) == pytest.approx(_kendall_pairs(est, truth), abs=1e-12)
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert metrics.spearman(est, truth) == pytest.approx(np.corrcoef(ranks(est), ranks(truth))[0, 1], abs=1e-12)
    e, t = est - est.mean(), truth - truth.mean()
    assert metrics.pearson(est, truth) == pytest.approx(e @ t / np.sqrt((e @ e) * (t @ t)), abs=1e-12)
    assert metrics.rmse(est, truth) == pytest.approx(np.sqrt(np.mean((est - truth) ** 2)))
    assert metrics.kendall(truth, truth) == pytest.approx(1.0)
    assert metrics.spearman(-truth, truth) == pytest.approx(-1.0)


def test_detection_metrics_match_sklearn(rng):
    noisy = rng.random(60) < 0.25
    susp = rng.normal(size=60) + 1.2 * noisy
    assert metrics.auroc(susp, noisy) == pytest.approx(roc_auc_score(noisy, susp), abs=1e-12)
    assert metrics.average_precision(susp, noisy) == pytest.approx(average_precision_score(noisy, susp), abs=1e-12)
    # ties count one half in AUROC, like sklearn
    tied = np.round(susp)
    assert metrics.auroc(tied, noisy) == pytest.approx(roc_auc_score(noisy, tied), abs=1e-12)
    d = metrics.detection(susp, noisy)
    assert set(d) == {"auroc", "ap", "recall_at_k"}


def test_recall_and_detection_curve_on_hand_made_case():
    susp = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3])
    noisy = np.array([True, False, True, True, False, False])
    # ranking: 0(n) 1(c) 3(n) 5(c) 4(c) 2(n)
    assert metrics.recall_at_k(susp, noisy) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(susp, noisy, k=1) == pytest.approx(1 / 3)
    frac, found = metrics.detection_curve(susp, noisy, n_points=7)
    np.testing.assert_allclose(frac, np.arange(7) / 6)
    np.testing.assert_allclose(found, np.array([0, 1, 1, 2, 2, 2, 3]) / 3)
    assert metrics.auroc(susp, noisy) == pytest.approx(roc_auc_score(noisy, susp))


def test_jaccard_on_hand_made_sets():
    truth = np.arange(10.0)  # top 20 % = {8, 9}, bottom 20 % = {0, 1}
    est = np.array([9.0, 1, 2, 3, 4, 5, 6, 7, 0, 8])  # top {0, 9}, bottom {8, 1}
    assert metrics.jaccard_top(est, truth, 20) == pytest.approx(1 / 3)
    assert metrics.jaccard_bottom(est, truth, 20) == pytest.approx(1 / 3)
    assert metrics.jaccard_top(truth, truth, 30) == 1.0
    assert metrics.jaccard_top(-truth, truth, 50) == 0.0
    a = metrics.agreement(est, truth, ps=(20,))
    assert a["jaccard_top20"] == pytest.approx(1 / 3) and "kendall" in a


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="length"):
        metrics.kendall(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        metrics.spearman(np.array([1.0, np.nan, 2]), np.arange(3.0))
    with pytest.raises(ValueError, match="percentage"):
        metrics.jaccard_top(np.arange(5.0), np.arange(5.0), 0)
    with pytest.raises(ValueError, match="both noisy and clean"):
        metrics.auroc(np.arange(4.0), np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="length"):
        metrics.average_precision(np.arange(4.0), np.array([True, False]))
    with pytest.raises(ValueError, match="NaN"):
        metrics.detection(np.array([np.inf, 1, 2]), np.array([True, False, False]))
