"""influence.shapley: the mean-loss game of the LAI authors' Shapley check. The closed form against brute-force
subset enumeration, the permutation estimator against an explicit loop of the authors' algorithm and its
convergence to the closed form within the exact Monte-Carlo standard error."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from influence.shapley import harmonic, mean_loss_shapley, mean_loss_shapley_mc, mean_loss_utility


def _U(losses, S):
    """U(S) = mean of the losses of S, U(∅) = 0, by an explicit loop."""
    if not S:
        return 0.0
    tot = 0.0
    for j in S:
        tot += float(losses[j])
    return tot / len(S)


def _marginal_moments(losses):
    """Exact first and second moments over uniform permutations of each sample's marginal contribution, by
    enumerating every coalition S ⊆ N ∖ {i} with the Shapley weight |S|!(n−|S|−1)!/n!."""
    n = len(losses)
    m1, m2 = np.zeros(n), np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            w = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for S in itertools.combinations(others, k):
                d = _U(losses, [*S, i]) - _U(losses, list(S))
                m1[i] += w * d
                m2[i] += w * d * d
    return m1, m2


@given(st.lists(st.floats(0.0, 12.0, allow_nan=False), min_size=1, max_size=8))
def test_closed_form_equals_subset_enumeration(losses):
    exact, _ = _marginal_moments(losses)
    np.testing.assert_allclose(mean_loss_shapley(np.array(losses)), exact, rtol=1e-12, atol=1e-12)


def test_closed_form_is_the_stated_affine_function_of_the_own_loss():
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 1.0, 16)
    n, h = 16, sum(1 / k for k in range(1, 17))
    phi = mean_loss_shapley(x)
    # the form of the task statement: (H_n/n) ℓ_i + (1 − H_n)/(n(n−1)) Σ_{j≠i} ℓ_j
    np.testing.assert_allclose(phi, h / n * x + (1 - h) / (n * (n - 1)) * (x.sum() - x), rtol=1e-13)
    assert np.isclose(phi.sum(), x.mean(), rtol=1e-13)  # efficiency: U(N)
    assert np.corrcoef(phi, x)[0, 1] == pytest.approx(1.0, abs=1e-12)  # increasing affine in ℓ_i
    # φ_i ≤ 0 exactly when ℓ_i ≤ n(H_n − 1)/(n H_n − 1) · mean ℓ
    thr = n * (h - 1) / (n * h - 1) * x.mean()
    assert np.array_equal(phi <= 0, x <= thr) and 0 < (phi <= 0).sum() < n
    assert harmonic(16) == pytest.approx(h, rel=1e-15) and harmonic(0) == 0.0


def test_utility_matches_explicit_mean_and_empty_coalition_is_zero():
    x = np.array([0.5, 2.0, 3.5])
    masks = np.array([[(s >> i) & 1 for i in range(3)] for s in range(8)])
    want = [_U(x, [i for i in range(3) if m[i]]) for m in masks]
    np.testing.assert_allclose(mean_loss_utility(x, masks), want, rtol=1e-15)


def test_mc_is_the_authors_loop_permutation_for_permutation():
    """The vectorised estimator against an explicit loop of the algorithm (one rng, permutations in turn, running
    mean from U(∅) = 0, marginal added to the sample, divided by the count): the same numbers."""
    x = np.random.default_rng(0).gamma(2.0, 1.0, 16)
    rng = np.random.default_rng(42)
    ref = np.zeros(16)
    for _ in range(50):
        order = rng.permutation(16)
        s, prev = 0.0, 0.0
        for c, i in enumerate(order, start=1):
            s += float(x[i])
            cur = s / c
            ref[i] += cur - prev
            prev = cur
    ref /= 50
    np.testing.assert_allclose(mean_loss_shapley_mc(x, 50, seed=42), ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("n", [2, 5, 8])
def test_mc_converges_to_the_closed_form_within_its_exact_standard_error(n):
    x = np.random.default_rng(n).gamma(2.0, 1.0, n)
    m1, m2 = _marginal_moments(x)
    np.testing.assert_allclose(m1, mean_loss_shapley(x), rtol=1e-12)
    for P in (100, 4000):
        est = mean_loss_shapley_mc(x, P, seed=7)
        se = np.sqrt(np.maximum(m2 - m1**2, 0) / P)
        assert np.all(np.abs(est - m1) <= 5 * se + 1e-12), (P, np.abs(est - m1) / se)
        assert est.sum() == pytest.approx(x.mean(), rel=1e-12)  # efficiency holds for every P


def test_mc_error_shrinks_like_one_over_root_permutations():
    x = np.random.default_rng(1).gamma(2.0, 1.0, 16)
    exact = mean_loss_shapley(x)
    err = {P: np.sqrt(np.mean([(mean_loss_shapley_mc(x, P, seed=s) - exact) ** 2 for s in range(20)]))
           for P in (50, 5000)}
    assert 5 < err[50] / err[5000] < 20  # √100 = 10


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="non-empty 1-d"):
        mean_loss_shapley(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        mean_loss_shapley(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="n_permutations"):
        mean_loss_shapley_mc(np.ones(3), 0)
    with pytest.raises(ValueError, match="columns"):
        mean_loss_utility(np.ones(3), np.ones((1, 2)))
