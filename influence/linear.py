"""Closed forms of (binary and multinomial) logistic regression, written down once.

Like scikit-learn's ``LinearModelLoss``: every closed-form gradient, curvature and Hessian of a linear
model in this library is built from the functions here (``Model.batch_grad``,
``autodiff.dense_hessian`` and the other linear branches of :mod:`influence.autodiff`, SGD-IE's
per-step contraction, the fixed-Hessian LOO-to-optimum).

Layout
------
o = ``n_out`` logits (1 for binary problems, C otherwise), d features. The flat parameter vector of
:class:`~influence.models.Model` is the ``nn.Linear`` layout

    θ = [vec W (o × d, row-major), b (o)],     z_i = W x_i + b.

With augmented inputs x̃ = [x, 1] the same model is z_i = Θ̃ x̃_i with Θ̃ = [W, b] ∈ R^{o × (d+1)}
(the *internal* layout, vec Θ̃ row-major: for each class c its weights then its bias). Binary models
(o = 1) have identical flat and internal layouts. :func:`internal_order` maps one to the other.

Derivatives of the per-sample loss ℓ with respect to the logits
---------------------------------------------------------------
r_i = ∂ℓ/∂z_i = σ(z_i) − y_i (binary) or softmax(z_i) − onehot(y_i)   (``Model.output_grad``),
A_i = ∂²ℓ/∂z_i² = σ(z_i)(1 − σ(z_i)) (binary) or diag(p_i) − p_i p_iᵀ, p_i = softmax(z_i).

Then ∇_θ ℓ_i = r_i ⊗ x̃_i and ∇²_θ ℓ_i = A_i ⊗ x̃_i x̃_iᵀ (internal layout); with J_i = ∂z_i/∂θ,
J_i v = V x_i + b_v for v = [vec V, b_v] and J_iᵀ s = [s x_iᵀ, s].
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "augment",
    "internal_order",
    "flat_order",
    "sigmoid_curvature",
    "logit_hessian",
    "jvp",
    "jt",
    "per_sample",
    "hessian",
]


def augment(X: torch.Tensor) -> torch.Tensor:
    """x̃ = [x, 1] for every row, (m, d + 1)."""
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)


def internal_order(n_features: int, n_out: int) -> np.ndarray:
    """Permutation ``perm`` with ``internal = flat[perm]``: rows [W_c, b_c] of Θ̃, (o (d + 1),)."""
    o, d = n_out, n_features
    perm = np.empty((o, d + 1), dtype=np.int64)
    perm[:, :d] = np.arange(o * d).reshape(o, d)
    perm[:, d] = o * d + np.arange(o)
    return perm.ravel()


def flat_order(n_features: int, n_out: int) -> np.ndarray:
    """Inverse of :func:`internal_order`: ``flat = internal[perm]``."""
    return np.argsort(internal_order(n_features, n_out))


def sigmoid_curvature(z: torch.Tensor) -> torch.Tensor:
    """σ(z)(1 − σ(z)) elementwise: the binary logistic loss's second derivative in its logit."""
    s = torch.sigmoid(z)
    return s * (1 - s)


def logit_hessian(z: torch.Tensor) -> torch.Tensor:
    """A_i = ∂²ℓ/∂z_i² per row of the logits z (m, o): (m, o, o); o = 1 is the binary logistic loss."""
    if z.shape[-1] == 1:
        return sigmoid_curvature(z)[:, :, None]
    p = torch.softmax(z, -1)
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def jvp(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Logits (= J_i v, the logits being linear in θ) of k parameter sets W (k, o, d), b (k, o) on the rows
    of X (m, d): (k, m, o)."""
    return torch.einsum("md,kod->kmo", X, W) + b[:, None, :]


def jt(S: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Σ_i J_iᵀ s_i for k sets of logit-space vectors S (k, m, o): flat-layout (k, p)."""
    gW = torch.einsum("kmo,md->kod", S, X)
    return torch.cat([gW.reshape(S.shape[0], -1), S.sum(1)], dim=1)


def per_sample(S: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Rows J_iᵀ s_i for S (m, o), e.g. per-sample gradients for S = r: flat-layout (m, p)."""
    gW = S[:, :, None] * X[:, None, :]
    return torch.cat([gW.reshape(X.shape[0], -1), S], dim=1)


def hessian(Xa: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Σ_i A_i ⊗ x̃_i x̃_iᵀ, the summed (not averaged) loss Hessian, in the **flat** layout, (p, p).

    ``Xa`` are augmented inputs (:func:`augment`), ``z`` (m, o) the logits. Binary: X̃ᵀ diag(σ(1−σ)) X̃.
    Multinomial: built in the internal layout, [diag(p_c) blocks] − M Mᵀ with M_i = p_i ⊗ x̃_i, then
    permuted to the flat one.
    """
    m, o = z.shape
    if o == 1:
        return Xa.T @ (Xa * sigmoid_curvature(z[:, 0])[:, None])
    d1 = Xa.shape[1]
    P = torch.softmax(z, -1)  # (m, o)
    M = (P[:, :, None] * Xa[:, None, :]).reshape(m, o * d1)
    Ht = -(M.T @ M)
    for c in range(o):
        blk = slice(c * d1, (c + 1) * d1)
        Ht[blk, blk] += Xa.T @ (Xa * P[:, c : c + 1])
    perm = torch.as_tensor(flat_order(d1 - 1, o))
    return Ht[perm][:, perm]
