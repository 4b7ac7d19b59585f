"""The closed forms of logistic regression (influence.linear) against torch.func on the model itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_problem
from torch.func import grad, hessian, vmap

from influence import linear
from influence.models import logistic_regression


@pytest.fixture(params=[2, 3], ids=["binary", "softmax"])
def problem(request):
    C = request.param
    (X, y), _ = make_problem(n=20, d=4, n_classes=C, seed=C)
    model = logistic_regression(4, C)
    theta = torch.randn(model.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, theta, X, y


def test_layouts_are_inverse_permutations():
    for d, o in ((1, 1), (4, 1), (3, 5)):
        fwd, back = linear.internal_order(d, o), linear.flat_order(d, o)
        np.testing.assert_array_equal(np.sort(fwd), np.arange(o * (d + 1)))
        np.testing.assert_array_equal(fwd[back], np.arange(o * (d + 1)))


def test_internal_layout_gives_logits_from_augmented_inputs(problem):
    model, theta, X, _ = problem
    Theta = theta[torch.as_tensor(linear.internal_order(4, model.n_out))].reshape(model.n_out, 5)
    np.testing.assert_allclose(linear.augment(X) @ Theta.T, model.logits(theta, X), rtol=1e-14, atol=1e-14)


def test_hessian_equals_autodiff_hessian_of_the_summed_loss(problem):
    model, theta, X, y = problem
    H = linear.hessian(linear.augment(X), model.logits(theta, X))
    ref = hessian(lambda th: model.losses(th, X, y).sum())(theta)
    np.testing.assert_allclose(H, ref, rtol=1e-12, atol=1e-12)


def test_logit_hessian_equals_autodiff_in_the_logits(problem):
    model, theta, X, y = problem
    z = model.logits(theta, X)
    ref = vmap(hessian(lambda zi, yi: model.loss_from_logits(zi[None], yi[None])[0]))(z, y)
    np.testing.assert_allclose(linear.logit_hessian(z), ref, rtol=1e-12, atol=1e-14)


def test_per_sample_and_summed_gradients_equal_vmap_grad(problem):
    model, theta, X, y = problem
    ref = vmap(grad(lambda th, xi, yi: model.losses(th, xi[None], yi[None])[0]), in_dims=(None, 0, 0))(theta, X, y)
    r = model.output_grad(model.logits(theta, X), y)
    np.testing.assert_allclose(linear.per_sample(r, X), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(linear.jt(r[None], X)[0], ref.sum(0), rtol=1e-12, atol=1e-13)
    W, b = model.unflatten(theta)["W0"], model.unflatten(theta)["b0"]
    # atol: an entry near cancellation (|z| ~ 1e-3) cannot meet a relative 1e-14; its absolute error is ~1 ulp of |Wx|
    np.testing.assert_allclose(linear.jvp(W[None], b[None], X)[0], model.logits(theta, X), rtol=1e-14, atol=1e-15)
