"""TracIn-CP, Grad-Dot, self-influence and the shared per-sample gradient helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_problem

from influence import autodiff, estimators
from influence.estimators.tracin import grad_dot, self_influence, tracin
from influence.loo import trajectory_loo
from influence.metrics import auroc, spearman
from influence.models import logistic_regression, mlp
from influence.train import Schedule, train


def _grad(model, theta, x, y, l2=0.0):
    t = theta.detach().clone().requires_grad_(True)
    f = model.losses(t, x[None], y[None])[0] + 0.5 * l2 * t.dot(t)
    return torch.autograd.grad(f, t)[0]


def _explicit_tracin(traj, X, y, Xt, yt, steps, per_target=False):
    """Python loop over checkpoints, training samples and target samples with torch.autograd.grad."""
    lrs = traj.lrs()
    out = np.zeros((len(y), len(yt)))
    for c in steps:
        th = traj.theta_at(c)
        gt = torch.stack([_grad(traj.model, th, Xt[k], yt[k]) for k in range(len(yt))])
        for j in range(len(y)):
            out[j] += lrs[min(c, traj.n_steps - 1)] * (gt @ _grad(traj.model, th, X[j], y[j])).numpy()
    return out if per_target else out.mean(1)


@pytest.mark.parametrize("run", ["tiny_logreg_run", "tiny_mlp_run"])
def test_tracin_equals_explicit_per_sample_gradient_dots(run, request):
    traj, (X, y), (Xt, yt) = request.getfixturevalue(run)
    spe = traj.schedule.steps_per_epoch
    epoch_steps = [spe * k for k in range(1, traj.schedule.epochs + 1)]
    ref = _explicit_tracin(traj, X, y, Xt, yt, epoch_steps, per_target=True)
    got = tracin(traj, (X, y), (Xt, yt), chunk=7)
    np.testing.assert_allclose(got, ref.mean(1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tracin(traj, (X, y), (Xt, yt), per_target=True, chunk=7), ref, rtol=1e-10, atol=1e-12)
    steps = [0, 3, traj.n_steps]
    np.testing.assert_allclose(tracin(traj, (X, y), (Xt, yt), checkpoints=steps),
                               _explicit_tracin(traj, X, y, Xt, yt, steps), rtol=1e-10, atol=1e-12)


def test_tracin_every_step_and_ideal_equal_explicit_sums(tiny_logreg_run):
    traj, (X, y), (Xt, yt) = tiny_logreg_run
    steps = list(range(traj.n_steps))
    np.testing.assert_allclose(tracin(traj, (X, y), (Xt, yt), checkpoints="step"),
                               _explicit_tracin(traj, X, y, Xt, yt, steps), rtol=1e-10, atol=1e-12)
    # ideal: only the steps where j is in the batch, weight η_t/|S_t|
    ref = np.zeros(len(y))
    for t, (S, eta) in enumerate(zip(traj.batches(), traj.lrs(), strict=True)):
        th = traj.thetas[t]
        gL = torch.stack([_grad(traj.model, th, Xt[k], yt[k]) for k in range(len(yt))]).mean(0)
        for j in S:
            ref[j] += eta / len(S) * float(_grad(traj.model, th, X[j], y[j]).dot(gL))
    np.testing.assert_allclose(tracin(traj, (X, y), (Xt, yt), checkpoints="ideal"), ref, rtol=1e-10, atol=1e-12)


def test_grad_dot_and_self_influence_equal_explicit(tiny_mlp_run):
    traj, (X, y), (Xt, yt) = tiny_mlp_run
    th = traj.final
    gL = torch.stack([_grad(traj.model, th, Xt[k], yt[k]) for k in range(len(yt))]).mean(0)
    ref = np.array([float(_grad(traj.model, th, X[j], y[j]).dot(gL)) for j in range(len(y))])
    np.testing.assert_allclose(grad_dot(traj, (X, y), (Xt, yt)), ref, rtol=1e-10, atol=1e-12)
    spe, lrs = traj.schedule.steps_per_epoch, traj.lrs()
    ref_self = np.zeros(len(y))
    for k in range(1, traj.schedule.epochs + 1):
        c = k * spe
        for j in range(len(y)):
            g = _grad(traj.model, traj.theta_at(c), X[j], y[j])
            ref_self[j] += lrs[min(c, traj.n_steps - 1)] * float(g.norm() ** 2)
    got = self_influence(traj, (X, y), None)
    np.testing.assert_allclose(got, ref_self, rtol=1e-10)
    assert (got >= 0).all()


@pytest.mark.parametrize("model_kind", ["binary", "multiclass", "mlp"])
def test_grad_helpers_equal_autograd_loop(model_kind):
    (X, y), _ = make_problem(n=20, d=4, n_classes=2 if model_kind == "binary" else 3, seed=2)
    models = {"binary": logistic_regression(4), "multiclass": logistic_regression(4, 3), "mlp": mlp(4, (5,), 3)}
    model = models[model_kind]
    g = torch.Generator().manual_seed(0)
    th = model.init(0) + 0.3 * torch.randn(model.n_params, generator=g, dtype=torch.float64)
    l2 = 0.05
    G = torch.stack([_grad(model, th, X[i], y[i], l2) for i in range(len(y))])
    V = torch.randn(3, model.n_params, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(autodiff.per_sample_grads(model, th, X, y, l2=l2), G, atol=1e-12)
    for method in ("auto", "jvp", "vmap"):
        np.testing.assert_allclose(autodiff.grad_dots(model, th, X, y, V, l2=l2, chunk=6, method=method), G @ V.T,
                                   atol=1e-12)
    np.testing.assert_allclose(autodiff.grad_sqnorms(model, th, X, y, l2=l2, chunk=6), (G * G).sum(1), rtol=1e-12)
    np.testing.assert_allclose(autodiff.grad_gram(model, th, X, y, X[:5], y[:5], l2=l2, l2_2=l2, chunk=6),
                               G @ G[:5].T, atol=1e-12)
    np.testing.assert_allclose(autodiff.mean_grad(model, th, X, y, l2=l2), G.mean(0), atol=1e-13)


def test_tracin_correlates_positively_with_trajectory_loo(tiny_mlp_run):
    traj, train_data, target = tiny_mlp_run
    truth = trajectory_loo(traj, train_data, target).loss_change
    for kw in ({}, {"checkpoints": "ideal"}):
        assert spearman(tracin(traj, train_data, target, **kw), truth) > 0.5
    assert spearman(grad_dot(traj, train_data, target), truth) > 0.5


def test_self_influence_flags_flipped_labels():
    (X, y), _ = make_problem(n=80, d=4, seed=4)
    rng = np.random.default_rng(0)
    noisy = np.zeros(len(y), dtype=bool)
    noisy[rng.choice(len(y), 12, replace=False)] = True
    y = y.clone()
    y[torch.as_tensor(noisy)] = 1 - y[torch.as_tensor(noisy)]
    model = logistic_regression(4)
    traj = train(model, model.init(0), (X, y), Schedule(len(y), 16, 5, 0.5, seed=1), l2=0.01)
    s = self_influence(traj, (X, y))
    assert auroc(s, noisy) > 0.8  # high self-influence = suspicious


def test_tracin_rejects_bad_input(tiny_logreg_run):
    traj, train_data, target = tiny_logreg_run
    with pytest.raises(ValueError, match="checkpoints"):
        tracin(traj, train_data, target, checkpoints="weekly")
    with pytest.raises(ValueError, match="lie in"):
        tracin(traj, train_data, target, checkpoints=[traj.n_steps + 1])
    short = train(traj.model, traj.theta0, train_data, traj.schedule, l2=traj.l2, record="final")
    with pytest.raises(ValueError, match="did not record"):
        tracin(short, train_data, target)
    with pytest.raises(ValueError, match="target"):
        tracin(traj, train_data, None)
    with pytest.raises(ValueError, match="samples"):
        tracin(traj, (train_data[0][:10], train_data[1][:10]), target)
    assert {"tracin", "grad_dot", "self_influence"} <= set(estimators.names())
