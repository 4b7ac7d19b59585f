"""Cross-checks against the peer libraries on one model and the same checkpoints.

Our TracIn-CP and Grad-Dot must equal dattri's TracInAttributor (identity projection) and Captum's
TracInCP, and our exact influence function must equal dattri's IFAttributorExplicit, score for score.
dattri accumulates its output in a float32 buffer whatever the model dtype, so its comparisons use a
float32 tolerance (relative 1e-5 of the largest score); Captum keeps float64, so it must agree to 1e-10.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import make_problem

from influence.data import Dataset
from influence.estimators import get
from influence.models import logistic_regression, mlp
from influence.train import Schedule, train
from replication.tasks import e7_peers as peers

os.environ.setdefault("TQDM_DISABLE", "1")
pytest.importorskip("dattri")
pytest.importorskip("captum")

RTOL_F32 = 1e-5  # dattri: float32 accumulation buffer
RTOL_F64 = 1e-10  # Captum: float64 end to end


def _setup(kind: str) -> peers.PeerSetup:
    """A PeerSetup on a tiny problem (float64 peers), exactly as the E7 tasks build it."""
    if kind == "mlp":
        (X, y), (Xt, yt) = make_problem(n=60, n_target=30, d=5, n_classes=3, seed=1)
        model, l2 = mlp(5, (6,), 3), 1e-2
    else:
        (X, y), (Xt, yt) = make_problem(n=60, n_target=30, d=5, n_classes=2, seed=2)
        model, l2 = logistic_regression(5), 1e-2
    sched = Schedule(60, 12, 4, 0.2, seed=5)
    traj = train(model, model.init(1), (X, y), sched, l2=l2)
    n_cls = 3 if kind == "mlp" else 2
    tr = Dataset(X.numpy(), y.numpy(), n_cls, "tiny")
    tg = Dataset(Xt.numpy(), yt.numpy(), n_cls, "tiny")
    steps = np.arange(1, sched.epochs + 1) * sched.steps_per_epoch
    cfg = {"if_damping": 0.5, "cg_iters": 10, "trak_proj_dim": 16, "kfac_seed": 0}
    name = "A" if kind == "logreg" else "B"
    return peers.PeerSetup(name, model, tr, tg, traj, traj.final, peers._two_point(traj, traj.final), steps,
                           traj.lrs()[steps - 1], l2, torch.float64, cfg)


def _close(ours: np.ndarray, theirs: np.ndarray, rtol: float) -> float:
    assert ours.shape == theirs.shape
    err = float(np.abs(ours - theirs).max() / np.abs(ours).max())
    assert err < rtol, f"relative max deviation {err:.3g} >= {rtol:g}"
    return err


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_tracin_equals_dattri_and_captum(kind):
    s = _setup(kind)
    ours = get("tracin")(s.traj, s.train, s.target, per_target=True)
    assert np.abs(ours).max() > 0
    _close(ours, peers.dattri_tracin(s)[0], RTOL_F32)
    _close(ours, peers.captum_tracin(s)[0], RTOL_F64)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_grad_dot_equals_dattri(kind):
    s = _setup(kind)
    ours = get("grad_dot")(s.traj, s.train, s.target, per_target=True)
    _close(ours, peers.dattri_tracin(s, grad_dot=True)[0], RTOL_F32)


def test_exact_influence_function_equals_dattri_explicit():
    """Logistic regression with L2: our dense solve at the exact optimum vs dattri's explicit Hessian
    inverse of the batch-mean loss + (α/2)‖θ‖² (dattri's train gradient includes αθ, like our ∇f_j)."""
    from influence.loo import fit_optimum

    s = _setup("logreg")
    opt = fit_optimum(s.model, s.train, s.l2)
    s.theta_eval = opt
    ours = get("influence_function")(None, s.train, s.target, theta=opt, model=s.model, l2=s.l2, per_target=True)
    theirs, _ = peers.dattri_if(s, "explicit")  # already divided by n (our scale)
    _close(ours, theirs, RTOL_F32)


def test_exact_influence_function_equals_dattri_explicit_mlp_with_damping():
    """MLP at θ_T (Hessian indefinite): both add λI = 0.5·I to the full Hessian of the training objective."""
    s = _setup("mlp")
    from dattri.algorithm.influence_function import IFAttributorExplicit
    from dattri.task import AttributionTask

    mod = peers._module(s, s.theta_eval)
    task = AttributionTask(loss_func=peers._functional_loss(s, mod, s.l2), model=mod, checkpoints=peers._state(mod),
                           target_func=peers._functional_loss(s, mod, 0.0))
    X, y = peers._tensors(s, s.train)
    Xt, yt = peers._tensors(s, s.target)
    att = IFAttributorExplicit(task, regularization=0.5)
    att.cache(peers._loader(X, y))
    theirs = att.attribute(peers._loader(X, y), peers._loader(Xt, yt)).detach().double().numpy() / len(y)
    ours = get("influence_function")(s.traj, s.train, s.target, per_target=True, damping=0.5, solver="dense")
    _close(ours, theirs, RTOL_F32)


def test_captum_fast_is_last_layer_weight_only():
    """Finding pinned: Captum's TracInCPFast drops the final layer's bias gradient, so on logistic regression it
    equals our TracIn minus Σ_c η_c ⟨r_j, r_t⟩ (the bias part), not our TracIn."""
    s = _setup("logreg")
    fast, _ = peers.captum_tracin(s, fast=True)
    ours = get("tracin")(s.traj, s.train, s.target, per_target=True)
    X, y = torch.as_tensor(s.train.X), torch.as_tensor(s.train.y)
    Xt, yt = torch.as_tensor(s.target.X), torch.as_tensor(s.target.y)
    bias = np.zeros_like(ours)
    for c, eta in zip(s.checkpoints, s.etas, strict=True):
        th = s.traj.theta_at(int(c))
        r = s.model.output_grad(s.model.logits(th, X), y)
        rt = s.model.output_grad(s.model.logits(th, Xt), yt)
        bias += eta * (r @ rt.T).numpy()
    _close(ours - bias, fast, RTOL_F64)
    assert np.abs(ours - fast).max() > 1e-3 * np.abs(ours).max()


def test_task_b_reports_trajectory_specific_lds_beside_the_multi_seed_one():
    """The trajectory-specific ground truth is the recorded run masked (same θ₀ and batches); with one extra
    seed the multi-seed ground truth differs from it, and both LDS kinds are reported per method."""
    from influence.loo import lds, lds_ground_truth

    s = _setup("mlp")
    s.cfg.update(lds_m=6, lds_frac=0.5, lds_seed=0, lds_seeds=[1, 2], sgd={"batch_size": 12, "epochs": 4, "lr": 0.2})
    gt = peers.ground_truth_b(s)
    np.testing.assert_array_equal(gt["target_losses_traj"], lds_ground_truth(s.traj, s.train, s.target, gt["masks"]))
    assert not np.allclose(gt["target_losses_traj"], gt["target_losses"])
    scores = get("sgd_ie")(s.traj, s.train, s.target)
    res = {"sgd_ie": peers.Attribution("sgd_ie", "ours", scores, None, 0.0, 0.0)}
    row = peers.evaluate_b(res, gt).iloc[0]
    tl = gt["target_losses_traj"].mean(1, keepdims=True)
    assert row["lds_mean_target_traj"] == pytest.approx(lds(scores[:, None], gt["masks"], tl)[0])
    assert np.isfinite(row["lds_mean_target"]) and np.isfinite(row["lds_mean_target_traj"])
