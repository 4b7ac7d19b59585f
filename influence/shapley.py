"""Data Shapley of the *mean-loss game*: the Monte-Carlo protocol of the LAI authors' Shapley check, and its
exact closed form.

The LAI authors' trainer (Yang, Huang & Liu 2025, code ``DBC_tpu/mc/ghost_trainer.py``,
``_estimate_first_batch_shapley``) values the n samples of a training batch with the game

    U(S) = (1/|S|) Σ_{i∈S} ℓ_i,   U(∅) = 0,

where ℓ_i is sample i's loss at the current parameters (for a language model: its mean token
cross-entropy, in eval mode). No training step and no validation data enter U: it is the average loss of the
coalition. They estimate its Shapley values by permutation sampling (1000 permutations from
``numpy.random.default_rng(seed)``, the running mean of each prefix, marginal = new mean − previous mean, the
sum of marginals divided by the number of permutations).

Because U is linear in the losses, its Shapley value has a closed form (:func:`mean_loss_shapley`): with
H_n = Σ_{k=1}^n 1/k and L = Σ_j ℓ_j,

    φ_i = (H_n/n) ℓ_i + (1 − H_n)/(n(n−1)) Σ_{j≠i} ℓ_j
        = (n H_n − 1)/(n(n−1)) ℓ_i − (H_n − 1)/(n(n−1)) L,

an increasing affine function of the sample's own loss (the same for every sample of the batch). Within a
batch any score's Pearson correlation with these values is therefore its Pearson correlation with the
per-sample losses, and φ_i ≤ 0 iff ℓ_i ≤ n(H_n − 1)/(n H_n − 1) · mean(ℓ) (0.72 × the batch mean at n = 16).

**The one-step game** (claim LAI-2: per-step Shapley fidelity of LAI and Ghost). For a batch B of k rows, targets
V and step size η, the utility of a coalition S ⊆ B is the target-loss reduction of one SGD step on it,

    U(S) = L_V(θ) − L_V(θ − (η/k) Σ_{i∈S} ∇f_i(θ)),   f_i = ℓ_i + (α/2)‖θ‖²,

for any ``nn.Module`` and per-row loss: :func:`step_shapley_module` (Monte-Carlo permutations in antithetic pairs,
or all k! permutations) and :func:`exact_step_shapley` (all 2^k coalitions). The one implementation: E8
(:mod:`replication.tasks.e8_lm`) calls it on a TinyGPT, :func:`replication.bounds.lai.step_shapley` on
``model.to_module(θ)`` of a layered :class:`~influence.models.Model`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from influence.capture import Loss, row_losses_of

__all__ = ["harmonic", "mean_loss_utility", "mean_loss_shapley", "mean_loss_shapley_mc", "step_shapley_module",
           "exact_step_shapley"]


def harmonic(n: int) -> float:
    """H_n = Σ_{k=1}^n 1/k (H_0 = 0)."""
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return float(sum(1.0 / k for k in range(1, int(n) + 1)))


def _losses(losses: np.ndarray) -> np.ndarray:
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"losses must be a non-empty 1-d array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("losses must be finite")
    return x


def mean_loss_utility(losses: np.ndarray, members: np.ndarray) -> np.ndarray:
    """U(S) = mean_{i∈S} ℓ_i for each 0/1 membership row of ``members`` (c, n); U(∅) = 0. Returns (c,)."""
    x = _losses(losses)
    m = np.atleast_2d(np.asarray(members, dtype=np.float64))
    if m.shape[1] != x.size:
        raise ValueError(f"members must have {x.size} columns (one per sample), got {m.shape[1]}")
    size = m.sum(1)
    return np.divide(m @ x, size, out=np.zeros(len(m)), where=size > 0)


def mean_loss_shapley(losses: np.ndarray) -> np.ndarray:
    """Exact Shapley values of the mean-loss game U(S) = mean_{i∈S} ℓ_i, U(∅) = 0 (see the module doc).

    Parameters
    ----------
    losses : (n,) per-sample losses ℓ_i at the current parameters.

    Returns
    -------
    (n,) float64: φ_i = (n H_n − 1)/(n(n−1)) ℓ_i − (H_n − 1)/(n(n−1)) Σ_j ℓ_j (φ = ℓ for n = 1).

    Notes
    -----
    U = Σ_j ℓ_j u_j with u_j(S) = 1[j ∈ S]/|S|. In u_j, j's marginal contribution to a prefix of size k is
    1/(k+1), k uniform on 0..n−1, so φ_j(u_j) = H_n/n; efficiency (Σ_i φ_i(u_j) = u_j(N) = 1/n) and symmetry
    give φ_i(u_j) = (1 − H_n)/(n(n−1)) for i ≠ j; linearity sums the n games. Σ_i φ_i = mean(ℓ) = U(N).

    References
    ----------
    The game of the LAI authors' Shapley check (Yang, Huang & Liu 2025; their code's
    ``_estimate_first_batch_shapley``); Shapley, "A value for n-person games", 1953.
    """
    x = _losses(losses)
    n = x.size
    if n == 1:
        return x.copy()
    h = harmonic(n)
    return (n * h - 1.0) / (n * (n - 1.0)) * x - (h - 1.0) / (n * (n - 1.0)) * x.sum()


def mean_loss_shapley_mc(losses: np.ndarray, n_permutations: int = 1000, seed: int | None = None) -> np.ndarray:
    """Monte-Carlo permutation Shapley values of the mean-loss game, as the LAI authors estimate them.

    ``n_permutations`` permutations drawn one after another with ``numpy.random.default_rng(seed).permutation``
    (the authors pass their run's seed, so every call uses the same permutations); along each, the running mean
    of the prefix losses, starting from U(∅) = 0; each sample's marginal contribution is the mean after it joins
    minus the mean before; values = sum of marginals / ``n_permutations``. Unbiased for
    :func:`mean_loss_shapley`; satisfies efficiency (Σ_i φ_i = mean ℓ) for every number of permutations.
    """
    x = _losses(losses)
    if isinstance(n_permutations, bool) or int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(x.size) for _ in range(int(n_permutations))])  # (P, n)
    prefix_mean = np.cumsum(x[perms], axis=1) / np.arange(1, x.size + 1)
    marginal = np.diff(prefix_mean, axis=1, prepend=0.0)
    values = np.zeros(x.size)
    np.add.at(values, perms, marginal)  # permutation by permutation, in order
    return values / float(n_permutations)


# ---------------------------------------------------------------------------------------------- one-step game
def _int(name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


class _Utility:
    """U(S) = L_V(θ) − L_V(θ − (η/k) Σ_{i∈S} ∇f_i(θ)), f_i = ℓ_i + (l2/2)‖θ‖², for the k rows (xb, yb) and
    targets (xv, yv), at the module's parameters."""

    def __init__(self, module: nn.Module, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
                 eta: float, chunk: int, l2: float = 0.0, loss: Loss | None = None) -> None:
        if not (isinstance(eta, (int, float)) and eta > 0 and math.isfinite(eta)):
            raise ValueError(f"eta must be a positive number, got {eta!r}")
        if not (isinstance(l2, (int, float)) and l2 >= 0 and math.isfinite(l2)):
            raise ValueError(f"l2 must be a number >= 0, got {l2!r}")
        self.k = int(xb.shape[0])
        if self.k < 2:
            raise ValueError(f"the batch needs at least 2 rows, got {self.k}")
        self.module, self.eta, self.chunk, self.loss = module, float(eta), _int("chunk", chunk), loss
        params = {n: p.detach() for n, p in module.named_parameters()}
        self.names = list(params)
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [params[n].numel() for n in self.names]
        self.theta = torch.cat([params[n].reshape(-1) for n in self.names])
        self.xv, self.yv = xv, yv

        def loss_i(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return row_losses_of(functional_call(module, p, (xi[None],)), yi[None], loss)[0]

        G = vmap(grad(loss_i), in_dims=(None, 0, 0))(params, xb, yb)
        self.G = torch.cat([G[n].reshape(self.k, -1) for n in self.names], 1)  # (k, P) per-sample gradients
        if l2:
            self.G = self.G + l2 * self.theta
        self.base = float(self.loss_v(self.theta))
        self.grad_v = grad(self.loss_v)(self.theta)  # ∇L_V(θ)

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, o = {}, 0
        for n, sh, sz in zip(self.names, self.shapes, self.sizes, strict=True):
            out[n] = flat[o : o + sz].reshape(sh)
            o += sz
        return out

    def loss_v(self, flat: torch.Tensor) -> torch.Tensor:
        return row_losses_of(functional_call(self.module, self._unflatten(flat), (self.xv,)), self.yv,
                             self.loss).mean()

    def of(self, coeffs: torch.Tensor) -> np.ndarray:
        """U of the coalitions given as rows of ``coeffs`` (c, k) (0/1 membership), evaluated ``chunk``
        parameter sets at a time (vmap over functional_call)."""
        out = []
        batched = vmap(self.loss_v)
        with torch.no_grad():
            for s in range(0, coeffs.shape[0], self.chunk):
                thetas = self.theta - (self.eta / self.k) * (coeffs[s : s + self.chunk] @ self.G)
                out.append(batched(thetas))
        return self.base - torch.cat(out).double().cpu().numpy() if out else np.zeros(0)


def step_shapley_module(module: nn.Module, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
                        eta: float, *, n_perm: int = 16, permutations: str = "random", seed: int = 0,
                        chunk: int = 4, l2: float = 0.0, loss: Loss | None = None) -> dict[str, Any]:
    """Monte-Carlo permutation Shapley values of the one-step utility U (see the module doc) for a module.

    ``permutations='random'``: ``n_perm`` (even) permutations in antithetic pairs (π and its reverse) from
    ``default_rng(seed)``; standard errors from the pair means. ``'all'``: every one of the k! permutations
    (k ≤ 8), which is the exact Shapley value (standard error 0). Per permutation the k − 1 proper prefixes are
    evaluated (U(∅) = 0 and U(B) are shared), ``chunk`` parameter sets per vmapped call. ``l2``: the α of
    f_i = ℓ_i + (α/2)‖θ‖² (0: the bare loss); ``loss``: the per-row loss ``loss(outputs, y)`` → (m,) (None: the
    built-in losses). Work in the module's dtype (use float64).

    Returns ``values`` (k,), ``se`` (k,), ``se_permutations`` (k,: the standard error as if the permutations were
    independent, std over permutations / √n), ``n_permutations``, ``utility_full`` U(B), ``first_order``
    (η/k)⟨∇f_i, ∇L_V⟩ (k,), ``ghost_direct`` ⟨∇f_i, ∇L_V⟩ (k,), ``base_loss`` L_V(θ), ``n_evaluations``.
    """
    if permutations not in ("random", "all"):
        raise ValueError(f"permutations must be 'random' or 'all', got {permutations!r}")
    u = _Utility(module, xb, yb, xv, yv, eta, chunk, l2, loss)
    k = u.k
    if permutations == "all":
        if k > 8:
            raise ValueError(f"all permutations of {k} rows is {math.factorial(k)}; use permutations='random'")
        perms = np.array(list(itertools.permutations(range(k))))
    else:
        n_perm = _int("n_perm", n_perm, 2)
        if n_perm % 2:
            raise ValueError(f"n_perm must be even (antithetic pairs), got {n_perm}")
        rng = np.random.default_rng(int(seed))
        half = [rng.permutation(k) for _ in range(n_perm // 2)]
        perms = np.array([p for q in half for p in (q, q[::-1])])
    n = len(perms)
    # coalition of each proper prefix: row r·(k−1) + j holds the first j + 1 members of permutation r
    member = np.zeros((n, k - 1, k))
    for j in range(k - 1):
        member[np.arange(n)[:, None], j, perms[:, : j + 1]] = 1.0
    U = u.of(torch.as_tensor(member.reshape(-1, k), dtype=u.G.dtype, device=u.G.device))
    full = float(u.of(u.G.new_ones(1, k))[0])
    U = np.concatenate([np.zeros((n, 1)), U.reshape(n, k - 1), np.full((n, 1), full)], 1)
    marg = np.zeros((n, k))
    marg[np.arange(n)[:, None], perms] = np.diff(U, axis=1)
    values = marg.mean(0)
    if permutations == "all":
        se = se_perm = np.zeros(k)
    else:
        pairs = marg.reshape(n // 2, 2, k).mean(1)
        se = pairs.std(0, ddof=1) / np.sqrt(len(pairs)) if len(pairs) > 1 else np.full(k, np.nan)
        se_perm = marg.std(0, ddof=1) / np.sqrt(n)
    ghost = (u.G @ u.grad_v).double().cpu().numpy()
    return {"values": values, "se": se, "se_permutations": se_perm, "n_permutations": n, "utility_full": full,
            "first_order": (u.eta / k) * ghost, "base_loss": u.base, "n_evaluations": n * (k - 1) + 1,
            "ghost_direct": ghost}


def exact_step_shapley(module: nn.Module, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor,
                       eta: float, *, chunk: int = 16, l2: float = 0.0, loss: Loss | None = None) -> np.ndarray:
    """Exact Shapley values of the one-step utility U by enumerating all 2^k coalitions (k ≤ 12):
    φ_i = Σ_{S ⊆ B∖{i}} |S|!(k−|S|−1)!/k! (U(S ∪ {i}) − U(S))."""
    k = int(xb.shape[0])
    if k > 12:
        raise ValueError(f"2^{k} coalitions is too many to enumerate; use step_shapley_module")
    u = _Utility(module, xb, yb, xv, yv, eta, chunk, l2, loss)
    masks = np.array([[(s >> i) & 1 for i in range(k)] for s in range(2**k)], dtype=np.float64)
    U = u.of(torch.as_tensor(masks, dtype=u.G.dtype, device=u.G.device))
    size = masks.sum(1).astype(int)
    w = np.array([math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)])
    phi = np.zeros(k)
    for i in range(k):
        without = np.where(masks[:, i] == 0)[0]
        phi[i] = float((w[size[without]] * (U[without + 2**i] - U[without])).sum())
    return phi
