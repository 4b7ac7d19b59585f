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
"""

from __future__ import annotations

import numpy as np

__all__ = ["harmonic", "mean_loss_utility", "mean_loss_shapley", "mean_loss_shapley_mc"]


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
