"""Online data curation: drop batch members during training by their per-step LAI / Ghost score or loss.

A policy is a callback of :func:`influence.train.train` (see :class:`Curator`). At every step after a
warm-up of ``warmup_epochs`` vanilla epochs it scores the batch S_t against a fresh random target subset
V_t (default 32 samples of the validation set) and returns 0/1 weights; ``train`` then takes the step

    θ_{t+1} = θ_t − η_t (1/|S_t|) Σ_{i∈S_t} w_i ∇f_i(θ_t),

i.e. the batch loss Σ_i w_i ℓ_i / |B| with dropped samples still counted in the denominator (LAI
authors' code). Policies:

``vanilla``         keep everything (returns no weights: bit-identical to plain ``train``).
``lai``             keep i iff LAI_t(i) ≥ 0 (all layers).
``lai_last_layer``  the same with the last layer only.
``ghost``           keep i iff Ghost_t(i) ≥ 0 (exact per-sample gradient inner products).
``small_loss``      keep i iff ℓ_i(θ_t) ≤ median of the target losses on V_t (SPL-style).

Per step the callback logs the kept fraction, how many of the batch's *noisy* samples (given the noise
mask) were dropped, the scoring wall time, the process RSS after scoring and the bytes held by the
captured activations / output gradients (``capture_mb``: the scoring's own tensor footprint; CPU peak
memory of one step is measured properly by ``experiments/benchmarks/bench_online.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn

from influence.capture import capture, set_update_grads
from influence.data import as_tensors
from influence.estimators.online import GhostStep, batch_scores, lai_scores
from influence.models import Model, example_losses
from influence.train import Schedule, StepInfo, TrainingDiverged, Trajectory, train

__all__ = ["POLICIES", "MODULE_POLICIES", "Curator", "curate", "curate_module", "curated_step", "needs_target",
           "summarize"]

log = logging.getLogger(__name__)

POLICIES = ("vanilla", "lai", "lai_last_layer", "ghost", "small_loss")


class Curator:
    """Callback for :func:`influence.train.train` implementing one curation policy (see module doc).

    Parameters
    ----------
    model : the run's architecture.
    target_data : validation set the scores are computed against (``Dataset`` or (X, y)).
    policy : one of :data:`POLICIES`.
    noise_mask : (n_train,) bool, True = corrupted label; only used for logging.
    warmup_epochs : vanilla epochs before curation starts (default 1).
    target_size : size of the fresh random subset V_t per step (default 32; None = whole target set).
    seed : seeds the V_t draws.
    self_influence : score the batch against itself (V_t = S_t) instead of the target set.
    bias : include bias terms in the LAI / Ghost inner products.
    """

    def __init__(
        self,
        model: Model,
        target_data: Any,
        policy: str,
        *,
        noise_mask: np.ndarray | None = None,
        warmup_epochs: int = 1,
        target_size: int | None = 32,
        seed: int = 0,
        self_influence: bool = False,
        bias: bool = True,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown curation policy {policy!r}; use one of {POLICIES}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if target_size is not None and target_size < 1:
            raise ValueError(f"target_size must be >= 1 or None, got {target_size}")
        if policy == "small_loss" and self_influence:
            raise ValueError("small_loss compares with target losses; it has no self-influence variant")
        self.model, self.policy = model, policy
        self.warmup_epochs, self.target_size = int(warmup_epochs), target_size
        self.self_influence, self.bias = bool(self_influence), bool(bias)
        self.target_data = target_data
        self.noise_mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool)
        self.rng = np.random.default_rng(seed)
        self._module: nn.Module | None = None
        self._target: tuple[torch.Tensor, torch.Tensor] | None = None
        self._proc = psutil.Process()

    def _targets(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self._target is None or self._target[0].dtype != dtype:
            self._target = as_tensors(self.target_data, dtype)
        Xt, yt = self._target
        if self.target_size is None or self.target_size >= Xt.shape[0]:
            return Xt, yt
        V = torch.as_tensor(self.rng.choice(Xt.shape[0], size=self.target_size, replace=False))
        return Xt[V], yt[V]

    def _scores(self, info: StepInfo) -> tuple[torch.Tensor, int]:
        """Returns (keep mask, captured bytes)."""
        theta = info.theta
        if self.policy == "small_loss":
            Xv, yv = self._targets(theta.dtype)
            with torch.no_grad():
                thr = self.model.losses(theta, Xv, yv).median()
            return info.losses <= thr, 0
        if self._module is None or next(self._module.parameters()).dtype != theta.dtype:
            self._module = self.model.to_module(theta)
        with torch.no_grad():
            nn.utils.vector_to_parameters(theta, self._module.parameters())
        if self.self_influence:
            xc, yc = info.x, info.y
        else:
            Xv, yv = self._targets(theta.dtype)
            xc, yc = torch.cat([info.x, Xv]), torch.cat([info.y, yv])
        method = "ghost" if self.policy == "ghost" else "lai"
        cap = capture(self._module, xc, yc, backward=(method == "ghost"))
        s = batch_scores(cap, len(info.batch), method, self_influence=self.self_influence,
                         last_layer_only=(self.policy == "lai_last_layer"), bias=self.bias)
        return s >= 0, cap.nbytes()

    def __call__(self, info: StepInfo) -> dict:
        t0 = time.perf_counter()
        active = self.policy != "vanilla" and info.epoch >= self.warmup_epochs
        nbytes = 0
        if active:
            keep, nbytes = self._scores(info)
            keep = keep.detach().cpu().numpy().astype(bool)
        else:
            keep = np.ones(len(info.batch), dtype=bool)
        elapsed = time.perf_counter() - t0
        rec: dict[str, Any] = {
            "step": info.step,
            "epoch": info.epoch,
            "curating": bool(active),
            "batch_size": len(info.batch),
            "kept_fraction": float(keep.mean()),
            "dropped": info.batch[~keep].tolist(),
            "score_time_s": elapsed,
            "rss_mb": self._proc.memory_info().rss / 2**20,
            "capture_mb": nbytes / 2**20,
        }
        if self.noise_mask is not None:
            noisy = self.noise_mask[info.batch]
            n_noisy, n_noisy_dropped = int(noisy.sum()), int((noisy & ~keep).sum())
            rec.update(n_noisy=n_noisy, n_noisy_dropped=n_noisy_dropped,
                       noisy_dropped_fraction=(n_noisy_dropped / n_noisy) if n_noisy else None)
        if active:
            rec["weights"] = torch.as_tensor(keep, dtype=info.theta.dtype)
        return rec


def curate(
    model: Model,
    theta0: torch.Tensor,
    train_data: Any,
    target_data: Any,
    schedule: Schedule,
    policy: str,
    *,
    noise_mask: np.ndarray | None = None,
    l2: float = 0.0,
    warmup_epochs: int = 1,
    target_size: int | None = 32,
    seed: int = 0,
    self_influence: bool = False,
    record: str | list[int] | np.ndarray = "all",
) -> Trajectory:
    """Train with online curation policy ``policy`` (see module doc); per-step logs in ``traj.logs``.

    Returns the :class:`~influence.train.Trajectory` of the curated run; ``traj.meta['curation']`` holds
    the policy settings and :func:`summarize` of the logs.
    """
    cb = Curator(model, target_data, policy, noise_mask=noise_mask, warmup_epochs=warmup_epochs,
                 target_size=target_size, seed=seed, self_influence=self_influence)
    traj = train(model, theta0, train_data, schedule, l2=l2, callback=cb, record=record)
    traj.meta["curation"] = {"policy": policy, "warmup_epochs": warmup_epochs, "target_size": target_size,
                             "seed": seed, "self_influence": self_influence, "summary": summarize(traj.logs)}
    return traj


def summarize(logs: list[dict]) -> dict[str, float]:
    """Aggregate per-step curation logs over the curated steps (after warm-up).

    ``noisy_dropped_fraction`` = Σ noisy dropped / Σ noisy seen (recall of the filter on noisy samples),
    ``dropped_noisy_precision`` = Σ noisy dropped / Σ dropped, ``clean_dropped_fraction`` = Σ clean dropped /
    Σ clean seen, ``kept_fraction`` = mean over steps,
    ``score_time_s`` = mean scoring time per step, ``max_rss_mb``, ``capture_mb`` (mean).
    """
    cur = [r for r in logs if r.get("curating")]
    out: dict[str, float] = {"curated_steps": len(cur)}
    if not cur:
        return out
    out["kept_fraction"] = float(np.mean([r["kept_fraction"] for r in cur]))
    out["score_time_s"] = float(np.mean([r["score_time_s"] for r in cur]))
    out["max_rss_mb"] = float(max(r["rss_mb"] for r in cur))
    out["capture_mb"] = float(np.mean([r["capture_mb"] for r in cur]))
    n_dropped = sum(len(r["dropped"]) for r in cur)
    if "n_noisy" in cur[0]:
        n_noisy = sum(r["n_noisy"] for r in cur)
        n_nd = sum(r["n_noisy_dropped"] for r in cur)
        out["noisy_dropped_fraction"] = n_nd / n_noisy if n_noisy else float("nan")
        out["dropped_noisy_precision"] = n_nd / n_dropped if n_dropped else float("nan")
        n_clean = sum(r["batch_size"] for r in cur) - n_noisy
        out["clean_dropped_fraction"] = (n_dropped - n_nd) / n_clean if n_clean else float("nan")
    return out


# ---------------------------------------------------------------------------------------------- nn.Module runs
# policy → (score method, self-influence, exclude i from its own mean); None = no scores
MODULE_POLICIES: dict[str, tuple[str, bool, bool] | None] = {
    "vanilla": None,
    "lai": ("lai", False, False),
    "lai_self": ("lai", True, False),
    "lai_self_offdiag": ("lai", True, True),
    "ghost": ("ghost", False, False),
    "ghost_self": ("ghost", True, False),
    "ghost_flat": ("ghost_flat", False, False),
    "ghost_flat_self": ("ghost_flat", True, False),
    "small_loss": None,
}


def needs_target(policy: str) -> bool:
    """Whether a policy of :data:`MODULE_POLICIES` scores against validation rows (SPL and the non-self ones)."""
    spec = MODULE_POLICIES[policy]
    return policy == "small_loss" or (spec is not None and not spec[1])


def curated_step(
    module: nn.Module,
    policy: str,
    xb: torch.Tensor,
    yb: torch.Tensor,
    target: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[np.ndarray, torch.Tensor, float, int]:
    """Score one batch under ``policy`` and write ∇ Σ_i w_i ℓ_i / |B| into the parameters' ``.grad``.

    ``target`` = the validation rows V_t for the policies that need them (see :func:`curate_module`).
    The caller zeroes the gradients before and takes the optimiser step after. Returns (keep mask,
    detached batch losses, scoring seconds, bytes held by the capture).
    """
    if policy not in MODULE_POLICIES:
        raise ValueError(f"unknown curation policy {policy!r}; use one of {tuple(MODULE_POLICIES)}")
    m = xb.shape[0]
    spec = MODULE_POLICIES[policy]
    if needs_target(policy) and target is None:
        raise ValueError(f"policy {policy!r} needs target rows")
    if policy == "vanilla":
        losses = example_losses(module(xb), yb)
        losses.mean().backward()
        return np.ones(m, dtype=bool), losses.detach(), 0.0, 0
    ts = time.perf_counter()
    if policy == "small_loss":
        with torch.no_grad():
            thr = example_losses(module(target[0]), target[1]).median()
        losses = example_losses(module(xb), yb)
        keep = (losses.detach() <= thr).numpy()
        score_time = time.perf_counter() - ts
        (losses * torch.as_tensor(keep, dtype=losses.dtype)).sum().div(m).backward()
        return keep, losses.detach(), score_time, 0
    method, self_inf, offdiag = spec
    if method == "lai":  # forward-only captures (the targets without autograd), nothing concatenated
        cap = capture(module, xb, yb, backward=False, keep_graph=True)
        cv = None if self_inf else capture(module, *target, backward=False)
        s = lai_scores(cap, cv, exclude_self=offdiag)
    else:
        xc, yc = (xb, yb) if self_inf else (torch.cat([xb, target[0]]), torch.cat([yb, target[1]]))
        cap = capture(module, xc, yc, backward=True)
        cv = None
        if method == "ghost":  # (the per-sample gradients GhostStep holds, gs.nbytes, are not capture bytes)
            gs = GhostStep(cap, m, self_influence=self_inf)
            s = gs.scores
        else:
            s = batch_scores(cap, m, method, self_influence=self_inf)
    keep = (s >= 0).numpy()
    score_time = time.perf_counter() - ts
    w = torch.as_tensor(keep, dtype=cap.logits.dtype)
    losses = cap.losses[:m]
    if method == "lai":  # the update's backward (scoring needed none)
        (losses * w).sum().div(m).backward()
    elif method == "ghost":  # the update from the pieces the scores used: no second pass
        gs.set_update_grads(w)
    else:
        set_update_grads(cap, m, w)
    return keep, losses.detach(), score_time, cap.nbytes() + (0 if cv is None else cv.nbytes())


def curate_module(
    module: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    target_data: tuple[torch.Tensor, torch.Tensor] | None,
    policy: str,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 1e-3,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    warmup_epochs: float = 1.0,
    target_size: int = 32,
    seed: int = 0,
    noise_mask: np.ndarray | None = None,
    evaluate: Any = None,
    eval_every: int = 0,
) -> dict[str, Any]:
    """Train an ``nn.Module`` (e.g. :class:`~influence.models.TinyGPT`) in place with online curation.

    At every step after ``warmup_epochs`` vanilla epochs (may be fractional: the LAI authors warm up for
    a number of steps) the batch S_t is scored and sample i is kept iff its score ≥ 0; the update uses
    Σ_i w_i ∇ℓ_i / |S_t| (dropped samples still counted, as in the authors' code) with plain SGD or
    AdamW (the authors' optimiser; the scores use raw gradients, not Adam-preconditioned ones).
    Policies (:data:`MODULE_POLICIES`): ``vanilla``; ``lai`` / ``ghost`` / ``ghost_flat`` against a
    fresh random subset V_t of ``target_size`` rows of ``target_data`` (clean validation); their
    ``_self`` variants score the batch against itself (V_t = S_t, i included — the authors'
    pretraining rule for data without a validation set); ``lai_self_offdiag`` is the ablation with
    j ≠ i (see :func:`~influence.estimators.online.batch_scores`); ``small_loss`` keeps ℓ_i ≤ the median loss on
    V_t (SPL, the authors' baseline). Ghost policies take the update from the same capture
    (:func:`~influence.capture.set_update_grads`: one forward and one backward per step); LAI policies
    need no backward for scoring, only the update's.

    Rows are sequences for a language model (``train_data`` = (inputs (n, T), next-token targets
    (n, T)); row loss = mean token cross-entropy) or samples with labels (n,). ``evaluate(module)`` →
    dict is called every ``eval_every`` steps (0 = only at the end) and after the last step.
    Raises :class:`~influence.train.TrainingDiverged` on a non-finite loss.

    Returns ``{"logs": per-step records, "evals": [{"step", "epoch", **evaluate(module)}],
    "summary": summarize(logs)}``; per-step records hold ``loss``, ``kept_fraction``, ``dropped``,
    ``score_time_s`` (scoring only), ``step_time_s`` (the whole step) and the noisy counts.
    """
    if policy not in MODULE_POLICIES:
        raise ValueError(f"unknown curation policy {policy!r}; use one of {tuple(MODULE_POLICIES)}")
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("target_size", target_size)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    X, Y = train_data
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"train inputs have {n} rows, targets {Y.shape[0]}")
    spec = MODULE_POLICIES[policy]
    if needs_target(policy):
        if target_data is None:
            raise ValueError(f"policy {policy!r} needs target_data (a clean validation set)")
        Xv, Yv = target_data
        if Xv.shape[0] != Yv.shape[0]:
            raise ValueError(f"target inputs have {Xv.shape[0]} rows, targets {Yv.shape[0]}")
    mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool)
    if mask is not None and mask.shape != (n,):
        raise ValueError(f"noise_mask must have shape ({n},), got {mask.shape}")
    params = [p for p in module.parameters() if p.requires_grad]
    opt = (torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay) if optimizer == "adamw"
           else torch.optim.SGD(params, lr=lr, weight_decay=weight_decay))
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-n // batch_size)
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    proc = psutil.Process()
    logs: list[dict] = []
    evals: list[dict] = []
    step = 0

    def run_eval(epoch: int) -> None:
        if evaluate is not None:
            module.eval()
            with torch.no_grad():
                evals.append({"step": step, "epoch": epoch, **evaluate(module)})
            module.train()

    module.train()
    for epoch in range(int(epochs)):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            S = order[start : start + batch_size]
            t0 = time.perf_counter()
            xb, yb = X[S], Y[S]
            m = len(S)
            active = spec is not None or policy == "small_loss"
            active = active and step >= warmup_steps
            opt.zero_grad(set_to_none=True)
            target = None
            if active and needs_target(policy):
                V = rng.choice(Xv.shape[0], size=min(target_size, Xv.shape[0]), replace=False)
                target = (Xv[V], Yv[V])
            keep, losses, score_time, nbytes = curated_step(module, policy if active else "vanilla", xb, yb, target)
            loss_mean = float(losses.detach().mean())
            if not np.isfinite(loss_mean):
                raise TrainingDiverged(f"curation policy {policy!r}: non-finite training loss at step {step}")
            opt.step()
            rec: dict[str, Any] = {
                "step": step, "epoch": epoch, "curating": bool(active), "batch_size": m, "loss": loss_mean,
                "kept_fraction": float(keep.mean()), "dropped": S[~keep].tolist(), "score_time_s": score_time,
                "step_time_s": time.perf_counter() - t0, "rss_mb": proc.memory_info().rss / 2**20,
                "capture_mb": nbytes / 2**20,
            }
            if mask is not None:
                noisy = mask[S]
                n_noisy, n_nd = int(noisy.sum()), int((noisy & ~keep).sum())
                rec.update(n_noisy=n_noisy, n_noisy_dropped=n_nd,
                           noisy_dropped_fraction=(n_nd / n_noisy) if n_noisy else None)
            logs.append(rec)
            step += 1
            if eval_every and step % eval_every == 0:
                run_eval(epoch)
    if not evals or evals[-1]["step"] != step:
        run_eval(int(epochs) - 1)
    return {"logs": logs, "evals": evals, "summary": summarize(logs)}
