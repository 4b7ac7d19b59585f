"""Ghost-factorised gradient inner products (influence.ghost) equal per-sample gradients; TracIn, Grad-Dot,
self-influence and Diff-In's first-order term on the ghost path equal the per-sample-gradient (vmap) path."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import make_problem
from torch.utils._python_dispatch import TorchDispatchMode

from influence import autodiff
from influence.capture import capture
from influence.estimators import tracin as tracin_mod
from influence.estimators.diffin import diffin, diffin_checkpoints
from influence.estimators.tracin import grad_dot, self_influence, tracin
from influence.ghost import GRAD_IMPLS, GhostPairs, GradKernel, ghost_sqnorms, layer_dots, param_dots, rows_per_pass
from influence.models import SmallCNN, TinyGPT, example_losses, logistic_regression, mlp
from influence.train import Schedule, train

RTOL = 1e-10


def _close(got, ref, rtol=RTOL):
    """|got − ref| ≤ rtol · max|ref| (entries near zero are judged on the scale of the whole array)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= rtol * max(np.abs(ref).max(), 1e-300), np.abs(got - ref).max()


def _loop_grads(module, X, y):
    """Per-sample gradients of the row loss by a Python loop of torch.autograd.grad, (m, p), and θ (p,)."""
    params = [p for p in module.parameters()]
    rows = []
    for i in range(X.shape[0]):
        loss = example_losses(module(X[i : i + 1]), y[i : i + 1])[0]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows).detach(), torch.cat([p.detach().reshape(-1) for p in params])


def _tiny_spatial_cnn():
    """Convolutions on 2×2 images with many channels: the ghost L × L form is the cheaper one here."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3, padding=1, dtype=torch.float64), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1, dtype=torch.float64), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(64, 3, dtype=torch.float64))


def _case(kind):
    """(module, X, y, X2, y2) in float64."""
    g = torch.Generator().manual_seed(7)
    if kind in ("logreg_binary", "logreg_multi", "mlp"):
        n_classes = 2 if kind == "logreg_binary" else 3
        (X, y), (X2, y2) = make_problem(n=23, n_target=9, d=5, n_classes=n_classes, seed=3)
        model = {"logreg_binary": logistic_regression(5), "logreg_multi": logistic_regression(5, 3),
                 "mlp": mlp(5, (7, 4), 3)}[kind]
        theta = model.init(1) + 0.3 * torch.randn(model.n_params, generator=g, dtype=torch.float64)
        return model.to_module(theta), X, y, X2, y2
    if kind in ("cnn", "cnn_tiny_spatial"):
        if kind == "cnn":
            torch.manual_seed(0)
            module = SmallCNN(in_channels=2, side=8, n_out=3, width=3, dtype=torch.float64)
            shape = (2, 8, 8)
        else:
            module, shape = _tiny_spatial_cnn(), (2, 2, 2)
        X = torch.randn(19, *shape, generator=g, dtype=torch.float64)
        X2 = torch.randn(6, *shape, generator=g, dtype=torch.float64)
        return module, X, torch.randint(0, 3, (19,), generator=g), X2, torch.randint(0, 3, (6,), generator=g)
    if kind in ("tinygpt", "tinygpt_big_vocab"):  # small vocabulary: explicit embedding gradients; big: index match
        V, T = (11, 6) if kind == "tinygpt" else (50, 4)
        module = TinyGPT(vocab_size=V, context=T, d_model=8, n_layers=1, n_heads=2, dtype=torch.float64, seed=0)
        X = torch.randint(0, V, (9, T), generator=g)
        X2 = torch.randint(0, V, (4, T), generator=g)
        return module, X, torch.randint(0, V, (9, T), generator=g), X2, torch.randint(0, V, (4, T), generator=g)
    raise ValueError(kind)


KINDS = ["logreg_binary", "logreg_multi", "mlp", "cnn", "cnn_tiny_spatial", "tinygpt", "tinygpt_big_vocab"]


@pytest.mark.parametrize("kind", KINDS)
def test_ghost_products_equal_per_sample_gradient_products(kind):
    module, X, y, X2, y2 = _case(kind)
    G, theta = _loop_grads(module, X, y)
    G2, _ = _loop_grads(module, X2, y2)
    a, b = 0.05, 0.3
    ref_gram = (G + a * theta) @ (G2 + b * theta).T
    w = torch.linspace(-1.0, 2.0, X2.shape[0], dtype=torch.float64)
    for rows in (4, 1000):  # several passes, and one
        pairs = GhostPairs(X, y, X2, y2, rows=rows)
        _close(pairs.gram(module, l2=a, l2_2=b), ref_gram)
        _close(pairs.gram(module), G @ G2.T)
        _close(pairs.mean_dots(module, l2=a), (G + a * theta) @ G2.mean(0))
        _close(pairs.mean_dots(module, weights=w), G @ (w @ G2))
        # one target row: the ghost form is the cheaper one for Linear layers without a cached input Gram
        _close(GhostPairs(X, y, X2[:1], y2[:1], rows=rows).mean_dots(module, l2=a), (G + a * theta) @ G2[0])
        _close(ghost_sqnorms(module, X, y, l2=a, rows=rows), ((G + a * theta) ** 2).sum(1))
    cap = capture(module, X, y)
    _close(param_dots(cap, slice(None)), G @ theta)
    V = torch.randn(theta.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    vs, start = [], 0
    for lc in cap.layers:  # hooked layers in parameter order for these modules
        size = sum(p.numel() for p in lc.module.parameters(recurse=False))
        vs.append(V[start : start + size])
        start += size
    assert start == theta.shape[0]
    _close(param_dots(cap, slice(2, 7), vs), G[2:7] @ V)


def test_input_gram_given_equals_computed():
    module, X, y, X2, y2 = _case("mlp")
    K = X @ X2.T
    _close(GhostPairs(X, y, X2, y2, rows=5, input_gram=K).gram(module, l2=0.1),
           GhostPairs(X, y, X2, y2, rows=5).gram(module, l2=0.1))
    # a wrong input Gram is used (it is not recomputed), so the result must change
    wrong = GhostPairs(X, y, X2, y2, rows=5, input_gram=K + 1.0).gram(module)
    assert (wrong - GhostPairs(X, y, X2, y2).gram(module)).abs().max() > 1e-3


RUNS = {"logreg": (logistic_regression(5), 2), "logreg3": (logistic_regression(5, 3), 3),
        "mlp1": (mlp(5, (6,), 3), 3), "mlp2": (mlp(5, (7, 4), 3), 3)}


@functools.cache
def _run(name):
    """Float64 runs recorded at every step: binary and 3-class logistic regression, a one- and a two-hidden-layer
    MLP; 40 samples, batch 8, 3 epochs, L2 0.02."""
    model, n_classes = RUNS[name]
    (X, y), target = make_problem(n=40, n_target=11, d=5, n_classes=n_classes, seed=5)
    traj = train(model, model.init(2), (X, y), Schedule(len(y), 8, 3, 0.3, seed=1), l2=0.02)
    return traj, (X, y), target


def _both(monkeypatch, fn, *args, **kw):
    """(ghost path, per-sample-gradient path) of one call."""
    got = fn(*args, **kw)
    with monkeypatch.context() as mp:
        mp.setattr(tracin_mod, "_use_ghost", lambda model: False)
        mp.setattr(tracin_mod, "GhostPairs", None)  # the reference path must not touch the ghost code
        mp.setattr(tracin_mod, "ghost_sqnorms", None)
        ref = fn(*args, **kw)
    return got, ref


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("per_target", [False, True])
@pytest.mark.parametrize("include_l2", [False, True])
def test_tracin_ghost_path_equals_vmap_path(run, per_target, include_l2, monkeypatch):
    traj, train_data, target = _run(run)
    T = traj.n_steps
    for checkpoints, chunk in (("epoch", 7), ("epoch", 256), ([0, 3, T], 7), ("step", 256), ("ideal", 256)):
        got, ref = _both(monkeypatch, tracin, traj, train_data, target, checkpoints=checkpoints,
                         per_target=per_target, include_l2=include_l2, chunk=chunk)
        _close(got, ref)
    got, ref = _both(monkeypatch, grad_dot, traj, train_data, target, per_target=per_target, include_l2=include_l2)
    _close(got, ref)


@pytest.mark.parametrize("run", list(RUNS))
def test_self_influence_ghost_path_equals_vmap_path(run, monkeypatch):
    traj, train_data, _ = _run(run)
    for include_l2 in (False, True):
        for checkpoints in ("epoch", [0, 5, traj.n_steps]):
            got, ref = _both(monkeypatch, self_influence, traj, train_data, None, checkpoints=checkpoints,
                             include_l2=include_l2, chunk=7)
            _close(got, ref)
            assert (got >= 0).all()


@pytest.mark.parametrize("run", ["logreg3", "mlp2"])
@pytest.mark.parametrize("per_target", [False, True])
def test_diffin_first_order_term_equals_per_sample_gradient_sum(run, per_target):
    """full − paper form = (T/m) Σ_t (η_t/N) ⟨G_z(θ_t), v_t⟩, with G_z and v_t from autodiff (the vmap path)."""
    traj, (X, y), (Xt, yt) = _run(run)
    kw = {"m": 3, "hvp": "exact", "proxy_batch": 16, "per_target": per_target, "chunk": 7}
    first = diffin(traj, (X, y), (Xt, yt), form="full", **kw) - diffin(traj, (X, y), (Xt, yt), form="paper", **kw)
    ref = 0.0
    steps, N, T = diffin_checkpoints(traj, 3), len(y), traj.n_steps
    for t in steps:
        th, eta = traj.theta_at(int(t)), traj.lrs()[min(int(t), T - 1)]
        G = autodiff.per_sample_grads(traj.model, th, X, y, l2=traj.l2)
        V = autodiff.per_sample_grads(traj.model, th, Xt, yt)
        ref = ref + (T / len(steps)) * eta / N * (G @ (V.T if per_target else V.mean(0)))
    _close(first, ref.numpy(), rtol=1e-8)  # a difference of two sums of larger terms


class _Largest(TorchDispatchMode):
    """Records the largest number of elements of any tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_ghost_path_never_materialises_per_sample_gradients():
    (X, y), target = make_problem(n=300, n_target=20, d=30, n_classes=3, seed=0)
    model = mlp(30, (40,), 3)
    traj = train(model, model.init(0), (X, y), Schedule(300, 50, 2, 0.2, seed=0), l2=1e-3)
    n, p = 300, model.n_params
    for call in (lambda: tracin(traj, (X, y), target, per_target=True, include_l2=True),
                 lambda: tracin(traj, (X, y), target, checkpoints="ideal"),
                 lambda: self_influence(traj, (X, y), include_l2=True)):
        with _Largest() as mode:
            call()
        # the largest tensors are the inputs [train; targets] and one layer's output gradients, far below n × p
        assert mode.largest <= (n + 20) * 40 < n * p / 30, mode.largest


def test_rows_per_pass_fits_the_vmap_memory_budget():
    model = mlp(784, (64,), 10)
    r = rows_per_pass(model, 256, 100)
    assert r * (4 * (64 + 10) + 4 * 100) <= 256 * model.n_params < (r + 1) * (4 * (64 + 10) + 4 * 100)
    assert rows_per_pass(mlp(2, (30,), 2), 50, 10) == 50  # never below chunk


def test_ghost_rejects_bad_input():
    module, X, y, X2, y2 = _case("mlp")
    with pytest.raises(ValueError, match="rows per pass"):
        GhostPairs(X, y, X2, y2, rows=0)
    with pytest.raises(ValueError, match="labels"):
        GhostPairs(X, y[:-1], X2, y2)
    with pytest.raises(ValueError, match="differ in shape"):
        GhostPairs(X, y, X2[:, :3], y2)
    with pytest.raises(ValueError, match="at least one row"):
        GhostPairs(X, y, X2[:0], y2[:0])
    with pytest.raises(ValueError, match="input_gram"):
        GhostPairs(X, y, X2, y2, input_gram=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        GhostPairs(X, y, X2, y2).mean_dots(module, weights=torch.ones(2))
    cap = capture(module, X, y)
    with pytest.raises(ValueError, match="shape"):
        layer_dots(cap.layers[0], slice(None), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="backward"):
        layer_dots(capture(module, X, y, backward=False).layers[0], slice(None), torch.zeros(1))
    with pytest.raises(ValueError, match="vs has"):
        param_dots(cap, slice(None), [torch.zeros(1)])
    with pytest.raises(ValueError, match="rows"):
        ghost_sqnorms(module, X, y[:-2])
    bn = torch.nn.Sequential(torch.nn.Linear(5, 4, dtype=torch.float64), torch.nn.BatchNorm1d(4, dtype=torch.float64),
                             torch.nn.Linear(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="BatchNorm1d"):
        GhostPairs(X, y, X2, y2).gram(bn)


# ------------------------------------------------------------------ GradKernel: the DIFF-5 implementation pairs
@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("impl", GRAD_IMPLS)
def test_grad_kernel_equals_per_sample_gradients(run, impl):
    """Both implementations of the kernel TracIn and Diff-In share give ⟨∇f_i, v⟩ and mean gradients of the
    per-sample gradients from autodiff, to float64 rounding, in passes of few rows too."""
    traj, (X, y), (Xt, yt) = _run(run)
    model, th = traj.model, traj.theta_at(5)
    G = autodiff.per_sample_grads(model, th, X, y, l2=0.03)
    V = torch.randn(3, model.n_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for chunk in (7, 256):
        k = GradKernel(model, impl, chunk=chunk)
        _close(k.dots(th, X, y, V, l2=0.03), G @ V.T)
        _close(k.dots(th, X, y, V[:1]), (G - 0.03 * th) @ V[0][:, None])
        _close(k.mean_grad(th, Xt, yt), autodiff.mean_grad(model, th, Xt, yt))
        _close(k.mean_grad(th, X, y, l2=0.03), G.mean(0))
    with pytest.raises(ValueError, match="impl"):
        GradKernel(model, "auto")
    with pytest.raises(ValueError, match="shape"):
        GradKernel(model, impl).dots(th, X, y, V[0])


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("include_l2", [False, True])
def test_tracin_fast_and_per_sample_forms_equal_the_reference(run, include_l2):
    """``tracin(impl='fast' | 'per_sample')`` (DIFF-5's timed pairs) = the registered TracIn (ghost path) to float64
    rounding (1e-10 relative to the largest score; measured ≤ 1e-15)."""
    traj, train_data, target = _run(run)
    for checkpoints in ("epoch", [0, 3, traj.n_steps], "step"):
        ref = tracin(traj, train_data, target, checkpoints=checkpoints, include_l2=include_l2)
        for impl in GRAD_IMPLS:
            _close(tracin(traj, train_data, target, checkpoints=checkpoints, include_l2=include_l2, impl=impl,
                          chunk=7), ref)
    with pytest.raises(ValueError, match="impl must be"):
        tracin(traj, train_data, target, impl="ghost")
    with pytest.raises(ValueError, match="per_target"):
        tracin(traj, train_data, target, impl="fast", per_target=True)
    with pytest.raises(ValueError, match="ideal"):
        tracin(traj, train_data, target, impl="per_sample", checkpoints="ideal")


@pytest.mark.parametrize("kind", ["mlp", "cnn", "tinygpt"])
def test_ghost_pairs_and_sqnorms_with_a_user_loss(kind):
    """GhostPairs / ghost_sqnorms take any per-row loss: a weighted one equals its per-sample-gradient products
    (the pair kernel is the one ghost_inner uses)."""
    module, X, y, X2, y2 = _case(kind)

    def weighted(z, t):  # a per-row loss the built-ins do not have: rows weighted by their label
        return example_losses(z, t) * (1.0 + (t if t.ndim == 1 else t[:, 0]).to(z.dtype) / 10)

    params = list(module.parameters())

    def grads(A, b):
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(weighted(module(A[i : i + 1]),
                                                                               b[i : i + 1])[0], params)])
                for i in range(A.shape[0])]
        return torch.stack(rows).detach()

    G, G2 = grads(X, y), grads(X2, y2)
    gp = GhostPairs(X, y, X2, y2, rows=7, loss=weighted)
    _close(gp.gram(module), G @ G2.T)
    _close(gp.mean_dots(module), G @ G2.mean(0))
    _close(ghost_sqnorms(module, X, y, rows=5, loss=weighted), (G * G).sum(1))
