"""Hook capture: what each layer of a network sees in one pass, for ghost-factorised inner products.

One forward (+ optional backward) pass over m rows with forward hooks on every ``nn.Linear`` /
``nn.Conv2d`` / ``nn.Embedding`` / ``nn.LayerNorm`` records, per layer l, the input a^l (unfolded to
(m, L, k) positions for convolutions; (m, T, k) for a Linear layer applied to token sequences) and the
gradient b^l = ∂ℓ_row/∂(layer output), (m, L, o). The per-sample weight gradient of row i is then
Σ_τ b_iτ a_iτᵀ, so gradient inner products factorise as Σ_{τ,τ'} ⟨a_iτ, a_jτ'⟩⟨b_iτ, b_jτ'⟩ (the "ghost"
dot product, Wang et al., ICLR 2025) without forming a per-sample gradient. An embedding's per-sample
gradient is Σ_τ e_{idx_iτ} b_iτᵀ (inner products by index matching), a LayerNorm's is (Σ_τ b_iτ ⊙ x̂_iτ,
Σ_τ b_iτ) with x̂ the normalised input (small: formed explicitly, :func:`layer_grads`).

Rows may be vectors (logits (m, o), labels (m,)) or token sequences for a language model (logits
(m, T, V), next-token targets (m, T); the row loss is the mean token cross-entropy,
:func:`influence.models.sequence_losses`). Any other per-row loss can be given as ``loss(outputs, y)``
returning (m,) (``reduction="none"``, e.g. ``nn.CrossEntropyLoss(reduction="none")`` or a masked MSE).

* :func:`capture` runs the pass; the output gradients come from ``torch.autograd.grad`` of the *sum* of
  the row losses w.r.t. the layer outputs (the parameters' ``.grad`` is left untouched). Rows of one
  pass must therefore not interact (no BatchNorm in training mode). The hooks are validated and
  registered once per module (on its first capture) and record only inside a capture, so a training
  loop pays no per-step set-up; :func:`release_hooks` removes them.
* :func:`capture_split` is the forward-only variant LAI uses (autograd on the training rows only).
* :func:`set_update_grads` writes the training-rows-only update gradient from a capture.

By default the row losses and the output gradient g = ∂ℓ/∂outputs are those of :mod:`influence.models`
(logistic loss for one logit, cross-entropy otherwise, mean token cross-entropy for sequences; g in closed
form). With a user ``loss`` g is the autograd gradient of the row losses w.r.t. the outputs
(:func:`output_grad`: exact, since rows do not interact).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from influence.models import example_losses, logit_grad, sequence_logit_grad

__all__ = [
    "LayerCapture",
    "Capture",
    "capture",
    "capture_split",
    "trainable_layers",
    "layer_grads",
    "output_grad",
    "row_losses_of",
    "set_update_grads",
    "release_hooks",
    "HOOKED",
]

# the layer types the capture hooks; Linear and Conv2d are the "weight layers" LAI reads inputs from
HOOKED = (nn.Linear, nn.Conv2d, nn.Embedding, nn.LayerNorm)

#: A per-row loss: ``loss(outputs, y)`` → (m,) (``reduction="none"``); None = the built-in losses.
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def row_losses_of(outputs: torch.Tensor, y: torch.Tensor, loss: Loss | None = None) -> torch.Tensor:
    """Per-row losses (m,) of the network outputs: ``loss(outputs, y)`` when given (checked to return one
    value per row), else :func:`influence.models.example_losses` (logistic / cross-entropy / mean token
    cross-entropy)."""
    if loss is None:
        return example_losses(outputs, y)
    out = loss(outputs, y)
    m = outputs.shape[0]
    if not isinstance(out, torch.Tensor) or out.shape != (m,):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"loss(outputs, y) must return one loss per row, shape ({m},) (use reduction='none'); "
                         f"got {shape}")
    return out


def output_grad(outputs: torch.Tensor, y: torch.Tensor, loss: Loss | None = None) -> torch.Tensor:
    """g_i = ∂ℓ_i/∂outputs_i per row, the shape of ``outputs``.

    Default (``loss`` None): the closed forms of :mod:`influence.models` — σ(z) − y for one logit,
    softmax(z) − onehot(y) for cross-entropy, (softmax − onehot)/T for the mean token cross-entropy of
    (m, T, V) logits. With a user ``loss``: ``torch.autograd.grad`` of Σ_i ℓ_i w.r.t. a detached copy of the
    outputs, exact because ℓ_i depends on row i only (one small backward through the loss alone, not
    through the network).
    """
    if loss is None:
        z = outputs.detach()
        return sequence_logit_grad(z, y) if z.ndim == 3 else logit_grad(z, y)
    z = outputs.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(row_losses_of(z, y, loss).sum(), z)
    return g


@dataclass
class LayerCapture:
    """What one hooked layer saw in a pass over m rows.

    ``inp`` is the layer input as given (Linear: (m, …, k), Conv2d: (m, C, H, W)); ``a`` its unfolded
    form (m, L, k) with L positions (L = 1 for a Linear layer on 2-D input); ``b`` the gradient of the
    row loss w.r.t. the layer output, (m, L, o), or None when the pass had no backward.
    """

    name: str
    module: nn.Module
    inp: torch.Tensor
    b: torch.Tensor | None = None
    _a: torch.Tensor | None = field(default=None, repr=False)
    #: LayerNorm: the (mean, 1/std) per position the forward computed, when its autograd node saved them
    _stats: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def has_bias(self) -> bool:
        return getattr(self.module, "bias", None) is not None

    @property
    def is_weight_layer(self) -> bool:
        """True for ``nn.Linear`` / ``nn.Conv2d`` (the layers whose inputs LAI uses)."""
        return isinstance(self.module, (nn.Linear, nn.Conv2d))

    @property
    def a(self) -> torch.Tensor:
        if self._a is None:
            self._a = _unfold(self.module, self.inp, self._stats)
        return self._a

    @property
    def a_flat(self) -> torch.Tensor:
        """The layer input flattened per row, (m, D): the ``vec(a^l)`` of LAI."""
        return self.inp.reshape(self.inp.shape[0], -1)


@dataclass
class Capture:
    """Result of :func:`capture`: per-layer captures (forward order), the network outputs (``logits``), row
    losses and ``g`` = ∂ℓ/∂outputs (:func:`output_grad`: closed form for the built-in losses, autograd
    through a user ``loss``; computed on first use from the outputs and the labels ``y`` when not given)."""

    layers: list[LayerCapture]
    logits: torch.Tensor
    losses: torch.Tensor
    _g: torch.Tensor | None = field(default=None, repr=False)
    y: torch.Tensor | None = field(default=None, repr=False)
    loss: Loss | None = field(default=None, repr=False)

    @property
    def g(self) -> torch.Tensor:
        if self._g is None:
            if self.y is None:
                raise ValueError("this capture has neither the logit gradient g nor the labels to compute it")
            self._g = output_grad(self.logits, self.y, self.loss)
        return self._g

    def nbytes(self) -> int:
        """Bytes held by the captured tensors (inputs, unfolded inputs, output gradients, logits, and the
        logit gradient once computed)."""
        ts = [self.logits] + ([] if self._g is None else [self._g])
        for lc in self.layers:
            ts.append(lc.inp)
            if lc._a is not None and lc._a.data_ptr() != lc.inp.data_ptr():
                ts.append(lc._a)
            if lc.b is not None:
                ts.append(lc.b)
        return int(sum(t.numel() * t.element_size() for t in ts))


def _unfold(module: nn.Module, inp: torch.Tensor,
            stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return inp.reshape(inp.shape[0], -1, inp.shape[-1])
    if isinstance(module, nn.Embedding):
        return inp.reshape(inp.shape[0], -1)  # token ids (m, L)
    if isinstance(module, nn.LayerNorm):  # the normalised input x̂ (m, L, d)
        if len(module.normalized_shape) != 1:
            raise ValueError("only LayerNorm over the last dimension is supported")
        x = inp.reshape(inp.shape[0], -1, inp.shape[-1])
        if stats is not None:  # (x − μ)·(1/σ) from the forward's own statistics (:func:`_ln_stats`)
            return (x - stats[0]).mul_(stats[1])
        # (x − μ)/√(σ² + ε) by the layer-norm kernel itself (Tensor.var over a short last axis is ~50x slower);
        # with an explicit unit weight and zero bias (exact: x̂·1 + 0 = x̂), which its CPU kernel runs ~1.6x faster
        d = x.shape[-1]
        return F.layer_norm(x, module.normalized_shape, x.new_ones(d), x.new_zeros(d), module.eps)
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(inp, module.kernel_size, dilation=module.dilation, padding=module.padding,
                        stride=module.stride)  # (m, k, L)
        return cols.transpose(1, 2)
    raise TypeError(f"cannot unfold the input of {type(module).__name__}")


def _ln_stats(inp: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-position mean and 1/σ a LayerNorm's forward computed, as (m, L, 1), from the tensors its autograd
    node saved for the backward (``native_layer_norm``'s outputs 1 and 2, read before the backward frees them), so
    that x̂ costs two elementwise operations instead of a second layer norm; None where the node is another
    (then x̂ is recomputed)."""
    fn = out.grad_fn
    if type(fn).__name__ != "NativeLayerNormBackward0":
        return None
    try:
        mean, rstd = fn._saved_result1, fn._saved_result2
    except (AttributeError, RuntimeError):
        return None
    shape = (inp.shape[0], inp[0].numel() // inp.shape[-1], 1)
    if not (isinstance(mean, torch.Tensor) and isinstance(rstd, torch.Tensor) and mean.numel() == rstd.numel()
            == shape[0] * shape[1] and mean.dtype == inp.dtype == rstd.dtype):
        return None
    return mean.reshape(shape), rstd.reshape(shape)


def _check_layer(name: str, m: nn.Module) -> None:
    if isinstance(m, nn.Embedding) and (m.max_norm is not None or m.scale_grad_by_freq or m.sparse):
        raise ValueError(f"layer {name!r}: embeddings with max_norm, scale_grad_by_freq or sparse are not "
                         "supported")
    if isinstance(m, nn.LayerNorm) and not m.elementwise_affine:
        return
    if isinstance(m, nn.Conv2d):
        if m.groups != 1:
            raise ValueError(f"layer {name!r}: grouped convolutions (groups={m.groups}) are not supported")
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise ValueError(f"layer {name!r}: use integer zero padding (got padding={m.padding!r}, "
                             f"padding_mode={m.padding_mode!r})")


def trainable_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The hooked submodules (:data:`HOOKED`: Linear, Conv2d, Embedding, affine LayerNorm), in
    registration order (which must be the forward order). Any other module owning parameters raises:
    its gradient would be missing from the inner products."""
    out = []
    for n, m in module.named_modules():
        if isinstance(m, HOOKED) and not (isinstance(m, nn.LayerNorm) and not m.elementwise_affine):
            _check_layer(n, m)
            out.append((n, m))
        elif any(True for _ in m.parameters(recurse=False)):
            raise ValueError(f"module {n!r} ({type(m).__name__}) has parameters of its own and cannot be "
                             f"hooked; use {', '.join(t.__name__ for t in HOOKED)} layers")
    if not any(isinstance(m, (nn.Linear, nn.Conv2d)) for _, m in out):
        raise ValueError("the module has no nn.Linear or nn.Conv2d layer to hook")
    return out


class _Hook:
    """The forward hook of one layer: records (layer index, detached input, output) while its owner
    records, else does nothing. A deep copy or a pickle of the module gets an inert hook (the copy is a
    different module; it gets hooks of its own on its first capture)."""

    __slots__ = ("owner", "module", "index")

    def __init__(self, owner: _Hooks, module: nn.Module, index: int) -> None:
        self.owner, self.module, self.index = weakref.ref(owner), module, index

    def __call__(self, mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        owner = self.owner()
        if owner is not None and owner.rec is not None and mod is self.module:
            owner.rec.append((self.index, args[0].detach(), out if owner.keep_out else None))

    def __deepcopy__(self, memo: dict) -> Any:
        return _inert_hook

    def __reduce__(self) -> tuple:
        return (_make_inert, ())


def _inert_hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
    return None


def _make_inert() -> Any:
    return _inert_hook


class _Hooks:
    """Forward hooks on the hooked layers of one module, validated and registered once (first capture) and
    reused by every later capture of that module; they record only inside a capture. Rebuilt when the
    module's number of submodules changes or a pass does not call every layer once."""

    def __init__(self, module: nn.Module) -> None:
        self.layers = trainable_layers(module)
        self.n_modules = sum(1 for _ in module.modules())
        self.rec: list | None = None
        self.keep_out = False
        self.handles = [m.register_forward_hook(_Hook(self, m, k)) for k, (_, m) in enumerate(self.layers)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


_HOOKS: weakref.WeakKeyDictionary[nn.Module, _Hooks] = weakref.WeakKeyDictionary()


def _hooks(module: nn.Module, rebuild: bool = False) -> _Hooks:
    h = _HOOKS.get(module)
    if h is not None and not rebuild and h.n_modules == sum(1 for _ in module.modules()):
        return h
    if h is not None:
        h.remove()
    h = _HOOKS[module] = _Hooks(module)
    return h


def release_hooks(module: nn.Module) -> bool:
    """Remove the capture hooks registered on ``module`` (by its first :func:`capture`); True if it had any.
    Not needed for correctness: inactive hooks do nothing, and they are re-registered on demand."""
    h = _HOOKS.pop(module, None)
    if h is None:
        return False
    h.remove()
    return True


def _recorded_pass(module: nn.Module, x: torch.Tensor, y: torch.Tensor, grad: bool, keep_out: bool,
                   loss: Loss | None = None) -> tuple:
    """Forward ``x`` through ``module`` with its (persistent) hooks recording (layer index, input, output if
    ``keep_out``): (hooks, records, outputs, row losses). Retried once with rebuilt hooks if a layer did
    not run exactly once (a changed module)."""
    for attempt in (0, 1):
        hk = _hooks(module, rebuild=attempt == 1)
        rec: list = []
        hk.rec, hk.keep_out = rec, keep_out
        try:
            with torch.set_grad_enabled(grad):
                z = module(x)
                losses = row_losses_of(z, y, loss)
        finally:
            hk.rec = None
        n = len(hk.layers)
        if len(rec) == n and len({r[0] for r in rec}) == n:
            return hk, rec, z, losses
    raise ValueError(f"expected each of the {n} layers to run once in the forward pass, "
                     f"saw {len(rec)} calls (shared or unused layers are not supported)")


def capture(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, *, backward: bool = True, keep_graph: bool = False,
    loss: Loss | None = None,
) -> Capture:
    """One forward (and, if ``backward``, one backward) pass over the rows ``x`` with hooks.

    Parameters
    ----------
    module : network mapping (m, …) inputs to (m, …) outputs, built from ``nn.Linear`` / ``nn.Conv2d`` /
        ``nn.Embedding`` / ``nn.LayerNorm`` and row-wise operations.
    x, y : rows (training batch and target batch concatenated by the caller) and labels.
    backward : also compute ``b`` = ∂ℓ_row/∂(layer output) for every layer (Ghost needs it, LAI does
        not). Uses ``torch.autograd.grad`` w.r.t. the layer outputs, so parameter ``.grad`` is unchanged.
    keep_graph : run the forward with autograd enabled and keep the graph, so that the caller can
        backpropagate a (weighted) loss of the training rows afterwards (``cap.losses`` carries it).
    loss : per-row loss ``loss(outputs, y)`` → (m,) (``reduction="none"``); None = the built-in losses
        (logistic / cross-entropy / mean token cross-entropy, :func:`row_losses_of`).

    Returns
    -------
    Capture with detached layer inputs, ``b`` (if requested), logits, row losses and ``g``.

    Notes
    -----
    The forward hooks are registered on the first capture of a module and stay (doing nothing outside a
    capture), so a training loop pays no per-step hook registration or layer validation;
    :func:`release_hooks` removes them.
    """
    hk, rec, z, losses = _recorded_pass(module, x, y, backward or keep_graph, backward, loss)
    caps = [LayerCapture(hk.layers[k][0], hk.layers[k][1], inp) for k, inp, _ in rec]
    if backward:
        for lc, (_, inp, out) in zip(caps, rec, strict=True):
            if isinstance(lc.module, nn.LayerNorm):
                lc._stats = _ln_stats(inp, out)
        grads = torch.autograd.grad(losses.sum(), [r[2] for r in rec], retain_graph=keep_graph)
        for lc, gr in zip(caps, grads, strict=True):
            if isinstance(lc.module, nn.Conv2d):
                lc.b = gr.reshape(gr.shape[0], gr.shape[1], -1).transpose(1, 2)
            else:
                lc.b = gr.reshape(gr.shape[0], -1, gr.shape[-1])
    return Capture(caps, z.detach(), losses if keep_graph else losses.detach(), y=y, loss=loss)


def capture_split(
    module: nn.Module, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, *,
    loss: Loss | None = None,
) -> Capture:
    """Forward-only capture for LAI over [training batch; target batch] without autograd on the targets.

    The training rows run with autograd on (``cap.losses[:len(xb)]`` keeps the graph, so the caller can
    backpropagate the weighted batch loss for the update); the target rows run under ``no_grad`` (LAI only
    needs their layer inputs and logit gradients). Same result as ``capture(module, cat, backward=False)``.
    """
    ct = capture(module, xb, yb, backward=False, keep_graph=True, loss=loss)
    cv = capture(module, xv, yv, backward=False, loss=loss)
    layers = [LayerCapture(a.name, a.module, torch.cat([a.inp, b.inp])) for a, b in zip(ct.layers, cv.layers,
                                                                                         strict=True)]
    return Capture(layers, torch.cat([ct.logits, cv.logits]), torch.cat([ct.losses, cv.losses]),
                   torch.cat([ct.g, cv.g]), loss=loss)


def layer_grads(lc: LayerCapture, rows: Any = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Explicit per-row gradients of one hooked layer's parameters (weight, then bias), (|rows|, P_l);
    with ``weights`` (|rows|,) their weighted sum (P_l,) instead, without forming per-row gradients.

    Linear / Conv2d: vec(Σ_τ b_iτ a_iτᵀ) and Σ_τ b_iτ; Embedding: Σ_τ e_{idx_iτ} ⊗ b_iτ (V·d entries);
    LayerNorm: Σ_τ b_iτ ⊙ x̂_iτ and Σ_τ b_iτ.
    """
    if lc.b is None:
        raise ValueError("layer gradients need a capture with backward=True")
    r = slice(None) if rows is None else rows
    a, b = lc.a[r], lc.b[r]
    mod = lc.module
    if weights is not None:
        w = weights.to(b)
        if isinstance(mod, nn.Embedding):
            gw = b.new_zeros(mod.weight.shape).index_add_(0, a.reshape(-1).long(),
                                                           (b * w[:, None, None]).reshape(-1, b.shape[-1]))
            return gw.reshape(-1)
        if isinstance(mod, nn.LayerNorm):
            parts = [torch.einsum("n,nld->d", w, b * a)]
        else:
            parts = [torch.einsum("n,nlo,nlk->ok", w, b, a).reshape(-1)]
        if lc.has_bias:
            parts.append(torch.einsum("n,nlo->o", w, b))
        return torch.cat(parts)
    m = b.shape[0]
    if isinstance(mod, nn.Embedding):
        V = mod.weight.shape[0]
        rows_idx = (torch.arange(m, device=b.device)[:, None] * V + a.long()).reshape(-1)
        gw = b.new_zeros(m * V, b.shape[-1]).index_add_(0, rows_idx, b.reshape(-1, b.shape[-1]))
        return gw.reshape(m, -1)
    if isinstance(mod, nn.LayerNorm):
        parts = [(b * a).sum(1)]
    else:
        parts = [torch.einsum("nlo,nlk->nok", b, a).reshape(m, -1)]
    if lc.has_bias:
        parts.append(b.sum(1))
    return torch.cat(parts, 1)


def set_update_grads(
    cap: Capture, n_train: int, weights: torch.Tensor | None = None, denom: float | None = None
) -> None:
    """Write ∇_θ Σ_{i<n_train} w_i ℓ_i / denom into the hooked layers' ``.grad`` from the capture.

    Only the first ``n_train`` rows (the training batch) contribute; the target rows never do.
    ``denom`` defaults to ``n_train`` (batch mean, dropped samples still counted). Requires a capture with
    ``backward=True``; existing ``.grad`` is overwritten.
    """
    z = cap.logits
    w = z.new_ones(n_train) if weights is None else torch.as_tensor(weights, dtype=z.dtype, device=z.device)
    if w.shape != (n_train,):
        raise ValueError(f"weights must have shape ({n_train},), got {tuple(w.shape)}")
    denom = float(n_train if denom is None else denom)
    for lc in cap.layers:
        if lc.b is None:
            raise ValueError("set_update_grads needs a capture with backward=True")
        if not lc.is_weight_layer:
            flat = layer_grads(lc, slice(0, n_train), w / denom)
            nw = lc.module.weight.numel()
            lc.module.weight.grad = flat[:nw].reshape(lc.module.weight.shape).clone()
            if lc.has_bias:
                lc.module.bias.grad = flat[nw:].clone()
            continue
        bw = lc.b[:n_train] * (w / denom)[:, None, None]
        gW = torch.einsum("nlo,nlk->ok", bw, lc.a[:n_train])  # a fresh tensor: its reshape needs no copy
        lc.module.weight.grad = gW.reshape(lc.module.weight.shape)
        if lc.has_bias:
            lc.module.bias.grad = bw.sum((0, 1))
