"""Helpers shared by several experiments: model recipes, training, evaluation, retraining, noisy splits.

* :func:`build_model`, :func:`schedule_for`, :func:`train_setting`: a named model recipe (architecture,
  L2, batch size, step size, decay, init) + data + epochs + seed → a recorded
  :class:`~influence.train.Trajectory` (E1, E2, E4, E6 runs of the workflow).
* :func:`evaluate_model`: accuracy and mean loss of parameters on a data set.
* :func:`retrain_subset`: retrain a recipe on kept samples and evaluate (E2 cleansing, E4 deletion and
  coresets).
* :func:`noisy_splits`: seeded train / target / test splits with label noise on the training split only
  (E2 :func:`~replication.tasks.e2_detection.detection_experiment`, E3 curation).
* :func:`shift_seeds`: the workflow's ``base_seed``, added to every seed of a configuration.

In the workflow one seed ``s`` drives everything random about a recorded run: the train / target / test split
(``prepare_data``: ``make_splits(seed=s)``), the corruption (``inject_noise``: ``seed=1000 + s``), θ₀
(``model.init(s)``) and the batch order (``Schedule(seed=s)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from influence.data import as_tensors
from influence.models import Model, logistic_regression, mlp
from influence.train import Schedule, Trajectory, train

__all__ = [
    "RECIPE_DEFAULTS",
    "build_model",
    "schedule_for",
    "train_setting",
    "evaluate_model",
    "retrain_subset",
    "run_health",
    "noisy_splits",
    "shift_seeds",
]

#: Keys of a model recipe (``config['models'][name]``) with their defaults.
RECIPE_DEFAULTS: dict[str, Any] = {
    "hidden": [],
    "l2": 0.0,
    "batch_size": 100,
    "lr": 0.1,
    "decay": "constant",
    "init": "default",
    "max_loss_growth": 100.0,
}


def _recipe(spec: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - set(RECIPE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown model recipe keys {sorted(unknown)}; allowed: {sorted(RECIPE_DEFAULTS)}")
    return {**RECIPE_DEFAULTS, **spec}


def build_model(spec: Mapping[str, Any], n_features: int, n_classes: int) -> Model:
    """Logistic regression when ``spec['hidden']`` is empty, else a ReLU MLP with those widths."""
    hidden = tuple(int(h) for h in _recipe(spec)["hidden"])
    return logistic_regression(n_features, n_classes) if not hidden else mlp(n_features, hidden, n_classes)


def schedule_for(spec: Mapping[str, Any], n: int, epochs: int, seed: int) -> Schedule:
    """The SGD schedule of a recipe for ``n`` samples (batch order seeded by ``seed``)."""
    r = _recipe(spec)
    return Schedule(n, int(r["batch_size"]), int(epochs), float(r["lr"]), int(seed), str(r["decay"]))


def train_setting(
    spec: Mapping[str, Any], train_data: Any, n_classes: int, epochs: int, seed: int, *, record: str = "all"
) -> Trajectory:
    """Train a recipe on ``train_data`` in float64 and return the recorded run.

    θ₀ = ``model.init(seed, scheme=spec['init'])``; the schedule from :func:`schedule_for`; the recipe's
    ``max_loss_growth`` is the divergence guard of :func:`~influence.train.train`.
    """
    r = _recipe(spec)
    X, y = as_tensors(train_data, torch.float64)
    model = build_model(r, X.shape[1], n_classes)
    theta0 = model.init(int(seed), torch.float64, scheme=str(r["init"]))
    sched = schedule_for(r, X.shape[0], epochs, seed)
    return train(model, theta0, (X, y), sched, l2=float(r["l2"]), record=record,
                 max_loss_growth=float(r["max_loss_growth"]))


def evaluate_model(model: Model, theta: torch.Tensor, data: Any) -> dict[str, float]:
    """Accuracy and mean loss (no L2) of parameters ``theta`` on ``data``."""
    X, y = as_tensors(data, theta.dtype)
    with torch.no_grad():
        return {"accuracy": float(model.accuracy(theta, X, y)), "loss": float(model.loss(theta, X, y))}


def run_health(traj: Trajectory, train_data: Any, test_data: Any) -> dict[str, Any]:
    """Whether a recorded run learned: its final accuracy and loss against trivial references.

    A run *did not learn* when its test accuracy is not above the majority-class rate of the test set,
    or its final training loss (no L2, all samples) is not below the loss at θ₀. Evidence from such a
    run cannot support a claim (:mod:`replication.claims` gives the verdict "invalid run").

    Returns ``initial_train_loss``, ``final_train_loss``, ``test_accuracy``, ``majority_rate``,
    ``learned`` (bool) and ``reason`` ("" when it learned).
    """
    model = traj.model
    start = evaluate_model(model, traj.theta0, train_data)["loss"]
    end = evaluate_model(model, traj.final, train_data)["loss"]
    acc = evaluate_model(model, traj.final, test_data)["accuracy"]
    _, yt = as_tensors(test_data)
    majority = float(np.bincount(yt.numpy()).max() / len(yt))
    reasons = []
    if not acc > majority:
        reasons.append(f"test accuracy {acc:.3f} is not above the majority-class rate {majority:.3f}")
    if not end < start:
        reasons.append(f"final training loss {end:.3g} is not below its start {start:.3g}")
    return {"initial_train_loss": start, "final_train_loss": end, "test_accuracy": acc,
            "majority_rate": majority, "learned": not reasons, "reason": "; ".join(reasons)}


def retrain_subset(
    spec: Mapping[str, Any], train_data: Any, n_classes: int, epochs: int, seed: int, keep: np.ndarray,
    eval_sets: Mapping[str, Any],
) -> dict[str, float]:
    """Retrain the recipe on the kept samples (boolean mask or indices) and evaluate on ``eval_sets``.

    Same batch size, step sizes, epochs and seed as the original run; the batches are those of a fresh
    schedule over the kept samples (removal changes the batch composition, as in the papers' retraining).
    """
    X, y = as_tensors(train_data, torch.float64)
    keep = np.asarray(keep)
    idx = np.flatnonzero(keep) if keep.dtype == bool else np.sort(keep.astype(int))
    if idx.size == 0:
        raise ValueError("cannot retrain on an empty subset")
    traj = train_setting(spec, (X[idx], y[idx]), n_classes, epochs, seed, record="final")
    out: dict[str, float] = {"n_kept": int(idx.size)}
    for split, data in eval_sets.items():
        for k, v in evaluate_model(traj.model, traj.final, data).items():
            out[f"{split}_{k}"] = v
    return out


def noisy_splits(
    dataset: str, *, n_train: int, n_target: int, n_test: int, noise: str, noise_rate: float, seed: int
) -> dict[str, Any]:
    """Seeded splits of ``load_dataset(dataset)`` with label noise on the training split only.

    ``noise``: ``'symmetric'`` (:func:`replication.noise.symmetric_noise`: ⌊r·n⌋ labels flipped to a
    uniformly drawn other class) or ``'cyclic'`` (:func:`replication.noise.cyclic_noise`: y → y + k mod C).
    ``seed`` seeds both the split and the noise; the target and test splits stay clean.

    Returns {'train', 'target', 'test': Dataset, 'noise_mask': (n_train,) bool, 'clean_y': (n_train,)}.
    """
    from influence.data import load_dataset, make_splits
    from replication.noise import cyclic_noise, symmetric_noise

    kinds = {"symmetric": symmetric_noise, "cyclic": cyclic_noise}
    if noise not in kinds:
        raise ValueError(f"noise must be one of {sorted(kinds)}, got {noise!r}")
    ds = load_dataset(dataset)
    sp = make_splits(ds, n_train, n_target, n_test, seed=seed)
    clean = sp["train"].y.copy()
    y_noisy, mask = kinds[noise](clean, noise_rate, ds.n_classes, seed=seed)
    sp["train"] = sp["train"].replace(y=y_noisy, noise=noise, noise_rate=noise_rate)
    return {**sp, "noise_mask": np.asarray(mask, dtype=bool), "clean_y": clean}


def shift_seeds(cfg: dict[str, Any], base: int) -> dict[str, Any]:
    """Add ``base`` to every seed of a workflow configuration, in place (and return it).

    The config key ``base_seed`` (experiments/rules/common.smk): one key moves the whole workflow to other seeds.
    Shifted: the seeds of every grid (E1 fidelity, E2 detection, E4 deletion, E6 cost, E11 sec71), the seed lists
    of E3 curation, E8 lm, E9 text, E10 dvemb and E12 cg_pruning, E8's play split (``data.split_seed``) and Shapley
    seed, E10's split, points and LDS seeds (``settings``; from :data:`replication.tasks.e10_dvemb.DEFAULT` where the
    config leaves them out), online_cost's seed and the seed of every E5 check's recorded run (``run.seed``).
    """
    base = int(base)
    if not base:
        return cfg
    exps = cfg.get("experiments", {})

    def shifted(seeds):
        return [base + int(s) for s in seeds]

    for name in ("fidelity", "detection", "deletion", "cost", "sec71"):
        for g in exps.get(name, {}).get("grids") or []:
            g["seeds"] = shifted(g["seeds"])
    for name in ("curation", "lm", "text", "dvemb", "cg_pruning"):
        if "seeds" in exps.get(name, {}):
            exps[name]["seeds"] = shifted(exps[name]["seeds"])
    lm = exps.get("lm", {})
    for block, key in (("data", "split_seed"), ("shapley", "seed")):
        if key in lm.get(block, {}):
            lm[block][key] = base + int(lm[block][key])
    if "dvemb" in exps:  # E10's data split, evaluated points and LDS subsets (defaults: e10_dvemb.DEFAULT)
        from replication.tasks.e10_dvemb import DEFAULT as E10_DEFAULT

        st = exps["dvemb"].setdefault("settings", {})
        for key in ("split_seed", "points_seed"):
            st[key] = base + int(st.get(key, E10_DEFAULT[key]))
        lds = st["lds"] = dict(st.get("lds") or {})
        lds["seed"] = base + int(lds.get("seed", E10_DEFAULT["lds"]["seed"]))
        lds["extra_seeds"] = shifted(lds.get("extra_seeds", E10_DEFAULT["lds"]["extra_seeds"]))
    if "seed" in exps.get("online_cost", {}):
        exps["online_cost"]["seed"] = base + int(exps["online_cost"]["seed"])
    for check in exps.get("bounds", {}).get("checks") or []:
        if check.get("run"):
            check["run"]["seed"] = base + int(check["run"]["seed"])
    return cfg
