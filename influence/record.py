"""Record a run of your own training loop, so that trajectory LOO and the trajectory estimators can use it.

Usage (any ``nn.Module``, ``torch.optim.SGD`` with or without momentum and weight decay, or ``AdamW``;
any learning-rate scheduler)::

    with Recorder(net, opt, n=len(X), loss="cross_entropy") as rec:
        for epoch in range(3):
            for idx in torch.randperm(len(X)).split(32):
                rec.batch(idx)                             # which samples form this step's batch
                loss = F.cross_entropy(net(X[idx]), y[idx])  # the batch mean of the per-sample loss
                opt.zero_grad(); loss.backward(); opt.step()
    run = rec.trajectory((X, y))                           # replays the run once to check it

The recorder hooks ``optimizer.step`` (a pre-hook): at every step it keeps the batch indices, the step size
the optimiser is about to use (so schedulers are followed) and, every ``every`` steps, the parameters θ_t
before the update; it keeps θ_T at the end. :meth:`Recorder.trajectory` returns an
:class:`influence.train.Trajectory` over an :class:`influence.module.ModuleModel`, with a
:class:`~influence.train.RecordedSchedule` and the optimiser's functional twin (:mod:`influence.optim`).
With ``check=True`` (default) it replays the recorded run (:func:`influence.train.train`) and compares the
replayed θ_T with the module's: a mismatch means the loop did something a replay cannot see (a loss that is
not the batch mean of the per-sample loss, dropout, gradient clipping, augmentation, several optimisers) and
raises with that list, instead of letting every estimate silently describe another run.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from influence.module import LossFn, ModuleModel
from influence.optim import from_torch
from influence.train import RecordedSchedule, Trajectory, train

__all__ = ["Recorder", "RunMismatch"]

log = logging.getLogger(__name__)


class RunMismatch(RuntimeError):
    """The replay of a recorded run does not reproduce the run (see :meth:`Recorder.trajectory`)."""


class Recorder:
    """Context manager recording the run of ``optimizer`` over ``module`` (see the module docstring).

    Parameters
    ----------
    module, optimizer : your network and its ``torch.optim.SGD`` / ``AdamW`` (fresh: no state yet, one
        parameter group, every trainable parameter of ``module`` in it).
    n : the number of training samples (batch indices lie in [0, n)).
    loss : the per-sample loss of :class:`~influence.module.ModuleModel` (name or callable).
    every : keep θ_t every ``every`` steps (1: all steps, which SGD-IE, ACC-SGD-IE, DVEmb and Diff-In need;
        trajectory LOO needs θ_0 only). θ_0 and θ_T are always kept.
    steps_per_epoch : steps per epoch (default ⌈n / first batch size⌉), for single-epoch removal.
    n_classes : for label checks (optional).
    """

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int, *,
                 loss: str | LossFn = "cross_entropy", every: int = 1, steps_per_epoch: int | None = None,
                 n_classes: int | None = None) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Recorder: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.spec = from_torch(optimizer)
        if optimizer.state:
            raise ValueError("Recorder: the optimizer has already stepped (it holds state); start recording with a "
                             "fresh optimizer so that the replay starts from the same state")
        if n < 1 or every < 1:
            raise ValueError(f"Recorder: n and every must be >= 1, got n={n}, every={every}")
        self.model = ModuleModel(module, loss, n_classes=n_classes)
        trainable = [p for _, p in module.named_parameters() if p.requires_grad]
        in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
        if {id(p) for p in trainable} != in_opt:
            raise ValueError("Recorder: the optimizer must hold exactly the module's trainable parameters")
        self.module, self.optimizer, self.n, self.every = module, optimizer, int(n), int(every)
        self.steps_per_epoch = steps_per_epoch
        self._batches: list[tuple[int, ...]] = []
        self._lrs: list[float] = []
        self._thetas: list[torch.Tensor] = []
        self._steps: list[int] = []
        self._pending: tuple[int, ...] | None = None
        self._handle: Any = None

    # ------------------------------------------------------------------ the loop's side
    def __enter__(self) -> Recorder:
        self._handle = self.optimizer.register_step_pre_hook(self._pre_step)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def batch(self, indices: Any) -> None:
        """Declare the training-sample indices of the coming step's batch (call before ``optimizer.step()``)."""
        idx = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        idx = idx.astype(np.int64).ravel()
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.n:
            raise ValueError(f"Recorder.batch: indices must be non-empty and lie in [0, {self.n}), got {idx[:8]}")
        if self._pending is not None:
            raise RuntimeError("Recorder.batch: called twice without an optimizer.step() in between")
        self._pending = tuple(int(i) for i in idx)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._pending is None:
            raise RuntimeError("Recorder: optimizer.step() without a batch: call rec.batch(indices) before each step")
        lrs = {float(g["lr"]) for g in optimizer.param_groups}
        if len(lrs) != 1:
            raise ValueError(f"Recorder: parameter groups with different step sizes {sorted(lrs)} are not supported")
        t = len(self._batches)
        if t % self.every == 0:
            self._thetas.append(self.model.from_module(self.module).clone())
            self._steps.append(t)
        self._batches.append(self._pending)
        self._lrs.append(lrs.pop())
        self._pending = None

    # ------------------------------------------------------------------ the result
    def trajectory(self, train_data: Any = None, *, check: bool = True, rtol: float | None = None) -> Trajectory:
        """The recorded run as a :class:`~influence.train.Trajectory` (closes the hooks).

        With ``check`` (needs ``train_data``) the run is replayed in its own dtype and the replayed θ_T must equal
        the module's to ``rtol`` (relative, default 1e-4 in float32, 1e-9 in float64); otherwise
        :class:`RunMismatch` says what may differ.
        """
        self.close()
        if not self._batches:
            raise ValueError("Recorder: no step was recorded")
        T = len(self._batches)
        final = self.model.from_module(self.module).clone()
        thetas, steps = list(self._thetas), list(self._steps)
        if steps[-1] != T:
            thetas.append(final)
            steps.append(T)
        spe = self.steps_per_epoch or int(np.ceil(self.n / len(self._batches[0])))
        sched = RecordedSchedule(self.n, tuple(self._batches), tuple(self._lrs), spe)
        traj = Trajectory(self.model, sched, 0.0, torch.stack(thetas), np.asarray(steps), np.full(T, np.nan),
                          meta={"recorded": True, "every": self.every}, optimizer=self.spec)
        if check:
            if train_data is None:
                raise ValueError("Recorder.trajectory: pass train_data to check the replay (or check=False)")
            self.check(traj, train_data, rtol)
        return traj

    def check(self, traj: Trajectory, train_data: Any, rtol: float | None = None) -> float:
        """Replay ``traj`` and return the relative error of its θ_T; raise :class:`RunMismatch` above ``rtol``."""
        th0 = traj.theta0
        rtol = rtol if rtol is not None else (1e-9 if th0.dtype == torch.float64 else 1e-4)
        replay = train(traj.model, th0, train_data, traj.schedule, l2=traj.l2, record="final",
                       optimizer=traj.optimizer, max_loss_growth=None).final
        err = float((replay - traj.final).norm() / traj.final.norm().clamp_min(1e-30))
        if not err <= rtol:
            raise RunMismatch(
                f"the replay of the recorded run ends {err:.2e} (relative) away from your module's parameters "
                f"(allowed {rtol:.0e}). The replay assumes: the loss is the batch mean of the per-sample loss "
                f"{traj.model.loss_name!r}; the forward pass is deterministic (no dropout, no batch-norm statistics); "
                "no gradient clipping, augmentation or extra loss terms; one optimizer step per rec.batch(); the "
                "train_data passed here is the data the loop indexed"
            )
        log.info("recorded run replays to %.1e (relative)", err)
        return err
