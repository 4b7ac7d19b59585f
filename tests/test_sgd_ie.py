"""SGD-IE and ACC-SGD-IE: exact identities, an independent naive recursion, and agreement with LOO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_problem
from torch.autograd.functional import hessian, jacobian

from influence import estimators
from influence.estimators.sgd_ie import acc_sgd_ie, acc_sgd_ie_params, sgd_ie, sgd_ie_params
from influence.loo import trajectory_loo
from influence.metrics import kendall
from influence.models import logistic_regression, mlp
from influence.train import Schedule, train


def naive_linearised_loo(traj, X, y, Xt, yt, *, correct: bool, correct_until: int | None = None):
    """Independent reference: one sample at a time, explicit autograd Hessians and gradients of
    f_i = ℓ_i + (α/2)‖θ‖², A_{t+1} = (I − η_t H) A_t + (η_t/b) 1[j∈S_t] ∇f_j(θ_t) with
    H = (1/b)Σ_{i∈S_t}∇²f_i, minus (1/b)∇²f_j when ``correct`` and t < correct_until."""
    model, a, n, p = traj.model, traj.l2, len(y), traj.model.n_params
    T = traj.n_steps
    s = T if correct_until is None else correct_until

    def f(th, i):
        return model.losses(th, X[i : i + 1], y[i : i + 1])[0] + 0.5 * a * (th**2).sum()

    A = torch.zeros(n, p, dtype=torch.float64)
    for t, S in enumerate(traj.batches()):
        th, eta, m = traj.thetas[t], float(traj.lrs()[t]), len(S)
        Hs = {int(i): hessian(lambda z, i=int(i): f(z, i), th) for i in S}
        gs = {int(i): jacobian(lambda z, i=int(i): f(z, i), th) for i in S}
        H = sum(Hs.values()) / m
        for j in range(n):
            Hj = H - Hs[j] / m if (correct and t < s and j in Hs) else H
            A[j] = A[j] - eta * Hj @ A[j]
            if j in gs:
                A[j] = A[j] + eta / m * gs[j]
    g = torch.func.grad(lambda th: model.loss(th, Xt, yt))(traj.thetas[-1])
    return A.numpy(), (A @ g).numpy()


def _small(kind: str, epochs: int = 3):
    if kind == "binary":
        (X, y), (Xt, yt) = make_problem(n=24, n_target=16, d=3)
        model = logistic_regression(3)
    else:
        (X, y), (Xt, yt) = make_problem(n=24, n_target=16, d=3, n_classes=3, seed=1)
        model = logistic_regression(3, 3) if kind == "multiclass" else mlp(3, (4,), 3)
    traj = train(model, model.init(0), (X, y), Schedule(24, 7, epochs, 0.3, seed=2), l2=0.05)
    return traj, (X, y), (Xt, yt)


@pytest.fixture(scope="module", params=["binary", "multiclass", "mlp"])
def small_run(request):
    traj, tr, tg = _small(request.param)
    ref_acc = naive_linearised_loo(traj, *tr, *tg, correct=True)
    ref_sgd = naive_linearised_loo(traj, *tr, *tg, correct=False)
    return traj, tr, tg, ref_acc, ref_sgd


def _close(a, b, rtol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= rtol * max(np.abs(b).max(), 1e-300), np.abs(a - b).max()


@pytest.mark.parametrize("kind", ["binary", "multiclass", "mlp"])
def test_acc_equals_sgd_ie_for_one_epoch(kind):
    traj, tr, tg = _small(kind, epochs=1)
    s_acc, s_sgd = acc_sgd_ie(traj, tr, tg), sgd_ie(traj, tr, tg)
    assert np.abs(s_sgd).max() > 1e-6
    assert np.abs(s_acc - s_sgd).max() <= 1e-12 * np.abs(s_sgd).max()
    p_acc, p_sgd = acc_sgd_ie_params(traj, tr), sgd_ie_params(traj, tr)
    assert np.abs(p_acc - p_sgd).max() <= 1e-12 * np.abs(p_sgd).max()


def test_vectorised_equals_naive_linearised_loo_recursion(small_run):
    traj, tr, tg, (A_ref, s_ref), (S_ref, ss_ref) = small_run
    # the two references must differ (several epochs), otherwise the test below cannot tell them apart
    assert np.abs(A_ref - S_ref).max() > 1e-3 * np.abs(A_ref).max()
    _close(acc_sgd_ie_params(traj, tr), A_ref)
    _close(sgd_ie_params(traj, tr), S_ref)
    _close(acc_sgd_ie(traj, tr, tg, form="backward"), s_ref)
    _close(acc_sgd_ie(traj, tr, tg, form="forward"), s_ref)
    _close(sgd_ie(traj, tr, tg), ss_ref)


def test_forward_and_backward_forms_agree_across_chunks(small_run):
    traj, tr, tg, (_, s_ref), _ = small_run
    for chunk in (1, 5, 100) if traj.model.is_linear else (5,):
        _close(acc_sgd_ie(traj, tr, tg, form="backward", chunk=chunk), s_ref)
        _close(acc_sgd_ie(traj, tr, tg, form="forward", chunk=chunk), s_ref)
    sub = np.array([5, 0, 17])
    _close(acc_sgd_ie_params(traj, tr, indices=sub, chunk=2), acc_sgd_ie_params(traj, tr)[sub])


def test_truncated_variant_interpolates_between_acc_and_sgd_ie(small_run):
    traj, tr, tg, (_, s_ref), (_, ss_ref) = small_run
    T = traj.n_steps
    _close(acc_sgd_ie(traj, tr, tg, truncate=0), s_ref)
    _close(acc_sgd_ie(traj, tr, tg, truncate=T), ss_ref)
    s = T - 5  # the last 5 steps use the shared Hessian
    ref = naive_linearised_loo(traj, *tr, *tg, correct=True, correct_until=s)[1]
    _close(acc_sgd_ie(traj, tr, tg, truncate=5, form="backward"), ref)
    _close(acc_sgd_ie(traj, tr, tg, truncate=5, form="forward"), ref)
    assert np.abs(ref - s_ref).max() > 0 and np.abs(ref - ss_ref).max() > 0


def authors_infl(traj, X, y, Xt, yt, *, kind: str, simpj: int = 0) -> np.ndarray:
    """Independent reference: the coefficients of the ACC-SGD-IE authors' ``infl.py`` (Sec71), written as
    their loops over θ_t with autograd, float64. ``kind='sgd'``: ``infl_sgd``; ``kind='proposed'``:
    ``infl_proposed`` with their ``--simpj`` (0: ``infl_accumulative_sgd``, one adjoint per sample k whose
    step Hessian is that of L_S − ℓ_k/b + (α/2)‖θ‖² with L_S = mean_S ℓ + (α/2)‖θ‖² when k ∈ S, else of L_S;
    ≥ 1: ``infl_accumulative_sgd_compromised``, whose per-sample branch runs only for t < simpj − 1)."""
    model, a, n = traj.model, traj.l2, len(y)
    reg = lambda th: 0.5 * a * (th * th).sum()  # noqa: E731
    theta_T = traj.thetas[-1].clone().requires_grad_(True)
    u = torch.autograd.grad(model.loss(theta_T, Xt, yt), theta_T)[0]
    u_dict = {k: u.clone() for k in range(n)}
    infl = np.zeros(n)

    def hvp(loss_fn, th, v):
        g = torch.autograd.grad(loss_fn(th), th, create_graph=True)[0]
        return torch.autograd.grad(g, th, grad_outputs=v)[0]

    for t in range(traj.n_steps - 1, -1, -1):
        idx, lr = traj.batches()[t], float(traj.lrs()[t])
        th = traj.thetas[t].clone().requires_grad_(True)
        b = len(idx)
        per_sample = kind == "proposed" and (simpj == 0 or 0 <= t < simpj - 1)
        for i in idx:
            gi = torch.autograd.grad(model.losses(th, X[[i]], y[[i]])[0] + reg(th), th)[0]
            infl[i] += lr * float((u_dict[i] if per_sample else u) @ gi) / b

        def batch_loss(z, idx=idx):
            return model.losses(z, X[idx], y[idx]).mean() + reg(z)

        if per_sample:
            where = {int(k): loc for loc, k in enumerate(idx)}
            for k in range(n):
                if k in where:
                    loc = where[k]

                    def loo_loss(z, loc=loc, idx=idx, b=b):
                        return batch_loss(z) - model.losses(z, X[idx], y[idx])[loc] / b + reg(z)

                    u_dict[k] = u_dict[k] - lr * hvp(loo_loss, th, u_dict[k])
                else:
                    u_dict[k] = u_dict[k] - lr * hvp(batch_loss, th, u_dict[k])
        else:
            u = u - lr * hvp(batch_loss, th, u)
            if kind == "proposed" and t == simpj:
                u_dict = {k: u.clone() for k in range(n)}
    return infl


@pytest.mark.parametrize("kind", ["binary", "mlp"])
def test_l2_quirk_equals_the_authors_acc_step_and_the_default_does_not(kind):
    """l2_quirk=True reproduces the authors' ACC coefficients (2αI at j's steps, plain batch Hessian elsewhere and
    in SGD-IE's shared adjoint); the consistent default differs from them by more than rounding."""
    traj, tr, tg = _small(kind, epochs=4)
    assert traj.l2 > 0
    ref = authors_infl(traj, *tr, *tg, kind="proposed", simpj=0)
    for form in ("backward", "forward"):
        _close(acc_sgd_ie(traj, tr, tg, l2_quirk=True, form=form), ref)
    plain = acc_sgd_ie(traj, tr, tg)
    assert np.abs(plain - ref).max() > 1e-4 * np.abs(ref).max()
    # their SGD-IE has no quirk: ours equals it
    _close(sgd_ie(traj, tr, tg), authors_infl(traj, *tr, *tg, kind="sgd"))


def test_l2_quirk_changes_nothing_without_l2():
    (X, y), (Xt, yt) = make_problem(n=24, n_target=16, d=3, seed=4)
    model = mlp(3, (4,), 2)
    traj = train(model, model.init(0), (X, y), Schedule(24, 7, 3, 0.3, seed=2), l2=0.0)
    np.testing.assert_array_equal(acc_sgd_ie(traj, (X, y), (Xt, yt), l2_quirk=True),
                                  acc_sgd_ie(traj, (X, y), (Xt, yt)))


def test_authors_default_simpj_1_is_exactly_sgd_ie():
    """Their ``--simpj`` defaults to 1, with which ``--type proposed`` runs the shared-adjoint branch at every
    step (t < simpj − 1 = 0 never holds): SGD-IE. Their exp.sh passes 0, the per-sample method."""
    traj, tr, tg = _small("binary", epochs=4)
    simpj1 = authors_infl(traj, *tr, *tg, kind="proposed", simpj=1)
    np.testing.assert_array_equal(simpj1, authors_infl(traj, *tr, *tg, kind="sgd"))
    _close(sgd_ie(traj, tr, tg), simpj1)
    assert np.abs(simpj1 - authors_infl(traj, *tr, *tg, kind="proposed", simpj=0)).max() > 1e-4 * np.abs(simpj1).max()


@pytest.fixture(scope="module")
def logreg_loo():
    (X, y), (Xt, yt) = make_problem(n=100, n_target=40, d=5, seed=0)
    model = logistic_regression(5)
    traj = train(model, model.init(0), (X, y), Schedule(100, 10, 10, 0.5, seed=3), l2=0.1)
    return traj, (X, y), (Xt, yt), trajectory_loo(traj, (X, y), (Xt, yt))


def test_acc_parameter_error_several_times_smaller_than_sgd_ie(logreg_loo):
    traj, tr, _, loo = logreg_loo
    err_acc = np.linalg.norm(acc_sgd_ie_params(traj, tr) - loo.delta_theta, axis=1).mean()
    err_sgd = np.linalg.norm(sgd_ie_params(traj, tr) - loo.delta_theta, axis=1).mean()
    scale = np.linalg.norm(loo.delta_theta, axis=1).mean()
    assert err_acc < 0.02 * scale  # both are linearisations: small errors
    assert err_sgd > 3 * err_acc  # measured ≈ 6×


def test_both_rank_like_the_true_loss_change(logreg_loo):
    traj, tr, tg, loo = logreg_loo
    assert kendall(acc_sgd_ie(traj, tr, tg), loo.loss_change) > 0.9
    assert kendall(sgd_ie(traj, tr, tg), loo.loss_change) > 0.9
    # sign convention: scores are L(θ^{-j}) − L(θ), the same sign as the LOO loss change
    s = acc_sgd_ie(traj, tr, tg)
    big = np.abs(loo.loss_change) > np.quantile(np.abs(loo.loss_change), 0.5)
    assert np.all(np.sign(s[big]) == np.sign(loo.loss_change[big]))


def test_registered_and_run_with_provenance(tiny_logreg_run):
    traj, tr, tg = tiny_logreg_run
    assert {"sgd_ie", "acc_sgd_ie"} <= set(estimators.names())
    scores, rec = estimators.run("acc_sgd_ie", traj, tr, tg, form="forward")
    assert scores.shape == (len(tr[1]),) and rec["hparams"] == {"form": "forward"} and rec["wall_s"] >= 0
    np.testing.assert_allclose(scores, acc_sgd_ie(traj, tr, tg), rtol=1e-10, atol=1e-15)


def test_clear_errors(tiny_logreg_run):
    traj, (X, y), tg = tiny_logreg_run
    sparse = train(traj.model, traj.theta0, (X, y), traj.schedule, l2=traj.l2, record="final")
    with pytest.raises(ValueError, match="every step"):
        sgd_ie(sparse, (X, y), tg)
    with pytest.raises(ValueError, match="samples"):
        acc_sgd_ie(traj, (X[:-1], y[:-1]), tg)
    with pytest.raises(ValueError, match="form"):
        acc_sgd_ie(traj, (X, y), tg, form="sideways")
    with pytest.raises(ValueError, match="truncate"):
        acc_sgd_ie(traj, (X, y), tg, truncate=traj.n_steps + 1)
    with pytest.raises(ValueError, match="Trajectory"):
        sgd_ie(None, (X, y), tg)


def test_acc_sgd_ie_on_a_subset_propagates_only_those_states_and_matches_the_full_form(tiny_mlp_run):
    """DVEmb's protocol scores 100 points: the forward form restricted to them equals the full scores there."""
    traj, data, target = tiny_mlp_run
    full = acc_sgd_ie(traj, data, target)
    idx = np.array([17, 3, 40, 0, 29])
    for form in ("auto", "forward", "backward"):
        sub = acc_sgd_ie(traj, data, target, indices=idx, form=form)
        assert sub.shape == (len(idx),)
        np.testing.assert_allclose(sub, full[idx], rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="duplicates"):
        acc_sgd_ie(traj, data, target, indices=[1, 1])


# ------------------------------------------------------------------------------- single-epoch removal
@pytest.mark.parametrize("epoch", [-1, 0])
def test_single_epoch_sgd_ie_forward_and_backward_agree_and_acc_equals_it(tiny_mlp_run, epoch):
    """Single-epoch removal: the backward score, the forward state dotted with ∇L, and ACC-SGD-IE (whose
    correction never acts when only one occurrence is removed) all agree."""
    from influence.data import as_tensors
    from influence.estimators.sgd_ie import acc_sgd_ie, sgd_ie, sgd_ie_params

    traj, data, target = tiny_mlp_run
    idx = np.array([3, 11, 25, 40])
    back = sgd_ie(traj, data, target, epoch=epoch)[idx]
    Xt, yt = as_tensors(target, torch.float64)
    gL = torch.func.grad(lambda th: traj.model.loss(th, Xt, yt))(traj.thetas[-1]).numpy()
    fwd = sgd_ie_params(traj, data, indices=idx, epoch=epoch) @ gL
    np.testing.assert_allclose(fwd, back, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(acc_sgd_ie(traj, data, target, indices=idx, epoch=epoch), back, rtol=1e-9,
                               atol=1e-13)
    np.testing.assert_allclose(acc_sgd_ie(traj, data, target, epoch=epoch, form="backward")[idx], back,
                               rtol=1e-9, atol=1e-13)
    # the single-epoch values over all epochs sum to the SGD-IE all-epoch value
    E = traj.schedule.epochs
    total = sum(sgd_ie(traj, data, target, epoch=e) for e in range(E))
    np.testing.assert_allclose(total, sgd_ie(traj, data, target), rtol=1e-9, atol=1e-13)


def test_single_epoch_sgd_ie_tracks_single_epoch_loo(tiny_logreg_run):
    """Against the masked replay that drops j only in the last epoch: first order, so close, not equal."""
    from influence.estimators.sgd_ie import sgd_ie_params
    from influence.loo import trajectory_loo

    traj, data, target = tiny_logreg_run
    idx = np.arange(0, 60, 6)
    loo = trajectory_loo(traj, data, target, idx, removal_epoch=-1)
    est = sgd_ie_params(traj, data, indices=idx, epoch=-1)
    err = np.linalg.norm(est - loo.delta_theta, axis=1) / np.linalg.norm(loo.delta_theta, axis=1)
    assert err.max() < 0.05
    all_epoch = sgd_ie_params(traj, data, indices=idx)
    assert np.linalg.norm(all_epoch - loo.delta_theta) > 2 * np.linalg.norm(est - loo.delta_theta)
    with pytest.raises(ValueError, match="epoch"):
        sgd_ie_params(traj, data, indices=idx, epoch=traj.schedule.epochs)


@pytest.mark.parametrize("n_classes,hidden", [(2, (5,)), (3, (6, 4)), (4, (3, 5, 2))])
def test_closed_form_mlp_step_equals_the_torch_func_reference(n_classes, hidden):
    """_MLPStep (R-operator, batched GEMMs) against _FuncStep (vmap of forward-over-reverse) on every method:
    the contraction with and without the per-column correction, gradients and both dot products."""
    from influence.estimators.sgd_ie import _FuncStep, _MLPStep
    from influence.models import mlp

    g = torch.Generator().manual_seed(n_classes)
    model = mlp(4, hidden, n_classes)
    theta = model.init(0) + 0.3 * torch.randn(model.n_params, generator=g, dtype=torch.float64)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (7,), generator=g)
    fast, ref = _MLPStep(model, theta, x, y), _FuncStep(model, theta, x, y, vmap_chunk=3)
    U = torch.randn(5, model.n_params, generator=g, dtype=torch.float64)
    rows, pos = torch.tensor([0, 3, 4]), torch.tensor([6, 1, 2])
    for c in (0.0, 1.0, 0.3):
        a, b = U.clone(), U.clone()
        fast.contract(a, 0.7, rows, pos, c, 0.01, 0.002)
        ref.contract(b, 0.7, rows, pos, c, 0.01, 0.002)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    sel = torch.tensor([5, 0, 2])
    torch.testing.assert_close(fast.grads(sel), ref.grads(sel), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.dots(U[:3], sel), ref.dots(U[:3], sel), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.shared_dots(U[1], sel), ref.shared_dots(U[1], sel), rtol=1e-10, atol=1e-12)
