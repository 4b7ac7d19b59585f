"""A functional view of any ``nn.Module``: the interface of :class:`influence.models.Model` for your network.

:class:`ModuleModel` wraps a user's module (a CNN, a transformer, anything ``torch.func.functional_call``
can run) and a per-sample loss, and exposes what the trajectory estimators, the replays and the ground
truth read from a model: a parameter layout (flat vector θ ↔ dict of named tensors, in
``named_parameters()`` order), ``logits(θ, x)``, per-sample ``losses(θ, x, y)``, the batch gradient of k
weighted runs at once (``vmap`` of ``grad``) and the output gradient ∂ℓ/∂outputs. Inputs may have any
shape (images N×C×H×W, token ids N×T); targets are class labels (n,), token targets (n, T) or real
values for MSE. Everything is computed where θ lives (CPU or GPU) and in θ's dtype.

Per-sample losses (``loss=``):

* ``"cross_entropy"`` (default): outputs (m, 1) use the logistic loss with labels in {0, 1}; (m, C)
  softmax cross-entropy; (m, T, V) the mean token cross-entropy of a sequence (:func:`influence.models.example_losses`);
* ``"mse"``: ℓ_i = mean over the output entries of (out_i − y_i)²;
* a callable ``loss(outputs, y) -> (m,)``: any per-sample loss (``reduction="none"``, then reduced per sample).

Requirements of the replay (checked by :meth:`influence.record.Recorder.finish`): a deterministic forward
pass (no dropout in training mode, batch norm in eval mode or absent) and a training loss equal to the
batch mean of the per-sample loss. Integer inputs of a module with an ``nn.Embedding`` are token ids: they
are passed to the module as ``int64`` whatever the run's float dtype (token ids below 2^24 are exact in float32).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from influence.models import Model, example_losses, logit_grad, sequence_logit_grad

__all__ = ["ModuleModel", "LOSSES"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    y = y.to(out.dtype).reshape(out.shape)
    return ((out - y) ** 2).reshape(out.shape[0], -1).mean(1)


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return example_losses(out, y)


LOSSES: dict[str, LossFn] = {"cross_entropy": _cross_entropy, "mse": _mse}


class ModuleModel:
    """Any ``nn.Module`` in functional form, with a per-sample loss (see the module docstring).

    Parameters
    ----------
    module : the network; its parameters (``requires_grad=True`` ones) are θ, its buffers are held fixed.
        The module itself is not modified; :meth:`to_module` returns a copy holding a given θ.
    loss : ``"cross_entropy"``, ``"mse"`` or a callable ``(outputs, y) -> (m,)``.
    n_classes : the number of classes, for label checks and :meth:`accuracy` (None: not checked).
    index_inputs : pass integer inputs as int64 token ids (default: True if the module has an ``nn.Embedding``).
    """

    is_linear = False
    n_features = None  # inputs of any shape: no feature-count check

    def __init__(self, module: torch.nn.Module, loss: str | LossFn = "cross_entropy", *, n_classes: int | None = None,
                 index_inputs: bool | None = None, name: str = "") -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"ModuleModel: module must be a torch.nn.Module, got {type(module).__name__}")
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"ModuleModel: loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
            self.loss_name, self._loss = loss, LOSSES[loss]
        elif callable(loss):
            self.loss_name, self._loss = getattr(loss, "__name__", "custom"), loss
        else:
            raise TypeError(f"ModuleModel: loss must be a name or a callable, got {type(loss).__name__}")
        for m in module.modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
                raise ValueError(f"ModuleModel: the module has dropout in training mode ({m}); a replay needs a "
                                 "deterministic forward pass: call module.eval() or set p=0")
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training:
                raise ValueError(f"ModuleModel: the module has batch norm in training mode ({m}); its batch "
                                 "statistics couple the samples of a batch: use module.eval(), GroupNorm or LayerNorm")
        self.module = module
        self.names = [k for k, p in module.named_parameters() if p.requires_grad]
        self.shapes = {k: tuple(p.shape) for k, p in module.named_parameters() if p.requires_grad}
        if not self.names:
            raise ValueError("ModuleModel: the module has no trainable parameters")
        self.frozen = {k: p.detach() for k, p in module.named_parameters() if not p.requires_grad}
        self.buffers = {k: b.detach() for k, b in module.named_buffers()}
        self.n_classes = None if n_classes is None else int(n_classes)
        if index_inputs is None:
            index_inputs = any(isinstance(m, torch.nn.Embedding) for m in module.modules())
        self.index_inputs = bool(index_inputs)
        self.name = name or type(module).__name__
        self._fixed: dict[tuple, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ structure
    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    @property
    def n_out(self) -> int | None:
        return None

    def describe(self) -> dict:
        return {"module": type(self.module).__qualname__, "n_params": self.n_params, "loss": self.loss_name,
                "n_classes": self.n_classes}

    def __repr__(self) -> str:
        return f"ModuleModel({self.name}, {self.n_params} parameters, loss={self.loss_name!r})"

    # ------------------------------------------------------------------ parameters
    # Model's code over the module's named shapes and forward: the flat layout θ ↔ {name: tensor}, the per-sample
    # losses, and the batch gradient of k weighted runs (``vmap`` of ``grad``; ``is_linear`` is False)
    unflatten = Model.unflatten
    flatten = Model.flatten
    logits = Model.logits
    losses = Model.losses
    loss = Model.loss
    batch_grad = Model.batch_grad

    def from_module(self, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Flat θ of ``module`` (default: the wrapped one), detached, on its device and in its dtype."""
        named = dict((module or self.module).named_parameters())
        return torch.cat([named[k].detach().reshape(-1) for k in self.names])

    def init(self, seed: int, dtype: torch.dtype = torch.float64, scheme: str = "default") -> torch.Tensor:
        """Seeded initial θ: a copy of the module with every submodule's ``reset_parameters()`` called under
        ``torch.manual_seed(seed)`` (the global RNG is left as it was)."""
        if scheme != "default":
            raise ValueError(f"ModuleModel.init: only scheme='default' (reset_parameters) is defined, got {scheme!r}")
        m = copy.deepcopy(self.module)
        dev = self.from_module().device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(int(seed))
            for sub in m.modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
        return self.from_module(m).to(dtype)

    def to_module(self, theta: torch.Tensor) -> torch.nn.Module:
        """A copy of the module holding θ (in θ's dtype and on its device)."""
        m = copy.deepcopy(self.module).to(dtype=theta.dtype, device=theta.device)
        named = dict(m.named_parameters())
        with torch.no_grad():
            for k, v in self.unflatten(theta.detach()).items():
                named[k].copy_(v)
        return m

    # ------------------------------------------------------------------ functions
    def _fixed_for(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frozen parameters and buffers cast to θ's dtype (floating ones) and device, cached."""
        key = (like.dtype, like.device)
        if key not in self._fixed:
            out = {}
            for k, v in {**self.frozen, **self.buffers}.items():
                out[k] = v.to(device=like.device, dtype=like.dtype if v.is_floating_point() else v.dtype)
            self._fixed[key] = out
        return self._fixed[key]

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs as the module takes them: token ids as int64 (``index_inputs``), else unchanged."""
        return x.long() if self.index_inputs and x.is_floating_point() else x

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        like = next(iter(params.values()))
        return torch.func.functional_call(self.module, {**params, **self._fixed_for(like)}, (self.inputs(x),))

    def loss_from_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self._loss(z, y)
        if out.shape != (z.shape[0],):
            raise ValueError(f"ModuleModel: the loss must return one value per sample, shape ({z.shape[0]},); got "
                             f"{tuple(out.shape)} (use reduction='none' and reduce the other dimensions)")
        return out

    def output_grad(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∂ℓ_i/∂z_i per sample: closed form for the built-in cross-entropy, autograd of the loss otherwise."""
        if self._loss is _cross_entropy:
            return sequence_logit_grad(z, y) if z.ndim == 3 else logit_grad(z, y)

        def one(zi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return self._loss(zi[None], yi[None])[0]

        return torch.func.vmap(torch.func.grad(one))(z, y)

    def predict(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(theta, x)
        if self.loss_name == "mse":
            raise ValueError("ModuleModel.predict: a regression (loss='mse') has no class prediction")
        return (z[..., 0] > 0).long() if z.shape[-1] == 1 else z.argmax(-1)

    def accuracy(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of correct predictions (of tokens, for sequence outputs)."""
        return float((self.predict(theta, x) == y.to(x.device).long()).double().mean())
