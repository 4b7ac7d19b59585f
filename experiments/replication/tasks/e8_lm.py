"""E8: char-level LM pretraining with online data filtering (the LAI paper's own setting at CPU scale), and
claim LAI-2 (fidelity to per-step data Shapley) on the language model.

The LAI paper (Yang, Huang & Liu 2025) pretrains GPT-Neo with a self-influence filter: after a warm-up, at every
step a training sequence is kept iff its LAI self-influence score against the same batch (itself included) is
positive. Its Shapley figure reports a mean per-step Pearson correlation with Monte-Carlo data Shapley of 0.96
(LAI) against 0.90 (Ghost), batches of 16. Here, at CPU scale:

* **Model**: :class:`~influence.models.TinyGPT` (char-level decoder, GPT-2 layout) trained from scratch with
  AdamW (constant learning rate, ``weight_decay``), float32.
* **Data**: windows of ``context + 1`` characters of Shakespeare's plays (:func:`replication.text.lm_splits`):
  training windows from the training plays; the validation plays give two disjoint clean sets, the *target*
  pool (``n_target`` windows: the validation batches V_t of ``lai`` / ``small_loss`` and the Shapley V) and
  the *evaluation* set (``n_val`` windows: the reported validation loss, never seen by a policy); test windows
  from other plays. The play split is fixed by ``split_seed`` (default 0); the windows drawn, the noise, the
  initialisation and the batch order follow ``seed``.
* **Harmful data**: ``noise_rate`` of the training windows are replaced (:func:`replication.text.inject_lm_noise`)
  — by default ``random`` (i.i.d. uniform characters: pure noise); ``shuffle`` (the window's own characters
  permuted: right unigram statistics, no sequence structure) and ``source`` (windows of Rotten Tomatoes
  reviews: fluent English of another domain) are accepted too. The kind is recorded in every row.
* **Policies** (:func:`influence.curation.curate_module`): ``vanilla``; ``lai_self`` (the authors' pretraining
  rule), ``ghost_self`` (exact Ghost, every token pair and parameter), ``ghost_flat_self`` (position-aligned
  Ghost, the authors' Ghost baseline), all scored against the batch itself, i included; ``lai`` against a fresh
  clean validation batch V_t; ``small_loss`` (SPL: keep ℓ_i ≤ the median loss of V_t). **Keep rule: score ≥ 0**
  (curate_module's rule; the paper writes > 0 — the two differ only on an exact zero). Dropped sequences still
  count in the batch-mean denominator (authors' code). Curation starts after ``warmup_epochs`` (fractional:
  0.2 of a one-epoch run = the first 20 % of the steps are vanilla).
* **learned**: a run *learned* when its final clean validation loss is below the cross-entropy of the
  add-one-smoothed unigram model of the clean training windows by at least ``learned_margin`` nats (default
  0.1). The untrained model (≈ ln V nats) is far above the unigram model, so the flag is false for it; a
  model that only learnt character frequencies does not pass either.

**Per-step Shapley (LAI-2).** :func:`lm_step_shapley` replays the vanilla run (deterministic under its seed) and
keeps θ_t at a few steps t. For the first ``batch_size`` (16) members of the step's own batch S_t and a clean
subset V of the target pool, the utility of a coalition S ⊆ B is the one-step loss reduction

    U(S) = L_V(θ_t) − L_V(θ_t − (η/|B|) Σ_{i∈S} ∇ℓ_i(θ_t)),

one **SGD** step on the coalition, although training uses AdamW: the LAI / Ghost scores are first-order
quantities of a raw-gradient (SGD) step — U(S) ≈ (η/|B|) Σ_{i∈S} ⟨∇ℓ_i, ∇L_V⟩ — and the utility must be defined
for every coalition without an optimiser state. η (default 1e-3, float64) is chosen in the first-order regime:
each row records ``first_order_rel_err`` = |U(B) − (η/|B|) Σ_i Ghost_i| / |(η/|B|) Σ_i Ghost_i| (measured on the
default model at its 4 Shapley steps: 0.2–1.3 % at η = 1e-3, 2–13 % at 1e-2, 24–140 % at 0.1), while the
marginal contributions (~1e-6 nats) are nine orders of magnitude above float64 rounding of L_V (~1e-15); float32
would leave only two. (Measured once outside the first-order regime, η = 0.1: mean Pearson LAI 0.18, exact Ghost
0.74 — 0.23 to 0.99 by step —, flattened Ghost 0.78; at η = 1e-2: 0.17, 1.00, 0.68. LAI stays the least
faithful.) Monte-Carlo permutation Shapley (:func:`step_shapley_module`): ``n_perm`` permutations in antithetic
pairs; the 16 per-sample gradients G are computed once (``torch.func.vmap(grad)``); every proper prefix of a
permutation is a 0/1 membership row c, its parameters θ − (η/|B|) c G (the prefix sum), and ``chunk`` such
parameter sets are evaluated per call (``torch.func.functional_call`` under ``vmap``; on one CPU core at the
default size the evaluation is compute-bound, ~15–19 ms per parameter set, so this is no faster than a loop —
it is for wider machines); the standard error comes from the pair means. With all k! permutations it is exact
(:func:`exact_step_shapley` enumerates all 2^k coalitions; the tests check both on k = 4). The values are
compared (Pearson, Spearman) with LAI, exact Ghost and flattened Ghost of the same batch against the same V, in
float64. In the first-order regime the Shapley value of i is (η/|B|)·Ghost_i up to O(η²), so exact Ghost's
correlation is a check (≈ 1) and the question is how close LAI and flattened Ghost come to it.

**The authors' Shapley game beside ours.** The LAI authors' check (their ``DBC_tpu/mc/ghost_trainer.py``,
``_estimate_first_batch_shapley``; 1000 permutations, GPT-Neo, batch 16, every 100 steps) values a batch with
U(S) = mean_{i∈S} ℓ_i(θ_t), U(∅) = 0 — the coalition's mean loss at the current parameters, no step and no
validation data — and correlates it with in-batch self-influence scores (target = the batch itself, i
included). Its exact Shapley value (:func:`influence.shapley.mean_loss_shapley`) is an increasing affine function
of ℓ_i, so within a step its Pearson correlation with any score is that score's correlation with the per-sample
loss. At each Shapley step the same batch B is also valued with that game (``shapley_meanloss``, exact; and the
authors' 1000-permutation estimate, ``shapley_meanloss_mc``), and every score — LAI, exact and flattened Ghost
against V; their self-influence forms against B (``*_self``, ``lai_self_offdiag``); and two loss-only baselines,
``loss`` = ℓ_i and ``outgrad`` = ‖∂ℓ_i/∂z_i‖² (the logits' gradient) — is correlated with both games
(``pearson_<score>``: the one-step game; ``pearson_meanloss_<score>``: the authors'). ``drop_le0_<score>`` is the
fraction of B with score ≤ 0 (the authors' filter drops those; E8's keep rule, score ≥ 0, differs only on exact
zeros, counted in ``n_zero_scores``), ``drop_small_loss`` the fraction with ℓ_i above the median loss of V (the
``small_loss`` rule with V as its validation batch). :func:`published_shapley_summary` recomputes the published
0.96 / 0.90 from the authors' own per-sample file.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from influence.capture import capture
from influence.curation import MODULE_POLICIES, curate_module
from influence.estimators.online import batch_scores
from influence.models import TinyGPT, sequence_losses
from influence.shapley import exact_step_shapley, mean_loss_shapley, mean_loss_shapley_mc, step_shapley_module
from replication.text import LM_NOISE_KINDS, inject_lm_noise, lm_splits

__all__ = [
    "POLICIES",
    "LEARNED_MARGIN",
    "RESULT_COLUMNS",
    "SHAPLEY_COLUMNS",
    "VALUE_COLUMNS",
    "STEP_SCORES",
    "PUBLISHED_SCORES_SHA256",
    "model_name",
    "load_lm_data",
    "noisy_stream",
    "unigram_loss",
    "lm_loss",
    "learned",
    "run_lm_policy",
    "vanilla_batch",
    "step_shapley_module",
    "exact_step_shapley",
    "lm_step_shapley",
    "published_shapley_summary",
    "summarize_runs",
    "check_lm_config",
]

log = logging.getLogger(__name__)

#: The policies E8 runs by default (every name of :data:`~influence.curation.MODULE_POLICIES` is accepted).
POLICIES = ("vanilla", "lai_self", "lai_self_offdiag", "ghost_self", "ghost_flat_self", "small_loss", "lai")
#: Default margin (nats) below the unigram cross-entropy for a run to count as having learned.
LEARNED_MARGIN = 0.1
#: Columns of one row of ``results/metrics/E8_lm.csv`` (experiments/scripts/e8_collect.py).
RESULT_COLUMNS = ("dataset", "model", "policy", "seed", "noise_kind", "noise_rate", "final_val_loss",
                  "best_val_loss", "best_step", "final_val_ppl", "test_loss", "test_ppl", "initial_val_loss",
                  "unigram_val_loss", "noisy_dropped_fraction", "clean_dropped_fraction", "kept_fraction",
                  "dropped_noisy_precision", "noisy_dropped_fraction_run", "time_per_step_s", "score_time_s",
                  "max_rss_mb", "wall_s", "n_steps", "warmup_steps", "learned")
#: Scores of a Shapley step: against V (the one-step game's target); self-influence against B (the authors'
#: filter scores); loss-only baselines (ℓ_i and ‖∂ℓ_i/∂z_i‖²).
TARGET_SCORES = ("lai", "ghost", "ghost_flat")
SELF_SCORES = ("lai_self", "lai_self_offdiag", "ghost_self", "ghost_flat_self")
LOSS_SCORES = ("loss", "outgrad")
STEP_SCORES = TARGET_SCORES + SELF_SCORES + LOSS_SCORES
#: Columns of one row of ``results/metrics/E8_shapley.csv``.
SHAPLEY_COLUMNS = ("dataset", "model", "seed", "step", "pearson_lai", "pearson_ghost", "pearson_ghost_flat",
                   "spearman_lai", "spearman_ghost", "spearman_ghost_flat",
                   *(f"pearson_{s}" for s in SELF_SCORES + LOSS_SCORES),
                   *(f"pearson_meanloss_{s}" for s in STEP_SCORES), "pearson_games", "meanloss_mc_err",
                   *(f"drop_le0_{s}" for s in TARGET_SCORES + SELF_SCORES + ("shapley", "shapley_meanloss")),
                   "drop_small_loss", "n_zero_scores", "n_permutations", "shapley_se",
                   "shapley_se_over_sd", "first_order_rel_err", "efficiency_err", "ghost_check_rel_err", "eta",
                   "batch_size", "target_size", "n_noisy_in_batch", "val_loss_V", "shapley_time_s", "learned")
#: Per-sample columns of ``results/metrics/E8_shapley_values.csv``.
VALUE_COLUMNS = ("dataset", "model", "seed", "step", "sample", "noisy", "shapley", "shapley_se",
                 "shapley_meanloss", "shapley_meanloss_mc", *STEP_SCORES)
#: The LAI authors' per-sample Shapley file (github.com/yangziao56/Layer-Aware-Influence, commit 370a4f8,
#: ``DBC_tpu/mc/first_batch_scores.csv``; the repository states no licence, so it is not shipped here).
PUBLISHED_SCORES_FILE = "lai_first_batch_scores.csv"
PUBLISHED_SCORES_SHA256 = "be58e8fbcf9295ca6ac56fbf01a8f964c087b733abdb4bae5fd55bf1278c614c"


def _int(name: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def model_name(context: int, d_model: int, n_layers: int, n_heads: int) -> str:
    """The ``model`` column: ``tinygpt_c{context}_d{d_model}_l{n_layers}_h{n_heads}``."""
    return f"tinygpt_c{int(context)}_d{int(d_model)}_l{int(n_layers)}_h{int(n_heads)}"


# ------------------------------------------------------------------------------------------------ data
def load_lm_data(context: int = 64, *, n_train: int, n_target: int, n_val: int, n_test: int, seed: int = 0,
                 split_seed: int = 0, noise_kind: str = "random", directory: Any = None) -> dict[str, Any]:
    """Clean Shakespeare windows for E8: ``train`` (n_train, context + 1), ``target`` (the pool of validation
    batches), ``val`` (the evaluation set), ``test``; int64 arrays. ``target`` and ``val`` are a seeded random
    partition of ``n_target + n_val`` windows of the validation plays. ``noise_kind='source'`` also loads
    ``other``: the Rotten Tomatoes snippets (one per line) encoded with the same vocabulary."""
    if noise_kind not in LM_NOISE_KINDS:
        raise ValueError(f"unknown noise_kind {noise_kind!r}; known: {', '.join(LM_NOISE_KINDS)}")
    for name, v in (("n_train", n_train), ("n_target", n_target), ("n_val", n_val), ("n_test", n_test)):
        _int(name, v)
    sp = lm_splits(int(context), n_train=int(n_train), n_val=int(n_target) + int(n_val), n_test=int(n_test),
                   seed=int(seed), split_seed=int(split_seed), directory=directory)
    perm = np.random.default_rng([int(seed), 8]).permutation(len(sp["val"]))
    out = {"train": sp["train"], "target": sp["val"][np.sort(perm[:n_target])],
           "val": sp["val"][np.sort(perm[n_target:])], "test": sp["test"], "vocab_size": sp["vocab"].size,
           "vocab": sp["vocab"], "context": int(context),
           "meta": {k: sp["meta"][k] for k in ("source", "sha256", "plays_per_split", "windows_available",
                                               "vocab", "seed", "split_seed")}}
    if noise_kind == "source":
        from replication.text import rotten_tomatoes

        texts, _, rt_meta = rotten_tomatoes()
        out["other"] = sp["vocab"].encode("\n".join(texts))
        out["meta"]["other"] = rt_meta["source"]
    return out


def noisy_stream(data: Mapping[str, Any], noise_rate: float, noise_kind: str, seed: int) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """The training stream with ``noise_rate`` of its windows replaced (:func:`replication.text.inject_lm_noise`,
    seeded by ``seed``); returns (windows, mask of the replaced ones)."""
    if noise_kind not in LM_NOISE_KINDS:
        raise ValueError(f"unknown noise_kind {noise_kind!r}; known: {', '.join(LM_NOISE_KINDS)}")
    if not 0 <= float(noise_rate) < 1:
        raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate!r}")
    other = data.get("other") if noise_kind == "source" else None
    if noise_kind == "source" and other is None:
        raise ValueError("noise_kind 'source' needs data['other'] (load_lm_data(..., noise_kind='source'))")
    return inject_lm_noise(data["train"], float(noise_rate), kind=noise_kind, vocab_size=int(data["vocab_size"]),
                           seed=int(seed), other=other)


def _xy(seqs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(np.asarray(seqs, dtype=np.int64))
    return s[:, :-1], s[:, 1:]


def unigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats per character) on the next-character targets of ``val`` of the add-one-smoothed
    unigram model of the targets of ``train``."""
    counts = np.bincount(np.asarray(train)[:, 1:].ravel(), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(val)[:, 1:]].mean())


def lm_loss(module: nn.Module, seqs: np.ndarray, batch: int = 256) -> float:
    """Mean next-character cross-entropy (nats) of ``module`` on windows ``seqs`` (all the same length)."""
    x, y = _xy(seqs)
    was = module.training
    module.eval()
    tot = 0.0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            tot += float(sequence_losses(module(x[s : s + batch]), y[s : s + batch]).double().sum())
    module.train(was)
    return tot / len(x)


def learned(final_val_loss: float, unigram_val_loss: float, margin: float = LEARNED_MARGIN) -> bool:
    """The run learned: its final clean validation loss is below the unigram model's by at least ``margin``."""
    return bool(np.isfinite(final_val_loss) and final_val_loss < unigram_val_loss - float(margin))


def _ppl(loss: float) -> float:
    return float(math.exp(loss)) if loss < 700 else float("inf")


# --------------------------------------------------------------------------------------------------- runs
def _train(data: Mapping[str, Any], policy: str, *, seed: int, noise_rate: float, noise_kind: str, d_model: int,
           n_layers: int, n_heads: int, epochs: int, batch_size: int, lr: float, weight_decay: float,
           warmup_epochs: float, target_size: int, eval_every: int, checkpoint_steps: Sequence[int] = (),
           dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    if policy not in MODULE_POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {tuple(MODULE_POLICIES)}")
    seed, eval_every = int(seed), _int("eval_every", eval_every)
    stream, mask = noisy_stream(data, noise_rate, noise_kind, seed)
    X, Y = _xy(stream)
    target = _xy(data["target"])
    n_steps = int(epochs) * -(-len(X) // int(batch_size))
    model = TinyGPT(int(data["vocab_size"]), context=int(data["context"]), d_model=int(d_model),
                    n_layers=int(n_layers), n_heads=int(n_heads), dtype=dtype, seed=seed)
    wanted = {int(t) for t in checkpoint_steps}
    if any(t < 0 or t >= n_steps for t in wanted):
        raise ValueError(f"checkpoint steps must lie in [0, {n_steps}), got {sorted(wanted)}")
    ckpts: dict[int, dict[str, torch.Tensor]] = {}
    if 0 in wanted:
        ckpts[0] = copy.deepcopy(model.state_dict())
    curve = {"step": [0], "val_loss": [lm_loss(model, data["val"])]}
    done = 0

    def evaluate(module: nn.Module) -> dict:  # called after every step (eval_every=1 below)
        nonlocal done
        done += 1
        if done in wanted:
            ckpts[done] = copy.deepcopy(module.state_dict())
        if done % eval_every == 0 or done == n_steps:
            curve["step"].append(done)
            curve["val_loss"].append(lm_loss(module, data["val"]))
        return {}

    t0 = time.perf_counter()
    res = curate_module(model, (X, Y), target, policy, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                        optimizer="adamw", weight_decay=float(weight_decay), warmup_epochs=float(warmup_epochs),
                        target_size=int(target_size), seed=seed, noise_mask=mask, evaluate=evaluate, eval_every=1)
    wall = time.perf_counter() - t0
    return {"model": model, "res": res, "curve": curve, "wall": wall, "stream": stream, "mask": mask,
            "checkpoints": ckpts, "n_steps": n_steps}


def run_lm_policy(data: Mapping[str, Any], policy: str, *, seed: int = 0, noise_rate: float = 0.3,
                  noise_kind: str = "random", d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                  epochs: int = 1, batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 0.1,
                  warmup_epochs: float = 0.2, target_size: int = 16, eval_every: int = 40,
                  learned_margin: float = LEARNED_MARGIN, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """One E8 run: TinyGPT trained with AdamW on the noisy stream under ``policy`` (see the module doc).

    ``data`` from :func:`load_lm_data` (clean; the noise is injected here with ``seed``). The clean validation
    loss (``data['val']``) is evaluated at step 0, every ``eval_every`` steps and at the end.

    Returns a JSON-serialisable dict: the columns of :data:`RESULT_COLUMNS` but dataset (set by the caller),
    the curve (``curve_steps``, ``curve_val_loss``) and curate_module's ``summary``. Dropped fractions are over
    the curated steps (after the warm-up): ``noisy_dropped_fraction`` = injected dropped / injected seen,
    ``clean_dropped_fraction`` likewise, ``kept_fraction`` = mean kept fraction per step (vanilla: 0, 0, 1);
    ``noisy_dropped_fraction_run`` is over the whole run (warm-up included). ``time_per_step_s`` = mean wall time
    of a whole step (scoring, backward, AdamW) over the curated steps (vanilla: all steps), ``score_time_s`` =
    the scoring part; ``max_rss_mb`` = peak resident memory of the process seen after a step.
    """
    tr = _train(data, policy, seed=seed, noise_rate=noise_rate, noise_kind=noise_kind, d_model=d_model,
                n_layers=n_layers, n_heads=n_heads, epochs=epochs, batch_size=batch_size, lr=lr,
                weight_decay=weight_decay, warmup_epochs=warmup_epochs, target_size=target_size,
                eval_every=eval_every, dtype=dtype)
    model, res, curve, mask = tr["model"], tr["res"], tr["curve"], tr["mask"]
    logs, summ = res["logs"], res["summary"]
    cur = [r for r in logs if r["curating"]]
    timed = cur or logs
    vals = curve["val_loss"]
    best = int(np.argmin(vals))
    unigram = unigram_loss(tr["stream"][~mask], data["val"], int(data["vocab_size"]))
    n_noisy = int(mask.sum())
    out: dict[str, Any] = {
        "policy": policy, "seed": int(seed), "model": model_name(data["context"], d_model, n_layers, n_heads),
        "noise_kind": noise_kind, "noise_rate": float(noise_rate), "n_train": int(len(mask)), "n_noisy": n_noisy,
        "n_steps": tr["n_steps"],
        "warmup_steps": min(tr["n_steps"], int(round(float(warmup_epochs) * -(-len(mask) // int(batch_size))))),
        "curve_steps": curve["step"], "curve_val_loss": vals,
        "initial_val_loss": vals[0], "final_val_loss": vals[-1], "best_val_loss": float(vals[best]),
        "best_step": int(curve["step"][best]), "final_val_ppl": _ppl(vals[-1]),
        "test_loss": lm_loss(model, data["test"]), "unigram_val_loss": unigram,
        "time_per_step_s": float(np.mean([r["step_time_s"] for r in timed])),
        "time_per_step_all_s": float(np.mean([r["step_time_s"] for r in logs])),
        "score_time_s": float(np.mean([r["score_time_s"] for r in timed])),
        "max_rss_mb": float(max(r["rss_mb"] for r in logs)), "wall_s": tr["wall"],
        "summary": summ, "learned_margin": float(learned_margin),
        "config": {"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, "context": data["context"],
                   "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                   "warmup_epochs": warmup_epochs, "target_size": target_size, "eval_every": eval_every,
                   "optimizer": "adamw", "keep_rule": "score >= 0", "dtype": str(dtype)},
    }
    out["test_ppl"] = _ppl(out["test_loss"])
    if cur:
        out.update(kept_fraction=summ["kept_fraction"], noisy_dropped_fraction=summ.get("noisy_dropped_fraction"),
                   clean_dropped_fraction=summ.get("clean_dropped_fraction"),
                   dropped_noisy_precision=summ.get("dropped_noisy_precision"))
    else:  # vanilla (or a warm-up as long as the run): nothing dropped
        out.update(kept_fraction=1.0, noisy_dropped_fraction=0.0 if n_noisy else float("nan"),
                   clean_dropped_fraction=0.0, dropped_noisy_precision=float("nan"))
    seen = sum(r["n_noisy"] for r in logs)
    out["noisy_dropped_fraction_run"] = sum(r["n_noisy_dropped"] for r in logs) / seen if seen else float("nan")
    out["learned"] = learned(out["final_val_loss"], unigram, learned_margin)
    return out


def vanilla_batch(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The training rows of step ``step`` of a :func:`~influence.curation.curate_module` run with ``seed`` (one
    permutation of the n rows per epoch from ``default_rng(seed)``; exact for ``vanilla`` and the ``_self``
    policies, whose steps draw nothing else)."""
    rng = np.random.default_rng(int(seed))
    per_epoch = -(-int(n) // int(batch_size))
    epoch, k = divmod(int(step), per_epoch)
    for _ in range(epoch + 1):
        order = rng.permutation(int(n))
    return order[k * batch_size : (k + 1) * batch_size]


# ---------------------------------------------------------------------------------------------- Shapley
# step_shapley_module / exact_step_shapley: the one implementation of the one-step game, in influence.shapley


def lm_step_shapley(data: Mapping[str, Any], *, seed: int = 0, noise_rate: float = 0.3, noise_kind: str = "random",
                    d_model: int = 64, n_layers: int = 2, n_heads: int = 4, epochs: int = 1, batch_size: int = 16,
                    lr: float = 3e-3, weight_decay: float = 0.1, warmup_epochs: float = 0.2,
                    target_size: int = 16, eval_every: int = 40, learned_margin: float = LEARNED_MARGIN,
                    steps: Sequence[int] | None = None, n_steps: int = 4, shapley_batch: int = 16,
                    shapley_targets: int = 16, eta: float = 1e-3, n_perm: int = 16, chunk: int = 4) -> dict[str, Any]:
    """LAI-2 on the LM: per-step Shapley values of a vanilla run vs LAI, exact Ghost and flattened Ghost.

    Replays the vanilla run of ``seed`` (same arguments as :func:`run_lm_policy`, deterministic) keeping θ_t at
    ``steps`` (default: ``n_steps`` evenly spaced after step 0, the last step included). At each, B = the first
    ``shapley_batch`` rows of the step's batch S_t (:func:`vanilla_batch`) and V = ``shapley_targets`` windows
    of the target pool (``default_rng([seed, 9, t])``); the model is cast to float64, the Shapley values are
    :func:`step_shapley_module` (``eta``, ``n_perm``, ``chunk``) and the scores ``batch_scores`` of one capture
    of [B; V]. Returns ``rows`` (the columns of :data:`SHAPLEY_COLUMNS` but dataset), ``values`` (one record
    per sample and step: shapley, se, lai, ghost, ghost_flat, noisy) and the vanilla run's final validation
    loss, unigram loss and ``learned`` flag.
    """
    from influence.metrics import pearson, spearman  # here: scipy.stats costs the run jobs 0.7 s to import

    shapley_batch = _int("shapley_batch", shapley_batch, 2)
    shapley_targets = _int("shapley_targets", shapley_targets)
    if shapley_batch > int(batch_size):
        raise ValueError(f"shapley_batch ({shapley_batch}) must be <= the training batch size ({batch_size}): "
                         "B is taken from the step's own batch")
    if shapley_targets > len(data["target"]):
        raise ValueError(f"shapley_targets ({shapley_targets}) exceeds the target pool ({len(data['target'])})")
    n_train = len(data["train"])
    total = int(epochs) * -(-n_train // int(batch_size))
    if steps is None:
        steps = np.unique(np.linspace(0, total - 1, _int("n_steps", n_steps) + 1)[1:].round().astype(int))
    steps = sorted({int(t) for t in steps})
    tr = _train(data, "vanilla", seed=seed, noise_rate=noise_rate, noise_kind=noise_kind, d_model=d_model,
                n_layers=n_layers, n_heads=n_heads, epochs=epochs, batch_size=batch_size, lr=lr,
                weight_decay=weight_decay, warmup_epochs=warmup_epochs, target_size=target_size,
                eval_every=eval_every, checkpoint_steps=steps)
    final = tr["curve"]["val_loss"][-1]
    unigram = unigram_loss(tr["stream"][~tr["mask"]], data["val"], int(data["vocab_size"]))
    ok = learned(final, unigram, learned_margin)
    X, Y = _xy(tr["stream"])
    Xt, Yt = _xy(data["target"])
    name = model_name(data["context"], d_model, n_layers, n_heads)
    module = TinyGPT(int(data["vocab_size"]), context=int(data["context"]), d_model=int(d_model),
                     n_layers=int(n_layers), n_heads=int(n_heads), dtype=torch.float64)
    rows, values = [], []
    for t in steps:
        module.load_state_dict({k: v.double() for k, v in tr["checkpoints"][t].items()})
        S = vanilla_batch(n_train, int(batch_size), int(seed), t)[:shapley_batch]
        V = np.sort(np.random.default_rng([int(seed), 9, t]).choice(len(Xt), shapley_targets, replace=False))
        xb, yb, xv, yv = X[S], Y[S], Xt[V], Yt[V]
        t0 = time.perf_counter()
        sh = step_shapley_module(module, xb, yb, xv, yv, eta, n_perm=n_perm, seed=int(seed) * 100003 + t,
                                 chunk=chunk)
        t_sh = time.perf_counter() - t0
        cap = capture(module, torch.cat([xb, xv]), torch.cat([yb, yv]), backward=True)
        scores = _step_scores(cap, len(S))
        phi = sh["values"]
        losses_v = cap.losses[len(S):].double().numpy()
        phi_ml = mean_loss_shapley(scores["loss"])  # the authors' game, exact
        phi_ml_mc = mean_loss_shapley_mc(scores["loss"], 1000, seed=int(seed))  # as they estimate it
        lin = float(sh["first_order"].sum())
        row = {"model": name, "seed": int(seed), "step": int(t), "n_permutations": int(sh["n_permutations"]),
               "shapley_se": float(np.mean(sh["se"])),
               "shapley_se_over_sd": float(np.mean(sh["se"]) / max(float(phi.std()), 1e-300)),
               "first_order_rel_err": abs(sh["utility_full"] - lin) / max(abs(lin), 1e-300),
               "efficiency_err": abs(float(phi.sum()) - sh["utility_full"]) / max(abs(sh["utility_full"]), 1e-300),
               "ghost_check_rel_err": float(np.abs(scores["ghost"] - sh["ghost_direct"]).max()
                                            / max(float(np.abs(sh["ghost_direct"]).max()), 1e-300)),
               "eta": float(eta), "batch_size": len(S), "target_size": len(V),
               "n_noisy_in_batch": int(tr["mask"][S].sum()), "val_loss_V": sh["base_loss"],
               "shapley_time_s": t_sh, "learned": ok}
        for m, s in scores.items():
            row[f"pearson_{m}"] = pearson(s, phi)
            row[f"pearson_meanloss_{m}"] = pearson(s, phi_ml)
            if m in TARGET_SCORES:
                row[f"spearman_{m}"] = spearman(s, phi)
        row["pearson_games"] = pearson(phi_ml, phi)
        row["meanloss_mc_err"] = float(np.abs(phi_ml_mc - phi_ml).max() / max(float(phi_ml.std()), 1e-300))
        for m, s in {**scores, "shapley": phi, "shapley_meanloss": phi_ml}.items():
            if m not in LOSS_SCORES:
                row[f"drop_le0_{m}"] = float(np.mean(s <= 0))
        row["drop_small_loss"] = float(np.mean(scores["loss"] > np.median(losses_v)))
        row["n_zero_scores"] = int(sum(int(np.sum(s == 0)) for m, s in scores.items() if m not in LOSS_SCORES))
        rows.append(row)
        for i in range(len(S)):
            values.append({"model": name, "seed": int(seed), "step": int(t), "sample": int(S[i]),
                           "noisy": bool(tr["mask"][S[i]]), "shapley": float(phi[i]), "shapley_se": float(sh["se"][i]),
                           "shapley_meanloss": float(phi_ml[i]), "shapley_meanloss_mc": float(phi_ml_mc[i]),
                           **{m: float(scores[m][i]) for m in scores}})
        log.info("E8 Shapley step %d: Pearson LAI %.3f, Ghost %.3f, Ghost flat %.3f (%d permutations, %.1f s); "
                 "authors' game: LAI self %.3f, Ghost flat self %.3f, loss %.3f", t, row["pearson_lai"],
                 row["pearson_ghost"], row["pearson_ghost_flat"], row["n_permutations"], t_sh,
                 row["pearson_meanloss_lai_self"], row["pearson_meanloss_ghost_flat_self"],
                 row["pearson_meanloss_loss"])
    return {"rows": rows, "values": values, "final_val_loss": final, "unigram_val_loss": unigram, "learned": ok,
            "model": name, "steps": steps, "n_steps_run": tr["n_steps"],
            "config": {"eta": float(eta), "n_perm": int(n_perm), "shapley_batch": shapley_batch,
                       "shapley_targets": shapley_targets, "chunk": int(chunk), "dtype": "float64",
                       "utility": "L_V(θ_t) − L_V(θ_t − (η/|B|) Σ_{i∈S} ∇ℓ_i(θ_t)) (one SGD step)",
                       "utility_meanloss": "mean_{i∈S} ℓ_i(θ_t), U(∅) = 0 (the LAI authors' game; exact, and their "
                                           "1000-permutation estimate seeded with the run's seed)"}}


def _step_scores(cap: Any, n: int) -> dict[str, np.ndarray]:
    """The scores of the first ``n`` rows of a capture of [B; V] (see the module doc), float64 arrays."""
    out = {m: batch_scores(cap, n, m) for m in TARGET_SCORES}
    out |= {f"{m}_self": batch_scores(cap, n, m, self_influence=True) for m in ("lai", "ghost", "ghost_flat")}
    out["lai_self_offdiag"] = batch_scores(cap, n, "lai", self_influence=True, exclude_self=True)
    out["loss"] = cap.losses[:n]
    out["outgrad"] = cap.g[:n].reshape(n, -1).square().sum(1)  # ‖∂ℓ_i/∂z_i‖², z_i the logits of row i
    return {m: out[m].detach().double().numpy() for m in STEP_SCORES}


def published_shapley_summary(path: Any) -> dict[str, Any]:
    """The LAI authors' per-sample Shapley file, summarised: per logged step, the Pearson correlation of their
    Monte-Carlo mean-loss Shapley values (column ``shapley``) with their LAI scores (column ``ghost_score``: their
    ``ghost_total``, the logits-gradient Gram times the summed layer-input Grams, i.e. LAI, the score their filter
    uses) and with their Ghost baseline (column ``jiacheng_score``: per-layer input Gram times per-layer output
    gradient Gram, i.e. flattened Ghost); mean, sd (ddof 1) over steps, and of the paired difference LAI − Ghost;
    how many values are ≤ 0; and the per-sample losses implied by the values (the game's closed form inverted with
    L = n Σ_i φ_i), whose range checks that the file is the mean-loss game.

    Raises ``ValueError`` when the file's SHA-256 is not :data:`PUBLISHED_SCORES_SHA256`.
    """
    import hashlib

    import pandas as pd

    from influence.metrics import pearson
    from influence.shapley import harmonic

    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != PUBLISHED_SCORES_SHA256:
        raise ValueError(f"{path}: SHA-256 {digest} is not the authors' file's {PUBLISHED_SCORES_SHA256}")
    df = pd.read_csv(path)
    per = []
    implied = []
    for step, g in df.groupby("global_step", sort=True):
        phi = g["shapley"].to_numpy(np.float64)
        n = len(phi)
        h = harmonic(n)
        implied.append((phi + (h - 1) / (n * (n - 1)) * n * phi.sum()) / ((n * h - 1) / (n * (n - 1))))
        per.append({"step": int(step), "n": n, "lai": pearson(g["ghost_score"].to_numpy(), phi),
                    "ghost_flat": pearson(g["jiacheng_score"].to_numpy(), phi), "mean_loss": float(phi.sum())})
    p = pd.DataFrame(per)
    d = p["lai"] - p["ghost_flat"]
    loss = np.concatenate(implied)
    return {"n_steps": len(p), "n_samples": len(df), "batch_sizes": sorted(set(p["n"].tolist())),
            "pearson_lai_mean": float(p["lai"].mean()), "pearson_lai_sd": float(p["lai"].std(ddof=1)),
            "pearson_ghost_flat_mean": float(p["ghost_flat"].mean()),
            "pearson_ghost_flat_sd": float(p["ghost_flat"].std(ddof=1)),
            "diff_mean": float(d.mean()), "diff_sd": float(d.std(ddof=1)), "diff_positive_steps": int((d > 0).sum()),
            "n_lai_le0": int((df["ghost_score"] <= 0).sum()),
            "n_ghost_flat_le0": int((df["jiacheng_score"] <= 0).sum()),
            "n_shapley_le0": int((df["shapley"] <= 0).sum()), "mean_loss_min": float(p["mean_loss"].min()),
            "mean_loss_max": float(p["mean_loss"].max()), "implied_loss_min": float(loss.min()),
            "implied_loss_max": float(loss.max()), "per_step": p}


# ---------------------------------------------------------------------------------------------- summary
def summarize_runs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, model, policy): mean and sd over seeds of the numeric columns of E8 rows, the number of
    seeds and of learned runs."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    if df.empty:
        return []
    keys = [k for k in ("dataset", "model", "noise_kind", "noise_rate", "policy") if k in df]
    num = [c for c in ("final_val_loss", "best_val_loss", "test_loss", "noisy_dropped_fraction",
                       "clean_dropped_fraction", "kept_fraction", "time_per_step_s", "score_time_s", "max_rss_mb")
           if c in df]
    out = []
    for key, g in df.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row["n_seeds"] = int(len(g))
        row["n_learned"] = int(g["learned"].astype(bool).sum()) if "learned" in g else 0
        for c in num:
            v = pd.to_numeric(g[c], errors="coerce")
            row[f"{c}_mean"] = float(v.mean())
            row[f"{c}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------ plan check
def check_lm_config(block: Mapping[str, Any]) -> None:
    """Plan-time checks of the workflow's ``experiments.lm`` block beyond the schema's types (raises
    ``ValueError`` naming the key)."""
    pre = "config: experiments.lm"
    model, run, dat = block["model"], block["run"], block["data"]
    for p in block.get("policies", []):
        if p not in MODULE_POLICIES:
            raise ValueError(f"{pre}.policies: unknown policy {p!r}; known: {', '.join(MODULE_POLICIES)}")
    if block["noise"]["kind"] not in LM_NOISE_KINDS:
        raise ValueError(f"{pre}.noise.kind: unknown {block['noise']['kind']!r}; known: {', '.join(LM_NOISE_KINDS)}")
    if int(model["d_model"]) % int(model["n_heads"]):
        raise ValueError(f"{pre}.model: d_model ({model['d_model']}) must be divisible by n_heads "
                         f"({model['n_heads']})")
    if int(run["target_size"]) > int(dat["n_target"]):
        raise ValueError(f"{pre}.run.target_size ({run['target_size']}) exceeds data.n_target ({dat['n_target']})")
    if int(run["batch_size"]) > int(dat["n_train"]):
        raise ValueError(f"{pre}.run.batch_size ({run['batch_size']}) exceeds data.n_train ({dat['n_train']})")
    sh = block["shapley"]
    if sh.get("enabled", True):
        if int(sh["batch_size"]) > int(run["batch_size"]):
            raise ValueError(f"{pre}.shapley.batch_size ({sh['batch_size']}) must be <= run.batch_size "
                             f"({run['batch_size']}): B is taken from the step's own batch")
        if int(sh["target_size"]) > int(dat["n_target"]):
            raise ValueError(f"{pre}.shapley.target_size ({sh['target_size']}) exceeds data.n_target "
                             f"({dat['n_target']})")
        if int(sh["n_perm"]) % 2:
            raise ValueError(f"{pre}.shapley.n_perm must be even (antithetic pairs), got {sh['n_perm']}")
