"""Theory checks of SGD-IE / ACC-SGD-IE (replication.bounds.sgd) on small runs."""

from __future__ import annotations

import numpy as np
import pytest

from influence.loo import trajectory_loo
from replication.bounds import Check
from replication.bounds.sgd import (
    _loo_deltas,
    check_batch_size,
    check_error_order,
    check_error_vs_epochs,
    check_one_epoch_identity,
)


def test_one_epoch_identity_check_passes():
    c = check_one_epoch_identity(n=40)
    assert isinstance(c, Check) and c.passed
    assert c.measured["score_rel_diff"] <= 1e-12


def test_loo_helper_matches_trajectory_loo(tiny_logreg_run):
    traj, tr, tg = tiny_logreg_run
    idx = np.array([3, 10, 59])
    ends = [traj.schedule.steps_per_epoch * 2, traj.n_steps]
    d = _loo_deltas(traj, tr, idx, ends)
    np.testing.assert_allclose(d[-1], trajectory_loo(traj, tr, tg, indices=idx).delta_theta, rtol=1e-9, atol=1e-14)
    assert np.abs(d[0] - d[-1]).max() > 1e-4  # the epoch-2 state is a different point


def test_acc_error_below_sgd_ie_and_gap_grows_with_epochs_constant_steps():
    c = check_error_vs_epochs(epochs=(1, 2, 4, 8), decay="constant")
    m = c.measured
    assert c.passed, m
    assert m["ratio_sgd_over_acc"][0] == 1.0  # identical at one epoch
    assert m["ratio_sgd_over_acc"][-1] > 3


def test_decaying_steps_acc_error_contracts():
    c = check_error_vs_epochs(epochs=(1, 2, 4, 8, 16), decay="inv_sqrt")
    a = c.measured["abs_err_acc"]
    assert all(x2 < x1 for x1, x2 in zip(a, a[1:], strict=False)), a  # ACC's error contracts with K
    assert c.measured["rel_err_acc"][-1] < c.measured["rel_err_sgd_ie"][-1]
    # the check's verdict is its stated criterion applied to its own measurements
    multi = [i for i, k in enumerate(c.measured["epochs"]) if k >= 2]
    r = c.measured["ratio_sgd_over_acc"]
    expect = all(r[i] > 1 for i in multi) and r[multi[-1]] > r[multi[0]]
    assert c.passed == expect


def test_error_order_acc_second_order_sgd_ie_first_order():
    c = check_error_order(n_samples=4)
    s = c.measured["slope"]
    assert c.passed, c.measured
    assert abs(s["ghost_acc"] - 1) < 0.15 and abs(s["ghost_sgd"]) < 0.3
    lim = c.predicted["limit_as_eps_to_0"]["ghost_sgd"]
    assert abs(c.measured["rel_err_at_smallest_eps"]["ghost_sgd"] - lim) < 0.1 * lim


def test_batch_size_check_reports_consistent_verdict():
    c = check_batch_size(batch_sizes=(5, 10, 20), epochs=5, n=60)
    a = c.measured["rel_err_acc"]
    assert len(a) == 3 and all(np.isfinite(a))
    assert all(x < y for x, y in zip(a, c.measured["rel_err_sgd_ie"], strict=True))  # ACC better at every b
    assert c.passed == (all(x2 < x1 for x1, x2 in zip(a, a[1:], strict=False)) and c.measured["slope_acc"] < 0)


def test_checks_carry_the_series_the_e5_notebook_draws():
    """The E5 figures draw the checks' own series: they must be JSON-serialisable (no numpy scalars, no NaN) and
    agree with the measured values they summarise."""
    import json

    c = check_one_epoch_identity(n=40)
    s = c.details["series"]
    assert len(s["score_acc"]) == len(s["score_sgd_ie"]) == 40
    diff = np.abs(np.subtract(s["score_acc"], s["score_sgd_ie"])).max() / np.abs(s["score_sgd_ie"]).max()
    assert diff == c.measured["score_rel_diff"]
    json.dumps(c.to_dict(), allow_nan=False)
    e = check_error_vs_epochs(epochs=(1, 2, 4, 8), decay="constant")
    m, fits = e.measured, e.details["fits_K_ge_2"]
    K = np.asarray(m["epochs"], float)[1:]
    for meth in ("acc", "sgd_ie"):  # the drawn lines are least-squares fits of the drawn points (K >= 2)
        slope, icpt = np.polyfit(np.log(K), np.log(m[f"rel_err_{meth}"][1:]), 1)
        assert fits[f"rel_err_{meth}"] == {"slope": pytest.approx(slope), "log_c": pytest.approx(icpt)}
        assert m[f"slope_rel_err_{meth}"] == pytest.approx(slope)
    json.dumps(e.to_dict(), allow_nan=False)


def test_error_order_absolute_errors_are_second_and_first_order():
    c = check_error_order(n_samples=3)
    a = c.measured["abs_slope"]
    # absolute error = relative error × ‖Δθ‖ with ‖Δθ‖ ∝ ε: one more order than the relative slopes
    assert abs(a["ghost_acc"] - 2) < 0.15 and abs(a["weight_sgd"] - 2) < 0.15
    assert abs(a["ghost_sgd"] - 1) < 0.3
    for k, s in c.measured["slope"].items():
        assert a[k] == pytest.approx(s + 1, abs=0.05), k
