"""Optimiser updates in functional form, equal to ``torch.optim.SGD`` and ``torch.optim.AdamW``.

A recorded run is replayed (:func:`influence.train.train`) with the optimiser it was trained with, so
that trajectory leave-one-out (:func:`influence.loo.trajectory_loo`) is exact for momentum SGD and
AdamW too. Each optimiser is a frozen description (its hyperparameters) with two pure functions:
``init(theta)`` → state and ``step(theta, g, state, lr, t)`` → (θ', state'), for θ of shape (k, p): k runs
at once. The update is written in the order of PyTorch's single-tensor implementation (``foreach=False``)
so a replay agrees with a run made by ``torch.optim`` to rounding (tests/test_record.py).

* :class:`SGD` (``torch.optim.SGD``): g ← g + λθ; with momentum μ, b ← g at the first step and
  b ← μ b + (1 − τ) g after it (τ: dampening); g ← g + μ b (Nesterov) or g ← b; θ ← θ − η g.
* :class:`AdamW` (``torch.optim.AdamW``, Loshchilov & Hutter 2019): θ ← θ(1 − ηλ);
  m ← β₁ m + (1 − β₁) g; v ← β₂ v + (1 − β₂) g²; θ ← θ − η/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε).

Plain SGD (``SGD()``: no momentum, no weight decay) is what SGD-IE, ACC-SGD-IE, DVEmb and Diff-In are
derived for; :func:`require_plain_sgd` refuses other runs with a message saying why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["SGD", "AdamW", "Optimizer", "from_torch", "from_description", "is_plain_sgd", "require_plain_sgd"]


@dataclass(frozen=True)
class SGD:
    """``torch.optim.SGD``'s update: momentum μ, dampening τ, Nesterov, weight decay λ (added to the gradient)."""

    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(f"SGD: momentum and weight_decay must be >= 0, got {self.momentum}, {self.weight_decay}")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening (as torch.optim.SGD)")

    @property
    def name(self) -> str:
        return "sgd"

    def init(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def step(self, theta: torch.Tensor, g: torch.Tensor, state: dict, lr: float, t: int) -> tuple[torch.Tensor, dict]:
        """One update at step t (0-based) with step size ``lr``; returns the new θ and state."""
        if self.weight_decay:
            g = g.add(theta, alpha=self.weight_decay)
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = g.clone()
            else:
                buf = buf.mul(self.momentum).add(g, alpha=1 - self.dampening)
            state = {"momentum_buffer": buf}
            g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
        return theta.add(g, alpha=-lr), state


@dataclass(frozen=True)
class AdamW:
    """``torch.optim.AdamW``'s update (decoupled weight decay λ, bias-corrected moments, no AMSGrad)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-2

    def __post_init__(self) -> None:
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"AdamW: betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.eps <= 0 or self.weight_decay < 0:
            raise ValueError(f"AdamW: eps must be > 0 and weight_decay >= 0, got {self.eps}, {self.weight_decay}")

    @property
    def name(self) -> str:
        return "adamw"

    def init(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"exp_avg": torch.zeros_like(theta), "exp_avg_sq": torch.zeros_like(theta)}

    def step(self, theta: torch.Tensor, g: torch.Tensor, state: dict, lr: float, t: int) -> tuple[torch.Tensor, dict]:
        theta = theta.mul(1 - lr * self.weight_decay)
        m = state["exp_avg"].lerp(g, 1 - self.beta1)
        v = state["exp_avg_sq"].mul(self.beta2).addcmul(g, g, value=1 - self.beta2)
        step = t + 1
        bias1 = 1 - self.beta1**step
        bias2_sqrt = math.sqrt(1 - self.beta2**step)
        denom = (_sqrt0(v) / bias2_sqrt).add(self.eps)
        theta = theta.addcdiv(m, denom, value=-lr / bias1)
        return theta, {"exp_avg": m, "exp_avg_sq": v}


Optimizer = SGD | AdamW


def _sqrt0(v: torch.Tensor) -> torch.Tensor:
    """√v for v ≥ 0, with derivative 0 (not 0 · ∞ = NaN) where v = 0: a parameter that has had only zero gradients
    (an embedding row no batch used) keeps a finite metagradient; the values equal ``v.sqrt()`` exactly."""
    live = v > 0
    return torch.where(live, v, torch.ones_like(v)).sqrt() * live


def from_torch(optimizer: torch.optim.Optimizer) -> Optimizer:
    """The functional twin of a ``torch.optim.SGD`` / ``AdamW`` instance (hyperparameters of its one group).

    Refused, with the reason: other optimiser classes, several parameter groups with different settings
    (per-group hyperparameters are not replayed), AMSGrad, ``maximize``, Adam's coupled L2 (use AdamW).
    """
    groups = optimizer.param_groups
    keys = [k for k in groups[0] if k not in ("params", "lr", "initial_lr")]
    for g in groups[1:]:
        if any(g.get(k) != groups[0].get(k) for k in keys):
            raise ValueError("optimizer: parameter groups with different hyperparameters are not supported; "
                             "use one group")
    h = groups[0]
    if h.get("maximize"):
        raise ValueError("optimizer: maximize=True is not supported")
    if type(optimizer) is torch.optim.SGD:
        return SGD(float(h["momentum"]), float(h["dampening"]), bool(h["nesterov"]), float(h["weight_decay"]))
    if type(optimizer) is torch.optim.AdamW:
        if h.get("amsgrad"):
            raise ValueError("optimizer: AdamW with amsgrad=True is not supported")
        b1, b2 = h["betas"]
        return AdamW(float(b1), float(b2), float(h["eps"]), float(h["weight_decay"]))
    raise ValueError(f"optimizer: {type(optimizer).__name__} is not supported; record a torch.optim.SGD (with or "
                     "without momentum and weight decay) or torch.optim.AdamW run")


def describe(optimizer: Optimizer | None) -> dict[str, Any] | None:
    """JSON description (``{"name": ..., hyperparameters}``); None: the plain SGD of :func:`influence.train.train`."""
    return None if optimizer is None else {"name": optimizer.name, **asdict(optimizer)}


def from_description(d: dict[str, Any] | None) -> Optimizer | None:
    if d is None:
        return None
    d = dict(d)
    name = d.pop("name")
    if name == "sgd":
        return SGD(**d)
    if name == "adamw":
        return AdamW(**d)
    raise ValueError(f"unknown optimizer description {name!r}")


def is_plain_sgd(optimizer: Optimizer | None) -> bool:
    """True for plain SGD (no momentum, no optimiser weight decay): the update the trajectory estimators model."""
    return optimizer is None or (isinstance(optimizer, SGD) and optimizer.momentum == 0 and optimizer.weight_decay == 0)


def require_plain_sgd(name: str, traj: Any) -> None:
    """Raise ``ValueError`` when ``traj`` was not trained with plain SGD: estimator ``name`` is derived for the
    update θ_{t+1} = θ_t − η_t ∇L_{S_t}(θ_t) only (its per-step Jacobian I − η_t H_t has no momentum or Adam term)."""
    opt = getattr(traj, "optimizer", None)
    if not is_plain_sgd(opt):
        raise ValueError(
            f"{name}: traj was trained with {describe(opt)}; {name} is derived for plain SGD "
            "(θ_{t+1} = θ_t − η_t ∇L_S(θ_t)), so its per-step Jacobian misses the optimiser's state. Use "
            "trajectory_loo (exact for any recorded SGD / momentum / AdamW run), tracin or influence_function; "
            "or record a plain-SGD run (L2 as the run's l2, not the optimiser's weight_decay)"
        )
