"""CG-3: the NTK parameter-movement identity ‖W_T − W_0‖² ≈ yᵀH⁻¹y and ΔC ≈ C(i) in the lazy regime,
and its failure at small initialisation."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from influence.estimators.cg_score import ntk_gram
from replication.bounds.cgscore import (
    check_movement_breaks_small_init,
    check_movement_identity,
    movement_problem,
    ntk_movement,
)

TOL = 0.05  # claims.md, CG-3


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def test_empirical_ntk_at_init_approaches_the_arccos_kernel():
    """The constant: (1/m) Σ_r xᵢᵀxⱼ 1{w_rᵀxᵢ>0}1{w_rᵀxⱼ>0} → H (no extra factor), error ~ 1/√m."""
    X, y = movement_problem(8, 5, seed=1)
    H = ntk_gram(X)
    errs = []
    for m in (200, 20000):
        K0 = ntk_movement(X, y, width=m, max_steps=0)["K0"]
        errs.append(np.abs(K0 - H).max())
    assert errs[1] < 0.02 and errs[1] < errs[0] / 3


def test_antisymmetric_init_starts_at_zero_output():
    X, y = movement_problem(6, 4, seed=2)
    run = ntk_movement(X, y, width=100, max_steps=0, leave_out=[0])
    assert run["max_residual"] == pytest.approx(np.abs(y).max())  # f ≡ 0, so the residual is y
    assert run["movement"] == 0.0 and run["movement_loo"].tolist() == [0.0]


def test_movement_identity_holds_in_the_lazy_regime():
    c = check_movement_identity(n=10, d=10, width=10000, n_leave_out=4, tolerance=TOL)
    assert c.details["converged"] and c.details["max_residual"] < 1e-6
    assert c.measured["total_rel_err"] <= TOL, c.measured
    assert c.measured["per_sample_rel_l2"] <= TOL, c.measured
    assert c.passed and c.details["identity_holds"]
    # lazy: weights barely move relative to their size, activation patterns almost unchanged
    assert c.details["rel_weight_change"] < 0.05 and c.details["pattern_change"] < 0.02
    # the per-sample changes follow C(i) (which varies by a factor > 2 over the left-out samples)
    C = np.array(c.predicted["C"])
    assert C.max() > 2 * C.min()
    assert np.corrcoef(C, c.measured["movement_change"])[0, 1] > 0.99


def test_movement_identity_fails_at_small_initialisation():
    c = check_movement_breaks_small_init(n=10, d=10, width=10000, init_scale=1e-2, n_leave_out=2, tolerance=TOL)
    assert c.details["converged"]  # it does fit the data, just not along the kernel's path
    assert not c.details["identity_holds"]
    assert c.measured["total_rel_err"] > 4 * TOL
    assert c.passed  # the control "passes" when the identity breaks
    assert c.details["pattern_change"] > 0.1 and c.details["rel_weight_change"] > 1
