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

One implementation scores and curates a step, :func:`curated_step`, for any hookable ``nn.Module``, any per-row
loss ``loss(outputs, y)`` → (m,) and any optimiser (the caller's own: it writes the curated gradient into
``.grad``, the caller steps). :class:`Curator` (a callback of :func:`influence.train.train` for a layered
:class:`~influence.models.Model`) runs it on ``model.to_module(θ_t)`` without the update; :func:`curate_module`
runs it in a loop with the caller's optimiser and scheduler (or an AdamW / SGD it builds).

Per step the callback logs the kept fraction, how many of the batch's *noisy* samples (given the noise
mask) were dropped, the scoring wall time, the process RSS after scoring and the bytes held by the
captured activations / output gradients (``capture_mb``: the scoring's own tensor footprint; CPU peak
memory of one step is measured properly by ``experiments/benchmarks/bench_online.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import numpy as np
import psutil
import torch
from torch import nn

from influence.capture import Loss, capture, row_losses_of, set_update_grads
from influence.data import as_tensors
from influence.estimators.online import GhostStep, batch_scores, lai_scores
from influence.models import Model
from influence.train import Schedule, StepInfo, TrainingDiverged, Trajectory, train

__all__ = ["POLICIES", "MODULE_POLICIES", "Curator", "CuratedStep", "curate", "curate_module", "curated_step",
           "needs_target", "summarize"]

log = logging.getLogger(__name__)

POLICIES = ("vanilla", "lai", "lai_last_layer", "ghost", "small_loss")


class Curator:
    """Callback for :func:`influence.train.train` implementing one curation policy (see module doc).

    The batch is scored by :func:`curated_step` (``update=False``) on ``model.to_module(θ_t)``: the same
    code the ``nn.Module`` runs use; ``train`` then takes the weighted step itself.

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
        # the policy of MODULE_POLICIES curated_step runs
        self.step_policy = f"{policy}_self" if self_influence and policy != "vanilla" else policy
        self.warmup_epochs, self.target_size = int(warmup_epochs), target_size
        self.self_influence, self.bias = bool(self_influence), bool(bias)
        self.target_data = target_data
        self.noise_mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool)
        self.rng = np.random.default_rng(seed)
        self._module: nn.Module | None = None
        self._target: tuple[torch.Tensor, torch.Tensor] | None = None
        self._proc = psutil.Process()

    def _targets(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._target
        if t is None or t[0].dtype != theta.dtype or t[0].device != theta.device:
            self._target = tuple(t.to(theta.device) for t in as_tensors(self.target_data, theta.dtype))
        Xt, yt = self._target
        if self.target_size is None or self.target_size >= Xt.shape[0]:
            return Xt, yt
        V = torch.as_tensor(self.rng.choice(Xt.shape[0], size=self.target_size, replace=False), device=Xt.device)
        return Xt[V], yt[V]

    def _scores(self, info: StepInfo) -> tuple[torch.Tensor, int]:
        """Returns (keep mask, captured bytes)."""
        theta = info.theta
        p = None if self._module is None else next(self._module.parameters())
        if p is None or p.dtype != theta.dtype or p.device != theta.device:
            self._module = self.model.to_module(theta).to(theta.device)
        with torch.no_grad():
            nn.utils.vector_to_parameters(theta, self._module.parameters())
        target = None if self.self_influence else self._targets(theta)
        res = curated_step(self._module, self.step_policy, info.x, info.y, target, bias=self.bias, update=False)
        return res.keep, res.nbytes

    def __call__(self, info: StepInfo) -> dict:
        t0 = time.perf_counter()
        active = self.policy != "vanilla" and info.epoch >= self.warmup_epochs
        nbytes = 0
        if active:
            keep, nbytes = self._scores(info)
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
            rec["weights"] = torch.as_tensor(keep, dtype=info.theta.dtype, device=info.theta.device)
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
    "lai_last_layer": ("lai_last_layer", False, False),
    "lai_last_layer_self": ("lai_last_layer", True, False),
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


class _StepFields(NamedTuple):
    keep: np.ndarray
    losses: torch.Tensor
    score_time_s: float
    nbytes: int


class CuratedStep(_StepFields):
    """What :func:`curated_step` returns: ``(keep, losses, score_time_s, nbytes)`` — unpacks as that 4-tuple —
    and ``scores``.

    ``keep``: (m,) bool numpy array, the kept batch rows; ``losses``: the detached per-row losses (m,) at the
    parameters before the step; ``score_time_s``: seconds spent scoring; ``nbytes``: bytes held by the
    captures; ``scores``: the per-row scores (m,) on the rows' device (LAI / Ghost: > 0 = the row helps the
    target loss; ``small_loss``: median target loss − ℓ_i; None for ``vanilla``). Row i is kept iff its score
    ≥ 0.
    """

    scores: torch.Tensor | None

    def __new__(cls, keep: np.ndarray, losses: torch.Tensor, score_time_s: float, nbytes: int,
                scores: torch.Tensor | None = None) -> CuratedStep:
        self = super().__new__(cls, keep, losses, score_time_s, nbytes)
        self.scores = scores
        return self


def curated_step(
    module: nn.Module,
    policy: str,
    xb: torch.Tensor,
    yb: torch.Tensor,
    target: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    loss: Loss | None = None,
    bias: bool = True,
    update: bool = True,
) -> CuratedStep:
    """Score one batch under ``policy`` and write ∇ Σ_i w_i ℓ_i / |B| into the parameters' ``.grad``.

    The one implementation of a curation step, for any optimiser: the caller zeroes the gradients before
    and takes its own optimiser step (and scheduler step) after::

        opt.zero_grad()
        res = curated_step(model, "ghost", xb, yb, (xv, yv), loss=nn.CrossEntropyLoss(reduction="none"))
        opt.step()          # res.scores: the batch's Ghost scores, res.keep: the rows the step used

    Parameters
    ----------
    module : the network (hookable: see :func:`influence.capture.trainable_layers`), in training mode as
        the caller wants it (no BatchNorm in training mode: rows must not interact).
    policy : one of :data:`MODULE_POLICIES`; row i is kept (w_i = 1) iff its score ≥ 0.
    xb, yb : the training batch.
    target : the validation rows (xv, yv) the non-self policies and ``small_loss`` score against.
    loss : per-row loss ``loss(outputs, y)`` → (m,) (``reduction="none"``), used for the scores, the update
        and ``losses``; None = the built-in losses (:func:`influence.capture.row_losses_of`). The output
        gradient LAI needs is its autograd gradient w.r.t. the outputs (:func:`influence.capture.output_grad`).
    bias : include the bias terms in the LAI / Ghost inner products.
    update : False = score only (no ``.grad`` written, no autograd graph kept): :class:`Curator` uses this
        for :func:`influence.train.train`, which takes the weighted step itself.

    Returns
    -------
    :class:`CuratedStep` (``keep``, ``losses``, ``score_time_s``, ``nbytes``; ``scores``).
    """
    if policy not in MODULE_POLICIES:
        raise ValueError(f"unknown curation policy {policy!r}; use one of {tuple(MODULE_POLICIES)}")
    m = xb.shape[0]
    spec = MODULE_POLICIES[policy]
    if needs_target(policy) and target is None:
        raise ValueError(f"policy {policy!r} needs target rows")
    if policy == "vanilla":
        with torch.set_grad_enabled(update):
            losses = row_losses_of(module(xb), yb, loss)
        if update:
            losses.mean().backward()
        return CuratedStep(np.ones(m, dtype=bool), losses.detach(), 0.0, 0)
    ts = time.perf_counter()
    cap = cv = None
    method, self_inf, offdiag = spec or ("small_loss", False, False)
    if method == "small_loss":
        with torch.no_grad():
            thr = row_losses_of(module(target[0]), target[1], loss).median()
        with torch.set_grad_enabled(update):
            losses = row_losses_of(module(xb), yb, loss)
        s = thr - losses.detach()
        w = (losses.detach() <= thr).to(losses.dtype)
    else:
        if method in ("lai", "lai_last_layer"):  # forward-only captures (targets without autograd), not concatenated
            cap = capture(module, xb, yb, backward=False, keep_graph=update, loss=loss)
            cv = None if self_inf else capture(module, *target, backward=False, loss=loss)
            s = lai_scores(cap, cv, exclude_self=offdiag, last_layer_only=method == "lai_last_layer", bias=bias)
        else:
            xc, yc = (xb, yb) if self_inf else (torch.cat([xb, target[0]]), torch.cat([yb, target[1]]))
            cap = capture(module, xc, yc, backward=True, loss=loss)
            if method == "ghost":  # (the per-sample gradients GhostStep holds, gs.nbytes, are not capture bytes)
                gs = GhostStep(cap, m, self_influence=self_inf, bias=bias)
                s = gs.scores
            else:
                s = batch_scores(cap, m, method, self_influence=self_inf, bias=bias)
        losses = cap.losses[:m]
        w = (s >= 0).to(cap.logits.dtype)
    keep = w.bool().cpu().numpy()  # the public boundary (and the scoring's end on an accelerator)
    score_time = time.perf_counter() - ts
    if update:
        if method == "ghost":  # the update from the pieces the scores used: no second pass
            gs.set_update_grads(w)
        elif method == "ghost_flat":  # from the same capture
            set_update_grads(cap, m, w)
        else:  # small_loss, LAI: the update's own backward (scoring needed none)
            (losses * w).sum().div(m).backward()
    nbytes = sum(c.nbytes() for c in (cap, cv) if c is not None)
    return CuratedStep(keep, losses.detach(), score_time, nbytes, s.detach())


def _as_optimizer(module: nn.Module, optimizer: Any, lr: float | None, weight_decay: float | None,
                  betas: tuple[float, float] | None) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        given = [k for k, v in (("lr", lr), ("weight_decay", weight_decay), ("betas", betas)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} given with an optimizer instance: set them on the optimizer")
        held = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if not any(id(p) in held for p in module.parameters()):
            raise ValueError("the optimizer holds none of the module's parameters")
        return optimizer
    if optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw', 'sgd' or a torch.optim.Optimizer, got {optimizer!r}")
    params = [p for p in module.parameters() if p.requires_grad]
    lr = 1e-3 if lr is None else lr
    weight_decay = 0.0 if weight_decay is None else weight_decay
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999) if betas is None else betas,
                                 weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


def curate_module(
    module: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    target_data: tuple[torch.Tensor, torch.Tensor] | None,
    policy: str,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    optimizer: str | torch.optim.Optimizer = "adamw",
    lr: float | None = None,
    weight_decay: float | None = None,
    betas: tuple[float, float] | None = None,
    scheduler: Any = None,
    loss: Loss | None = None,
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
    Σ_i w_i ∇ℓ_i / |S_t| (dropped samples still counted, as in the authors' code), one :func:`curated_step`
    per step, then ``optimizer.step()`` and ``scheduler.step()`` (the scores use raw gradients, not
    Adam-preconditioned ones).
    Policies (:data:`MODULE_POLICIES`): ``vanilla``; ``lai`` / ``ghost`` / ``ghost_flat`` against a
    fresh random subset V_t of ``target_size`` rows of ``target_data`` (clean validation); their
    ``_self`` variants score the batch against itself (V_t = S_t, i included — the authors'
    pretraining rule for data without a validation set); ``lai_self_offdiag`` is the ablation with
    j ≠ i (see :func:`~influence.estimators.online.batch_scores`); ``small_loss`` keeps ℓ_i ≤ the median loss on
    V_t (SPL, the authors' baseline). Ghost policies take the update from the same capture
    (:func:`~influence.capture.set_update_grads`: one forward and one backward per step); LAI policies
    need no backward for scoring, only the update's.

    ``optimizer``: the caller's own ``torch.optim.Optimizer`` (e.g. AdamW over the module's parameters, with
    its ``scheduler``: any object with ``step()``, called after every optimiser step), or ``'adamw'`` /
    ``'sgd'`` built here from ``lr`` (default 1e-3), ``weight_decay`` (0) and ``betas`` ((0.9, 0.999)), which
    must not be given with an instance. ``loss``: the per-row loss ``loss(outputs, y)`` → (m,) of
    :func:`curated_step` (default: the built-in losses).

    Rows are sequences for a language model (``train_data`` = (inputs (n, T), next-token targets
    (n, T)); row loss = mean token cross-entropy) or samples with labels (n,). ``evaluate(module)`` →
    dict is called every ``eval_every`` steps (0 = only at the end) and after the last step.
    Raises :class:`~influence.train.TrainingDiverged` on a non-finite loss.

    Returns ``{"logs": per-step records, "evals": [{"step", "epoch", **evaluate(module)}],
    "summary": summarize(logs)}``; per-step records hold ``loss``, ``lr`` (the first parameter group's, used
    by the step), ``kept_fraction``, ``dropped``, ``score_time_s`` (scoring only), ``step_time_s`` (the whole
    step) and the noisy counts.
    """
    if policy not in MODULE_POLICIES:
        raise ValueError(f"unknown curation policy {policy!r}; use one of {tuple(MODULE_POLICIES)}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("target_size", target_size)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise ValueError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
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
    opt = _as_optimizer(module, optimizer, lr, weight_decay, betas)
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
            idx = torch.as_tensor(S, device=X.device)
            xb, yb = X[idx], Y[idx]
            m = len(S)
            active = spec is not None or policy == "small_loss"
            active = active and step >= warmup_steps
            opt.zero_grad(set_to_none=True)
            target = None
            if active and needs_target(policy):
                V = rng.choice(Xv.shape[0], size=min(target_size, Xv.shape[0]), replace=False)
                vi = torch.as_tensor(V, device=Xv.device)
                target = (Xv[vi], Yv[vi])
            keep, losses, score_time, nbytes = curated_step(module, policy if active else "vanilla", xb, yb, target,
                                                            loss=loss)
            loss_mean = float(losses.detach().mean())
            if not np.isfinite(loss_mean):
                raise TrainingDiverged(f"curation policy {policy!r}: non-finite training loss at step {step}")
            step_lr = float(opt.param_groups[0]["lr"])
            opt.step()
            if scheduler is not None:
                scheduler.step()
            rec: dict[str, Any] = {
                "step": step, "epoch": epoch, "curating": bool(active), "batch_size": m, "loss": loss_mean,
                "lr": step_lr, "kept_fraction": float(keep.mean()), "dropped": S[~keep].tolist(),
                "score_time_s": score_time, "step_time_s": time.perf_counter() - t0,
                "rss_mb": proc.memory_info().rss / 2**20, "capture_mb": nbytes / 2**20,
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
