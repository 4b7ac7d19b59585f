"""E4 (CG-score part): data-pruning curves — accuracy of an MLP trained on the kept fraction.

Protocol (the CG-score authors' ``experiment/pruning.py``):

* **class-wise pruning**: within every class c, the ``int(n_c · keep)`` samples with the highest
  scores are kept (``remove='low'``: lowest scores removed first, i.e. easy / redundant samples for
  CG-score, EL2N and forgetting; for loss-change influence scores the most harmful first). The
  authors' script without ``--prun_hard`` keeps the *lowest* scores instead: ``remove='high'``.
* **fixed number of training steps**: every run takes as many SGD steps as the full-data run
  (``epochs · ceil(n_train / batch_size)``), each minibatch drawn uniformly *with replacement* from the
  kept samples (the authors' ``RandomSampler(replacement=True)`` with ``drop_last``).
* the same initialisation (seeded) for every method and keep fraction of a seed.

Any score vector can be plugged in through ``scores={"name": vector}`` (one value per training
sample, lowest removed first); the built-in methods are computed here: ``cg_score`` (training-free),
``random`` (seeded), and ``el2n`` / ``forgetting`` / ``loss`` / ``grand`` from one full-data SGD run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from influence import estimators
from influence.models import Model, mlp
from influence.tasks.detection import noisy_splits, train_recorded

__all__ = ["KEEP_FRACTIONS", "classwise_keep", "train_fixed_steps", "pruning_curves"]

log = logging.getLogger(__name__)

KEEP_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_TRAINED = ("el2n", "forgetting", "loss", "grand")


def classwise_keep(scores: np.ndarray, y: np.ndarray, keep_fraction: float, *, remove: str = "low") -> np.ndarray:
    """Indices kept by class-wise pruning: per class, ``max(1, int(n_c · keep_fraction))`` samples with the
    highest scores (``remove='low'``) or the lowest (``remove='high'``); ties broken by index. Sorted."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(y).ravel()
    if scores.shape != y.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({y.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN/inf")
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must lie in (0, 1], got {keep_fraction}")
    if remove not in ("low", "high"):
        raise ValueError(f"remove must be 'low' or 'high', got {remove!r}")
    kept = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(len(idx) * keep_fraction + 1e-9))
        key = -scores[idx] if remove == "low" else scores[idx]
        kept.append(idx[np.argsort(key, kind="stable")[:k]])
    return np.sort(np.concatenate(kept))


def train_fixed_steps(
    model: Model,
    theta0: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    keep: np.ndarray,
    *,
    n_steps: int,
    batch_size: int,
    lr: float,
    l2: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """SGD for exactly ``n_steps`` steps on minibatches of ``batch_size`` drawn with replacement from
    ``keep``: θ ← θ − η (1/b) Σ_{i∈B} ∇f_i(θ). Returns the final θ."""
    if len(keep) == 0:
        raise ValueError("nothing kept to train on")
    rng = np.random.default_rng(seed)
    theta = theta0.detach().clone()[None]
    ones = torch.ones(1, batch_size, dtype=theta.dtype)
    for _ in range(n_steps):
        B = keep[rng.integers(0, len(keep), batch_size)]
        g, _ = model.batch_grad(theta, X[B], y[B], ones, float(batch_size), l2)
        theta = theta - lr * g.detach()
    if not torch.isfinite(theta).all():
        raise FloatingPointError("pruned-data training diverged; lower the learning rate")
    return theta[0]


def pruning_curves(
    dataset: str = "digits",
    *,
    methods: Sequence[str] = ("cg_score", "random", "el2n", "forgetting"),
    scores: Mapping[str, np.ndarray] | None = None,
    keep_fractions: Sequence[float] = KEEP_FRACTIONS,
    seeds: Sequence[int] = (0,),
    sizes: tuple[int, int, int] | None = None,
    noise_rate: float = 0.0,
    hidden: Sequence[int] = (128,),
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.1,
    l2: float = 0.0,
    remove: str = "low",
    hparams: dict[str, dict[str, Any]] | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[dict[str, Any]]:
    """Test accuracy after class-wise pruning to each kept fraction, for each method and seed (E4).

    Parameters
    ----------
    dataset, sizes, noise_rate : data (see :func:`influence.tasks.detection.noisy_splits`); the split
        and any label noise are seeded by the seed.
    methods : built-in methods to compute (``cg_score``, ``random``, ``el2n``, ``forgetting``, ``loss``,
        ``grand``, or any registered estimator called with the uniform signature on the full-data run).
    scores : extra or overriding score vectors, ``{name: (n_train,) array}`` (same for every seed) or
        ``{name: {seed: array}}``; lowest removed first (see ``remove``).
    keep_fractions : fractions of each class kept.
    hidden, epochs, batch_size, lr, l2, dtype : the MLP and the step budget
        ``n_steps = epochs · ceil(n_train / batch_size)`` shared by all runs.
    hparams : per-method keyword arguments for the registered estimators.

    Returns
    -------
    One dict per (seed, method, keep_fraction): ``dataset, seed, method, keep_fraction, n_kept,
    test_acc, noisy_kept`` (fraction of the kept samples with a flipped label), ``train_s``; plus one row
    per seed with ``method='full'``, ``keep_fraction=1``.
    """
    hparams = hparams or {}
    scores = dict(scores or {})
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        sp, mask = noisy_splits(dataset, noise_rate, seed, sizes)
        tr = sp["train"]
        X = torch.as_tensor(tr.X, dtype=dtype)
        y = torch.as_tensor(tr.y)
        Xte, yte = torch.as_tensor(sp["test"].X, dtype=dtype), torch.as_tensor(sp["test"].y)
        model = mlp(tr.n_features, tuple(hidden), tr.n_classes)
        theta0 = model.init(seed, dtype=dtype)
        n_steps = epochs * -(-len(tr) // batch_size)
        common = {"n_steps": n_steps, "batch_size": batch_size, "lr": lr, "l2": l2, "seed": seed}

        seed_scores: dict[str, np.ndarray] = {}
        traj = None
        for name in methods:
            if name in scores:
                continue
            hp = dict(hparams.get(name, {}))
            if name in ("random", "cg_score"):
                hp.setdefault("seed", seed)
            if name != "cg_score" and name != "random" and traj is None:
                traj = train_recorded(tr, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, l2=l2,
                                      seed=seed, dtype=dtype)
            seed_scores[name] = np.asarray(estimators.get(name)(traj, tr, sp["target"], **hp), dtype=np.float64)
        for name, s in scores.items():
            s = s[seed] if isinstance(s, Mapping) else s
            if np.shape(s) != (len(tr),):
                raise ValueError(f"scores[{name!r}] must have shape ({len(tr)},), got {np.shape(s)}")
            seed_scores[name] = np.asarray(s, dtype=np.float64)

        t0 = time.perf_counter()
        theta = train_fixed_steps(model, theta0, X, y, np.arange(len(tr)), **common)
        rows.append({"dataset": dataset, "seed": seed, "method": "full", "keep_fraction": 1.0, "n_kept": len(tr),
                     "test_acc": model.accuracy(theta, Xte, yte), "noisy_kept": float(mask.mean()),
                     "train_s": time.perf_counter() - t0})
        for name, s in seed_scores.items():
            for f in keep_fractions:
                keep = classwise_keep(s, tr.y, f, remove=remove)
                t0 = time.perf_counter()
                theta = train_fixed_steps(model, theta0, X, y, keep, **common)
                acc = model.accuracy(theta, Xte, yte)
                rows.append({"dataset": dataset, "seed": seed, "method": name, "keep_fraction": float(f),
                             "n_kept": len(keep), "test_acc": acc, "noisy_kept": float(mask[keep].mean()),
                             "train_s": time.perf_counter() - t0})
                log.info("%s seed=%d %s keep=%.1f: acc %.3f", dataset, seed, name, f, acc)
    return rows
