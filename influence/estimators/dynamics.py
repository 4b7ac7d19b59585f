"""Training-dynamics baselines: final loss, EL2N, GraNd, forgetting events, random.

These are *difficulty / suspicion* scores, not loss-change estimates: **high = hard, atypical or
likely mislabeled**. Each is registered with ``suspicious="high"`` ("rank by +score, descending, to
find suspicious samples"). Estimators that follow the project's loss-change sign (positive = helpful)
are registered with ``suspicious="low"`` and ranked by −score (most harmful first); see
:func:`influence.estimators.suspicion`.

=============  ============================================================================  =========
name           score of training sample i                                                     needs
=============  ============================================================================  =========
``loss``       ℓ(zᵢ; θ) at the end of training (or at ``epoch``)                               θ_T
``el2n``       ‖softmax(f(xᵢ; θ_e)) − onehot(yᵢ)‖₂ at an early epoch e (mean over runs)        θ_e
``grand``      ‖∇_θ ℓ(zᵢ; θ_e)‖₂ at an early epoch e (mean over runs), via vmap(grad)           θ_e
``forgetting`` number of correct → incorrect transitions between consecutive presentations    per-step
               of i in the minibatches (Toneva et al.); never-learned samples get K (epochs)  correctness
``random``     U(0, 1), seeded                                                                 nothing
=============  ============================================================================  =========

Pruning removes the *lowest* scores first (easy samples: Paul et al.; unforgettable samples:
Toneva et al.), the same rule as for the CG-score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from influence.data import as_tensors
from influence.estimators import class_labels, register
from influence.models import Model
from influence.train import StepInfo, Trajectory

__all__ = [
    "final_loss",
    "el2n",
    "grand",
    "forgetting",
    "random_scores",
    "forgetting_counts",
    "forgetting_callback",
    "batch_correctness",
    "early_step",
]


# ----------------------------------------------------------------------------------------- helpers
def _need_traj(traj: Trajectory | None, name: str) -> Trajectory:
    if traj is None:
        raise ValueError(f"{name} needs a recorded training run (traj), got None")
    return traj


def early_step(traj: Trajectory, epoch: int | None) -> int:
    """The step at the end of ``epoch`` (``epoch * steps_per_epoch``); ``None`` = the early epoch
    ``ceil(0.1 · K)`` (10 % of training, as EL2N's "epoch 20 of 200"), ``0`` = initialisation."""
    K = traj.schedule.epochs
    if epoch is None:
        epoch = max(1, math.ceil(0.1 * K))
    if int(epoch) != epoch or not 0 <= epoch <= K:
        raise ValueError(f"epoch must be an integer in [0, {K}], got {epoch}")
    return int(epoch) * traj.schedule.steps_per_epoch


def _theta(traj: Trajectory, step: int, name: str) -> torch.Tensor:
    try:
        return traj.theta_at(step)
    except KeyError:
        raise ValueError(
            f"{name} needs θ at step {step}, which this trajectory did not record; train with "
            f"record='all' or record=[..., {step}, ...]"
        ) from None


def _runs(traj: Trajectory, trajectories: Sequence[Trajectory] | None) -> list[Trajectory]:
    runs = [traj, *(trajectories or [])]
    for r in runs[1:]:
        if r.model != traj.model or r.schedule.n != traj.schedule.n:
            raise ValueError("all trajectories must share the model and the training set size")
    return runs


def _probs_two_class(model: Model, z: torch.Tensor) -> torch.Tensor:
    if z.shape[-1] == 1:
        p1 = torch.sigmoid(z[:, 0])
        return torch.stack([1 - p1, p1], dim=1)
    return torch.softmax(z, dim=1)


# ---------------------------------------------------------------------------------------- estimators
@register("loss", suspicious="high", renamed="`loss` names loss values throughout the code")
def final_loss(
    traj: Trajectory | None, train_data: Any, target_data: Any = None, *, epoch: int | None = None
) -> np.ndarray:
    """Per-sample training loss ℓ(zᵢ; θ) at the end of training (``epoch=None``) or at ``epoch``.

    Returns
    -------
    (n,) losses (no L2). Suspicious direction: **high** (declared at registration).
    """
    traj = _need_traj(traj, "loss")
    X, y = as_tensors(train_data, traj.thetas.dtype)
    theta = traj.final if epoch is None else _theta(traj, early_step(traj, epoch), "loss")
    with torch.no_grad():
        return traj.model.losses(theta, X, y).double().cpu().numpy()


@register("el2n", suspicious="high")
def el2n(
    traj: Trajectory | None,
    train_data: Any,
    target_data: Any = None,
    *,
    epoch: int | None = None,
    trajectories: Sequence[Trajectory] | None = None,
) -> np.ndarray:
    """EL2N score (Paul, Ganguli, Dziugaite, NeurIPS 2021): ‖p(xᵢ; θ_e) − onehot(yᵢ)‖₂.

    Parameters
    ----------
    epoch : early epoch e; θ_e = θ at step e · steps_per_epoch (default ``ceil(0.1 K)``, see
        :func:`early_step`).
    trajectories : further runs (other seeds, same data and schedule length) to average over.

    Returns
    -------
    (n,) scores in [0, √2]. For one-logit binary models p = (1 − σ(z), σ(z)), so the score is
    √2 |σ(z) − y|. Suspicious direction: **high** (declared at registration).
    """
    traj = _need_traj(traj, "el2n")
    X, y = as_tensors(train_data, traj.thetas.dtype, traj.thetas.device)
    y = class_labels(y, "el2n")
    out = np.zeros(len(y))
    runs = _runs(traj, trajectories)
    for r in runs:
        theta = _theta(r, early_step(r, epoch), "el2n")
        with torch.no_grad():
            p = _probs_two_class(r.model, r.model.logits(theta, X))
            out += torch.linalg.vector_norm(p - F.one_hot(y, p.shape[1]).to(p.dtype), dim=1).double().cpu().numpy()
    return out / len(runs)


@register("grand", suspicious="high")
def grand(
    traj: Trajectory | None,
    train_data: Any,
    target_data: Any = None,
    *,
    epoch: int | None = None,
    trajectories: Sequence[Trajectory] | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """GraNd score (Paul et al., NeurIPS 2021): ‖∇_θ ℓ(zᵢ; θ_e)‖₂, the per-sample loss-gradient norm.

    Parameters
    ----------
    epoch : as in :func:`el2n` (``epoch=0`` = at initialisation, the paper's main variant).
    trajectories : further runs to average over.
    chunk : samples per ``vmap(grad)`` call (memory: chunk × p floats).

    Returns
    -------
    (n,) gradient norms over all parameters (no L2 term). Suspicious direction: **high**.
    """
    traj = _need_traj(traj, "grand")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    X, y = as_tensors(train_data, traj.thetas.dtype)
    runs = _runs(traj, trajectories)
    out = np.zeros(len(y))
    for r in runs:
        model = r.model
        theta = _theta(r, early_step(r, epoch), "grand")

        def one(th: torch.Tensor, x: torch.Tensor, t: torch.Tensor, model: Model = model) -> torch.Tensor:
            return model.losses(th, x[None], t[None])[0]

        g = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))
        for s in range(0, len(y), chunk):
            gs = g(theta, X[s : s + chunk], y[s : s + chunk])
            out[s : s + chunk] += torch.linalg.vector_norm(gs, dim=1).double().cpu().numpy()
    return out / len(runs)


def forgetting_counts(
    batches: Sequence[np.ndarray], correct: Sequence[np.ndarray], n: int, *, never_learned: float | None = None
) -> np.ndarray:
    """Forgetting events per sample from the per-step correctness of each minibatch (Toneva et al.).

    Parameters
    ----------
    batches : index arrays S_0 … S_{T−1} in training order.
    correct : boolean arrays, ``correct[t][k]`` = sample ``batches[t][k]`` was classified correctly at
        θ_t (the parameters the step's forward pass used).
    n : number of training samples.
    never_learned : count given to samples never classified correctly at any presentation (Toneva et
        al. rank them as the most forgettable); default: the largest number of presentations of any
        sample (K for a K-epoch run), which exceeds every achievable count (at most ⌊K/2⌋).

    Returns
    -------
    (n,) float counts of transitions correct → incorrect between consecutive presentations (the state
    before the first presentation is "incorrect", so learning never counts as forgetting).
    """
    if len(batches) != len(correct):
        raise ValueError(f"{len(batches)} batches but {len(correct)} correctness arrays")
    if not batches:
        raise ValueError("no steps to count forgetting events from")
    idx = np.concatenate([np.asarray(b, dtype=np.int64) for b in batches])
    cor = np.concatenate([np.asarray(c, dtype=bool).ravel() for c in correct])
    if idx.shape != cor.shape:
        raise ValueError("each correctness array must have the length of its batch")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"batch indices must lie in [0, {n})")
    order = np.argsort(idx, kind="stable")  # group by sample, keep temporal order within a sample
    idx, cor = idx[order], cor[order]
    same = idx[1:] == idx[:-1]
    forgot = same & cor[:-1] & ~cor[1:]
    counts = np.bincount(idx[1:][forgot], minlength=n).astype(np.float64)
    learned = np.bincount(idx[cor], minlength=n) > 0
    if never_learned is None:
        never_learned = float(np.bincount(idx, minlength=n).max())
    counts[~learned] = never_learned
    return counts


def batch_correctness(model: Model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Boolean array: is each (x, y) classified correctly at θ."""
    with torch.no_grad():
        return (model.predict(theta, x) == y.long()).cpu().numpy()


def forgetting_callback(model: Model) -> Callable[[StepInfo], dict]:
    """A ``train`` callback that logs the correctness of each minibatch at θ_t (before the update).

    ``train(..., callback=forgetting_callback(model))`` stores ``{"step": t, "correct": [...]}`` in
    ``traj.logs`` for every step, so :func:`forgetting` works on runs that only record a few θ.
    """

    def cb(info: StepInfo) -> dict:
        return {"step": info.step, "correct": batch_correctness(model, info.theta, info.x, info.y).tolist()}

    return cb


@register("forgetting", suspicious="high")
def forgetting(
    traj: Trajectory | None,
    train_data: Any,
    target_data: Any = None,
    *,
    never_learned: float | None = None,
    source: str = "auto",
) -> np.ndarray:
    """Forgetting events (Toneva et al., ICLR 2019) of every training sample.

    Correctness of sample i is taken each time i is in the minibatch S_t, at θ_t (before the update),
    and the number of correct → incorrect transitions between consecutive presentations is counted
    (:func:`forgetting_counts`).

    Parameters
    ----------
    never_learned : count for samples never classified correctly (default: K, see
        :func:`forgetting_counts`).
    source : ``'logs'`` (correctness logged by :func:`forgetting_callback` in ``traj.logs``),
        ``'thetas'`` (recomputed from θ_t at every step: needs ``record='all'``) or ``'auto'`` (logs if
        present, else thetas).

    Returns
    -------
    (n,) counts. Suspicious direction: **high** (declared at registration).
    """
    traj = _need_traj(traj, "forgetting")
    X, y = as_tensors(train_data, traj.thetas.dtype, traj.thetas.device)
    y = class_labels(y, "forgetting")
    batches = traj.batches()
    T = len(batches)
    logged = [e for e in traj.logs if "correct" in e]
    if source not in ("auto", "logs", "thetas"):
        raise ValueError(f"source must be 'auto', 'logs' or 'thetas', got {source!r}")
    if source == "logs" or (source == "auto" and logged):
        if len(logged) != T:
            raise ValueError(f"traj.logs hold correctness for {len(logged)} of {T} steps; use forgetting_callback")
        correct = [np.asarray(e["correct"], dtype=bool) for e in sorted(logged, key=lambda e: e["step"])]
    else:
        if not np.array_equal(traj.steps, np.arange(T + 1)):
            raise ValueError(
                "forgetting needs θ at every step (train with record='all') or the per-step correctness logged "
                "by train(..., callback=forgetting_callback(model))"
            )
        correct = [batch_correctness(traj.model, traj.thetas[t], X[S], y[S]) for t, S in enumerate(batches)]
    return forgetting_counts(batches, correct, len(y), never_learned=never_learned)


@register("random", suspicious="high", renamed="`random` would shadow the standard-library module", needs_run=False)
def random_scores(traj: Trajectory | None, train_data: Any, target_data: Any = None, *, seed: int = 0) -> np.ndarray:
    """Uniform random scores U(0, 1), seeded (the chance baseline). ``traj`` is ignored."""
    _, y = as_tensors(train_data)
    return np.random.default_rng(seed).random(len(y))

