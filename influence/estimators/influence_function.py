"""Influence functions (Koh & Liang, ICML 2017): exact dense solve, conjugate gradient, LiSSA."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from influence.autodiff import (
    dense_hessian,
    grad_dots,
    loss_hvp,
    mean_grad,
    per_sample_grads,
    top_eigenvalue,
)
from influence.data import as_tensors
from influence.estimators import register
from influence.models import Model
from influence.train import Trajectory

__all__ = ["influence_function", "conjugate_gradient", "lissa", "default_damping"]

log = logging.getLogger(__name__)

SOLVERS = ("auto", "dense", "cg", "lissa")
DENSE_MAX_P = 4000


def default_damping(model: Model, l2: float, hvp: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    seed: int = 0, like: torch.Tensor | None = None) -> float:
    """λ used when ``damping=None``.

    Logistic regression: 0 with L2 > 0 (H is positive definite), 1e-3 without L2. MLPs: 1e-2 plus the
    shift that makes H + λI positive definite, max(0, −λ_min(H)), with λ_min estimated by power
    iteration (on λ_max·I − H) when ``hvp`` (v ↦ Hv) is given. The Hessian of an MLP at θ_T is often
    indefinite, and CG needs a positive definite system.
    """
    if model.is_linear:
        return 0.0 if l2 > 0 else 1e-3
    if hvp is None:
        return 1e-2
    p = model.n_params
    where = {} if like is None else {"dtype": like.dtype, "device": like.device}  # power iteration in θ's dtype, device
    lam_max = top_eigenvalue(hvp, p, iters=300, tol=1e-7, seed=seed, **where)
    shift = abs(lam_max)
    lam_min = shift - top_eigenvalue(lambda v: shift * v - hvp(v), p, iters=300, tol=1e-7, seed=seed + 1, **where)
    lam = 1e-2 + max(0.0, -lam_min) * 1.01
    log.info("influence_function: MLP Hessian eigenvalues in [%.4g, %.4g]; damping λ = %.4g", lam_min, lam_max, lam)
    return lam


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], B: torch.Tensor, *, tol: float = 1e-10, maxiter: int | None = None
) -> torch.Tensor:
    """Solve A X = B for a symmetric positive definite operator A, all columns at once.

    ``matvec`` maps (k, p) → (k, p) (rows are vectors); B is (k, p). Each row runs its own CG
    recursion (own step sizes); stops when every residual satisfies ‖r‖ ≤ tol·‖b‖ or after
    ``maxiter`` (default 2p) iterations, logging a warning then. Non-positive curvature pᵀAp ≤ 0
    (A not positive definite: increase the damping) raises a ``ValueError``.
    """
    X = torch.zeros_like(B)
    R = B.clone()
    P = R.clone()
    rs = (R * R).sum(1)
    bn = B.norm(dim=1)
    maxiter = 2 * B.shape[1] if maxiter is None else int(maxiter)
    active = rs.sqrt() > tol * bn
    for _ in range(maxiter):
        if not bool(active.any()):
            return X
        AP = matvec(P)
        pap = (P * AP).sum(1)
        if bool((pap[active] <= 0).any()):
            raise ValueError("conjugate gradient met non-positive curvature: H + λI is not positive definite; "
                             "increase the damping λ")
        alpha = torch.where(active, rs / torch.where(active, pap, torch.ones_like(pap)), torch.zeros_like(rs))
        X = X + alpha[:, None] * P
        R = R - alpha[:, None] * AP
        rs_new = (R * R).sum(1)
        beta = torch.where(active, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        P = R + beta[:, None] * P
        rs = rs_new
        active = rs.sqrt() > tol * bn
    if bool(active.any()):
        log.warning("CG stopped after %d iterations; max relative residual %.2e", maxiter,
                    float((rs.sqrt() / bn.clamp_min(1e-300)).max()))
    return X


def lissa(
    batch_hvp: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    B: torch.Tensor,
    n: int,
    *,
    damping: float,
    scale: float,
    depth: int = 1000,
    batch_size: int = 128,
    repeats: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """LiSSA (Agarwal, Bullins, Hazan 2017) estimate of (H + λI)⁻¹ B, rows of B (k, p).

    h₀ = b, h_j = b + (I − (H_{S_j} + λI)/s) h_{j−1} with a fresh random batch S_j of the n training
    samples per iteration; estimate h_depth / s, averaged over ``repeats``. Converges if s exceeds
    the largest eigenvalue of H + λI.
    """
    rng = np.random.default_rng(seed)
    out = torch.zeros_like(B)
    for _ in range(int(repeats)):
        h = B.clone()
        for _ in range(int(depth)):
            S = rng.choice(n, min(batch_size, n), replace=False)
            h = B + h - (batch_hvp(h, S) + damping * h) / scale
        out += h / scale
    return out / repeats


@register("influence_function", suspicious="low", needs_run=False)
def influence_function(
    traj: Trajectory | None,
    train_data: Any,
    target_data: Any,
    *,
    theta: torch.Tensor | None = None,
    model: Model | None = None,
    l2: float | None = None,
    damping: float | None = None,
    solver: str = "auto",
    per_target: bool = False,
    cg_tol: float = 1e-10,
    cg_maxiter: int | None = None,
    lissa_depth: int = 1000,
    lissa_batch: int = 128,
    lissa_scale: float | None = None,
    lissa_repeats: int = 1,
    seed: int = 0,
    chunk: int = 256,
) -> np.ndarray:
    """Influence function of removing each training sample (Koh & Liang, ICML 2017).

    Parameters
    ----------
    traj : recorded run; θ = its final parameters, model and α from it. May be None if ``theta``,
        ``model`` and ``l2`` are given (e.g. θ = the exact optimum from :func:`influence.loo.fit_optimum`).
    train_data, target_data : ``Dataset`` or ``(X, y)``.
    theta, model, l2 : override the run's final θ, its model and its L2 coefficient α.
    damping : λ added to H (default :func:`default_damping`: 0 for L2-logistic regression, 1e-3 for
        logistic regression without L2; for MLPs 1e-2 plus the shift −λ_min(H) if H is indefinite).
    solver : ``'dense'`` (closed-form Hessian for logistic regression, ``torch.func.hessian`` for MLPs,
        then Cholesky, float64), ``'cg'`` (conjugate gradient with exact HVPs), ``'lissa'``
        (stochastic, see :func:`lissa`), or ``'auto'`` (dense for logistic regression with p ≤ 4000,
        CG otherwise).
    per_target : return the (n_train, n_target) matrix of per-target-sample scores (row mean = scores).
    cg_tol, cg_maxiter : CG stopping rule (relative residual, iterations; default 2p).
    lissa_depth, lissa_batch, lissa_scale, lissa_repeats, seed : LiSSA recursion length, HVP batch
        size, scale s (default 1.5 × top eigenvalue of H + λI by power iteration), repetitions, seed.
    chunk : samples per chunk of per-sample gradients.

    Returns
    -------
    (n_train,) scores, or (n_train, n_target).

    Notes
    -----
    score_j = (1/n) ∇L(θ)ᵀ (H + λI)⁻¹ ∇f_j(θ), with H = ∇² (1/n) Σ_{i=1}^n f_i(θ) the Hessian of the
    training objective over all n training samples (L2 included), f_j = ℓ_j + (α/2)‖θ‖² and L the mean
    target loss (no L2). Removing j from the objective (1/n) Σ_i f_i moves its minimiser by
    θ^{-j} − θ ≈ (1/n)(H + λI)⁻¹ ∇f_j, so the score estimates L(θ^{-j}) − L(θ): our sign convention
    (Koh & Liang's I_up,loss = −∇Lᵀ H⁻¹ ∇ℓ_j is the effect of *up-weighting*, the opposite sign, and
    lacks the 1/n). The formula assumes θ is a minimiser; at a trajectory's θ_T it is an
    approximation. Cost of the dense path for logistic regression: one n·p² Hessian build, one p³/3
    Cholesky, one closed-form pass of per-sample gradient dot products.

    References
    ----------
    P. W. Koh, P. Liang. Understanding Black-box Predictions via Influence Functions. ICML 2017.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if traj is None and (theta is None or model is None or l2 is None):
        raise ValueError("influence_function needs traj, or all of theta=, model= and l2=")
    model = traj.model if model is None else model
    l2 = traj.l2 if l2 is None else float(l2)
    theta = (traj.final if theta is None else theta).detach()
    dtype = theta.dtype
    X, y = as_tensors(train_data, dtype)
    Xt, yt = as_tensors(target_data, dtype)
    if theta.shape != (model.n_params,):
        raise ValueError(f"theta must have shape ({model.n_params},), got {tuple(theta.shape)}")
    if Xt.shape[0] == 0:
        raise ValueError("the target set is empty")
    if damping is None:
        Xd, yd = as_tensors(train_data, dtype)
        lam = default_damping(model, l2, lambda v: loss_hvp(model, theta, Xd, yd, v, l2=l2), seed, like=theta)
    else:
        lam = float(damping)
    if lam < 0:
        raise ValueError(f"damping must be >= 0, got {lam}")
    n, p = X.shape[0], model.n_params
    if solver == "auto":
        solver = "dense" if model.is_linear and p <= DENSE_MAX_P else "cg"

    # right-hand sides: ∇L (1, p) or the per-target gradients (n_target, p)
    Bt = per_sample_grads(model, theta, Xt, yt) if per_target else mean_grad(model, theta, Xt, yt)[None]

    if solver == "dense":
        H = dense_hessian(model, theta, X, y, l2=l2)
        H.diagonal().add_(lam)
        Lc, info = torch.linalg.cholesky_ex(H)
        if int(info) != 0:
            raise ValueError(
                f"H + λI is not positive definite (λ = {lam:g}); increase the damping or add L2 to the run"
            )
        S = torch.cholesky_solve(Bt.T, Lc).T  # (k, p)
    elif solver == "cg":
        for attempt in range(4):
            try:
                S = conjugate_gradient(lambda V, lam=lam: loss_hvp(model, theta, X, y, V, l2=l2) + lam * V, Bt,
                                       tol=cg_tol, maxiter=cg_maxiter)
                break
            except ValueError:
                # power iteration can underestimate how negative λ_min is (slow convergence when the
                # spectrum's low end is crowded); with the *default* damping, grow it and say so
                if damping is not None or attempt == 3:
                    raise
                lam = 10 * lam
                log.warning("influence_function: CG met non-positive curvature; default damping raised to %.4g",
                            lam)
    else:
        if lissa_scale is None:
            top = top_eigenvalue(lambda v: loss_hvp(model, theta, X, y, v, l2=l2), p, iters=100, seed=seed,
                                 dtype=theta.dtype, device=theta.device)
            lissa_scale = 1.5 * (abs(top) + lam)
        S = lissa(lambda V, idx: loss_hvp(model, theta, X[idx], y[idx], V, l2=l2), Bt, n, damping=lam,
                  scale=float(lissa_scale), depth=lissa_depth, batch_size=lissa_batch, repeats=lissa_repeats,
                  seed=seed)
    out = grad_dots(model, theta, X, y, S, l2=l2, chunk=chunk) / n  # (n, k)
    return (out if per_target else out[:, 0]).cpu().numpy()
