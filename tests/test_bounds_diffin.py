"""Diff-In theory checks: growth fits, smoothness by power iteration, FD-HVP order, error growth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_problem

from influence.bounds import Check
from influence.bounds.diffin import error_growth, fd_hvp_error, fit_growth, gradient_bound, smoothness
from influence.models import logistic_regression, mlp


def test_fit_growth_tells_power_law_from_exponential():
    x = np.array([1.0, 2, 4, 8, 16])
    pw = fit_growth(x, 0.3 * x**1.7)
    assert pw["better"] == "power" and abs(pw["power"]["exponent"] - 1.7) < 1e-10 and pw["power"]["r2"] > 0.999
    ex = fit_growth(x, 0.01 * np.exp(0.4 * x))
    assert ex["better"] == "exponential" and abs(ex["exponential"]["rate"] - 0.4) < 1e-10
    with pytest.raises(ValueError, match="positive"):
        fit_growth(x, np.array([1.0, 0.0, 1, 1, 1]))
    with pytest.raises(ValueError, match=">= 3"):
        fit_growth([1, 2], [1, 2])


def test_smoothness_and_gradient_bound_match_dense_computation():
    (X, y), _ = make_problem(n=30, d=3, n_classes=3, seed=6)
    model = mlp(3, (4,), 3)
    th = model.init(2)
    H = torch.autograd.functional.hessian(lambda t: model.losses(t, X, y).mean() + 0.005 * t.dot(t), th)
    ev = torch.linalg.eigvalsh(H)
    assert abs(smoothness(model, th, X, y, l2=0.01) - float(ev.abs().max())) < 1e-6 * float(ev.abs().max())
    norms = [float(torch.autograd.functional.jacobian(
        lambda t: model.losses(t, X[i : i + 1], y[i : i + 1])[0] + 0.005 * t.dot(t), th).norm()) for i in range(30)]
    assert abs(gradient_bound(model, th, X, y, l2=0.01) - max(norms)) < 1e-10


def test_fd_hvp_check_finds_first_and_second_order():
    (X, y), _ = make_problem(n=40, d=4, n_classes=3, seed=1)
    model = logistic_regression(4, 3)
    th = 0.3 * torch.randn(model.n_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = fd_hvp_error(model, th, (X, y), l2=1e-3)
    assert isinstance(c, Check) and c.passed
    assert abs(c.measured["slope_forward"] - 1) < 0.1 and abs(c.measured["slope_central"] - 2) < 0.1
    # a wrong prediction must fail: demand central = forward order
    assert not fd_hvp_error(model, th, (X, y), l2=1e-3, slope_tol=(0.25, -1.0)).passed


def test_error_growth_check_is_consistent():
    (X, y), (Xt, yt) = make_problem(n=24, n_target=12, d=3, seed=2)
    model = logistic_regression(3)
    c = error_growth(model, model.init(0), (X, y), (Xt, yt), epochs=(1, 2, 4), batch_size=6, lr=0.3, l2=1e-2)
    rows = c.details["rows"]
    assert [r["T"] for r in rows] == [4, 8, 16]
    refit = fit_growth([r["T"] for r in rows], [r["diffin_paper_abs_err"] for r in rows])
    assert c.passed == (refit["better"] == "power")
    assert c.measured["diffin_paper_power_r2"] == pytest.approx(refit["power"]["r2"])
    for r in rows:
        assert r["bound"] == pytest.approx(r["T"] ** 2 * 0.3**2 * r["L"] * r["G"] ** 2 / 24)
        # short runs: the first-order term dominates Δθ, so the full form beats the paper form in parameters
        # (measured; on 40 samples it reverses from K = 8 epochs on)
        assert r["diffin_param_err"] < r["diffin_paper_param_err"]
