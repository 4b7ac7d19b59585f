"""E2: noisy-sample detection and cleansing.

Workflow tables (one recorded run per setting, scores from the estimator registry):

* :func:`detection_table`: AUROC, AP and recall@k (k = number of corrupted samples) of every estimator,
  each ranked by its own declared suspicious end (:func:`influence.estimators.suspicious`: influence
  estimates most negative first, difficulty scores such as CG-score, loss or EL2N highest first).
* :func:`cleanse`: remove the k most suspicious samples, retrain with the same recipe
  (:func:`replication.tasks.common.retrain_subset`) and measure test / target accuracy.

All-in-one Python entry point for the training-free and training-dynamics detectors
(:func:`detection_experiment`): for each noise rate and seed, seeded train / target / test splits of the
dataset with ⌊r·n⌋ training labels flipped to a uniformly drawn other class
(:func:`replication.tasks.common.noisy_splits`), one MLP trained by SGD on the noisy labels (per-step
minibatch correctness logged for forgetting events, θ recorded at every epoch boundary), every method
scored, and the detection metrics of :func:`influence.metrics.detection` computed on the suspicion
(:func:`influence.estimators.suspicion`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from influence import estimators, metrics
from influence.data import as_tensors
from influence.estimators.dynamics import forgetting_callback
from influence.models import mlp
from influence.train import Schedule, Trajectory, train
from replication.tasks.common import noisy_splits, retrain_subset

__all__ = [
    "DEFAULT_METHODS",
    "SPLITS",
    "detection_table",
    "cleanse",
    "train_recorded",
    "detection_experiment",
]

log = logging.getLogger(__name__)

DEFAULT_METHODS = ("cg_score", "el2n", "forgetting", "loss", "grand", "random")

#: default (n_train, n_target, n_test) per dataset
SPLITS = {"digits": (1200, 200, 397), "mnist5k": (4000, 500, 500)}


# ------------------------------------------------------------------------------------ workflow tables
def detection_table(
    scores: Mapping[str, np.ndarray], noisy: np.ndarray, overrides: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """AUROC, AP and recall@k (k = number of noisy samples) per estimator.

    ``direction`` is the suspicious end (``'high'`` / ``'low'``) of :func:`influence.estimators.suspicious`;
    ``overrides`` (the config's ``{name: 'high' | 'low'}``) wins over the declared one.
    """
    noisy = np.asarray(noisy, dtype=bool)
    rows = []
    for name, s in scores.items():
        row = {"estimator": name, "direction": estimators.suspicious(name, overrides=overrides),
               "n_noisy": int(noisy.sum())}
        row.update(metrics.detection(estimators.suspicion(name, s, overrides), noisy))
        rows.append(row)
    return pd.DataFrame(rows)


def _ks(n: int, n_noisy: int, fractions: Iterable[float]) -> list[int]:
    base = n_noisy if n_noisy > 0 else n
    return sorted({min(n - 1, max(0, int(round(f * base)))) for f in fractions})


def cleanse(
    spec: Mapping[str, Any], train_data: Any, n_classes: int, epochs: int, seed: int, susp: np.ndarray | None,
    eval_sets: Mapping[str, Any], fractions: Sequence[float], *, noisy: np.ndarray | None = None,
) -> pd.DataFrame:
    """Remove the k most suspicious samples and retrain, for k = fraction × (number of noisy samples).

    ``susp`` higher = removed first; ``None`` removes k uniformly random samples (seeded). Rows: k,
    fraction, number of truly noisy samples among the removed, and the evaluation metrics.
    """
    X, _ = as_tensors(train_data, torch.float64)
    n = X.shape[0]
    n_noisy = int(np.asarray(noisy).sum()) if noisy is not None else 0
    if susp is None:
        order = np.random.default_rng([seed, 7919]).permutation(n)
    else:
        order = np.argsort(-np.asarray(susp, dtype=np.float64), kind="stable")
    rows = []
    for k in _ks(n, n_noisy, fractions):
        keep = np.ones(n, dtype=bool)
        keep[order[:k]] = False
        row = {"k": k, "fraction": k / max(n_noisy, 1) if n_noisy else k / n}
        if noisy is not None:
            row["noisy_removed"] = int(np.asarray(noisy)[order[:k]].sum())
        row.update(retrain_subset(spec, train_data, n_classes, epochs, seed, keep, eval_sets))
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ all-in-one detection
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


def _sizes(dataset: str, sizes: tuple[int, int, int] | None) -> tuple[int, int, int]:
    if sizes:
        return sizes
    if dataset in SPLITS:
        return SPLITS[dataset]
    from influence.data import load_dataset

    n = len(load_dataset(dataset))
    return n // 2, n // 10, n // 5


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
    sizes : (n_train, n_target, n_test); default :data:`SPLITS` (else n/2, n/10, n/5 of the dataset).
    hidden, epochs, batch_size, lr, l2, dtype, record : the MLP run (see :func:`train_recorded`).
    hparams : per-method keyword arguments, e.g. ``{"cg_score": {"rep": 3}, "el2n": {"epoch": 2}}``.

    Returns
    -------
    One dict per (noise_rate, seed, method): ``dataset, noise_rate, seed, method, direction`` (``'high'`` /
    ``'low'``, :func:`influence.estimators.suspicious`), ``auroc, ap, recall_at_k, n_train, n_noisy,
    wall_s, peak_delta_mb`` plus the run's ``train_wall_s``, ``train_acc_noisy`` (on the noisy labels)
    and ``test_acc``.
    """
    hparams = hparams or {}
    rows: list[dict[str, Any]] = []
    n_train, n_target, n_test = _sizes(dataset, sizes)
    for rate in noise_rates:
        if not 0 < rate < 1:
            raise ValueError(f"noise rates must lie in (0, 1) for detection, got {rate}")
        for seed in seeds:
            sp = noisy_splits(dataset, n_train=n_train, n_target=n_target, n_test=n_test, noise="symmetric",
                              noise_rate=rate, seed=seed)
            tr, mask = sp["train"], sp["noise_mask"]
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
                row = {
                    "dataset": dataset,
                    "noise_rate": rate,
                    "seed": seed,
                    "method": name,
                    "direction": estimators.suspicious(name),
                    **metrics.detection(estimators.suspicion(name, scores), mask),
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
