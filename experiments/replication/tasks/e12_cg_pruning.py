"""E12: CG-score data pruning with the CG-score authors' protocol (claim CG-2, class-wise, fixed step count).

The authors' pruning script (``JJchy/CG_score``, ``experiment/pruning.py`` with ``base_trainer.py`` and
``utils/args.py``), read line by line:

* **Selection, class-wise** (pruning.py l. 17-30): a per-sample *measure* (the CG-score ``vi``; EL2N,
  forgetting and the negated C-score are stored so that for all of them high = hard); with ``--prun_hard`` the
  measure is negated (l. 18-19). Per class, the indices are sorted by the measure in ascending order and the
  first ``int(n_c · (1 − pruning))`` are kept. Without the flag the *lowest* measures are kept (the hardest,
  high-CG samples are pruned first); with ``--prun_hard`` the *highest* are kept (the easy, low-CG samples are
  pruned first -- what the paper's pruning claim, and CG-2, are about). Here: ``direction='prune_low'`` is the
  authors' ``--prun_hard`` run, ``direction='prune_high'`` their default.
* **Random baseline, class-wise too** (l. 52): an unknown ``--measure`` falls back to ``np.random.rand(n)`` and
  goes through the same per-class selection.
* **Fixed number of steps, with replacement** (l. 34-42, 54-86): ``step_num = len(full-data loader)`` =
  ⌈n / batch⌉ steps per epoch, for every kept size; the kept subset is read through
  ``RandomSampler(replacement=True)`` with ``drop_last=True`` and the iterator is restarted when it runs out, so
  every step is a full batch of indices drawn i.i.d. uniformly from the kept samples. Epochs and the per-epoch
  scheduler are unchanged.
* **Recipe** (base_trainer.py / utils/args.py defaults): SGD with momentum 0.9, lr 0.1, weight decay 5e-4,
  cosine annealing over the epochs (stepped once per epoch), batch 128, 200 epochs, cross-entropy, ResNet-18 on
  CIFAR-10 / CIFAR-100 / FashionMNIST with crop / flip augmentation. The full-data run is the plain trainer:
  shuffled epochs, last batch partial.
* **CG-score input** (cg_function.py l. 47-53): every sample is flattened and scaled to unit L2 norm in float64;
  which transform the scored dataset had is not in the repository (the script that wrote ``data/vi.npz`` is
  absent). Here: raw pixels in [0, 1] (the library's :func:`influence.estimators.cg_score.cg_score`, which
  does the same normalisation and the authors' per-class stochastic version).
* The pruned fractions are a command-line argument (``--pruning``); the repository does not list them.

Here the protocol runs on an MNIST subset with a small MLP (CPU scale; the ResNet-18 and the full datasets are
not run). Every seed sets the split, the CG-score's negative draws, the random measure, θ₀ and the sampler. The
supplementary ``*_global`` rows are this project's E4 protocol: one global ranking (the ⌈f·n⌉ highest CG
kept), retrained for the same number of *epochs* over the kept samples (so fewer steps).

Functions: :func:`classwise_keep`, :func:`global_keep`, :func:`with_replacement_batches`,
:func:`epoch_batches`, :func:`train_and_test`, :func:`run_seed` (one seed: every selection and fraction).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from influence.estimators.cg_score import cg_score

__all__ = [
    "DIRECTIONS",
    "RESULT_COLUMNS",
    "classwise_keep",
    "global_keep",
    "cg_scores_for",
    "selection_measure",
    "with_replacement_batches",
    "epoch_batches",
    "steps_per_epoch",
    "build_classifier",
    "model_name",
    "train_and_test",
    "run_seed",
]

log = logging.getLogger(__name__)

#: prune_low: keep the highest CG per class (authors' ``--prun_hard``); prune_high: keep the lowest (their default).
DIRECTIONS = ("prune_low", "prune_high")
#: Columns of results/metrics/E12_cg_pruning.csv.
RESULT_COLUMNS = ("dataset", "model", "method", "selection", "direction", "schedule", "keep_fraction", "seed",
                  "test_accuracy", "full_test_accuracy", "majority_rate", "learned", "n_train", "n_kept", "steps",
                  "epochs", "batch_size")


def cg_scores_for(X: np.ndarray, y: np.ndarray, seed: int, **cg: Any) -> np.ndarray:
    """The CG-score E12 ranks by: the library's :func:`~influence.estimators.cg_score.cg_score` on the raw
    training inputs (flattened, unit-normalised inside), multiclass per-class stochastic version with
    negatives drawn by ``seed`` (``cg``: ``rep``, ``unbalance_ratio``; authors' defaults 1 and 1)."""
    return np.asarray(cg_score(None, (np.asarray(X), np.asarray(y)), seed=int(seed), **cg), dtype=np.float64)


def selection_measure(cg: np.ndarray, direction: str) -> np.ndarray:
    """The measure whose *lowest* values are kept (pruning.py l. 17-19): ``−cg`` for ``'prune_low'`` (the
    authors' ``--prun_hard``: keep the highest CG, prune the low-CG samples first), ``cg`` for ``'prune_high'``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    cg = np.asarray(cg, dtype=np.float64)
    return -cg if direction == "prune_low" else cg


def classwise_keep(measure: np.ndarray, y: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Class-wise pruning (Ki, Choi, Chung 2023; pruning.py l. 21-30): per class c keep the
    ``⌊n_c · keep_fraction⌋`` samples with the lowest ``measure`` (ties: the lower index first).

    Returns the kept indices, sorted. ``⌊·⌋`` is the authors' ``int(len · (1 − pruning))``, computed here as
    ``floor(n_c · f + 1e-9)`` so that a product such as 500 · 0.7 = 349.99… is not cut to 349.
    """
    measure = np.asarray(measure, dtype=np.float64)
    y = np.asarray(y)
    if measure.shape != y.shape or measure.ndim != 1:
        raise ValueError(f"measure and y must be 1-D of the same length, got {measure.shape} and {y.shape}")
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    kept = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        m = int(math.floor(len(idx) * keep_fraction + 1e-9))
        kept.append(idx[np.argsort(measure[idx], kind="stable")[:m]])
    out = np.sort(np.concatenate(kept))
    if out.size == 0:
        raise ValueError(f"keep_fraction {keep_fraction} keeps no sample of any class")
    return out


def global_keep(value: np.ndarray, keep_fraction: float) -> np.ndarray:
    """This project's E4 coreset selection: the ``⌈f · n⌉`` highest ``value`` over all samples (ties: lower
    index first), sorted indices (:func:`replication.tasks.e4_deletion.coreset_table`)."""
    value = np.asarray(value, dtype=np.float64)
    n = value.shape[0]
    m = max(1, min(n, int(math.ceil(keep_fraction * n))))
    return np.sort(np.argsort(-value, kind="stable")[:m])


def steps_per_epoch(n_full: int, batch_size: int) -> int:
    """Steps of one epoch of the full-data loader (shuffled, last batch kept): ⌈n_full / batch⌉ (pruning.py l. 34)."""
    return int(math.ceil(n_full / batch_size))


def with_replacement_batches(n_kept: int, batch_size: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """(steps, batch_size) indices into the kept samples, each drawn i.i.d. uniformly with replacement.

    The authors' loader (``RandomSampler(replacement=True)``, ``drop_last=True``, iterator restarted when it
    runs out; pruning.py l. 37-42, 62-67) gives full batches of i.i.d. uniform indices, ``steps`` of them
    whatever ``n_kept`` is. It yields no batch at all when ``n_kept < batch_size``; so does this (error).
    """
    if n_kept < batch_size:
        raise ValueError(f"the kept set ({n_kept}) is smaller than one batch ({batch_size}): the authors' "
                         "drop_last loader would yield no batch")
    return torch.randint(n_kept, (int(steps), int(batch_size)), generator=generator)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One shuffled epoch over ``n`` samples in batches of ``batch_size``, the last one partial (the plain
    trainer's ``DataLoader(shuffle=True)``)."""
    perm = torch.randperm(n, generator=generator)
    return list(perm.split(int(batch_size)))


def build_classifier(arch: Mapping[str, Any], n_features: int, n_classes: int, seed: int) -> torch.nn.Module:
    """A float32 classifier with seeded θ₀: ``{'kind': 'mlp', 'hidden': [...]}`` (ReLU MLP, PyTorch's
    ``nn.Linear`` initialisation drawn by :meth:`influence.models.Model.init`) or ``{'kind': 'cnn', 'width': w}``
    (:class:`influence.models.SmallCNN` on 28×28 images, initialised under ``torch.manual_seed(seed)``).
    Multiclass only (``n_classes`` ≥ 3; the library's two-class MLP has a single logit)."""
    from influence.models import SmallCNN, mlp

    kind = arch.get("kind", "mlp")
    if n_classes < 3:
        raise ValueError(f"E12 trains a softmax classifier on 3 or more classes, got {n_classes}")
    if kind == "mlp":
        model = mlp(n_features, tuple(arch["hidden"]), n_classes)
        return model.to_module(model.init(int(seed), torch.float32))
    if kind == "cnn":
        side = int(round(math.sqrt(n_features)))
        if side * side != n_features:
            raise ValueError(f"the CNN needs square single-channel images, got {n_features} features")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return SmallCNN(1, side, n_classes, int(arch.get("width", 8)))
    raise ValueError(f"arch kind must be 'mlp' or 'cnn', got {kind!r}")


def model_name(arch: Mapping[str, Any]) -> str:
    """The ``model`` column: ``mlp-64`` / ``cnn-w8``."""
    if arch.get("kind", "mlp") == "mlp":
        return "mlp-" + "-".join(str(int(h)) for h in arch["hidden"])
    return f"cnn-w{int(arch.get('width', 8))}"


def _accuracy(module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, chunk: int = 2048) -> float:
    with torch.no_grad():
        hits = sum(int((module(X[s: s + chunk]).argmax(1) == y[s: s + chunk]).sum()) for s in range(0, len(y), chunk))
    return hits / max(1, len(y))


def train_and_test(
    X: torch.Tensor, y: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor, *, arch: Mapping[str, Any],
    n_classes: int, seed: int, epochs: int, batch_size: int, lr: float, momentum: float = 0.9,
    weight_decay: float = 5e-4, steps_per_epoch: int | None = None,
) -> dict[str, Any]:
    """Train the authors' recipe on (X, y) and return the final test accuracy and the step count.

    SGD(lr, momentum, weight_decay) on the mean cross-entropy, cosine annealing of the step size over
    ``epochs`` (``CosineAnnealingLR(T_max=epochs)``, stepped after every epoch). ``steps_per_epoch=None``: the
    plain trainer, shuffled epochs (last batch partial); a number: the authors' pruned training, that many
    with-replacement batches per epoch (:func:`with_replacement_batches`). ``seed`` sets θ₀ and the batches.
    """
    module = build_classifier(arch, X.shape[1], n_classes, seed)
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(epochs))
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = 0
    module.train()
    for _ in range(int(epochs)):
        batches = (epoch_batches(len(y), batch_size, g) if steps_per_epoch is None
                   else with_replacement_batches(len(y), batch_size, steps_per_epoch, g))
        for b in batches:
            opt.zero_grad()
            loss_fn(module(X[b]), y[b]).backward()
            opt.step()
            steps += 1
        sched.step()
    module.eval()
    return {"test_accuracy": _accuracy(module, X_test, y_test), "steps": steps}


def run_seed(dataset: str, seed: int, *, n_train: int, n_test: int, keep_fractions: Sequence[float],
             arch: Mapping[str, Any], run: Mapping[str, Any], cg: Mapping[str, Any] | None = None,
             selections: Sequence[str] = ("cg_classwise", "random_classwise", "cg_global", "random_global"),
             directions: Sequence[str] = DIRECTIONS, learned_margin: float = 0.1,
             data: Any = None) -> dict[str, Any]:
    """Every E12 row of one seed: the full-data run, then per kept fraction each selection retrained.

    ``run``: ``epochs``, ``batch_size``, ``lr`` (and optionally ``momentum``, ``weight_decay``). ``cg``: keyword
    arguments of :func:`~influence.estimators.cg_score.cg_score` (``rep``, ``unbalance_ratio``). Selections:
    ``cg_classwise`` (per direction) and ``random_classwise`` use the authors' fixed-step with-replacement
    training; ``cg_global`` (per direction; ``prune_low`` keeps the highest CG) and ``random_global`` use the E4
    protocol (global choice, same epochs over the kept set). ``learned``: the full-data run's test accuracy is
    at least the majority rate + ``learned_margin``. ``data``: the loaded dataset (default:
    ``load_dataset(dataset)``), so that a job running several seeds reads it once.

    Returns {'rows': [dict per RESULT_COLUMNS], 'cg_seconds', 'cpu_seconds', 'cg_scores_head' (the first ten
    scores, for the record)}.
    """
    from influence.data import load_dataset, make_splits

    cpu0 = time.process_time()
    ds = load_dataset(dataset) if data is None else data
    sp = make_splits(ds, n_train, 0, n_test, seed=seed)
    tr, te = sp["train"], sp["test"]
    X, y = torch.as_tensor(tr.X, dtype=torch.float32), torch.as_tensor(tr.y)
    Xt, yt = torch.as_tensor(te.X, dtype=torch.float32), torch.as_tensor(te.y)
    C = ds.n_classes
    t0 = time.process_time()
    scores = cg_scores_for(tr.X, tr.y, seed, **dict(cg or {}))
    cg_seconds = time.process_time() - t0
    epochs, bs = int(run["epochs"]), int(run["batch_size"])
    opt = {"lr": float(run["lr"]), "momentum": float(run.get("momentum", 0.9)),
           "weight_decay": float(run.get("weight_decay", 5e-4))}
    common = dict(arch=arch, n_classes=C, seed=seed, epochs=epochs, batch_size=bs, **opt)
    full = train_and_test(X, y, Xt, yt, **common)
    majority = float(np.bincount(te.y, minlength=C).max() / len(te.y))
    learned = bool(full["test_accuracy"] >= majority + learned_margin - 1e-12)
    spe = steps_per_epoch(len(y), bs)
    rand_measure = np.random.default_rng([seed, 12012]).random(len(y))  # the authors' np.random.rand(n)
    rand_order = np.random.default_rng([seed, 104729]).permutation(len(y))  # E4's random coreset order
    base = {"dataset": dataset, "model": model_name(arch), "seed": int(seed), "full_test_accuracy":
            full["test_accuracy"], "majority_rate": majority, "learned": learned, "n_train": len(y),
            "epochs": epochs, "batch_size": bs}
    rows = []
    for f in keep_fractions:
        plans: list[tuple[str, str, str, np.ndarray]] = []
        for sel in selections:
            if sel == "cg_classwise":
                plans += [(sel, d, "fixed_steps", classwise_keep(selection_measure(scores, d), tr.y, f))
                          for d in directions]
            elif sel == "random_classwise":
                plans.append((sel, "random", "fixed_steps", classwise_keep(rand_measure, tr.y, f)))
            elif sel == "cg_global":
                plans += [(sel, d, "epochs", global_keep(-selection_measure(scores, d), f)) for d in directions]
            elif sel == "random_global":
                m = max(1, min(len(y), int(math.ceil(f * len(y)))))
                plans.append((sel, "random", "epochs", np.sort(rand_order[:m])))
            else:
                raise ValueError(f"unknown selection {sel!r}")
        for sel, d, schedule, keep in plans:
            kt = torch.as_tensor(keep)
            r = train_and_test(X[kt], y[kt], Xt, yt, **common,
                               steps_per_epoch=spe if schedule == "fixed_steps" else None)
            method = sel if d == "random" else f"{sel}_{d}"
            rows.append({**base, "method": method, "selection": sel, "direction": d, "schedule": schedule,
                         "keep_fraction": float(f), "test_accuracy": r["test_accuracy"], "n_kept": int(keep.size),
                         "steps": r["steps"]})
            log.info("seed %d f=%.2f %s: test accuracy %.4f (%d kept, %d steps)", seed, f, method,
                     r["test_accuracy"], keep.size, r["steps"])
    full_row = {**base, "method": "full", "selection": "full", "direction": "none", "schedule": "epochs",
                "keep_fraction": 1.0, "test_accuracy": full["test_accuracy"], "n_kept": len(y), "steps": full["steps"]}
    return {"rows": [full_row, *rows], "cg_seconds": cg_seconds, "cpu_seconds": time.process_time() - cpu0,
            "cg_scores_head": scores[:10].tolist()}
