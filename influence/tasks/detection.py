"""E2 (CG-score and training-dynamics part): mislabel detection under symmetric label noise.

For each noise rate and seed: seeded train / target / test splits of the dataset, ⌊r·n⌋ training labels
flipped to a uniformly drawn other class (:func:`influence.noise.symmetric_noise`), one MLP trained by
SGD on the noisy labels (per-step minibatch correctness logged for forgetting events, θ recorded at
every epoch boundary), every method scored, and AUROC / AP / recall at k = number of flipped samples
computed with :func:`influence.metrics.detection` on the *suspicion* ``direction · score``.

**Suspicion convention (all estimators).** A registered estimator may carry the attribute
``fn.suspicion``: +1 = "high score = suspicious" (CG-score, loss, EL2N, GraNd, forgetting, random,
self-influence), −1 = "low score = suspicious" (every estimator with the project's loss-change sign,
where the most negative = most harmful). Missing attribute = −1. Detection ranks by
``suspicion_direction(name) * score`` descending (:func:`suspicion`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from influence import estimators, metrics
from influence.estimators.dynamics import forgetting_callback
from influence.models import mlp
from influence.train import Schedule, Trajectory, train

__all__ = [
    "DEFAULT_METHODS",
    "SPLITS",
    "suspicion_direction",
    "suspicion",
    "noisy_splits",
    "train_recorded",
    "detection_experiment",
]

log = logging.getLogger(__name__)

DEFAULT_METHODS = ("cg_score", "el2n", "forgetting", "loss", "grand", "random")

#: default (n_train, n_target, n_test) per dataset
SPLITS = {"digits": (1200, 200, 397), "mnist5k": (4000, 500, 500)}


# the direction convention lives with the registry
suspicion_direction = estimators.suspicion_direction
suspicion = estimators.suspicion


def noisy_splits(
    dataset: str,
    noise_rate: float,
    seed: int,
    sizes: tuple[int, int, int] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Splits of ``dataset`` with symmetric label noise on the training split: (splits, noisy mask)."""
    from influence.data import load_dataset, make_splits
    from influence.noise import symmetric_noise

    ds = load_dataset(dataset)
    n_train, n_target, n_test = sizes or SPLITS.get(dataset, (len(ds) // 2, len(ds) // 10, len(ds) // 5))
    sp = make_splits(ds, n_train, n_target, n_test, seed=seed)
    if noise_rate > 0:
        y_noisy, mask = symmetric_noise(sp["train"].y, noise_rate, ds.n_classes, seed=seed)
        sp["train"] = sp["train"].replace(y=y_noisy, noise="symmetric", noise_rate=noise_rate)
    else:
        mask = np.zeros(len(sp["train"]), dtype=bool)
    return sp, mask


def train_recorded(
    train_ds: Any,
    *,
    hidden: Sequence[int] = (128,),
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.1,
    l2: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    record: str | Sequence[int] = "epochs",
) -> Trajectory:
    """Train an MLP by SGD with the forgetting-correctness logger; ``record='epochs'`` keeps θ at every
    epoch boundary (enough for loss / EL2N / GraNd / forgetting), ``'all'`` every step."""
    model = mlp(train_ds.n_features, tuple(hidden), train_ds.n_classes)
    sched = Schedule(n=len(train_ds), batch_size=batch_size, epochs=epochs, lr=lr, seed=seed)
    if isinstance(record, str) and record == "epochs":
        record = list(range(0, sched.n_steps + 1, sched.steps_per_epoch))
    return train(model, model.init(seed, dtype=dtype), train_ds, sched, l2=l2,
                 callback=forgetting_callback(model), record=record)


def detection_experiment(
    dataset: str = "digits",
    *,
    noise_rates: Sequence[float] = (0.1, 0.2, 0.4),
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] = DEFAULT_METHODS,
    sizes: tuple[int, int, int] | None = None,
    hidden: Sequence[int] = (128,),
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 0.1,
    l2: float = 0.0,
    hparams: dict[str, dict[str, Any]] | None = None,
    dtype: torch.dtype = torch.float32,
    record: str | Sequence[int] = "epochs",
) -> list[dict[str, Any]]:
    """Mislabel detection (E2) for each noise rate × seed × method.

    Parameters
    ----------
    dataset : a name for :func:`influence.data.load_dataset` (``'digits'``, ``'mnist5k'``, …).
    noise_rates, seeds : the grid; seed s seeds the split, the noise, the init and the batch order.
    methods : registered estimator names, called with the uniform signature
        ``fn(traj, noisy_train, target, **hparams[name])``.
    sizes : (n_train, n_target, n_test); default :data:`SPLITS`.
    hidden, epochs, batch_size, lr, l2, dtype, record : the MLP run (see :func:`train_recorded`).
    hparams : per-method keyword arguments, e.g. ``{"cg_score": {"rep": 3}, "el2n": {"epoch": 2}}``.

    Returns
    -------
    One dict per (noise_rate, seed, method): ``dataset, noise_rate, seed, method, direction, auroc,
    ap, recall_at_k, n_train, n_noisy, wall_s, peak_delta_mb`` plus the run's ``train_wall_s``,
    ``train_acc_noisy`` (on the noisy labels) and ``test_acc``.
    """
    hparams = hparams or {}
    rows: list[dict[str, Any]] = []
    for rate in noise_rates:
        if not 0 < rate < 1:
            raise ValueError(f"noise rates must lie in (0, 1) for detection, got {rate}")
        for seed in seeds:
            sp, mask = noisy_splits(dataset, rate, seed, sizes)
            tr = sp["train"]
            t0 = time.perf_counter()
            traj = train_recorded(tr, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, l2=l2,
                                  seed=seed, dtype=dtype, record=record)
            train_s = time.perf_counter() - t0
            Xte = torch.as_tensor(sp["test"].X, dtype=dtype)
            test_acc = traj.model.accuracy(traj.final, Xte, torch.as_tensor(sp["test"].y))
            train_acc = traj.model.accuracy(traj.final, torch.as_tensor(tr.X, dtype=dtype), torch.as_tensor(tr.y))
            for name in methods:
                hp = dict(hparams.get(name, {}))
                if name == "random":
                    hp.setdefault("seed", seed)
                if name == "cg_score":
                    hp.setdefault("seed", seed)
                scores, rec = estimators.run(name, traj, tr, sp["target"], **hp)
                d = suspicion_direction(name)
                row = {
                    "dataset": dataset,
                    "noise_rate": rate,
                    "seed": seed,
                    "method": name,
                    "direction": d,
                    **metrics.detection(d * scores, mask),
                    "n_train": len(tr),
                    "n_noisy": int(mask.sum()),
                    "wall_s": rec["wall_s"],
                    "peak_delta_mb": rec["peak_delta_mb"],
                    "train_wall_s": train_s,
                    "train_acc_noisy": train_acc,
                    "test_acc": test_acc,
                }
                log.info("%s r=%.2f seed=%d %s: AUROC %.3f AP %.3f", dataset, rate, seed, name, row["auroc"], row["ap"])
                rows.append(row)
    return rows
