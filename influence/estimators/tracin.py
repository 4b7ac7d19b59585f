"""TracIn-CP, Grad-Dot and TracIn self-influence (Pruthi et al., NeurIPS 2020; Charpiat et al., 2019).

All three are sums of per-sample gradient inner products at recorded parameters. For a layered
:class:`~influence.models.Model` (logistic regression, MLPs) they are ghost-factorised per layer,
⟨∇ℓ_i, ∇ℓ_t⟩ = Σ_l ⟨a_i^l, a_t^l⟩⟨b_i^l, b_t^l⟩ (+ the bias term), from one hooked forward/backward pass per
checkpoint over [train; targets] (:mod:`influence.ghost`; the input Gram of the first layer is computed
once for all checkpoints). The reference path — per-sample gradients from :mod:`influence.autodiff`
(closed form for logistic regression, forward-mode ``jvp`` / chunked ``vmap(grad)`` for MLPs) — is kept
for the tests (:func:`_use_ghost`). Neither forms an n × p matrix.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from influence.autodiff import grad_dots, grad_gram, grad_sqnorms, mean_grad, per_sample_grads
from influence.estimators import prepare, register
from influence.ghost import GRAD_IMPLS, GhostPairs, GradKernel, ghost_sqnorms, rows_per_pass
from influence.models import Model
from influence.train import Trajectory

__all__ = ["tracin", "grad_dot", "self_influence", "checkpoint_steps", "target_grad_dots"]

log = logging.getLogger(__name__)


def checkpoint_steps(traj: Trajectory, checkpoints: str | list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checkpoint steps c and their step sizes η_c.

    ``'epoch'``: the end of every epoch, c = k·steps_per_epoch (k = 1..K, the last is T). ``'step'``:
    every step c = 0..T−1. A list: those steps (each in [0, T]). η_c is the step size applied at θ_c,
    ``lrs[c]``, and ``lrs[T−1]`` for c = T (identical for constant schedules).
    """
    T = traj.n_steps
    if isinstance(checkpoints, str):
        if checkpoints == "epoch":
            steps = np.arange(1, traj.schedule.epochs + 1) * traj.schedule.steps_per_epoch
        elif checkpoints == "step":
            steps = np.arange(T)
        else:
            raise ValueError(f"checkpoints must be 'epoch', 'step', 'ideal' or a list of steps, got {checkpoints!r}")
    else:
        steps = np.asarray(checkpoints, dtype=int).ravel()
        if steps.size == 0:
            raise ValueError("the list of checkpoints is empty")
        if steps.min() < 0 or steps.max() > T:
            raise ValueError(f"checkpoint steps must lie in [0, {T}], got {steps.min()}..{steps.max()}")
    missing = np.setdiff1d(steps, traj.steps)
    if missing.size:
        raise ValueError(
            f"the trajectory did not record steps {missing[:5].tolist()}… needed as checkpoints; "
            "train with record='all' or record those steps"
        )
    lrs = traj.lrs()
    return steps, lrs[np.minimum(steps, T - 1)]


def _tensors(traj: Trajectory | None, train_data: Any, target_data: Any) -> tuple:
    X, y, Xt, yt = prepare("TracIn", traj, train_data, target_data)[:4]
    if target_data is None:
        return X, y, None, None
    if Xt.shape[0] == 0:
        raise ValueError("the target set is empty")
    return X, y, Xt, yt


def _use_ghost(model: Any) -> bool:
    """The ghost-factorised path for layered models (every :class:`Model`: stacks of Linear layers); the
    tests switch it off to compare with the per-sample-gradient reference path."""
    return isinstance(model, Model)


def _module(model: Model, theta: torch.Tensor) -> torch.nn.Module:
    """``model.to_module(θ)`` without drawing from the global RNG (nn.Linear initialises its weights
    before θ is copied in), so that the ghost path leaves the caller's random state as the reference did."""
    with torch.random.fork_rng(devices=[]):
        return model.to_module(theta)


def target_grad_dots(model: Model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, Xt: torch.Tensor,
                     yt: torch.Tensor, *, per_target: bool, l2: float = 0.0, chunk: int = 256) -> torch.Tensor:
    """TracIn's inner products at one θ: ⟨∇f_i, ∇ℓ_t⟩ (N, n_t) with ``per_target``, else ⟨∇f_i, ∇L⟩ (N, 1),
    where f_i = ℓ_i + (l2/2)‖θ‖² and L is the mean target loss (no L2). Ghost-factorised for layered models
    (:class:`influence.ghost.GhostPairs`), per-sample gradients otherwise. Also Diff-In's first-order term."""
    if _use_ghost(model):
        pairs = GhostPairs(X, y, Xt, yt, rows=rows_per_pass(model, chunk, Xt.shape[0]), reuse=False)
        module = _module(model, theta)
        return pairs.gram(module, l2=l2) if per_target else pairs.mean_dots(module, l2=l2)[:, None]
    V = per_sample_grads(model, theta, Xt, yt) if per_target else mean_grad(model, theta, Xt, yt)[None]
    return grad_dots(model, theta, X, y, V, l2=l2, chunk=chunk)


def _sum_over(traj: Trajectory, X, y, Xt, yt, steps, etas, per_target: bool, l2: float, chunk: int) -> np.ndarray:
    model = traj.model
    if _use_ghost(model):  # one GhostPairs for all checkpoints: the input Gram is computed once
        pairs = GhostPairs(X, y, Xt, yt, rows=rows_per_pass(model, chunk, Xt.shape[0]), reuse=len(steps) > 1)
        out = torch.zeros((X.shape[0], Xt.shape[0]) if per_target else (X.shape[0],), dtype=traj.thetas.dtype,
                      device=traj.thetas.device)
        for c, eta in zip(steps, etas, strict=True):
            module = _module(model, traj.theta_at(int(c)))
            out.add_(pairs.gram(module, l2=l2) if per_target else pairs.mean_dots(module, l2=l2), alpha=float(eta))
        return out.cpu().numpy()
    out = torch.zeros((X.shape[0], Xt.shape[0]) if per_target else (X.shape[0],), dtype=traj.thetas.dtype,
                      device=traj.thetas.device)
    for c, eta in zip(steps, etas, strict=True):
        theta = traj.theta_at(int(c))
        if per_target:
            out += eta * grad_gram(model, theta, X, y, Xt, yt, l2=l2, chunk=chunk)
        else:
            out += eta * grad_dots(model, theta, X, y, mean_grad(model, theta, Xt, yt), l2=l2, chunk=chunk)
    return out.cpu().numpy()


@register("tracin", suspicious="low")
def tracin(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    *,
    checkpoints: str | list[int] = "epoch",
    per_target: bool = False,
    include_l2: bool = False,
    chunk: int = 256,
    impl: str = "auto",
) -> np.ndarray:
    """TracIn-CP (Pruthi, Liu, Kale, Sundararajan, NeurIPS 2020).

    Parameters
    ----------
    traj : recorded run (its checkpoints must be recorded).
    train_data, target_data : ``Dataset`` or ``(X, y)``.
    checkpoints : ``'epoch'`` (default: end of every epoch), ``'step'`` (every step 0..T−1), a list
        of steps, or ``'ideal'`` (TracIn-ideal: only the steps where j is in the batch, see Notes).
    per_target : return the (n_train, n_target) matrix of per-target-sample scores (for LDS) instead
        of its row mean.
    include_l2 : use ∇f_j = ∇ℓ_j + α θ (the training objective) instead of ∇ℓ_j (TracIn's definition).
    chunk : samples per chunk of per-sample gradients (memory ∝ chunk · p) on the reference path; the
        ghost path runs passes of :func:`influence.ghost.rows_per_pass` rows within that memory.
    impl : ``'auto'`` (default): the ghost path below for layered models, per-sample gradients otherwise.
        ``'fast'`` / ``'per_sample'``: the two implementations of :class:`influence.ghost.GradKernel` that
        Diff-In's target form is also given (``diffin(impl=…)``), for a like-for-like cost comparison (claim
        DIFF-5): per checkpoint the mean target gradient v and one pass ⟨∇ℓ_j, v⟩ over the training rows,
        factorised (one forward and manual backward) resp. from explicit ``vmap(grad)`` per-sample gradients.
        Same scores to float64 rounding; not with ``per_target`` or ``'ideal'``.

    Returns
    -------
    (n_train,) scores, or (n_train, n_target) with ``per_target=True`` (row mean = the scores).

    Notes
    -----
    score_j = Σ_{c∈checkpoints} η_c ⟨∇ℓ(z_j; θ_c), ∇L(θ_c)⟩ with L the mean target loss; per target t
    the matrix entry is Σ_c η_c ⟨∇ℓ(z_j; θ_c), ∇ℓ(z_t; θ_c)⟩. η_c = step size applied at θ_c
    (``lrs[min(c, T−1)]``). With ``checkpoints='ideal'``: score_j = Σ_{t: j∈S_t} (η_t/|S_t|)
    ⟨∇ℓ_j(θ_t), ∇L(θ_t)⟩, the first-order (Hessian-free) counterfactual of the recorded SGD run.

    Sign: removing z_j from a step θ_{t+1} = θ_t − η ∇ℓ_j would change θ_{t+1} by +η∇ℓ_j, which changes
    L by +η⟨∇ℓ_j, ∇L⟩ to first order. So TracIn's sign already is ours (estimated L(θ^{-j}) − L(θ),
    positive = helpful, "proponent"); no conversion.

    Cost (layered models, ghost path): per checkpoint one forward/backward pass over [train; targets] and
    per layer the products ⟨a_j, a_t⟩⟨b_j, b_t⟩ (the first layer's ⟨x_j, x_t⟩ once for all checkpoints).

    References
    ----------
    G. Pruthi, F. Liu, S. Kale, M. Sundararajan. Estimating Training Data Influence by Tracing
    Gradient Descent. NeurIPS 2020.
    """
    X, y, Xt, yt = _tensors(traj, train_data, target_data)
    if Xt is None:
        raise ValueError("tracin needs target data (use self_influence for the self-influence score)")
    l2 = traj.l2 if include_l2 else 0.0
    ideal = isinstance(checkpoints, str) and checkpoints == "ideal"
    if impl != "auto":
        if impl not in GRAD_IMPLS:
            raise ValueError(f"impl must be 'auto' or one of {GRAD_IMPLS}, got {impl!r}")
        if per_target or ideal:
            raise ValueError(f"impl={impl!r} computes the mean-target scores at checkpoints; use impl='auto' for "
                             "per_target or checkpoints='ideal'")
        kernel = GradKernel(traj.model, impl, chunk=chunk)
        steps, etas = checkpoint_steps(traj, checkpoints)
        out = torch.zeros(X.shape[0], dtype=traj.thetas.dtype, device=traj.thetas.device)
        for c, eta in zip(steps, etas, strict=True):
            theta = traj.theta_at(int(c))
            v = kernel.mean_grad(theta, Xt, yt)
            out += float(eta) * kernel.dots(theta, X, y, v[None], l2=l2)[:, 0]
        return out.cpu().numpy()
    if ideal:
        return _tracin_ideal(traj, X, y, Xt, yt, per_target, l2)
    steps, etas = checkpoint_steps(traj, checkpoints)
    return _sum_over(traj, X, y, Xt, yt, steps, etas, per_target, l2, chunk)


def _tracin_ideal(traj: Trajectory, X, y, Xt, yt, per_target: bool, l2: float) -> np.ndarray:
    if len(traj.steps) != traj.n_steps + 1:
        raise ValueError("checkpoints='ideal' needs every step recorded (train with record='all')")
    model = traj.model
    out = torch.zeros((X.shape[0], Xt.shape[0]) if per_target else (X.shape[0],), dtype=traj.thetas.dtype,
                      device=traj.thetas.device)
    ghost = _use_ghost(model)
    K = X.reshape(X.shape[0], -1) @ Xt.reshape(Xt.shape[0], -1).T if ghost else None  # input Gram, once
    for t, (S, eta) in enumerate(zip(traj.batches(), traj.lrs(), strict=True)):
        theta = traj.thetas[t]
        S = torch.as_tensor(S)
        if ghost:
            pairs = GhostPairs(X[S], y[S], Xt, yt, rows=len(S), input_gram=K[S])
            module = _module(model, theta)
            out[S] += (eta / len(S)) * (pairs.gram(module, l2=l2) if per_target else pairs.mean_dots(module, l2=l2))
        elif per_target:
            out[S] += (eta / len(S)) * grad_gram(model, theta, X[S], y[S], Xt, yt, l2=l2)
        else:
            out[S] += (eta / len(S)) * grad_dots(model, theta, X[S], y[S], mean_grad(model, theta, Xt, yt), l2=l2)
    return out.cpu().numpy()


@register("grad_dot", suspicious="low")
def grad_dot(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    *,
    per_target: bool = False,
    include_l2: bool = False,
    chunk: int = 256,
) -> np.ndarray:
    """Grad-Dot (Charpiat, Girard, Felardos, Tarabalka, NeurIPS 2019): score_j = ⟨∇ℓ(z_j; θ_T), ∇L(θ_T)⟩.

    TracIn with the single checkpoint θ_T and **no** step size (the usual definition); multiply by η
    to compare magnitudes with TracIn. Sign as TracIn (ours: positive = helpful). ``per_target``,
    ``include_l2`` and ``chunk`` as in :func:`tracin`.

    References
    ----------
    G. Charpiat, N. Girard, L. Felardos, Y. Tarabalka. Input Similarity from the Neural Network
    Perspective. NeurIPS 2019.
    """
    X, y, Xt, yt = _tensors(traj, train_data, target_data)
    if Xt is None:
        raise ValueError("grad_dot needs target data")
    l2 = traj.l2 if include_l2 else 0.0
    return _sum_over(traj, X, y, Xt, yt, [int(traj.steps[-1])], [1.0], per_target, l2, chunk)


@register("self_influence", suspicious="high")
def self_influence(
    traj: Trajectory,
    train_data: Any,
    target_data: Any = None,
    *,
    checkpoints: str | list[int] = "epoch",
    include_l2: bool = False,
    chunk: int = 256,
) -> np.ndarray:
    """TracIn self-influence: score_j = Σ_c η_c ‖∇ℓ(z_j; θ_c)‖² (Pruthi et al., 2020, §4).

    Parameters
    ----------
    traj, train_data : the run and its training set. ``target_data`` is ignored (accepted for the
        uniform estimator signature).
    checkpoints, include_l2, chunk : as in :func:`tracin` (``'ideal'`` is not offered here).

    Returns
    -------
    (n_train,) non-negative scores.

    Notes
    -----
    This is TracIn with the target being z_j itself, so it keeps our sign convention with that target:
    the estimated rise of z_j's *own* loss when z_j is removed, ℓ_j(θ^{-j}) − ℓ_j(θ) ≥ 0. It is **not**
    an influence on the target set. For noisy-label detection it is used as a suspicion score
    directly: **high self-influence = suspicious** (mislabeled samples keep large gradients), i.e. pass
    ``+scores`` to :func:`influence.metrics.detection` (not ``-scores`` as for target influences).
    """
    X, y, _, _ = _tensors(traj, train_data, None)
    if isinstance(checkpoints, str) and checkpoints == "ideal":
        raise ValueError("self_influence supports checkpoints 'epoch', 'step' or a list, not 'ideal'")
    l2 = traj.l2 if include_l2 else 0.0
    steps, etas = checkpoint_steps(traj, checkpoints)
    out = torch.zeros(X.shape[0], dtype=traj.thetas.dtype, device=traj.thetas.device)
    for c, eta in zip(steps, etas, strict=True):
        theta = traj.theta_at(int(c))
        if _use_ghost(traj.model):
            out += eta * ghost_sqnorms(_module(traj.model, theta), X, y, l2=l2,
                                       rows=rows_per_pass(traj.model, chunk))
        else:
            out += eta * grad_sqnorms(traj.model, theta, X, y, l2=l2, chunk=chunk)
    return out.cpu().numpy()

