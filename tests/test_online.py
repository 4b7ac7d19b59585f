"""Ghost influence and LAI: hook capture vs explicit per-sample gradients, in-run accumulation vs LOO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, vmap

from influence import estimators
from influence.capture import capture, capture_split, set_update_grads
from influence.estimators.online import (
    GhostStep,
    batch_scores,
    ghost_inner,
    in_run_ghost,
    in_run_lai,
    in_run_lai_last_layer,
    lai_inner,
    lai_scores,
)
from influence.loo import trajectory_loo
from influence.metrics import spearman
from influence.models import SmallCNN, logistic_regression, mlp, row_losses
from influence.train import Schedule, train

TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def explicit_grads(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str] | None = None):
    """Per-sample gradients with vmap(grad) over functional_call, flattened: (m, p_selected)."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    keep = list(params) if names is None else names

    def f(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return row_losses(functional_call(module, {**params, **p}, (xi[None],)), yi[None]).sum()

    g = vmap(grad(f), in_dims=(None, 0, 0))({k: params[k] for k in keep}, x, y)
    return torch.cat([g[k].reshape(x.shape[0], -1) for k in keep], 1)


def _mlp_module(dtype: torch.dtype, n_out: int) -> torch.nn.Module:
    model = mlp(5, (7, 4), 2 if n_out == 1 else n_out)
    return model.to_module(model.init(3, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_out", [1, 3])
def test_ghost_equals_explicit_per_sample_gradient_dot_mlp(dtype, n_out):
    g = torch.Generator().manual_seed(0)
    module = _mlp_module(dtype, n_out)
    x = torch.randn(12, 5, generator=g, dtype=dtype)
    y = torch.randint(0, max(n_out, 2), (12,), generator=g)
    cap = capture(module, x, y)
    G = explicit_grads(module, x, y)
    torch.testing.assert_close(ghost_inner(cap), G @ G.T, **TOL[dtype])
    # rectangular blocks: training rows vs target rows
    torch.testing.assert_close(ghost_inner(cap, slice(0, 8), slice(8, 12)), G[:8] @ G[8:].T, **TOL[dtype])
    assert cap.g.shape == (12, n_out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("conv_method", ["ghost", "explicit"])
def test_ghost_equals_explicit_per_sample_gradient_dot_cnn(dtype, conv_method):
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    module = SmallCNN(in_channels=2, side=8, n_out=4, width=3, dtype=dtype)
    x = torch.randn(7, 2, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (7,), generator=g)
    cap = capture(module, x, y)
    G = explicit_grads(module, x, y)
    torch.testing.assert_close(ghost_inner(cap, conv_method=conv_method), G @ G.T, **TOL[dtype])
    # per-step scores (mean over the target rows) use the contraction form for conv layers
    torch.testing.assert_close(batch_scores(cap, 4, "ghost"), (G[:4] @ G[4:].T).mean(1), **TOL[dtype])
    # per-layer pieces: the first conv layer alone
    G0 = explicit_grads(module, x, y, ["net.0.weight", "net.0.bias"])
    torch.testing.assert_close(ghost_inner(cap, layers=[0], conv_method=conv_method), G0 @ G0.T, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_out", [1, 3])
def test_lai_last_layer_equals_last_layer_gradient_dot(dtype, n_out):
    g = torch.Generator().manual_seed(2)
    module = _mlp_module(dtype, n_out)
    x = torch.randn(10, 5, generator=g, dtype=dtype)
    y = torch.randint(0, max(n_out, 2), (10,), generator=g)
    cap = capture(module, x, y, backward=False)
    last = [n for n, _ in module.named_parameters()][-2:]
    G = explicit_grads(module, x, y, last)
    torch.testing.assert_close(lai_inner(cap, last_layer_only=True), G @ G.T, **TOL[dtype])
    # and without the bias: only the weight gradient
    Gw = explicit_grads(module, x, y, last[:1])
    torch.testing.assert_close(lai_inner(cap, last_layer_only=True, bias=False), Gw @ Gw.T, **TOL[dtype])


def test_full_lai_equals_direct_computation_from_activations_and_logit_gradients():
    g = torch.Generator().manual_seed(3)
    model = mlp(5, (6, 4), 3)
    theta = model.init(4)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (9,), generator=g)
    # direct: functional forward, closed-form logit gradient, formula of the spec
    p = model.unflatten(theta)
    acts, h = [], x
    for k in range(3):
        acts.append(h)
        h = h @ p[f"W{k}"].T + p[f"b{k}"]
        if k < 2:
            h = torch.relu(h)
    gl = torch.softmax(h, -1) - torch.nn.functional.one_hot(y, 3).double()
    direct = (gl @ gl.T) * sum(a @ a.T + 1.0 for a in acts)
    cap = capture(model.to_module(theta), x, y, backward=False)
    torch.testing.assert_close(lai_inner(cap), direct, rtol=1e-12, atol=1e-12)
    # layer selection by index and by module name agree
    torch.testing.assert_close(lai_inner(cap, layers=[0, 1]), lai_inner(cap, layers=["0", "2"]))
    torch.testing.assert_close(lai_inner(cap, layers=[1]), (gl @ gl.T) * (acts[1] @ acts[1].T + 1.0))
    # scores: mean over the target rows; the split capture (no autograd on the targets) agrees
    split = capture_split(model.to_module(theta), x[:4], y[:4], x[4:], y[4:])
    torch.testing.assert_close(lai_inner(split), direct, rtol=1e-12, atol=1e-12)
    assert split.losses.requires_grad and not cap.losses.requires_grad
    s = batch_scores(cap, 4, "lai")
    torch.testing.assert_close(s, direct[:4, 4:].mean(1))
    torch.testing.assert_close(batch_scores(cap, 4, "lai", self_influence=True), direct[:4, :4].mean(1))


def test_update_grads_come_from_training_rows_only_and_capture_leaves_grads_alone():
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    module = SmallCNN(in_channels=1, side=8, n_out=3, width=2, dtype=torch.float64)
    x = torch.randn(10, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    for prm in module.parameters():
        prm.grad = torch.full_like(prm, 7.0)
    cap = capture(module, x, y)
    assert all(bool((prm.grad == 7.0).all()) for prm in module.parameters())
    w = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    set_update_grads(cap, 6, w)
    got = [prm.grad.clone() for prm in module.parameters()]
    module.zero_grad()
    (row_losses(module(x[:6]), y[:6]) * w).sum().div(6).backward()
    for a, b in zip(got, (prm.grad for prm in module.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def _stepwise_explicit(traj, data, target, l2_term: bool):
    """Σ_t η_t/|S_t| ⟨∇f_i(θ_t), ∇L(θ_t)⟩ with vmap(grad) per-sample gradients (independent reference)."""
    model = traj.model
    X, y = data
    Xt, yt = target

    def li(th, xi, yi):
        return model.losses(th, xi[None], yi[None])[0]

    out = np.zeros(X.shape[0])
    for t, (S, lr) in enumerate(zip(traj.batches(), traj.lrs(), strict=True)):
        th = traj.thetas[t]
        G = vmap(grad(li), in_dims=(None, 0, 0))(th, X[S], y[S])
        if l2_term:
            G = G + traj.l2 * th
        gL = grad(lambda q: model.loss(q, Xt, yt))(th)
        np.add.at(out, S, (lr / len(S)) * (G @ gL).numpy())
    return out


def test_in_run_ghost_equals_stepwise_explicit_gradient_products(tiny_mlp_run):
    traj, data, target = tiny_mlp_run
    ref = _stepwise_explicit(traj, data, target, l2_term=True)
    np.testing.assert_allclose(in_run_ghost(traj, data, target), ref, rtol=1e-9, atol=1e-13)
    ref0 = _stepwise_explicit(traj, data, target, l2_term=False)
    np.testing.assert_allclose(in_run_ghost(traj, data, target, l2_term=False), ref0, rtol=1e-9, atol=1e-13)


def test_lai_equals_ghost_for_logistic_regression(tiny_logreg_run):
    """One layer = the last layer: LAI is exact, so in-run LAI equals in-run Ghost without the L2 term."""
    traj, data, target = tiny_logreg_run
    ghost = in_run_ghost(traj, data, target, l2_term=False)
    np.testing.assert_allclose(in_run_lai(traj, data, target), ghost, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(in_run_lai_last_layer(traj, data, target), ghost, rtol=1e-10, atol=1e-14)


def test_in_run_scores_track_trajectory_loo(tiny_mlp_run):
    traj, data, target = tiny_mlp_run
    truth = trajectory_loo(traj, data, target).loss_change
    rho_ghost = spearman(in_run_ghost(traj, data, target), truth)
    rho_lai = spearman(in_run_lai(traj, data, target), truth)
    # Ghost is the exact first-order step-wise term (TracIn at every step); it must rank LOO well here
    assert rho_ghost > 0.9, rho_ghost
    assert rho_lai > 0.5, rho_lai


def test_fresh_target_subsets_are_seeded_and_change_the_scores(tiny_mlp_run):
    traj, data, target = tiny_mlp_run
    a = in_run_lai(traj, data, target, target_size=5, seed=1)
    b = in_run_lai(traj, data, target, target_size=5, seed=1)
    c = in_run_lai(traj, data, target, target_size=5, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    s = in_run_ghost(traj, data, None, self_influence=True)
    assert s.shape == (len(data[1]),) and np.isfinite(s).all()


def test_registered_names_and_uniform_signature(tiny_mlp_run):
    assert estimators.get("ghost") is in_run_ghost
    assert estimators.get("lai") is in_run_lai
    assert estimators.get("lai_last_layer") is in_run_lai_last_layer
    traj, data, target = tiny_mlp_run
    scores, rec = estimators.run("lai_last_layer", traj, data, target)
    assert scores.shape == (len(data[1]),) and rec["estimator"] == "lai_last_layer"


def test_bad_inputs_raise_clear_errors(tiny_mlp_run):
    traj, data, target = tiny_mlp_run
    with pytest.raises(ValueError, match="recorded at every step"):
        sparse = train(traj.model, traj.theta0, data, traj.schedule, l2=traj.l2, record="final")
        in_run_ghost(sparse, data, target)
    with pytest.raises(ValueError, match="target_size"):
        in_run_lai(traj, data, target, target_size=0)
    with pytest.raises(ValueError, match="target_data"):
        in_run_lai(traj, data, None)
    with pytest.raises(ValueError, match="trajectory"):
        in_run_lai(None, data, target)
    cap = capture(traj.model.to_module(traj.final), *data, backward=False)
    with pytest.raises(ValueError, match="backward=True"):
        ghost_inner(cap)
    with pytest.raises(ValueError, match="no target rows"):
        batch_scores(cap, len(data[1]), "lai")
    with pytest.raises(ValueError, match="unknown layer"):
        lai_inner(cap, layers=["nope"])
    with pytest.raises(ValueError, match="no nn.Linear"):
        capture(torch.nn.ReLU(), data[0], data[1])


def test_binary_logreg_scores_have_logistic_logit_gradient():
    g = torch.Generator().manual_seed(8)
    model = logistic_regression(3)
    theta = torch.randn(model.n_params, generator=g, dtype=torch.float64)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (6,), generator=g)
    cap = capture(model.to_module(theta), x, y, backward=False)
    torch.testing.assert_close(cap.g[:, 0], torch.sigmoid(model.logits(theta, x)[:, 0]) - y.double())
    sched = Schedule(6, 3, 1, 0.1)
    traj = train(model, theta, (x, y), sched)
    assert in_run_lai(traj, (x, y), (x, y)).shape == (6,)


# ---------------------------------------------------------------------------------------------- fast paths
def _strided_cnn(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(11)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, stride=2, padding=2, dilation=2, dtype=dtype), torch.nn.ReLU(),
        torch.nn.Conv2d(3, 4, (2, 3), stride=(1, 2), padding=(1, 0), bias=False, dtype=dtype), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 2, 3, dtype=dtype),
    )


def _fast_cases(dtype: torch.dtype):
    """(name, module, x, y): MLPs with 1 and 3 logits, the SmallCNN, a strided / dilated / bias-free CNN."""
    g = torch.Generator().manual_seed(21)
    torch.manual_seed(21)
    out = []
    for n_out in (1, 3):
        out.append((f"mlp{n_out}", _mlp_module(dtype, n_out), torch.randn(11, 5, generator=g, dtype=dtype),
                    torch.randint(0, max(n_out, 2), (11,), generator=g)))
    out.append(("cnn", SmallCNN(in_channels=2, side=8, n_out=4, width=3, dtype=dtype),
                torch.randn(11, 2, 8, 8, generator=g, dtype=dtype), torch.randint(0, 4, (11,), generator=g)))
    out.append(("cnn-strided", _strided_cnn(dtype), torch.randn(11, 2, 9, 9, generator=g, dtype=dtype),
                torch.randint(0, 3, (11,), generator=g)))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("self_influence", [False, True])
@pytest.mark.parametrize("form", [dict(), dict(linear_form="pair"), dict(linear_form="contract"),
                                  dict(max_per_sample_bytes=0)], ids=["auto", "pair", "contract", "no-per-sample"])
def test_ghost_step_equals_explicit_per_sample_gradient_products(dtype, self_influence, form):
    """GhostStep (the curation fast path) = mean_j ⟨∇ℓ_i, ∇ℓ_j⟩ from vmap(grad), every per-layer form."""
    n = 7
    for name, module, x, y in _fast_cases(dtype):
        rows = slice(0, n) if self_influence else slice(None)
        cap = capture(module, x[rows], y[rows])
        G = explicit_grads(module, x[rows], y[rows])
        ref = G[:n] @ (G[:n] if self_influence else G[n:]).mean(0)
        gs = GhostStep(cap, n, self_influence=self_influence, **form)
        torch.testing.assert_close(gs.scores, ref, **TOL[dtype], msg=name)
        torch.testing.assert_close(gs.scores, batch_scores(cap, n, "ghost", self_influence=self_influence),
                                   **TOL[dtype], msg=name)
        # without the bias terms: the weight gradients only
        weights = [k for k, _ in module.named_parameters() if k.endswith("weight")]
        Gw = explicit_grads(module, x[rows], y[rows], weights)
        ref_w = Gw[:n] @ (Gw[:n] if self_influence else Gw[n:]).mean(0)
        gsw = GhostStep(cap, n, self_influence=self_influence, bias=False, **form)
        torch.testing.assert_close(gsw.scores, ref_w, **TOL[dtype], msg=name)


@pytest.mark.parametrize("form", [dict(), dict(linear_form="contract"), dict(max_per_sample_bytes=0)],
                         ids=["auto", "contract", "no-per-sample"])
def test_ghost_step_update_equals_the_weighted_backward(form):
    w = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    for name, module, x, y in _fast_cases(torch.float64):
        for self_influence in (False, True):
            xs, ys = (x[:7], y[:7]) if self_influence else (x, y)
            cap = capture(module, xs, ys)
            gs = GhostStep(cap, 7, self_influence=self_influence, **form)
            module.zero_grad()
            (row_losses(module(x[:7]), y[:7]) * w).sum().div(5.0).backward()
            ref = [p.grad.clone() for p in module.parameters()]
            for p in module.parameters():
                p.grad = torch.full_like(p, 3.0)  # overwritten, not accumulated
            gs.set_update_grads(w, denom=5.0)
            for p, r in zip(module.parameters(), ref, strict=True):
                torch.testing.assert_close(p.grad, r, rtol=1e-10, atol=1e-13, msg=name)
            gs.set_update_grads()  # unweighted batch mean = the plain gradient
            module.zero_grad()
            row_losses(module(x[:7]), y[:7]).mean().backward()
            got = [p.grad.clone() for p in module.parameters()]
            gs.set_update_grads()
            for p, r in zip(module.parameters(), got, strict=True):
                torch.testing.assert_close(p.grad, r, rtol=1e-10, atol=1e-13, msg=name)


def test_ghost_step_bad_inputs():
    name, module, x, y = _fast_cases(torch.float64)[0]
    cap = capture(module, x, y)
    with pytest.raises(ValueError, match="no target rows"):
        GhostStep(cap, len(x))
    with pytest.raises(ValueError, match="n_train"):
        GhostStep(cap, 0)
    with pytest.raises(ValueError, match="linear_form"):
        GhostStep(cap, 4, linear_form="nope")
    with pytest.raises(ValueError, match="backward=True"):
        GhostStep(capture(module, x, y, backward=False), 4)
    with pytest.raises(ValueError, match="weights must have shape"):
        GhostStep(cap, 4).set_update_grads(torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lai_scores_from_split_captures_equal_the_concatenated_capture(dtype):
    for name, module, x, y in _fast_cases(dtype):
        ct = capture(module, x[:7], y[:7], backward=False, keep_graph=True)
        cv = capture(module, x[7:], y[7:], backward=False)
        cat = capture(module, x, y, backward=False)
        M = lai_inner(cat)
        torch.testing.assert_close(lai_scores(ct, cv), M[:7, 7:].mean(1), **TOL[dtype], msg=name)
        torch.testing.assert_close(lai_scores(ct, cv), batch_scores(cat, 7, "lai"), **TOL[dtype], msg=name)
        for kw in (dict(last_layer_only=True), dict(layers=[0]), dict(bias=False)):
            torch.testing.assert_close(lai_scores(ct, cv, **kw), lai_inner(cat, **kw)[:7, 7:].mean(1), **TOL[dtype],
                                       msg=f"{name} {kw}")
        # self-influence, with and without the diagonal
        Mt = M[:7, :7]
        torch.testing.assert_close(lai_scores(ct), Mt.mean(1), **TOL[dtype], msg=name)
        torch.testing.assert_close(lai_scores(ct, exclude_self=True), (Mt.sum(1) - Mt.diagonal()) / 6, **TOL[dtype],
                                   msg=name)
        assert ct.losses.requires_grad and not cv.losses.requires_grad
    with pytest.raises(ValueError, match="exclude_self"):
        lai_scores(ct, cv, exclude_self=True)
    other = capture(_fast_cases(dtype)[0][1], *_fast_cases(dtype)[0][2:], backward=False)
    with pytest.raises(ValueError, match="same module"):
        lai_scores(ct, other)


def _n_hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


def test_hooks_are_registered_once_and_do_nothing_outside_a_capture():
    import copy
    import io

    from influence.capture import release_hooks

    name, module, x, y = _fast_cases(torch.float64)[2]  # SmallCNN: 3 hooked layers
    assert _n_hooks(module) == 0
    before = module(x)
    c1 = capture(module, x, y)
    assert _n_hooks(module) == 3
    c2 = capture(module, x, y)
    assert _n_hooks(module) == 3  # the second capture reuses them
    torch.testing.assert_close(ghost_inner(c1), ghost_inner(c2), rtol=0, atol=0)
    assert torch.equal(module(x), before)  # inert outside a capture
    # a deep copy gets inert hooks and hooks of its own on its first capture; pickling works
    twin = copy.deepcopy(module)
    torch.testing.assert_close(ghost_inner(capture(twin, x, y)), ghost_inner(c1), rtol=1e-12, atol=1e-14)
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(loaded(x), before)
    # a changed module (a layer replaced) gets its hooks rebuilt
    with torch.no_grad():
        new_head = torch.nn.Linear(module.net[-1].in_features, 4, dtype=torch.float64)
        new_head.weight.copy_(module.net[-1].weight)
        new_head.bias.copy_(module.net[-1].bias)
    module.net[-1] = new_head
    c3 = capture(module, x, y)
    torch.testing.assert_close(ghost_inner(c3), ghost_inner(c1), rtol=1e-12, atol=1e-14)
    assert c3.layers[-1].module is new_head
    assert release_hooks(module) and _n_hooks(module) == 0 and not release_hooks(module)
    torch.testing.assert_close(ghost_inner(capture(module, x, y)), ghost_inner(c1), rtol=1e-12, atol=1e-14)


def test_plain_training_is_bit_identical_on_a_hooked_module():
    name, a, x, y = _fast_cases(torch.float64)[2]
    import copy

    b = copy.deepcopy(a)
    capture(a, x, y)  # a now carries (inert) hooks
    for module in (a, b):
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            row_losses(module(x), y).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_capture_logit_gradient_is_computed_on_demand():
    name, module, x, y = _fast_cases(torch.float64)[1]
    cap = capture(module, x, y)
    assert cap._g is None
    torch.testing.assert_close(cap.g, torch.softmax(cap.logits, -1) - torch.nn.functional.one_hot(y, 3).double())
    assert cap._g is not None


# ---------------------------------------------------------------------------------------------- any per-row loss
def _gelu_ln_mlp(dtype: torch.dtype, n_out: int) -> torch.nn.Module:
    torch.manual_seed(31)
    return torch.nn.Sequential(torch.nn.Linear(5, 6, dtype=dtype), torch.nn.LayerNorm(6, dtype=dtype),
                               torch.nn.GELU(), torch.nn.Linear(6, n_out, dtype=dtype))


def test_user_loss_output_gradient_by_autograd_equals_the_closed_form():
    """g = ∂ℓ_i/∂outputs by autograd through a user loss = the closed forms of the built-in losses (1e-10)."""
    from influence.capture import output_grad
    from influence.models import example_losses

    g = torch.Generator().manual_seed(41)
    D = torch.float64
    cases = [(torch.randn(9, 1, generator=g, dtype=D), torch.randint(0, 2, (9,), generator=g)),  # logistic
             (torch.randn(9, 4, generator=g, dtype=D), torch.randint(0, 4, (9,), generator=g)),  # cross-entropy
             (torch.randn(9, 5, 7, generator=g, dtype=D), torch.randint(0, 7, (9, 5), generator=g))]  # tokens
    for z, y in cases:
        torch.testing.assert_close(output_grad(z, y, loss=example_losses), output_grad(z, y), rtol=1e-10, atol=1e-12)
    z, y = cases[1]
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(output_grad(z, y, loss=ce), output_grad(z, y), rtol=1e-10, atol=1e-12)
    # through a capture: the same g, scores and output gradients b with either loss
    module, x, yy = _fast_cases(D)[1][1:]
    a, b = capture(module, x, yy), capture(module, x, yy, loss=ce)
    torch.testing.assert_close(b.g, a.g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b.losses, a.losses, rtol=1e-12, atol=0)
    for la, lb in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(lb.b, la.b, rtol=1e-10, atol=1e-13)
    for method in ("lai", "ghost"):
        torch.testing.assert_close(batch_scores(b, 6, method), batch_scores(a, 6, method), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scores_with_a_user_regression_loss_equal_explicit_per_sample_gradients(dtype):
    """A GELU + LayerNorm MLP with a per-row (weighted) squared error: Ghost pairs, Ghost scores and update, LAI's
    exact last layer and the output gradient g all equal their definitions from vmap(grad) of the same loss."""
    g = torch.Generator().manual_seed(42)
    module = _gelu_ln_mlp(dtype, 2)
    x = torch.randn(11, 5, generator=g, dtype=dtype)
    y = torch.randn(11, 2, generator=g, dtype=dtype)

    def mse(out, t):
        return ((out - t) ** 2 * torch.tensor([1.0, 3.0], dtype=out.dtype, device=out.device)).sum(1) / 2

    params = {k: v.detach() for k, v in module.named_parameters()}

    def grads(names):
        def f(p, xi, yi):
            return mse(functional_call(module, {**params, **p}, (xi[None],)), yi[None]).sum()

        gr = vmap(grad(f), in_dims=(None, 0, 0))({k: params[k] for k in names}, x, y)
        return torch.cat([gr[k].reshape(x.shape[0], -1) for k in names], 1)

    G = grads(list(params))
    cap = capture(module, x, y, loss=mse)
    torch.testing.assert_close(ghost_inner(cap), G @ G.T, **TOL[dtype])
    gs = GhostStep(cap, 7)
    torch.testing.assert_close(gs.scores, G[:7] @ G[7:].mean(0), **TOL[dtype])
    torch.testing.assert_close(batch_scores(cap, 7, "ghost"), gs.scores, **TOL[dtype])
    Gl = grads(["3.weight", "3.bias"])
    torch.testing.assert_close(lai_inner(capture(module, x, y, backward=False, loss=mse), last_layer_only=True),
                               Gl @ Gl.T, **TOL[dtype])
    z = module(x).detach()
    torch.testing.assert_close(cap.g, (z - y) * torch.tensor([1.0, 3.0], dtype=dtype), **TOL[dtype])
    w = torch.tensor([1, 0, 1, 1, 0, 1, 1], dtype=dtype)
    gs.set_update_grads(w)
    got = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    (mse(module(x[:7]), y[:7]) * w).sum().div(7).backward()
    for p, r in zip(module.parameters(), got, strict=True):
        torch.testing.assert_close(r, p.grad, **TOL[dtype])


def test_a_loss_must_return_one_value_per_row():
    module, x, y = _fast_cases(torch.float64)[1][1:]
    for bad in (lambda z, t: torch.nn.functional.cross_entropy(z, t), lambda z, t: z):
        with pytest.raises(ValueError, match="one loss per row"):
            capture(module, x, y, loss=bad)


def test_ghost_scores_on_a_subset_of_layers_and_no_partial_update():
    """batch_scores(..., 'ghost', layers=...) is GhostStep on those layers: the explicit products of their
    parameters; such a step refuses to write an update."""
    module, x, y = _fast_cases(torch.float64)[2][1:]  # SmallCNN
    cap = capture(module, x, y)
    names = [k for k, _ in module.named_parameters()]
    for which, pnames in (([0], names[:2]), ([-1], names[-2:])):
        G = explicit_grads(module, x, y, pnames)
        torch.testing.assert_close(batch_scores(cap, 6, "ghost", layers=which), G[:6] @ G[6:].mean(0),
                                   rtol=1e-10, atol=1e-12)
    G = explicit_grads(module, x, y, names[-2:])
    torch.testing.assert_close(batch_scores(cap, 6, "ghost", last_layer_only=True), G[:6] @ G[6:].mean(0),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="subset of the layers"):
        GhostStep(cap, 6, layers=[0]).set_update_grads()
