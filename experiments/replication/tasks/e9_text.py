"""E9: noisy-label text classification with a transformer (the LAI paper's own setting at CPU scale; claim LAI-3).

The LAI paper fine-tunes a pretrained BERT on Emotion / 20 Newsgroups whose training labels carry 40 % cyclic
noise and filters every batch online: after a warm-up, sample i is kept iff LAI_t(i) ≥ 0 against a batch of
the clean validation set; it compares with vanilla training, Ghost and SPL (small-loss). Here:

* **Model**: a :class:`~influence.models.TextClassifier` (transformer encoder, mean-pooled) trained **from
  scratch** with AdamW: no pretrained encoder is available offline, so the model starts with no notion of
  sentiment and must learn it from the noisy labels during the warm-up. This is the main difference from
  the paper's setting: a fine-tuned BERT has a useful representation at step 0; ours does not.
* **Data**: Rotten Tomatoes snippets (:func:`replication.text.text_classification_splits`; 20 Newsgroups
  ibm-vs-mac in the paper configuration), word ids truncated to ``max_len`` tokens. Validation and test
  labels are clean; the training labels get :func:`replication.noise.cyclic_noise` at ``noise_rate``.
* **Noise on a binary set**: cyclic noise y → y + k mod C with C = 2 has the single offset k = 1, so it is a
  flip to the other class. At the authors' 40 % a training label is right with probability 0.6: the signal
  left is 60/40 (a margin of 1 − 2·0.4 = 0.2 over chance, against 1 − 0.4 − 0.4/(C−1) spread over several
  wrong classes in the paper's 6- and 20-class sets). Binary 40 % noise is much harder than the paper's:
  the label still agrees with the text more often than not, but only just.
* **Policies** (:data:`influence.curation.MODULE_POLICIES`, run by
  :func:`influence.curation.curate_module`): ``vanilla``, ``lai``, ``ghost`` (exact: every token pair and
  every parameter), ``ghost_flat`` (position-aligned Ghost, the authors' Ghost baseline), ``small_loss``
  (SPL: keep ℓ_i ≤ the median loss of the clean validation batch); the ``_self`` variants are accepted too.
  Dropped samples still count in the batch-mean denominator (authors' code).
* **learned**: a run *learned* when its final test accuracy (clean labels) is at least the test set's
  majority-class rate plus ``learned_margin`` (default 0.03, i.e. 3 points; with 1000 test samples the
  standard error of an accuracy near 0.5 is 1.6 points, so 3 points is about two standard errors above
  what a constant predictor gets).
* **Default sizes** (experiments/config/default.yaml, chosen for the CPU budget: the 18 default jobs cost about
  27 CPU-s of training per seed plus ~2.5 s of start-up each, ~70 s of wall time on 2 free cores):
  3000 / 500 / 1000 train / validation / test snippets (of 4863), 32 tokens (7 % of the snippets are longer),
  2000 word ids, one layer of width 32 with 2 heads, AdamW (lr 1e-3, weight decay 0.01), batch 32, target
  batches of 32, 5 epochs of which 2 warm-up. Warm-up: after one epoch on the noisy labels vanilla is still
  at chance on the clean validation set (the filter would score with a model that knows nothing); after
  two it is above chance — the paper fine-tunes a pretrained model and needs only a short warm-up.
* **The authors' protocol** (``protocol: authors`` on a dataset; :data:`AUTHORS_RUN`, :func:`authors_cyclic_noise`),
  read from ``Emotion_20News/spl_new_dataset.py`` and ``pipeline.py`` of ``yangziao56/Layer-Aware-Influence``:
  noise — each training label, in data order, is corrupted when a uniform draw is ≤ 0.4 (a Bernoulli
  fraction, not an exact one), y → (y + k) mod C with k running 1, 2, …, C−1, 1, … over the corrupted
  labels in data order (pipeline.py 254-262, 343-351); filter — weights 1[score ≥ 0] on every batch from the
  second epoch (``epoch >= 1``; spl_new_dataset.py 147, 380-381, 737-738), loss = Σ w_i ℓ_i / |B|
  (384); reference — ``int(32/2000 · |validation|)`` = 32 validation rows drawn afresh at every step
  (21, 151-152); 5 repetitions (1000). E9's own protocol already keeps iff score ≥ 0, counts dropped rows in
  the denominator and redraws V_t every step; it differs in the warm-up (2 epochs, not 1) and in the noise
  (exactly ⌊0.4·n⌋ labels, offsets cycling in a random order, :func:`replication.noise.cyclic_noise`).
  Differences that remain in the authors' protocol rows: a from-scratch encoder instead of a pretrained BERT,
  the split and noise redrawn per seed (theirs are fixed across the 5 repetitions), no ``drop_last`` (the
  default ``n_train`` is a multiple of the batch), and the LAI / Ghost scores over the weight layers of
  :mod:`influence.capture` rather than their forward hooks on every module.
* **Multi-class offline set**: ``shakespeare_play`` (6 plays, :data:`replication.text_plays.SIX_PLAYS`) and
  ``shakespeare_genre`` (comedy / history / tragedy, 36 plays): passages of ``max_len`` spoken words, split by
  scene (:func:`replication.text_plays.play_splits`). With C classes and 40 % cyclic noise the true class keeps
  0.6 of the labels and each wrong one 0.4/(C−1) (0.08 for 6 plays, 0.2 for 3 genres).
* **Time per step** is measured inside the job; when the workflow runs more jobs than there are free cores
  (``--cores 8`` on 2) the per-step times include that contention. Compare policies within one run.

:func:`run_text_policy` is one run; :func:`noisy_text_splits` loads and corrupts a split;
:func:`check_text_config` is the plan-time check of the workflow's ``experiments.text`` block
(``experiments/rules/text.smk``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from influence.curation import MODULE_POLICIES, curate_module
from influence.models import TextClassifier
from replication.noise import cyclic_noise

__all__ = [
    "POLICIES",
    "PROTOCOLS",
    "AUTHORS_RUN",
    "authors_cyclic_noise",
    "protocol_run",
    "TEXT_SIZES",
    "LEARNED_MARGIN",
    "model_name",
    "noisy_text_splits",
    "run_text_policy",
    "learned",
    "check_text_config",
    "RESULT_COLUMNS",
]

log = logging.getLogger(__name__)

#: The policies E9 runs by default (all of :data:`~influence.curation.MODULE_POLICIES` are accepted).
POLICIES = ("vanilla", "lai", "ghost", "ghost_flat", "small_loss")
#: Documents per text dataset (after the loader's de-duplication), for the plan-time size check;
#: measured from :func:`replication.text.text_classification_splits` (20ng: 982 ibm + 963 mac documents).
TEXT_SIZES = {"rotten_tomatoes": 4863, "rotten_tomatoes_full": 12752, "20ng": 1945,
              "shakespeare_play": 4809, "shakespeare_genre": 23866}
#: Shakespeare passages (replication.text_plays): dataset name → labelling.
PLAY_DATASETS = {"shakespeare_play": "play", "shakespeare_genre": "genre"}
#: ``protocol`` of a dataset: ``e9`` (this module's) or ``authors`` (the LAI authors' text protocol, module doc).
PROTOCOLS = ("e9", "authors")
#: The run settings the authors' protocol fixes: epoch 1 vanilla, then the filter; 32 reference rows per step.
AUTHORS_RUN = {"warmup_epochs": 1.0, "target_size": 32}
#: Default margin over the majority-class rate for a run to count as having learned (3 points).
LEARNED_MARGIN = 0.03
#: Columns of one row of ``results/metrics/E9_text.csv`` (experiments/scripts/e9_collect.py).
RESULT_COLUMNS = ("dataset", "protocol", "n_classes", "model", "policy", "seed", "noise_rate", "final_test_acc",
                  "best_test_acc", "test_acc_at_best_val", "noisy_dropped_fraction", "clean_dropped_fraction",
                  "kept_fraction", "dropped_noisy_precision", "dropped_label_purity", "dropped_label_purity_random",
                  "time_per_step_s", "score_time_s", "max_rss_mb", "wall_s",
                  "learned", "majority_acc", "n_train", "epochs", "warmup_epochs")


def model_name(d_model: int, n_layers: int, n_heads: int) -> str:
    """The ``model`` column: ``textclf_d{d_model}_l{n_layers}_h{n_heads}``."""
    return f"textclf_d{int(d_model)}_l{int(n_layers)}_h{int(n_heads)}"


def authors_cyclic_noise(y: np.ndarray, rate: float, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The LAI authors' label noise (``Emotion_20News/pipeline.py``, 254-262): in data order, label i is
    corrupted iff u_i ≤ ``rate`` (u_i uniform on [0, 1), seeded), y_i → (y_i + k) mod C where k is 1 for the
    first corrupted label and runs 1, 2, …, C−1, 1, … over the corrupted labels in data order.

    Returns (noisy labels int64, corruption mask). The corrupted count is Binomial(n, rate), not ⌊rate·n⌋.
    """
    y = np.asarray(y, dtype=np.int64)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if n_classes < 2 or (y.size and (y.min() < 0 or y.max() >= n_classes)):
        raise ValueError(f"labels must lie in [0, n_classes) with n_classes >= 2, got n_classes={n_classes}")
    if not 0 <= rate < 1:
        raise ValueError(f"noise rate must be in [0, 1), got {rate}")
    mask = np.random.default_rng(seed).random(y.size) <= rate if rate > 0 else np.zeros(y.size, dtype=bool)
    out = y.copy()
    idx = np.flatnonzero(mask)
    out[idx] = (y[idx] + np.arange(idx.size) % (n_classes - 1) + 1) % n_classes
    return out, mask


def protocol_run(protocol: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """The run settings of ``protocol``: ``e9`` keeps ``run``; ``authors`` overrides it with :data:`AUTHORS_RUN`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown E9 protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    return {**run, **(AUTHORS_RUN if protocol == "authors" else {})}


def noisy_text_splits(name: str = "rotten_tomatoes", *, max_len: int = 32, vocab_size: int = 2000,
                      n_train: int | None = None, n_val: int = 500, n_test: int = 1000, noise_rate: float = 0.4,
                      seed: int = 0, protocol: str = "e9", **loader: Any) -> dict[str, Any]:
    """Seeded splits of a text dataset with cyclic label noise on the training split only.

    ``seed`` seeds the split (:func:`replication.text.text_classification_splits`, stratified; the
    Shakespeare sets of :data:`PLAY_DATASETS`: :func:`replication.text_plays.play_splits`, by scene) and the
    noise: protocol ``e9`` :func:`replication.noise.cyclic_noise` (⌊noise_rate·n_train⌋ labels, a flip on a
    binary set), ``authors`` :func:`authors_cyclic_noise`. ``loader``: further keyword arguments of the
    loader (``directory``, ``cache_dir``, ...).

    Returns {'X_train', 'y_train' (noisy), 'clean_y', 'noise_mask', 'X_val', 'y_val', 'X_test', 'y_test'
    (int64 numpy), 'vocab_size', 'n_classes', 'meta'}.
    """
    from replication.text import text_classification_splits
    from replication.text_plays import play_splits

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown E9 protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if name in PLAY_DATASETS:
        sp = play_splits(PLAY_DATASETS[name], max_len=max_len, vocab_size=vocab_size, n_train=n_train,
                         n_val=n_val, n_test=n_test, seed=seed, **loader)
        C = len(sp["meta"]["classes"])
    else:
        sp = text_classification_splits(name, max_len=max_len, vocab_size=vocab_size, n_train=n_train,
                                        n_val=n_val, n_test=n_test, seed=seed, **loader)
        C = int(max(sp[f"y_{s}"].max(initial=0) for s in ("train", "val", "test"))) + 1
        C = max(C, 2)
    clean = sp["y_train"].copy()
    noise = authors_cyclic_noise if protocol == "authors" else cyclic_noise
    y_noisy, mask = noise(clean, noise_rate, C, seed=seed)
    return {"X_train": sp["X_train"], "y_train": y_noisy, "clean_y": clean, "noise_mask": np.asarray(mask, bool),
            "X_val": sp["X_val"], "y_val": sp["y_val"], "X_test": sp["X_test"], "y_test": sp["y_test"],
            "vocab_size": int(sp["vocab"].size), "n_classes": C,
            "meta": {**sp["meta"], "noise": "authors_cyclic" if protocol == "authors" else "cyclic",
                     "noise_rate": float(noise_rate), "protocol": protocol}}


def learned(final_test_acc: float, majority_acc: float, margin: float = LEARNED_MARGIN) -> bool:
    """Whether a run learned: final test accuracy ≥ majority-class rate + ``margin`` (module doc)."""
    return bool(np.isfinite(final_test_acc) and final_test_acc >= majority_acc + margin - 1e-12)


def _tensor(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.int64)


def _accuracy(module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> float:
    hits = 0
    for s in range(0, X.shape[0], chunk):
        hits += int((module(X[s: s + chunk]).argmax(1) == y[s: s + chunk]).sum())
    return hits / max(1, X.shape[0])


def run_text_policy(splits: Mapping[str, Any], policy: str, *, seed: int = 0, d_model: int = 32, n_layers: int = 1,
                    n_heads: int = 2, epochs: int = 5, batch_size: int = 32, lr: float = 1e-3,
                    weight_decay: float = 0.01, warmup_epochs: float = 2.0, target_size: int = 32,
                    eval_every: int = 0, learned_margin: float = LEARNED_MARGIN,
                    dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """One E9 run: a TextClassifier trained from scratch with AdamW under curation ``policy``.

    ``splits``: 'X_train', 'y_train' (the labels trained on, noisy or not), 'X_val', 'y_val' (clean; the
    target batches V_t of ``target_size`` rows are drawn from it), 'X_test', 'y_test' (clean); optional
    'noise_mask' (n_train,) bool (bookkeeping only: which training labels were corrupted), 'vocab_size'
    and 'n_classes' (default: from the largest id / label). ``seed`` seeds the initialisation, the batch
    order and the V_t draws. The context of the model is the token length of the rows.

    Test (and validation) accuracy is measured before training and every ``eval_every`` steps (0: at the
    end of every epoch). Curation starts after ``warmup_epochs`` (fractional allowed) vanilla epochs.

    Returns a JSON-ready dict: 'policy', 'seed', 'model', 'noise_rate' (fraction of training labels in the
    noise mask), 'final_test_acc', 'best_test_acc' (max over the evaluations, selected on test: optimistic),
    'test_acc_at_best_val' (at the evaluation with the best clean validation accuracy), the curve
    ('eval_steps', 'eval_epochs', 'test_acc', 'val_acc'), 'kept_fraction', 'noisy_dropped_fraction',
    'clean_dropped_fraction', 'dropped_noisy_precision' (over the curated steps; vanilla keeps everything:
    1, 0, 0, nan), 'dropped_label_purity' and 'dropped_label_purity_random' (:func:`_label_purity`: does the
    filter drop by the observed label rather than by the noise?), 'time_per_step_s' (mean whole-step time,
    scoring + forward/backward + AdamW, over the steps after the warm-up, for every policy alike),
    'score_time_s' (mean scoring time over those steps), 'max_rss_mb' (largest process RSS seen after a
    step), 'wall_s' (training), 'majority_acc' (test),
    'learned' (:func:`learned`), 'drop_count' (times each training sample was dropped), 'curated_steps',
    'n_steps', 'steps_per_epoch'.
    """
    if policy not in MODULE_POLICIES:
        raise ValueError(f"unknown E9 policy {policy!r}; use one of {', '.join(MODULE_POLICIES)}")
    for key in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        if key not in splits:
            raise ValueError(f"splits lacks {key!r} (needs X_/y_ train, val and test)")
    X, y = _tensor(splits["X_train"]), _tensor(splits["y_train"])
    Xv, yv = _tensor(splits["X_val"]), _tensor(splits["y_val"])
    Xs, ys = _tensor(splits["X_test"]), _tensor(splits["y_test"])
    for name, A in (("X_train", X), ("X_val", Xv), ("X_test", Xs)):
        if A.ndim != 2:
            raise ValueError(f"{name} must be token ids (m, T), got shape {tuple(A.shape)}")
    if not (X.shape[1] == Xv.shape[1] == Xs.shape[1]):
        raise ValueError("train, validation and test rows must have the same token length")
    if Xv.shape[0] == 0 or Xs.shape[0] == 0:
        raise ValueError("E9 needs a non-empty validation and test split")
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs must lie in [0, epochs={epochs}], got {warmup_epochs}")
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
    n = X.shape[0]
    mask = splits.get("noise_mask")
    mask = np.zeros(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    vocab = int(splits.get("vocab_size") or int(max(X.max(), Xv.max(), Xs.max())) + 1)
    C = int(splits.get("n_classes") or int(max(y.max(), yv.max(), ys.max())) + 1)
    C = max(C, 2)
    module = TextClassifier(vocab, C, context=X.shape[1], d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                            dtype=dtype, seed=seed)
    spe = -(-n // batch_size)
    every = int(eval_every) if eval_every else spe

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        return {"test_acc": _accuracy(m, Xs, ys), "val_acc": _accuracy(m, Xv, yv)}

    module.eval()
    with torch.no_grad():
        first = {"step": 0, "epoch": 0, **evaluate(module)}
    t0 = time.perf_counter()
    out = curate_module(module, (X, y), (Xv, yv), policy, epochs=epochs, batch_size=batch_size, lr=lr,
                        optimizer="adamw", weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                        target_size=target_size, seed=seed, noise_mask=mask, evaluate=evaluate, eval_every=every)
    wall = time.perf_counter() - t0
    logs, evals = out["logs"], [first, *out["evals"]]
    warm_steps = int(round(warmup_epochs * spe))
    after = [r for r in logs if r["step"] >= warm_steps] or logs
    test_acc = [float(e["test_acc"]) for e in evals]
    val_acc = [float(e["val_acc"]) for e in evals]
    drop_count = np.zeros(n, dtype=np.int64)
    for r in logs:
        np.add.at(drop_count, np.asarray(r["dropped"], dtype=np.int64), 1)
    purity, purity_random = _label_purity(logs, y.numpy(), C, seed)
    summ = out["summary"]
    if summ.get("curated_steps", 0):
        kept = summ["kept_fraction"]
        nd = summ.get("noisy_dropped_fraction", float("nan"))
        cd = summ.get("clean_dropped_fraction", float("nan"))
        prec = summ.get("dropped_noisy_precision", float("nan"))
    else:  # vanilla (or a warm-up as long as the run): nothing dropped
        kept, nd, cd, prec = 1.0, (0.0 if mask.any() else float("nan")), 0.0, float("nan")
    majority = float(np.bincount(ys.numpy(), minlength=C).max() / len(ys))
    final = test_acc[-1]
    res: dict[str, Any] = {
        "policy": policy, "seed": int(seed), "model": model_name(d_model, n_layers, n_heads),
        "noise_rate": float(mask.mean()) if n else 0.0,
        "final_test_acc": final, "best_test_acc": max(test_acc),
        "test_acc_at_best_val": test_acc[int(np.argmax(val_acc))],
        "eval_steps": [int(e["step"]) for e in evals], "eval_epochs": [e["step"] / spe for e in evals],
        "test_acc": test_acc, "val_acc": val_acc,
        "kept_fraction": float(kept), "noisy_dropped_fraction": float(nd), "clean_dropped_fraction": float(cd),
        "dropped_noisy_precision": float(prec),
        "dropped_label_purity": purity, "dropped_label_purity_random": purity_random,
        "time_per_step_s": float(np.mean([r["step_time_s"] for r in after])),
        "score_time_s": float(np.mean([r["score_time_s"] for r in after])),
        "max_rss_mb": float(max(r["rss_mb"] for r in logs)),
        "wall_s": wall, "majority_acc": majority, "learned": learned(final, majority, learned_margin),
        "learned_margin": float(learned_margin),
        "drop_count": drop_count.tolist(), "curated_steps": int(summ.get("curated_steps", 0)),
        "n_steps": len(logs), "steps_per_epoch": spe, "n_train": int(n), "epochs": int(epochs),
        "warmup_epochs": float(warmup_epochs), "final_train_loss": float(np.mean([r["loss"] for r in logs[-spe:]])),
    }
    log.info("E9 %s seed %d: final test acc %.4f (best %.4f, majority %.4f), kept %.3f, noisy dropped %.3f, "
             "clean dropped %.3f", policy, seed, final, res["best_test_acc"], majority, kept, nd, cd)
    return res


def _label_purity(logs: list[dict], y: np.ndarray, n_classes: int, seed: int) -> tuple[float, float]:
    """Mean over the steps that dropped ≥ 2 samples of the share of the most common (trained-on) label among
    the dropped ones, and the same for random subsets of the training labels of the same sizes (seeded).

    A filter that picks by the noise drops both labels of a binary batch (purity near the random value); one
    that drops by the observed label drops mostly one class per step (purity near 1).
    """
    sizes = [len(r["dropped"]) for r in logs if len(r["dropped"]) >= 2]
    if not sizes:
        return float("nan"), float("nan")
    got = [np.bincount(y[np.asarray(r["dropped"])], minlength=n_classes).max() / len(r["dropped"])
           for r in logs if len(r["dropped"]) >= 2]
    rng = np.random.default_rng(seed + 104729)
    ref = [np.bincount(y[rng.choice(len(y), k, replace=False)], minlength=n_classes).max() / k for k in sizes]
    return float(np.mean(got)), float(np.mean(ref))


# ------------------------------------------------------------------------------------ plan-time config check
def check_text_config(block: Mapping[str, Any]) -> None:
    """Checks of ``experiments.text`` the schema cannot express; raises ``ValueError`` naming the key.

    Dataset names unique and their splits within the dataset (:data:`TEXT_SIZES`), ``d_model`` a multiple
    of ``n_heads``, the warm-up shorter than the run (else the curated policies would never curate) and the
    policies known.
    """
    where = "experiments.text"
    names = [d["name"] for d in block.get("datasets", [])]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ValueError(f"config: {where}.datasets names {', '.join(map(repr, dup))} more than once")
    for d in block.get("datasets", []):
        if d["name"] not in TEXT_SIZES:
            raise ValueError(f"config: {where}.datasets: unknown text dataset {d['name']!r}; known: "
                             f"{', '.join(TEXT_SIZES)}")
        total = int(d["n_train"]) + int(d["n_val"]) + int(d["n_test"])
        if total > TEXT_SIZES[d["name"]]:
            raise ValueError(f"config: {where}.datasets {d['name']!r} asks for {total} documents (n_train "
                             f"{d['n_train']} + n_val {d['n_val']} + n_test {d['n_test']}), but it has "
                             f"{TEXT_SIZES[d['name']]}")
    for d in block.get("datasets", []):
        if d.get("protocol", "e9") not in PROTOCOLS:
            raise ValueError(f"config: {where}.datasets {d['name']!r}: unknown protocol {d['protocol']!r}; known: "
                             f"{', '.join(PROTOCOLS)}")
    policies = [p for d in block.get("datasets", []) for p in d.get("policies", [])]
    unknown = sorted((set(block.get("policies", [])) | set(policies)) - set(MODULE_POLICIES))
    if unknown:
        raise ValueError(f"config: {where}.policies: unknown {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(MODULE_POLICIES)}")
    m = block.get("model", {})
    if int(m.get("d_model", 1)) % int(m.get("n_heads", 1)):
        raise ValueError(f"config: {where}.model.d_model ({m['d_model']}) must be a multiple of "
                         f"{where}.model.n_heads ({m['n_heads']})")
    r = block.get("run", {})
    curated = [p for p in block.get("policies", []) if p != "vanilla"]
    authors = any(d.get("protocol") == "authors" for d in block.get("datasets", []))
    if authors and curated and AUTHORS_RUN["warmup_epochs"] >= int(r.get("epochs", 1)):
        raise ValueError(f"config: {where}.run.epochs ({r['epochs']}) must exceed the authors' protocol warm-up "
                         f"({AUTHORS_RUN['warmup_epochs']:g} epoch)")
    if curated and float(r.get("warmup_epochs", 0)) >= int(r.get("epochs", 1)):
        raise ValueError(f"config: {where}.run.warmup_epochs ({r['warmup_epochs']}) must be smaller than "
                         f"{where}.run.epochs ({r['epochs']}): the policies {', '.join(curated)} would never curate")
