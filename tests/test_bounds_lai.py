"""LAI vs Ghost: Cauchy–Schwarz bound per pair and layer (LAI-5), per-step Shapley fidelity (LAI-2)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from influence.models import mlp
from replication.bounds.lai import (
    check_lai_bound,
    check_lai_bound_over_training,
    check_lai_shapley,
    lai_ghost_gap,
    step_shapley,
)


@settings(max_examples=30, deadline=None)
@given(
    d=st.integers(1, 5),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    n_classes=st.integers(2, 4),
    m=st.integers(2, 7),
    scale=st.floats(0.2, 3.0),
    seed=st.integers(0, 10_000),
)
@example(d=1, hidden=[5, 5, 5], n_classes=2, m=2, scale=1.5, seed=1)  # bound attained: gap = bound to 1e-14
def test_bound_holds_on_random_networks_and_is_exact_on_last_layer(d, hidden, n_classes, m, scale, seed):
    g = torch.Generator().manual_seed(seed)
    model = mlp(d, tuple(hidden), n_classes)
    theta = torch.randn(model.n_params, generator=g, dtype=torch.float64) * scale
    x = torch.randn(m, d, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, n_classes, (m,), generator=g)
    chk = check_lai_bound(model, theta, x, y)
    assert chk.passed, chk.measured
    assert chk.measured["last_layer_max_gap"] <= 1e-12 * max(1.0, max(chk.predicted["max_bound_per_layer"]))


def test_bound_is_tight_enough_to_be_falsifiable():
    """The gap reaches a sizeable fraction of the bound (a halved bound would be violated), so the check
    above could fail; and the hidden-layer gap is not zero (LAI is not Ghost)."""
    g = torch.Generator().manual_seed(0)
    model = mlp(4, (6, 5), 3)
    theta = model.init(0)
    x = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    res = lai_ghost_gap(model, theta, x, y)
    hidden_gap, hidden_bound = res["gap"][:-1], res["bound"][:-1]
    assert float(hidden_gap.max()) > 1e-3
    assert bool((hidden_gap > 0.5 * hidden_bound).any())
    assert bool((hidden_gap <= hidden_bound * (1 + 1e-9)).all())


def test_bound_over_training_on_recorded_run(tiny_mlp_run):
    traj, data, _ = tiny_mlp_run
    chk = check_lai_bound_over_training(traj, data, n_samples=8, n_steps=4)
    assert chk.passed, chk.measured
    rows = chk.details["per_step_layer"]
    assert len(rows) == 4 * 2 and {r["layer"] for r in rows} == {0, 1}
    assert all(r["gap_max"] <= 1e-12 for r in rows if r["layer"] == 1)


def _exact_shapley(model, theta, xb, yb, xv, yv, lr, l2):
    """Exact Shapley by enumerating every coalition (small batches only)."""
    B = xb.shape[0]
    G = torch.stack([torch.func.grad(lambda q, i=i: model.losses(q, xb[i:i + 1], yb[i:i + 1])[0])(theta)
                     for i in range(B)]) + l2 * theta
    base = model.loss(theta, xv, yv)

    def U(S):
        step = G[list(S)].sum(0) * (lr / B) if S else torch.zeros_like(theta)
        return float(base - model.loss(theta - step, xv, yv))

    phi = np.zeros(B)
    for i in range(B):
        others = [j for j in range(B) if j != i]
        for k in range(B):
            w = math.factorial(k) * math.factorial(B - k - 1) / math.factorial(B)
            for S in itertools.combinations(others, k):
                phi[i] += w * (U(S + (i,)) - U(S))
    return phi, U(tuple(range(B)))


def test_monte_carlo_shapley_matches_exact_enumeration():
    g = torch.Generator().manual_seed(4)
    model = mlp(3, (4,), 3)
    theta = model.init(2)
    xb = torch.randn(5, 3, generator=g, dtype=torch.float64)
    yb = torch.randint(0, 3, (5,), generator=g)
    xv = torch.randn(8, 3, generator=g, dtype=torch.float64)
    yv = torch.randint(0, 3, (8,), generator=g)
    exact, total = _exact_shapley(model, theta, xb, yb, xv, yv, lr=2.0, l2=0.01)
    mc, se = step_shapley(model, theta, xb, yb, xv, yv, 2.0, l2=0.01, n_perm=2000, seed=0)
    assert abs(mc.sum() - total) < 1e-10  # efficiency holds for every permutation
    assert np.all(np.abs(mc - exact) <= 5 * se + 1e-12), (mc, exact, se)


def test_lai_shapley_check_on_recorded_run(tiny_mlp_run):
    traj, data, target = tiny_mlp_run
    chk = check_lai_shapley(traj, data, target, n_steps=3, batch_size=8, target_size=10, n_perm=100)
    r_lai, r_ghost = chk.measured["pearson_lai"], chk.measured["pearson_ghost"]
    assert -1 <= r_lai <= 1 and -1 <= r_ghost <= 1
    assert chk.passed == (r_lai >= r_ghost)
    # in this small-step regime the one-step utility is nearly linear, so Shapley ≈ the first-order
    # (Ghost) value: a strong, falsifiable agreement
    assert r_ghost > 0.95, chk.details["per_step"]


def test_bound_over_training_series_are_the_pairs_behind_the_summary(tiny_mlp_run):
    """The E5 scatter draws every pair i <= j: its values reproduce the per-step, per-layer maxima and never
    exceed the bound."""
    traj, data, _ = tiny_mlp_run
    chk = check_lai_bound_over_training(traj, data, n_samples=6, n_steps=3)
    rows = {(r["step"], r["layer"]): r for r in chk.details["per_step_layer"]}
    for s in chk.details["series"]:
        for layer, (gap, bound) in enumerate(zip(s["gap"], s["bound"], strict=True)):
            assert len(gap) == 6 * 7 // 2
            assert max(gap) == pytest.approx(rows[(s["step"], layer)]["gap_max"], rel=1e-12, abs=1e-300)
            assert all(gp <= b * (1 + 1e-9) + 1e-12 for gp, b in zip(gap, bound, strict=True))
