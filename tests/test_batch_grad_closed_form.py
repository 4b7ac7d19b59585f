"""Issue 26: the closed-form batch gradient of ReLU MLPs (``Model.batch_grad``) and the MLP replay engine of
``train`` (``_MLPReplay``) against the ``vmap(grad)`` reference and the generic step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import influence.train as train_mod
from influence.models import Model, _batch_grad_vmap, _closed_form_mlp, _mlp_batch_grad, logistic_regression, mlp
from influence.train import Schedule, train


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest deviation relative to the largest entry of the reference."""
    return float((a - b).abs().max() / b.abs().max())


def _problem(d: int, hidden: tuple[int, ...], n_classes: int, k: int, m: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = mlp(d, hidden, n_classes)
    theta = model.init(seed).expand(k, -1).clone() + 0.3 * torch.randn(k, model.n_params, generator=g,
                                                                         dtype=torch.float64)
    x = torch.randn(m, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (m,), generator=g)
    w = torch.rand(k, m, generator=g, dtype=torch.float64)
    w[:, ::3] = 0.0  # zero weights (removed samples), and a whole zero row when k > 1
    if k > 1:
        w[-1] = 0.0
    return model, theta.to(dtype), x.to(dtype), y, w.to(dtype)


SHAPES = [  # (d, hidden, n_classes, k, m)
    (5, (4,), 2, 1, 9),
    (5, (4,), 2, 3, 9),
    (7, (6,), 10, 1, 12),
    (7, (6,), 10, 4, 12),
    (6, (5, 3), 2, 3, 8),
    (6, (5, 3), 10, 5, 11),
    (8, (4, 3, 5), 3, 2, 7),
    (20, (16,), 10, 6, 2),
]


@pytest.mark.parametrize("d, hidden, n_classes, k, m", SHAPES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_closed_form_equals_vmap_grad(d, hidden, n_classes, k, m, dtype, tol):
    model, theta, x, y, w = _problem(d, hidden, n_classes, k, m, dtype)
    assert _closed_form_mlp(model)
    g, loss = _mlp_batch_grad(model, theta, x, y, w, 9.0)
    g_ref, loss_ref = _batch_grad_vmap(model, theta, x, y, w, 9.0)
    assert g.shape == g_ref.shape == (k, model.n_params) and g.dtype == dtype
    assert loss.shape == loss_ref.shape == (k, m) and loss.dtype == dtype
    assert _rel(g, g_ref) <= tol
    assert _rel(loss, loss_ref) <= tol
    if k > 1:
        assert torch.all(g[-1] == 0)  # a run whose batch weights are all zero gets no gradient
    # batch_grad: the closed form plus the L2 term, for both dtypes
    for l2 in (0.0, 0.1):
        gb, lb = model.batch_grad(theta, x, y, w, 9.0, l2)
        ref = g_ref + l2 * (w.sum(1, keepdim=True) / 9.0) * theta
        assert _rel(gb, ref) <= tol and _rel(lb, loss_ref) <= tol


def test_relu_kink_has_derivative_zero_as_autograd():
    """Pre-activations exactly 0 (zero weights and biases): the ReLU's derivative there is 0, as autograd's."""
    model = mlp(3, (4,), 3)
    theta = torch.zeros(2, model.n_params, dtype=torch.float64)
    theta[:, -3:] = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    w = torch.ones(2, 5, dtype=torch.float64)
    g, loss = _mlp_batch_grad(model, theta, x, y, w, 5.0)
    g_ref, loss_ref = _batch_grad_vmap(model, theta, x, y, w, 5.0)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-15)
    torch.testing.assert_close(loss, loss_ref, rtol=0, atol=1e-15)


def test_redefined_forward_or_loss_keeps_the_vmap_path():
    class Tanh(Model):
        def forward(self, params, x):
            return torch.tanh(x @ params["W0"].T + params["b0"]) @ params["W1"].T + params["b1"]

    tanh = Tanh(4, 3, (5,))
    assert not _closed_form_mlp(tanh) and _closed_form_mlp(mlp(4, (5,), 3))
    assert not _closed_form_mlp(logistic_regression(4, 3))  # its own closed form (influence.linear)
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(2, tanh.n_params, generator=g, dtype=torch.float64)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    w = torch.rand(2, 6, generator=g, dtype=torch.float64)
    got, _ = tanh.batch_grad(theta, x, y, w, 6.0, 0.0)
    ref, _ = _batch_grad_vmap(tanh, theta, x, y, w, 6.0)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("hidden, n_classes", [((5,), 2), ((6,), 10), ((5, 4), 3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mlp_replay_engine_equals_the_generic_step(hidden, n_classes, dtype, monkeypatch):
    """``_MLPReplay`` gives the generic ``Model.batch_grad`` runs (closed form, and ``vmap(grad)``) to rounding:
    one and k runs, LOO and per-epoch weights, L2 with the shrink factor positive, zero and negative, every
    recorded step and the logged batch losses."""
    import influence.models as models_mod

    g = torch.Generator().manual_seed(n_classes)
    n, d = 40, 6
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (n,), generator=g)
    model = mlp(d, hidden, n_classes)
    theta0 = model.init(0).to(dtype)
    sched = Schedule(n, 16, 3, 0.5, seed=4)
    loo = torch.ones(6, n, dtype=torch.float64)
    loo[torch.arange(6), torch.arange(6)] = 0.0
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for weights in (None, loo, torch.rand(4, 3, n, generator=g, dtype=torch.float64)):
        for l2 in (0.0, 0.01, 2.0, 5.0):  # shrink 1 − ηα·Σw/|S| near 1, 0 (full batches at ηα = 1), negative
            kw = {"weights": weights, "l2": l2, "record": "all", "max_loss_growth": None}
            monkeypatch.setattr(train_mod, "_MLP_ENGINE", False)
            ref = train(model, theta0, (X, y), sched, **kw)
            with monkeypatch.context() as mp:
                mp.setattr(models_mod, "_closed_form_mlp", lambda model: False)
                mp.setattr(train_mod, "_closed_form_mlp", lambda model: False)
                ref_vmap = train(model, theta0, (X, y), sched, **kw)
            monkeypatch.setattr(train_mod, "_MLP_ENGINE", True)
            got = train(model, theta0, (X, y), sched, **kw)
            assert got.thetas.dtype == dtype and got.thetas.shape == ref.thetas.shape
            assert _rel(got.thetas, ref.thetas) <= tol and _rel(ref.thetas, ref_vmap.thetas) <= tol
            np.testing.assert_allclose(got.losses, ref.losses, rtol=tol, atol=tol)
            np.testing.assert_allclose(ref.losses, ref_vmap.losses, rtol=tol, atol=tol)


def test_mlp_replay_engine_detects_divergence(tiny_binary):
    (X, y), _ = tiny_binary
    model = mlp(5, (4,), 3)
    with pytest.raises(FloatingPointError, match="diverged at step"):
        train(model, model.init(0), (X * 1e200, y % 3), Schedule(len(y), 16, 2, 1e10), weights=torch.ones(4, len(y)))


@pytest.mark.parametrize("hidden, n_classes", [((5,), 2), ((6, 4), 10)])
def test_batched_forward_and_target_losses_equal_vmap(hidden, n_classes):
    """``_mlp_batch_logits`` and the LOO / LDS target losses built on it equal ``vmap`` of the model's own."""
    from influence.loo import _target_losses
    from influence.models import _mlp_batch_logits

    model, theta, x, y, _ = _problem(7, hidden, n_classes, 4, 13, torch.float64)
    ref_z = torch.func.vmap(lambda th: model.logits(th, x))(theta)
    ref = torch.func.vmap(lambda th: model.losses(th, x, y))(theta)
    assert _rel(_mlp_batch_logits(model, theta, x), ref_z) <= 1e-14
    got = _target_losses(model, theta, x, y)
    assert got.shape == (4, 13) and _rel(got, ref) <= 1e-14
