"""Recorded SGD runs: :class:`Schedule`, :class:`Trajectory` and :func:`train`.

One SGD run is fully determined by its initial parameters, its :class:`Schedule` (which samples form
batch t and the step size η_t) and the L2 coefficient α:

    θ_{t+1} = θ_t − η_t (1/|S_t|) Σ_{i∈S_t} w_i ∇f_i(θ_t),   f_i(θ) = ℓ(z_i; θ) + (α/2)‖θ‖².

``w`` = 1 is the recorded run; ``w`` = 1 with a 0 at j is the trajectory-specific leave-one-out replay
of j. The denominator stays the original |S_t| (the SGD-IE / ACC-SGD-IE authors' convention), so a
replay differs from the recorded run only through j's own term. ``weights`` of shape (k, n) replays k
runs at once (for logistic regression a closed-form engine: two GEMMs per step over the stacked weights, or,
for many runs on fewer samples than about twice the features, the runs' sample-space (representer) form with one
GEMM per step against the Gram matrix, :func:`_linear_engine`; for ReLU MLPs the backpropagation of the k runs
written out, :class:`_MLPReplay`; ``Model.batch_grad`` with an optimiser other than plain SGD or a callback).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from influence.data import as_tensors
from influence.io import atomic_write, save_json
from influence.models import Model, _closed_form_mlp, _relu_backward
from influence.validation import check_data

__all__ = ["Schedule", "RecordedSchedule", "StepInfo", "Trajectory", "TrainingDiverged", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """Batch order and step sizes of an SGD run, deterministic from ``seed``.

    ``order='rng'`` (default): epoch k uses its own permutation ``default_rng([seed, k]).permutation(n)``, cut
    into ceil(n/b) consecutive batches (the last one may be smaller). ``order='np_seed_epoch'``: the SGD-IE /
    ACC-SGD-IE authors' order (``train.py`` of both codes): ``np.random.seed(k); np.random.permutation(n)``
    split by ``np.array_split`` into ceil(n/b) parts (the first parts one larger when b does not divide n); it
    does not depend on ``seed``, so every seed of theirs sees the same batches. Step sizes: ``'constant'``
    η_t = η₀, or ``'inv_sqrt'`` η_t = η₀/√(t+1) (their per-step decay η ← η·√(c/(c+1)) after step c = 1, 2, …
    gives η₀ Π_{c≤t} √(c/(c+1)) = η₀/√(t+1)). Every counterfactual replay uses the same schedule.
    """

    n: int
    batch_size: int
    epochs: int
    lr: float
    seed: int = 0
    decay: str = "constant"
    order: str = "rng"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"schedule needs n >= 1 samples, got {self.n}")
        if not 1 <= self.batch_size:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if self.decay not in ("constant", "inv_sqrt"):
            raise ValueError(f"decay must be 'constant' or 'inv_sqrt', got {self.decay!r}")
        if self.order not in ("rng", "np_seed_epoch"):
            raise ValueError(f"order must be 'rng' or 'np_seed_epoch', got {self.order!r}")

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / min(self.batch_size, self.n))

    @property
    def n_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        if self.order == "np_seed_epoch":
            return np.random.RandomState(epoch).permutation(self.n)  # = np.random.seed(epoch); permutation(n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def batches(self) -> list[np.ndarray]:
        """Index arrays S_0 … S_{T−1}."""
        b = min(self.batch_size, self.n)
        out = []
        for k in range(self.epochs):
            perm = self.permutation(k)
            if self.order == "np_seed_epoch":
                out.extend(np.array_split(perm, self.steps_per_epoch))
            else:
                out.extend(perm[s : s + b] for s in range(0, self.n, b))
        return out

    def lrs(self) -> np.ndarray:
        t = np.arange(self.n_steps, dtype=np.float64)
        return np.full_like(t, self.lr) if self.decay == "constant" else self.lr / np.sqrt(t + 1.0)

    def with_epochs(self, epochs: int) -> Schedule:
        return Schedule(self.n, self.batch_size, epochs, self.lr, self.seed, self.decay, self.order)


@dataclass(frozen=True)
class RecordedSchedule:
    """The batches and step sizes of a run recorded from your own loop (:class:`influence.record.Recorder`).

    Same interface as :class:`Schedule` (``n``, ``batches()``, ``lrs()``, ``steps_per_epoch``, ``epochs``,
    ``n_steps``): batch t is ``batch_indices[t]`` and its step size ``step_lrs[t]`` (whatever the loop and its
    scheduler used). ``steps_per_epoch`` groups steps into epochs (for single-epoch removal); the last epoch
    may be shorter.
    """

    n: int
    batch_indices: tuple[tuple[int, ...], ...]
    step_lrs: tuple[float, ...]
    steps_per_epoch: int

    def __post_init__(self) -> None:
        if len(self.batch_indices) != len(self.step_lrs) or not self.batch_indices:
            raise ValueError(f"a recorded schedule needs one step size per batch and at least one step, got "
                             f"{len(self.batch_indices)} batches and {len(self.step_lrs)} step sizes")
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        for t, S in enumerate(self.batch_indices):
            if not S or min(S) < 0 or max(S) >= self.n:
                raise ValueError(f"batch {t} must hold sample indices in [0, {self.n}), got {list(S)[:8]}")

    @property
    def n_steps(self) -> int:
        return len(self.batch_indices)

    @property
    def epochs(self) -> int:
        return math.ceil(self.n_steps / self.steps_per_epoch)

    @property
    def batch_size(self) -> int:
        return max(len(S) for S in self.batch_indices)

    def batches(self) -> list[np.ndarray]:
        return [np.asarray(S, dtype=np.int64) for S in self.batch_indices]

    def lrs(self) -> np.ndarray:
        return np.asarray(self.step_lrs, dtype=np.float64)


def schedule_from_description(d: dict) -> Schedule | RecordedSchedule:
    """The schedule saved by :meth:`Trajectory.save` (``asdict`` of either kind)."""
    if "batch_indices" in d:
        return RecordedSchedule(int(d["n"]), tuple(tuple(int(i) for i in S) for S in d["batch_indices"]),
                                tuple(float(v) for v in d["step_lrs"]), int(d["steps_per_epoch"]))
    return Schedule(**d)


@dataclass
class StepInfo:
    """What the per-step callback of :func:`train` sees (k == 1 runs only)."""

    step: int
    epoch: int
    theta: torch.Tensor  # parameters before the update, (p,)
    batch: np.ndarray  # sample indices of S_t
    losses: torch.Tensor  # per-sample losses ℓ_i(θ_t) of the batch
    lr: float
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class Trajectory:
    """A recorded SGD run.

    ``thetas[s]`` are the parameters at step ``steps[s]`` (θ_0 is step 0, θ_T is step T = n_steps).
    With ``record='all'`` (the default) ``steps == arange(T + 1)``. ``logs`` holds whatever the
    callback returned besides weights (per-step dicts), and ``meta`` free JSON-able provenance.
    """

    model: Model  # or an influence.module.ModuleModel
    schedule: Schedule  # or a RecordedSchedule
    l2: float
    thetas: torch.Tensor  # (s, p)
    steps: np.ndarray  # (s,)
    losses: np.ndarray  # mean weighted batch loss per step, (T,)
    logs: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    optimizer: Any = None  # None: plain SGD; else an influence.optim.SGD / AdamW (momentum, weight decay, Adam)

    @property
    def device(self) -> torch.device:
        """Where the run's parameters live (the estimators and replays compute there)."""
        return self.thetas.device

    @property
    def theta0(self) -> torch.Tensor:
        if self.steps[0] != 0:
            raise ValueError("this trajectory did not record θ_0")
        return self.thetas[0]

    @property
    def final(self) -> torch.Tensor:
        return self.thetas[-1]

    @property
    def n_steps(self) -> int:
        return self.schedule.n_steps

    def batches(self) -> list[np.ndarray]:
        return self.schedule.batches()

    def lrs(self) -> np.ndarray:
        return self.schedule.lrs()

    def theta_at(self, step: int) -> torch.Tensor:
        """θ at a recorded step (error if that step was not recorded)."""
        pos = np.searchsorted(self.steps, step)
        if pos >= len(self.steps) or self.steps[pos] != step:
            raise KeyError(f"step {step} was not recorded (recorded: {len(self.steps)} steps)")
        return self.thetas[pos]

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path`` (tensors, torch.save) and then ``path + '.json'`` (metadata), each atomically.

        The JSON holds the SHA-256 of the tensor file (``tensors_sha256``), so a pair left mismatched by a
        kill between the two renames (new tensors, old JSON) is refused by :meth:`load`.
        """
        import hashlib
        import io

        path = Path(path)
        tensors = {
            "thetas": self.thetas,
            "steps": torch.as_tensor(self.steps),
            "losses": torch.as_tensor(self.losses),
        }
        buf = io.BytesIO()
        torch.save(tensors, buf)
        data = buf.getvalue()
        from influence.optim import describe

        meta = {
            "model": self.model.describe(),
            "optimizer": describe(self.optimizer),
            "schedule": asdict(self.schedule),
            "l2": self.l2,
            "logs": self.logs,
            "meta": self.meta,
            "tensors_sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic_write(path, data)
        save_json(str(path) + ".json", meta, sort_keys=False)

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None) -> Trajectory:
        """Load a trajectory written by :meth:`save` (``weights_only=True``: no code runs).

        ``model``: the :class:`~influence.module.ModuleModel` of a run recorded from your own module (its code
        is not saved); runs of the package's own :class:`Model` rebuild it from the JSON.

        Raises ``ValueError`` naming both files when the tensor file is not the one the JSON was written
        for (its SHA-256 differs from ``tensors_sha256``). A JSON without the checksum (written before it
        was recorded) loads with a warning.
        """
        import hashlib
        import io

        path = Path(path)
        meta_path = Path(str(path) + ".json")
        meta = json.loads(meta_path.read_text())
        data = path.read_bytes()
        expected = meta.get("tensors_sha256")
        if expected is None:
            log.warning("%s records no checksum of %s; loading the pair unchecked", meta_path, path)
        elif hashlib.sha256(data).hexdigest() != expected:
            raise ValueError(
                f"trajectory files do not match: {path} is not the tensor file {meta_path} was written for "
                f"(SHA-256 {hashlib.sha256(data).hexdigest()[:12]}…, expected {expected[:12]}…); an interrupted "
                "save left a mismatched pair: delete both and rerun the training job"
            )
        t = torch.load(io.BytesIO(data), weights_only=True)
        from influence.optim import from_description

        if model is None:
            if "module" in meta["model"]:
                raise ValueError(f"{meta_path} holds a run of your own module ({meta['model']['module']}): pass "
                                 "Trajectory.load(path, model=ModuleModel(module, loss=...))")
            model = Model.from_description(meta["model"])
        return cls(
            model=model,
            schedule=schedule_from_description(meta["schedule"]),
            optimizer=from_description(meta.get("optimizer")),
            l2=float(meta["l2"]),
            thetas=t["thetas"],
            steps=t["steps"].numpy(),
            losses=t["losses"].numpy(),
            logs=meta["logs"],
            meta=meta["meta"],
        )


def _step_name(t: int, schedule: Schedule) -> str:
    return f"step {t} (epoch {t // schedule.steps_per_epoch})"


#: Closed-form replay engines for logistic regression: ``'auto'`` (the cheaper of :class:`_LinearReplay` and
#: :class:`_DualLinearReplay` by their operation counts, :func:`_linear_engine`), ``'primal'``, ``'dual'``, or
#: ``'generic'`` (always ``Model.batch_grad``: the reference the tests compare the engines with).
_LINEAR_ENGINE = "auto"
#: Closed-form replay of ReLU MLPs (:class:`_MLPReplay`) for plain SGD without a callback; False: always
#: ``Model.batch_grad`` (the reference the tests compare the engine with).
_MLP_ENGINE = True


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in ``t``, from its sum: a NaN or an inf entry makes the sum NaN or inf, so a finite sum
    means every entry is finite (a sum overflowing from finite entries, |θ| near 1e308, also reads as
    diverged). One reduction instead of ``isfinite(t).all()``'s boolean copy of (k, p) every step."""
    return math.isfinite(float(t.sum()))


def _residuals(Z: torch.Tensor, yb: torch.Tensor, scale: torch.Tensor, class_dim: int) -> torch.Tensor:
    """R_ri = s_ri r_ri with r = σ(z) − y (binary) or softmax(z) − onehot(y), from the logits Z of m samples
    × k runs (classes along ``class_dim``: (m, k, o) or (m, o, k)) and per-sample, per-run factors ``scale``
    (m, k) (the weights w_ri / |S|, times −η/γ_r in the dual form)."""
    s = scale.unsqueeze(class_dim)
    if Z.shape[class_dim] == 1:
        return (torch.sigmoid(Z) - yb.to(Z.dtype)[:, None, None]) * s
    # softmax written out (torch.softmax is several times slower over a short class axis), its normaliser
    # and the scale applied in one pass, the one-hot part subtracted at the label only
    R = (Z - Z.amax(class_dim, keepdim=True)).exp_()
    R *= s / R.sum(class_dim, keepdim=True)
    R.scatter_add_(class_dim, yb.long().view(-1, 1, 1).expand(s.shape), -s)
    return R


def _shrink_for_gemm(W: torch.Tensor, c: torch.Tensor | None) -> float:
    """Prepare the L2 shrink W_r ← c_r W_r of k runs' weights W (k, …) for a GEMM that accumulates the update in
    place with ``beta``: returns that beta. The GEMM scales every run by c_0; runs whose factor differs (e.g. j ∈ S
    in a LOO replay) are first scaled by c_r/c_0 here, or, when more than half differ, all by c_r (beta 1)."""
    if c is None:
        return 1.0
    c0 = float(c[0])
    rows = torch.nonzero(c != c0).flatten()
    if c0 != 0.0 and rows.numel() <= W.shape[0] // 2:
        if rows.numel():
            W[rows] *= (c[rows] / c0).view(-1, *([1] * (W.ndim - 1)))
        return c0
    W *= c.view(-1, *([1] * (W.ndim - 1)))
    return 1.0


class _LinearReplay:
    """k logistic-regression runs stepped at once in closed form, parameters held as W (k, o, d), b (k, o).

    One SGD step of :func:`train` for a linear model (``Model.batch_grad`` written out): with
    Z = X_S [W_1; …; W_k]ᵀ + b (one GEMM, (m, k·o)), r_ri = σ(z_ri) − y_i (binary) or
    softmax(z_ri) − onehot(y_i) (the closed-form per-sample logit gradients, :mod:`influence.linear`),
    c_r = 1 − η α Σ_i w_ri / |S| (the L2 term) and R_ri = w_ri r_ri / |S|,

        W_r ← c_r W_r − η Σ_i R_ri x_iᵀ   (one GEMM, written in place),   b_r ← c_r b_r − η Σ_i R_ri.

    Only the first run's per-sample losses are formed (all that :func:`train` logs). Equal to the generic
    step to rounding (``tests/test_train.py``); it skips the per-run cross-entropy, the second softmax
    and the flat-vector copies that dominated the batched 10-class replay.
    """

    def __init__(self, model: Model, theta: torch.Tensor) -> None:
        k, o, d = theta.shape[0], model.n_out, model.n_features
        self.model, self.k, self.o, self.d = model, k, o, d
        self.W = theta[:, : o * d].reshape(k, o, d).clone()
        self.b = theta[:, o * d :].clone()

    def step(self, X: torch.Tensor, S: np.ndarray, yb: torch.Tensor, wb: torch.Tensor, denom: float, lr: float,
             l2: float) -> torch.Tensor:
        """Step on the batch X[S]; return the first run's per-sample losses ℓ_i at the parameters before it."""
        xb = X[S]
        k, o, d, m = self.k, self.o, self.d, xb.shape[0]
        W2 = self.W.view(k * o, d)
        Z = torch.addmm(self.b.reshape(1, k * o), xb, W2.T).view(m, k, o)
        losses0 = self.model.loss_from_logits(Z[:, 0], yb)
        R = _residuals(Z, yb, wb.T / denom, 2)
        c = 1.0 - lr * l2 * wb.sum(1) / denom if l2 else None
        beta = _shrink_for_gemm(self.W, c)
        W2.addmm_(R.reshape(m, k * o).T, xb, beta=beta, alpha=-lr)
        if c is not None:
            self.b *= c[:, None]
        self.b -= lr * R.sum(0)
        return losses0

    def theta(self) -> torch.Tensor:
        """The flat parameters (k, p) (a copy)."""
        return torch.cat([self.W.reshape(self.k, -1), self.b], dim=1)

    def finite(self) -> bool:
        return _all_finite(self.W) and _all_finite(self.b)


class _DualLinearReplay:
    """The same k runs in sample space (the representer form of SGD on a linear model), for n < ~2d.

    Every update of run r adds multiples of the batch inputs x̃_i = [x_i, 1] and shrinks by c_r (see
    :class:`_LinearReplay`), so from the shared θ₀ = (W₀, b₀)

        W_r(t) = γ_r(t) (W₀ + Σ_i A_ri(t) x_iᵀ),   b_r(t) = γ_r(t) (b₀ + Σ_i A_ri(t)),   A_ri ∈ R^o,

    with γ_r ← c_r γ_r and A_r[S] ← A_r[S] − (η/γ_r) R_r[S] per step, and the batch logits are
    Z_r[S] = γ_r (Z₀[S] + K̃[S] A_r) with K̃ = X Xᵀ + 1 (n × n, once) and Z₀ = X W₀ᵀ + b₀. One
    (m × n)·(n × k·o) GEMM per step instead of the primal's two (m × d)·(d × k·o) ones, no backward GEMM;
    θ is formed (one GEMM) only at recorded steps. If a shrink factor would make γ_r ≤ 1e-200 (η α ≥ 1,
    or very long runs) the replay continues in the primal form.
    """

    def __init__(self, model: Model, theta: torch.Tensor, X: torch.Tensor) -> None:
        k, o, d = theta.shape[0], model.n_out, model.n_features
        self.model, self.k, self.o, self.d, self.X = model, k, o, d, X
        P = model.unflatten(theta[0])
        self.W0, self.b0 = P["W0"], P["b0"]
        self.K = torch.addmm(torch.ones(1, 1, dtype=X.dtype), X, X.T)
        self.Z0 = torch.addmm(self.b0[None], X, self.W0.T)  # (n, o)
        self.A = torch.zeros(X.shape[0], k * o, dtype=X.dtype)
        self.gamma = torch.ones(k, dtype=X.dtype)
        self.primal: _LinearReplay | None = None
        self._finite = True

    def step(self, X: torch.Tensor, S: np.ndarray, yb: torch.Tensor, wb: torch.Tensor, denom: float, lr: float,
             l2: float) -> torch.Tensor:
        if self.primal is not None:
            return self.primal.step(X, S, yb, wb, denom, lr, l2)
        k, o, m = self.k, self.o, len(S)
        g_new = self.gamma * (1.0 - lr * l2 * wb.sum(1) / denom) if l2 else self.gamma
        if l2 and not bool((g_new > 1e-200).all()):
            self.primal = _LinearReplay(self.model, self.theta())
            return self.primal.step(X, S, yb, wb, denom, lr, l2)
        St = torch.as_tensor(S)
        Z = (self.K[St] @ self.A).view(m, o, k)  # columns class-major: the class reductions run over k-vectors
        Z += self.Z0[St][:, :, None]
        Z *= self.gamma
        losses0 = self.model.loss_from_logits(Z[:, :, 0], yb)
        R = _residuals(Z, yb, wb.T * (-lr / denom / g_new)[None, :], 1)
        self._finite = _all_finite(R)
        self.A.index_add_(0, St, R.view(m, o * k))
        self.gamma = g_new
        return losses0

    def theta(self) -> torch.Tensor:
        """The flat parameters (k, p): one (k·o × n)·(n × d) GEMM."""
        if self.primal is not None:
            return self.primal.theta()
        k, o = self.k, self.o
        W = (self.A.T @ self.X).view(o, k, self.d).transpose(0, 1) + self.W0
        b = self.A.sum(0).view(o, k).T + self.b0
        g = self.gamma
        return torch.cat([(g[:, None, None] * W).reshape(k, -1), g[:, None] * b], dim=1)

    def finite(self) -> bool:
        if self.primal is not None:
            return self.primal.finite()
        return self._finite and _all_finite(self.gamma)


class _MLPReplay:
    """k ReLU-MLP runs stepped at once in closed form, parameters held per layer: W_l (k, out, in), b_l (k, out).

    One SGD step of :func:`train` for a :class:`~influence.models.Model` with hidden layers (the backpropagation
    of :func:`influence.models._mlp_batch_grad`, with the update written into the weights): the first layer's
    weights of the k runs are one (k·h_1, d) matrix, so its forward pass is one GEMM with the shared batch,
    Z_1 = [W_0^1; …; W_0^k] X_Sᵀ + b_0, and its update one GEMM accumulated in place,
    W_0 ← c W_0 − η [D_1^1; …; D_1^k] X_S; later layers use batched matmuls (``baddbmm_`` in place), the output
    residuals R_ri = w_ri (softmax(z_ri) − onehot(y_i)) / |S| are formed by :func:`_residuals`, and
    c_r = 1 − η α Σ_i w_ri / |S| is the L2 shrink. Only the first run's per-sample losses are formed (all that
    :func:`train` logs). Equal to the generic step to rounding (``tests/test_batch_grad_closed_form.py``); it
    skips the flat (k, p) gradient, its concatenation and the (k, p) update of the generic step.
    """

    def __init__(self, model: Model, theta: torch.Tensor) -> None:
        P = model.unflatten(theta)
        self.model, self.k, self.n_layers = model, theta.shape[0], len(model.widths) - 1
        self.W = [P[f"W{layer}"].clone(memory_format=torch.contiguous_format) for layer in range(self.n_layers)]
        self.b = [P[f"b{layer}"].clone(memory_format=torch.contiguous_format) for layer in range(self.n_layers)]

    def step(self, X: torch.Tensor, S: np.ndarray, yb: torch.Tensor, wb: torch.Tensor, denom: float, lr: float,
             l2: float) -> torch.Tensor:
        """Step on the batch X[S]; return the first run's per-sample losses ℓ_i at the parameters before it."""
        xb = X[S]
        W, b, k, m, L = self.W, self.b, self.k, xb.shape[0], self.n_layers
        h1 = W[0].shape[1]
        W0 = W[0].view(k * h1, -1)
        # forward, feature-major: A[l] (k, h_l, m) is the input of layer l ≥ 1
        A = [xb, torch.addmm(b[0].view(k * h1, 1), W0, xb.T).view(k, h1, m).relu_()]
        for layer in range(1, L - 1):
            A.append(torch.baddbmm(b[layer][:, :, None], W[layer], A[layer]).relu_())
        Z = torch.baddbmm(b[-1][:, None, :], A[-1].transpose(1, 2), W[-1].transpose(1, 2))  # (k, m, o)
        losses0 = self.model.loss_from_logits(Z[0], yb)
        D = _residuals(Z.transpose(0, 1), yb, wb.T / denom, 2).permute(1, 2, 0)  # (m, k, o) → (k, o, m)
        c = (1.0 - lr * l2 * wb.sum(1) / denom) if l2 else None
        # backward, last layer first: each layer's delta is formed from its weights before they are updated
        for layer in range(L - 1, -1, -1):
            Dl = D
            if layer:
                D = _relu_backward(torch.bmm(W[layer].transpose(1, 2), Dl), A[layer])
            if c is not None:
                b[layer] *= c[:, None]
            if layer:
                if c is not None:
                    W[layer] *= c[:, None, None]
                W[layer].baddbmm_(Dl, A[layer].transpose(1, 2), alpha=-lr)
            else:  # the largest matrix: its shrink goes into the GEMM's beta where the runs allow
                W0.addmm_(Dl.reshape(k * h1, m), xb, beta=_shrink_for_gemm(W[0], c), alpha=-lr)
            b[layer].sub_(Dl.sum(2), alpha=lr)
        return losses0

    def theta(self) -> torch.Tensor:
        """The flat parameters (k, p) (a copy)."""
        parts = []
        for Wl, bl in zip(self.W, self.b, strict=True):
            parts += [Wl.reshape(self.k, -1), bl]
        return torch.cat(parts, dim=1)

    def finite(self) -> bool:
        return all(_all_finite(t) for t in (*self.W, *self.b))


def _linear_engine(model: Model, X: torch.Tensor, k: int, schedule: Schedule, n_recorded: int) -> str:
    """``'primal'`` or ``'dual'`` replay for k runs of logistic regression, by multiply-add counts.

    primal: T steps × 2 GEMMs of m·d·(k·o); dual: the Gram matrix n²d once, T steps × m·n·(k·o), and one
    n·d·(k·o) GEMM per recorded step. The dual form needs the n × n Gram matrix in memory (≤ 256 MB) and is
    used in float64 only (its logits sum n terms of the Gram matrix: more rounding than the primal's d).
    """
    n, d, o, T = X.shape[0], model.n_features, model.n_out, schedule.n_steps
    m = min(schedule.batch_size, n)
    primal = 2.0 * T * m * d * k * o
    dual = float(n) * n * d + T * m * n * k * o + n_recorded * n * d * k * o
    small = n * n * X.element_size() <= 256 * 2**20
    return "dual" if (X.dtype == torch.float64 and small and dual < 0.8 * primal) else "primal"


class TrainingDiverged(FloatingPointError):
    """SGD diverged: a non-finite loss or parameter, or a loss far above its start (see :func:`train`)."""


Callback = Callable[[StepInfo], "torch.Tensor | np.ndarray | dict | None"]


def train(
    model: Model,
    theta0: torch.Tensor,
    data: Any,
    schedule: Schedule,
    *,
    weights: torch.Tensor | np.ndarray | None = None,
    l2: float = 0.0,
    callback: Callback | None = None,
    record: str | list[int] | np.ndarray = "all",
    progress: bool = False,
    max_loss_growth: float | None = 100.0,
    optimizer: Any = None,
) -> Trajectory:
    """Run (or replay) SGD and record it.

    Everything runs where θ₀ lives (CPU or GPU) and in θ₀'s dtype; ``model`` may be an
    :class:`influence.models.Model` or any module through :class:`influence.module.ModuleModel`.

    Parameters
    ----------
    model, theta0 : architecture and flat initial parameters (θ₀'s dtype is the run's dtype).
    data : training set (``Dataset`` or ``(X, y)``); ``len == schedule.n``.
    schedule : batch order and step sizes.
    weights : None, (n,) or (k, n) per-sample weights, or (k, n_epochs, n) per-sample weights per epoch
        (sample j's weight in the steps of epoch e is ``weights[r, e, j]``: e.g. removing a sample at its
        occurrence in one epoch only). (k, n) and (k, E, n) replay k runs at once; the recorded
        ``thetas`` then have shape (s, k, p).
    l2 : α of the per-sample L2 term (α/2)‖θ‖².
    callback : called before every update with a :class:`StepInfo` (only for k = 1). It may return
        per-sample weights for the batch (multiplied into ``weights``), a dict (appended to
        ``logs``; its key ``"weights"`` is used as weights), or None.
    record : ``'all'`` (θ after every step), ``'final'`` (θ_0 and θ_T), or a list of steps.
    max_loss_growth : divergence guard: the run stops with :class:`TrainingDiverged` when a batch loss
        exceeds this factor times max(ℓ_0, 0.01), ℓ_0 the first step's batch loss (None: no guard).
        An SGD run that learns never comes near 100× its initial loss; one whose step size is too large
        gets there within a few steps, long before its losses overflow.
    optimizer : None (plain SGD, the update above) or an :mod:`influence.optim` update (``SGD`` with momentum
        and weight decay, ``AdamW``) applied to the same batch gradient, for each of the k runs; its state
        starts empty as a fresh ``torch.optim`` optimiser's does.

    Raises
    ------
    TrainingDiverged (a ``FloatingPointError``) if a batch loss or the parameters become NaN/inf or the
    loss grows beyond ``max_loss_growth``; the message names the step and the fix. ``ValueError`` for
    bad data (:func:`influence.validation.check_data`: shapes, NaN, labels outside the model's classes).
    """
    check_data(data, "data", "train", model=model, n=schedule.n, n_source="the schedule was made for")
    if not bool(torch.isfinite(theta0).all()):
        raise ValueError("train: theta0 contains NaN or inf")
    if max_loss_growth is not None and not max_loss_growth > 1:
        raise ValueError(f"train: max_loss_growth must be > 1 or None, got {max_loss_growth}")
    from influence.optim import is_plain_sgd

    X, y = as_tensors(data, theta0.dtype, theta0.device)
    n = X.shape[0]
    dev = theta0.device
    plain = is_plain_sgd(optimizer)
    if not plain and not hasattr(optimizer, "step"):
        raise TypeError("train: optimizer must be None or an influence.optim.SGD / AdamW, got "
                        f"{type(optimizer).__name__} (influence.optim.from_torch converts a torch.optim optimiser)")
    if theta0.shape != (model.n_params,):
        raise ValueError(f"theta0 must have shape ({model.n_params},), got {tuple(theta0.shape)}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    single = weights is None or np.ndim(weights) == 1
    if weights is None:
        W = torch.ones(1, n, dtype=theta0.dtype, device=dev)
    else:
        W = torch.as_tensor(np.asarray(weights) if not isinstance(weights, torch.Tensor) else weights)
        E = schedule.epochs
        if W.ndim not in (1, 2, 3) or W.shape[-1] != n or (W.ndim == 3 and W.shape[1] != E):
            raise ValueError(f"weights must have shape ({n},), (k, {n}) or (k, {E}, {n}) (per epoch), got "
                             f"{tuple(W.shape)}")
        W = W.to(dtype=theta0.dtype, device=dev)
        W = W.reshape(-1, E, n) if W.ndim == 3 else W.reshape(-1, n)
        if not bool(torch.isfinite(W).all()):
            raise ValueError("train: weights contain NaN or inf")
    if callback is not None and W.shape[0] != 1:
        raise ValueError("a callback can only be used with a single run (weights of shape (n,))")

    T = schedule.n_steps
    if isinstance(record, str):
        if record not in ("all", "final"):
            raise ValueError(f"record must be 'all', 'final' or a list of steps, got {record!r}")
        keep = np.arange(T + 1) if record == "all" else np.array([0, T])
    else:
        keep = np.unique(np.asarray(record, dtype=int))
        if keep.size == 0 or keep.min() < 0 or keep.max() > T:
            raise ValueError(f"recorded steps must lie in [0, {T}]")
    keep_set = set(keep.tolist())

    theta = theta0.detach().clone().expand(W.shape[0], -1).clone()
    saved = [theta.clone()] if 0 in keep_set else []
    # logistic regression without a callback: a closed-form replay engine (_LinearReplay / _DualLinearReplay)
    fast: _LinearReplay | _DualLinearReplay | None = None
    if model.is_linear and plain and callback is None and _LINEAR_ENGINE != "generic":
        engine = _LINEAR_ENGINE
        if engine == "auto":
            engine = _linear_engine(model, X, W.shape[0], schedule, len(keep_set - {0}))
        fast = _DualLinearReplay(model, theta, X) if engine == "dual" else _LinearReplay(model, theta)
    elif plain and callback is None and _MLP_ENGINE and W.shape[0] > 1 and _closed_form_mlp(model):
        # only for k > 1 runs (retrainings): a single run keeps the generic step, bit for bit the step that
        # influence.curation's vanilla policy takes, so that a curated run and plain training stay comparable
        fast = _MLPReplay(model, theta)
    state = {} if plain else optimizer.init(theta)
    batch_losses = np.empty(T)
    logs: list[dict] = []
    lrs = schedule.lrs()
    it = enumerate(schedule.batches())
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=T, desc="sgd", leave=False)
    spe = schedule.steps_per_epoch
    for t, S in it:
        xb, yb = (X[S] if fast is None else None), y[S]  # the closed-form engines gather what they need
        wb = W[:, t // spe, S] if W.ndim == 3 else W[:, S]
        if callback is not None:
            with torch.no_grad():
                ls = model.losses(theta[0], xb, yb)
            info = StepInfo(t, t // schedule.steps_per_epoch, theta[0].clone(), S, ls, float(lrs[t]), xb, yb)
            ret = callback(info)
            if isinstance(ret, dict):
                logs.append({k: v for k, v in ret.items() if k != "weights"})
                ret = ret.get("weights")
            if ret is not None:
                extra = torch.as_tensor(np.asarray(ret) if not isinstance(ret, torch.Tensor) else ret, device=dev)
                if extra.shape != (len(S),):
                    raise ValueError(f"callback weights must have shape ({len(S)},), got {tuple(extra.shape)}")
                wb = wb * extra.to(wb.dtype)
        if fast is not None:
            ls0 = fast.step(X, S, yb, wb, float(len(S)), float(lrs[t]), l2)
            batch_losses[t] = float((wb[0] * ls0).sum() / len(S))
            finite = fast.finite()
        else:
            g, ls = model.batch_grad(theta, xb, yb, wb, float(len(S)), l2)
            batch_losses[t] = float((wb[0] * ls[0].detach()).sum() / len(S))
            if plain:
                theta = theta - float(lrs[t]) * g.detach()
            else:
                theta, state = optimizer.step(theta, g.detach(), state, float(lrs[t]), t)
            finite = _all_finite(theta)
        if not (math.isfinite(batch_losses[t]) and finite):
            raise TrainingDiverged(
                f"training diverged at {_step_name(t, schedule)}: non-finite loss or parameters; lower the "
                f"learning rate (lr={lrs[t]:.3g}) or add L2"
            )
        if max_loss_growth is not None and batch_losses[t] > max_loss_growth * max(batch_losses[0], 0.01):
            raise TrainingDiverged(
                f"training diverged at {_step_name(t, schedule)}: batch loss {batch_losses[t]:.3g} is more than "
                f"{max_loss_growth:g}× the first step's {batch_losses[0]:.3g}; lower the learning rate "
                f"(lr={lrs[t]:.3g}) or add L2 (max_loss_growth sets the factor)"
            )
        if t + 1 in keep_set:
            saved.append(fast.theta() if fast is not None else theta.clone())
    thetas = torch.stack(saved)
    if single:
        thetas = thetas[:, 0]
    return Trajectory(model, schedule, float(l2), thetas, keep, batch_losses, logs,
                      optimizer=None if plain else optimizer)
