"""Data value embedding (DVEmb; Wang, Song, Zou, Mittal, Jia, "Capturing the Temporal Dependence of Training Data
Influence", ICLR 2025, arXiv 2412.09538), exact and projection-free.

DVEmb unrolls the recorded SGD run to first order with a Gauss–Newton (empirical-Fisher) curvature. With
η'_t = η_t/|S_t|, per-sample gradients g_i(θ_t) and

    K_t = Π_{k=T−1}^{t+1} (I − η_k H̃_k),   H̃_k = (1/|S_k|) Σ_{i∈S_k} ∇ℓ_i(θ_k)∇ℓ_i(θ_k)ᵀ + α I

(the product runs from the last step back to t + 1; α is the run's L2, absent in the authors' setting),
the embedding of sample j at its step t is DVEmb_t(j) = η'_t K_t ∇f_j(θ_t) and its value for a target
set is ⟨∇L(θ_T), DVEmb_t(j)⟩ — positive when training on j at step t lowers the target loss, the sign of
every score of this package (estimated L(θ^{−j}_T) − L(θ_T)). Summed over all of j's steps it estimates
*all-epoch* removal; restricted to the step of one epoch, *single-epoch* removal (DVEmb's Fig. 3).

The authors (and dattri's ``DVEmbAttributor``) store the embeddings, p numbers per occurrence, and a
p × p matrix M_t = I − K_t, built backwards as M_{t−1} = M_t + Σ_{i∈S_t} DVEmb_t(i) g_iᵀ, which needs a
random projection once p is large. For scores against a target set only ⟨K_tᵀ∇L, ∇f_j⟩ is needed, so here
the adjoint u_t = K_tᵀ∇L(θ_T) runs backwards, u_{t−1} = (I − η_t H̃_t) u_t — one p-vector, exact, no
projection, O(T · |S| · p) time: SGD-IE's backward recursion (:func:`influence.estimators.sgd_ie.sgd_ie`)
with the Hessian replaced by the Gauss–Newton form of DVEmb's Theorem 2. Where the definitions coincide
(α = 0, plain SGD) the scores equal dattri's embeddings dotted with the target gradient (the test suite
checks both this and a naive unrolled product of the K_t).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from influence.autodiff import per_sample_grads
from influence.estimators import prepare, register
from influence.train import Trajectory

__all__ = ["dvemb", "dvemb_params"]

_MAX_PROJ_ENTRIES = 200_000_000  # a dense projection of more entries (1.6 GB in float64) is refused


def _epoch_index(traj: Trajectory, epoch: int | None) -> int | None:
    E = traj.schedule.epochs
    if epoch is None:
        return None
    if not -E <= int(epoch) < E:
        raise ValueError(f"epoch must lie in [-{E}, {E}) for a {E}-epoch run, got {epoch}")
    return int(epoch) % E


def _projection(p: int, proj_dim: int | None, seed: int, dtype: torch.dtype) -> torch.Tensor | None:
    """Gaussian random projection P (k, p) with E[PᵀP] = I (entries N(0, 1/k)); None without projection."""
    if proj_dim is None:
        return None
    k = int(proj_dim)
    if k < 1:
        raise ValueError(f"proj_dim must be >= 1, got {proj_dim}")
    if k * p > _MAX_PROJ_ENTRIES:
        raise ValueError(f"proj_dim={k} with p={p} parameters needs a {k}x{p} dense projection "
                         f"(> {_MAX_PROJ_ENTRIES:.0e} entries); use a smaller proj_dim or none (exact)")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(k, p, generator=g, dtype=dtype) / k**0.5


@register("dvemb", suspicious="low", sgd_only=True)
def dvemb(traj: Trajectory, train_data: Any, target_data: Any, *, epoch: int | None = None,
          proj_dim: int | None = None, proj_seed: int = 0) -> np.ndarray:
    """DVEmb scores of every training sample for the mean target loss (see the module docstring).

    Parameters
    ----------
    traj : run recorded at every step.
    train_data, target_data : ``Dataset`` or (X, y).
    epoch : None (default): all-epoch removal (sum over every step of each sample); an epoch index
        (negative from the end, −1 = the last): single-epoch removal, the value of the sample's
        occurrence in that epoch only.
    proj_dim : None (default, exact) or k: DVEmb's random-projection approximation — every gradient g is
        replaced by Pg with a seeded Gaussian P (k × p, E[PᵀP] = I) and the recursion runs in k
        dimensions (H̃ becomes (1/|S|) Σ Pg (Pg)ᵀ + αI). A dense P, so for models with a few 10⁵
        parameters at most; the exact form needs no projection at all.
    proj_seed : seed of P.

    Returns
    -------
    np.ndarray (n_train,): Σ_t η'_t ⟨u_{t+1}, ∇f_j(θ_t)⟩ over the selected steps t ∋ j.
    """
    X, y, Xt, yt = prepare("dvemb", traj, train_data, target_data, need_all_steps=True)[:4]
    T, spe = traj.n_steps, traj.schedule.steps_per_epoch
    epoch = _epoch_index(traj, epoch)
    model, l2 = traj.model, float(traj.l2)
    dtype = traj.thetas.dtype
    P = _projection(model.n_params, proj_dim, proj_seed, dtype)
    P = None if P is None else P.to(traj.thetas.device)  # drawn on the CPU: the same projection on every device
    u = torch.func.grad(lambda th: model.loss(th, Xt, yt))(traj.thetas[T].detach())
    if P is not None:
        u = P @ u
    scores = np.zeros(X.shape[0])
    lrs = traj.lrs()
    batches = traj.batches()
    for t in range(T - 1, -1, -1):
        S = batches[t]
        G = per_sample_grads(model, traj.thetas[t], X[S], y[S])  # ∇ℓ_i(θ_t), (|S|, p)
        theta = traj.thetas[t]
        if P is not None:
            G, theta = G @ P.T, P @ theta
        eta = float(lrs[t]) / len(S)
        if epoch is None or t // spe == epoch:
            gf = G @ u + (l2 * torch.dot(theta, u) if l2 else 0.0)  # ⟨∇f_j, u_{t+1}⟩
            np.add.at(scores, S, eta * gf.detach().cpu().numpy())
        u = u - eta * (G.T @ (G @ u)) - float(lrs[t]) * l2 * u
    return scores


def dvemb_params(traj: Trajectory, train_data: Any, indices: Any = None, *, epoch: int | None = None) -> np.ndarray:
    """The data value embeddings themselves, summed over the selected occurrences: (len(indices), p).

    Forward form of :func:`dvemb`: E_j = Σ_{t∈O_j} η'_t K_t ∇f_j(θ_t), built as the state
    A_{t+1} = (I − η_t H̃_t) A_t + η'_t 1[t∈O_j] ∇f_j(θ_t), A_0 = 0 (only the samples in ``indices`` are
    propagated, each from its first selected occurrence). ⟨∇ℓ_z(θ_T), E_j⟩ is j's value for any target z
    (per-target scores for DVEmb's protocol) and ⟨∇L(θ_T), E_j⟩ equals ``dvemb(...)[j]``. ``epoch`` as in
    :func:`dvemb` (O_j = j's step in that epoch only).
    """
    X, y = prepare("dvemb", traj, train_data, need_all_steps=True)[:2]
    spe = traj.schedule.steps_per_epoch
    epoch = _epoch_index(traj, epoch)
    model, l2 = traj.model, float(traj.l2)
    dtype = traj.thetas.dtype
    n = X.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n or len(np.unique(idx)) != len(idx)):
        raise ValueError(f"indices must be distinct and lie in [0, {n})")
    row = np.full(n, -1, dtype=np.int64)
    row[idx] = np.arange(len(idx))
    dev = traj.thetas.device
    A = torch.zeros(len(idx), model.n_params, dtype=dtype, device=dev)
    active = torch.zeros(len(idx), dtype=torch.bool, device=dev)
    lrs = traj.lrs()
    for t, S in enumerate(traj.batches()):
        inside = epoch is None or t // spe == epoch
        r = row[S]
        mine = (r >= 0) & inside
        if not bool(active.any()) and not mine.any():
            continue
        G = per_sample_grads(model, traj.thetas[t], X[S], y[S])
        eta = float(lrs[t]) / len(S)
        if bool(active.any()):
            a = torch.nonzero(active).ravel()
            A[a] -= eta * ((A[a] @ G.T) @ G) + float(lrs[t]) * l2 * A[a]
        if mine.any():
            rows = torch.as_tensor(r[mine])
            A[rows] += eta * (G[torch.as_tensor(np.nonzero(mine)[0])] + l2 * traj.thetas[t])
            active[rows] = True
    return A.detach().cpu().numpy()
