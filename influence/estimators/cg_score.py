"""CG-score — the complexity-gap score (Ki, Choi, Chung, ICLR 2023); training-free.

The score of sample i is the drop of the NTK "data complexity" yᵀH⁻¹y when i is removed,

    C(i) = yᵀH⁻¹y − y₋ᵢᵀ H₋ᵢ⁻¹ y₋ᵢ = (H⁻¹y)ᵢ² / (H⁻¹)ᵢᵢ  ≥ 0,

with H the Gram matrix of the first-layer NTK of a two-layer ReLU network on unit-norm inputs,
H_ij = x̂ᵢᵀx̂ⱼ (π − arccos(x̂ᵢᵀx̂ⱼ)) / (2π) (inner products clipped to [−1, 1], diagonal exactly 1/2), and
labels y ∈ {±1}. The right-hand side is the Schur-complement / block-inverse identity, so one Cholesky
factorisation gives every C(i).

**Direction (not the project's loss-change sign).** CG-score is a *suspicion / irregularity* score:
high = the sample is hard to fit given the others (atypical or likely mislabeled); low = redundant.
Detection ranks by ``+score`` (descending); pruning removes low scores first. The direction is
declared at registration, ``@register("cg_score", suspicious="high")``; estimators that follow the
loss-change convention declare ``"low"`` (the most harmful = most negative). See
:func:`influence.estimators.suspicion`.

Multiclass (the authors' stochastic version, ``mode='stochastic'``): for every class c, all class-c
samples are labelled +1 and ``min(int(n_c · unbalance_ratio), n_other)`` samples drawn at random
(without replacement, seeded) from the other classes are labelled −1 as context; only the class-c
samples are scored in that pass. This is repeated ``rep`` times with fresh negatives and the scores are
averaged, so each sample is scored exactly once per repetition, from its own class's pass.

Binary problems use the exact version by default (``mode='exact'``: one Gram matrix over all samples,
y = ±1; C(i) is invariant to flipping all signs); the stochastic version is available for them too.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import psutil
import scipy.linalg
from scipy.linalg import lapack

from influence.data import as_tensors
from influence.estimators import class_labels, register

__all__ = ["cg_score", "ntk_gram", "complexity_gap", "normalize_rows", "gram_memory_bytes"]

log = logging.getLogger(__name__)

def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Flatten to (n, d) float64 and scale every row to unit L2 norm (error on all-zero rows)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    norms = np.linalg.norm(X, axis=1)
    bad = np.flatnonzero(~(norms > 0) | ~np.isfinite(norms))
    if bad.size:
        raise ValueError(
            f"CG-score needs non-zero finite inputs to normalise; rows {bad[:10].tolist()} "
            f"({bad.size} in all) are zero or non-finite"
        )
    return X / norms[:, None]


def gram_memory_bytes(n: int, d: int, block: int = 1024) -> int:
    """Bytes the exact closed form needs: the n×n float64 Gram matrix (factorised and inverted in
    place), the normalised inputs and the row-block temporaries used to build the Gram matrix."""
    return 8 * (n * n + n * d + 3 * min(block, n) * n + 4 * n)


def ntk_gram(
    X: np.ndarray, *, normalized: bool = False, block: int = 1024, out: np.ndarray | None = None
) -> np.ndarray:
    """Gram matrix of the two-layer ReLU NTK (first layer), float64.

    H_ij = g (π − arccos g) / (2π) with g = clip(x̂ᵢᵀx̂ⱼ, −1, 1) on unit-normalised inputs; diagonal 1/2.
    Built in row blocks of ``block`` rows (into ``out`` when given) so no other n×n temporary exists.

    Notes
    -----
    For w ~ N(0, I) and unit x, x': E[1{wᵀx > 0} 1{wᵀx' > 0}] = (π − arccos xᵀx') / (2π), so H is the
    infinite-width limit of (1/m) Σ_r xᵢᵀxⱼ 1{w_rᵀxᵢ > 0} 1{w_rᵀxⱼ > 0} (Du et al., 2019; Arora et al., 2019).
    """
    Xn = np.asarray(X, dtype=np.float64) if normalized else normalize_rows(X)
    n = Xn.shape[0]
    H = np.empty((n, n), dtype=np.float64) if out is None else out
    if H.shape != (n, n) or H.dtype != np.float64:
        raise ValueError(f"out must be a float64 array of shape ({n}, {n})")
    for s in range(0, n, block):
        g = Xn[s : s + block] @ Xn.T
        np.clip(g, -1.0, 1.0, out=g)
        H[s : s + block] = g * (np.pi - np.arccos(g)) / (2.0 * np.pi)
    np.fill_diagonal(H, 0.5)
    return H


def _factor(H: np.ndarray, ridge: float, min_rcond: float) -> tuple[np.ndarray | None, float]:
    """In-place Cholesky of H + ridge·I; returns (factor or None if not PD / ill-conditioned, rcond)."""
    if ridge:
        H[np.diag_indices_from(H)] += ridge
    anorm = float(np.abs(H).sum(0).max())
    try:
        # H is symmetric: its transpose is the same matrix in Fortran order, which LAPACK factorises in place
        c, _ = scipy.linalg.cho_factor(H.T, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None, 0.0
    rcond, info = lapack.dpocon(c, anorm, uplo="L")
    if info != 0 or not rcond > min_rcond:
        return None, float(rcond)
    return c, float(rcond)


def complexity_gap(
    X: np.ndarray,
    y: np.ndarray,
    *,
    ridge: float = 0.0,
    auto_ridge: bool = True,
    min_rcond: float = 1e-13,
    memory_limit: float | None = None,
    normalized: bool = False,
    block: int = 1024,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Closed-form CG-score of every sample for ±1 labels: C(i) = (H⁻¹y)ᵢ² / (H⁻¹)ᵢᵢ.

    Parameters
    ----------
    X : (n, d) inputs (normalised to unit norm here unless ``normalized``).
    y : (n,) labels in {−1, +1}.
    ridge : λ added to the diagonal of H (0 = none).
    auto_ridge : if H (+ λI) is not numerically positive definite (Cholesky fails or its reciprocal
        condition number is at most ``min_rcond``, e.g. many duplicated inputs), retry with
        λ = 1e-10, 1e-8, …, 1e-2 (times the diagonal 1/2) and log a warning; the λ used is in
        ``info['ridge']``. Without it such a matrix raises ``LinAlgError``.
    min_rcond : smallest acceptable reciprocal condition number (1-norm estimate, LAPACK dpocon).
    memory_limit : bytes allowed for the n×n matrix and temporaries; default 80 % of the available
        memory (psutil). Exceeding it raises ``MemoryError`` before anything is allocated.

    Returns
    -------
    scores : (n,) C(i) ≥ 0 (with a ridge: the same identity for the matrix H + λI).
    info : dict with ``ridge``, ``rcond`` (reciprocal 1-norm condition number of the factorised
        matrix), ``complexity`` = yᵀH⁻¹y, ``n``, ``memory_bytes``.

    Notes
    -----
    Cost: one n²d product, one Cholesky (n³/3), one triangular inverse (dpotri, in place) for the
    diagonal of H⁻¹. Memory: one n×n float64 array (the Gram matrix is overwritten by its factor and
    then by the inverse).
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    Xn = np.asarray(X, dtype=np.float64).reshape(len(X), -1) if normalized else normalize_rows(X)
    n, d = Xn.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if not np.all(np.abs(y) == 1):
        raise ValueError("complexity_gap expects labels in {-1, +1}")
    if ridge < 0 or not math.isfinite(ridge):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge}")
    need = gram_memory_bytes(n, d, block)
    limit = 0.8 * psutil.virtual_memory().available if memory_limit is None else float(memory_limit)
    if need > limit:
        raise MemoryError(
            f"CG-score on n={n} samples needs about {need / 2**30:.2f} GiB (an n×n float64 Gram matrix) but "
            f"only {limit / 2**30:.2f} GiB are allowed/available. Use fewer samples, the per-class stochastic "
            "version (mode='stochastic', which factorises one class-vs-context matrix at a time), or raise "
            "memory_limit on a larger machine."
        )
    H = ntk_gram(Xn, normalized=True, block=block)
    ridges = [ridge] + ([0.5 * 10.0**e for e in range(-10, -1, 2) if 0.5 * 10.0**e > ridge] if auto_ridge else [])
    c, rcond, used = None, 0.0, ridge
    for k, lam in enumerate(ridges):
        if k > 0:  # the failed attempt overwrote H
            ntk_gram(Xn, normalized=True, block=block, out=H)
        c, rcond = _factor(H, lam, min_rcond)
        if c is not None:
            used = lam
            break
    if c is None:
        raise np.linalg.LinAlgError(
            f"the NTK Gram matrix is singular or too ill-conditioned (rcond={rcond:.2e}) even with ridge "
            f"{ridges[-1]:g}; are there many duplicated inputs?"
        )
    if used != ridge:
        log.warning("CG-score: NTK Gram matrix (n=%d) ill-conditioned, added ridge %.1e to its diagonal", n, used)
    alpha = scipy.linalg.cho_solve((c, True), y, check_finite=False)
    inv, info = lapack.dpotri(c, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dpotri failed with info={info}")
    diag = np.diag(inv).copy()
    scores = alpha**2 / diag
    return scores, {"ridge": used, "rcond": rcond, "complexity": float(y @ alpha), "n": n, "memory_bytes": need}


def _labels_and_x(train_data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Inputs as vectors (images are flattened, as the CG-score authors do) and one class label per sample."""
    X, y = as_tensors(train_data)
    y = class_labels(y, "cg_score")
    return X.reshape(X.shape[0], -1).cpu().numpy(), y.cpu().numpy()


@register("cg_score", suspicious="high", needs_run=False)
def cg_score(
    traj: Any,
    train_data: Any,
    target_data: Any = None,
    *,
    mode: str = "auto",
    rep: int = 1,
    unbalance_ratio: float = 1.0,
    seed: int = 0,
    ridge: float = 0.0,
    auto_ridge: bool = True,
    min_rcond: float = 1e-13,
    memory_limit: float | None = None,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """CG-score (complexity-gap score) of every training sample; training-free.

    Parameters
    ----------
    traj : ignored (may be None): the score needs no training run.
    train_data : ``Dataset`` or ``(X, y)``; inputs are flattened and normalised to unit norm in float64.
    target_data : ignored.
    mode : ``'exact'`` (two classes only: one Gram matrix over all samples, y = ±1), ``'stochastic'``
        (the authors' per-class version, see the module docstring) or ``'auto'`` (exact for two
        classes, stochastic otherwise).
    rep : repetitions of the stochastic version (fresh random negatives each time), averaged.
    unbalance_ratio : negatives per positive in each class's pass, ``min(int(n_c · ratio), n_other)``.
    seed : seed of the negative draws.
    ridge, auto_ridge, min_rcond, memory_limit : see :func:`complexity_gap`.
    return_info : also return a dict: ``mode``, ``times`` (how often each sample was scored),
        ``max_ridge`` and, per pass, ``passes`` = list of dicts (``rep``, ``cls``, ``negatives`` (train
        indices drawn as context), ``n_pos``, ``ridge``, ``rcond``, ``complexity``).

    Returns
    -------
    scores : (n,) array, C(i) ≥ 0; **high = irregular / likely mislabeled** (declared ``suspicious="high"``).
        This is *not* the project's loss-change sign convention.

    Notes
    -----
    C(i) = yᵀH⁻¹y − y₋ᵢᵀH₋ᵢ⁻¹y₋ᵢ = (H⁻¹y)ᵢ²/(H⁻¹)ᵢᵢ with H the two-layer ReLU NTK Gram matrix
    (:func:`ntk_gram`). For mutually orthogonal inputs H = I/2 and C(i) = 2 for every i. For two inputs
    with Gram entry h: C = 2(1/2 − h)/(1/2 + h) if their labels agree, 2(1/2 + h)/(1/2 − h) if not.
    In the lazy (NTK) regime, yᵀH⁻¹y is the squared distance ‖W_T − W_0‖²_F that gradient descent moves
    the first-layer weights to fit y, and C(i) is the reduction of that distance when i is left out
    (checked numerically by :func:`replication.bounds.cgscore.check_movement_identity`).

    References
    ----------
    Ki, Choi, Chung. "Data valuation without training of a model". ICLR 2023 (code: JJchy/CG_score).
    Arora, Du, Hu, Li, Wang. "Fine-grained analysis of optimization and generalization for
    overparameterized two-layer neural networks". ICML 2019.
    """
    X, y = _labels_and_x(train_data)
    n = len(y)
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError("CG-score needs at least two classes in the training labels")
    if mode == "auto":
        mode = "exact" if classes.size == 2 else "stochastic"
    if mode not in ("exact", "stochastic"):
        raise ValueError(f"mode must be 'auto', 'exact' or 'stochastic', got {mode!r}")
    if int(rep) != rep or rep < 1:
        raise ValueError(f"rep must be a positive integer, got {rep}")
    if not (unbalance_ratio > 0 and math.isfinite(unbalance_ratio)):
        raise ValueError(f"unbalance_ratio must be a positive number, got {unbalance_ratio}")
    Xn = normalize_rows(X)
    kw = {"ridge": ridge, "auto_ridge": auto_ridge, "min_rcond": min_rcond, "memory_limit": memory_limit,
          "normalized": True}
    passes: list[dict[str, Any]] = []
    if mode == "exact":
        if classes.size != 2:
            raise ValueError(
                f"mode='exact' needs two classes, got {classes.size}; use mode='stochastic' for multiclass data"
            )
        s, info = complexity_gap(Xn, np.where(y == classes[1], 1.0, -1.0), **kw)
        passes.append({"rep": 0, "cls": None, "negatives": [], "n_pos": n, **info})
        scores, times = s, np.ones(n)
    else:
        rng = np.random.default_rng(seed)
        total, times = np.zeros(n), np.zeros(n)
        for r in range(int(rep)):
            for c in classes:
                pos = np.flatnonzero(y == c)
                other = np.flatnonzero(y != c)
                n_neg = min(int(len(pos) * unbalance_ratio), len(other))
                neg = np.sort(rng.choice(other, n_neg, replace=False))
                sel = np.concatenate([pos, neg])
                lab = np.concatenate([np.ones(len(pos)), -np.ones(n_neg)])
                s, info = complexity_gap(Xn[sel], lab, **kw)
                total[pos] += s[: len(pos)]
                times[pos] += 1
                passes.append({"rep": r, "cls": int(c), "negatives": neg.tolist(), "n_pos": len(pos), **info})
        scores = total / times
    if not return_info:
        return scores
    return scores, {
        "mode": mode,
        "times": times,
        "passes": passes,
        "max_ridge": max(p["ridge"] for p in passes),
    }

