"""Data value embedding (DVEmb; Wang, Mittal, Song, Jia, ICLR 2025, arXiv 2412.09538), exact and projection-free.

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
from influence.data import as_tensors
from influence.estimators import register
from influence.train import Trajectory

__all__ = ["dvemb"]


@register("dvemb", suspicious="low")
def dvemb(traj: Trajectory, train_data: Any, target_data: Any, *, epoch: int | None = None) -> np.ndarray:
    """DVEmb scores of every training sample for the mean target loss (see the module docstring).

    Parameters
    ----------
    traj : run recorded at every step.
    train_data, target_data : ``Dataset`` or (X, y).
    epoch : None (default): all-epoch removal (sum over every step of each sample); an epoch index
        (negative from the end, −1 = the last): single-epoch removal, the value of the sample's
        occurrence in that epoch only.

    Returns
    -------
    np.ndarray (n_train,): Σ_t η'_t ⟨u_{t+1}, ∇f_j(θ_t)⟩ over the selected steps t ∋ j.
    """
    T = traj.n_steps
    if traj.thetas.ndim != 2 or len(traj.steps) != T + 1:
        raise ValueError("dvemb needs a single run recorded at every step (train(..., record='all'))")
    E, spe = traj.schedule.epochs, traj.schedule.steps_per_epoch
    if epoch is not None:
        if not -E <= int(epoch) < E:
            raise ValueError(f"epoch must lie in [-{E}, {E}) for a {E}-epoch run, got {epoch}")
        epoch = int(epoch) % E
    model, l2 = traj.model, float(traj.l2)
    dtype = traj.thetas.dtype
    X, y = as_tensors(train_data, dtype)
    Xt, yt = as_tensors(target_data, dtype)
    u = torch.func.grad(lambda th: model.loss(th, Xt, yt))(traj.thetas[T].detach())
    scores = np.zeros(X.shape[0])
    lrs = traj.lrs()
    batches = traj.batches()
    for t in range(T - 1, -1, -1):
        S = batches[t]
        G = per_sample_grads(model, traj.thetas[t], X[S], y[S])  # ∇ℓ_i(θ_t), (|S|, p)
        eta = float(lrs[t]) / len(S)
        if epoch is None or t // spe == epoch:
            gf = G @ u + (l2 * torch.dot(traj.thetas[t], u) if l2 else 0.0)  # ⟨∇f_j, u_{t+1}⟩
            np.add.at(scores, S, eta * gf.detach().cpu().numpy())
        u = u - eta * (G.T @ (G @ u)) - float(lrs[t]) * l2 * u
    return scores
