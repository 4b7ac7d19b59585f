"""SGD-IE is the exact metagradient of the target loss w.r.t. the data weights (MAGIC's quantity for plain SGD)."""

import numpy as np
import torch

from influence.estimators.sgd_ie import acc_sgd_ie, metagradient, sgd_ie
from influence.train import train


def _check(traj, data, target):
    mg = metagradient(traj, data, target)
    ie = sgd_ie(traj, data, target)
    scale = np.abs(ie).max()
    assert scale > 0
    np.testing.assert_allclose(ie, mg, rtol=1e-10, atol=1e-10 * scale)
    return mg, ie


def test_sgd_ie_equals_the_metagradient_on_logistic_regression(tiny_logreg_run):
    traj, data, target = tiny_logreg_run
    mg, _ = _check(traj, data, target)
    # and ACC-SGD-IE, which drops j's own curvature, is a different (more accurate) quantity
    assert np.abs(acc_sgd_ie(traj, data, target) - mg).max() > 1e-8 * np.abs(mg).max()


def test_sgd_ie_equals_the_metagradient_on_an_mlp(tiny_mlp_run):
    traj, data, target = tiny_mlp_run
    _check(traj, data, target)


def test_the_differentiable_replay_is_the_recorded_run(tiny_logreg_run):
    """The metagradient's replay at w = 1 retraces the recorded parameters (same update rule as train)."""
    traj, (X, y), target = tiny_logreg_run
    again = train(traj.model, traj.thetas[0], (X, y), traj.schedule, l2=traj.l2,
                  weights=torch.ones(len(y), dtype=traj.thetas.dtype))
    assert torch.allclose(again.final, traj.final, rtol=0, atol=1e-14)
    # a finite difference of the weight of one sample agrees with the metagradient to first order
    j = int(np.argmax(np.abs(metagradient(traj, (X, y), target))))
    eps = 1e-6
    w = torch.ones(len(y), dtype=traj.thetas.dtype)
    w[j] -= eps
    moved = train(traj.model, traj.thetas[0], (X, y), traj.schedule, l2=traj.l2, weights=w)
    Xt, yt = target
    fd = float(traj.model.loss(moved.final, Xt, yt) - traj.model.loss(traj.final, Xt, yt)) / eps
    mg = metagradient(traj, (X, y), target)[j]
    assert abs(fd - mg) <= 1e-4 * abs(mg)


def test_the_workflow_check_passes():
    from replication.bounds.sgd import check_metagradient

    c = check_metagradient(n=30, epochs=2)
    assert c.passed and max(c.measured.values()) <= 1e-10, c.measured
