"""Logistic regression and MLPs in functional form.

A :class:`Model` is an immutable description of an architecture. Parameters live outside it, either
as a dict of tensors (``forward(params, x)``) or as one flat vector ``theta`` (``logits(theta, x)``);
both are pure functions, so ``torch.func.vmap``, ``grad``, ``jvp`` and ``hessian`` compose with them.
Layers follow ``nn.Linear``: weight ``W{l}`` of shape (out, in), bias ``b{l}`` of shape (out,), and
``logits = x @ W.T + b``.

Binary problems (``n_classes == 2``) use one output logit and the logistic loss with labels in
{0, 1}; multiclass problems use C logits and softmax cross-entropy. The per-sample objective used by
training is ``f_i(θ) = ℓ(z_i; θ) + (α/2)‖θ‖²`` (L2 on every parameter, biases included), as in the
SGD-IE / ACC-SGD-IE code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from influence import linear

__all__ = ["Model", "logistic_regression", "mlp", "row_losses", "logit_grad", "SmallCNN", "TinyGPT", "TextClassifier",
           "sequence_losses", "sequence_logit_grad", "example_losses"]


def row_losses(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row loss from logits z (..., o): logistic loss with labels in {0, 1} when o = 1, softmax
    cross-entropy otherwise; shape z.shape[:-1]."""
    if z.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(z[..., 0], y.to(z.dtype), reduction="none")
    lead = z.shape[:-1]
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1).long(), reduction="none").reshape(lead)


def logit_grad(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """g = ∂ℓ/∂logits per row of z (m, o): σ(z) − y (o = 1) or softmax(z) − onehot(y)."""
    if z.shape[-1] == 1:
        return torch.sigmoid(z) - y.to(z.dtype)[:, None]
    return torch.softmax(z, -1) - F.one_hot(y.long(), z.shape[-1]).to(z.dtype)


@dataclass(frozen=True)
class Model:
    """A fully connected network ``n_features → hidden… → n_out`` with ReLU between layers.

    ``hidden == ()`` is (binary or multinomial) logistic regression. Use :func:`logistic_regression`
    or :func:`mlp` to build one.
    """

    n_features: int
    n_classes: int
    hidden: tuple[int, ...] = ()
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {self.n_features}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")

    # ------------------------------------------------------------------ structure
    @property
    def n_out(self) -> int:
        """Number of output logits: 1 for binary problems, C otherwise."""
        return 1 if self.n_classes == 2 else self.n_classes

    @property
    def is_linear(self) -> bool:
        """True for logistic regression (convex in θ)."""
        return len(self.hidden) == 0

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_features, *self.hidden, self.n_out)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes in flattening order."""
        out: dict[str, tuple[int, ...]] = {}
        w = self.widths
        for layer in range(len(w) - 1):
            out[f"W{layer}"] = (w[layer + 1], w[layer])
            out[f"b{layer}"] = (w[layer + 1],)
        return out

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    def describe(self) -> dict:
        """JSON-serialisable description (for provenance and saved runs)."""
        return {"n_features": self.n_features, "n_classes": self.n_classes, "hidden": list(self.hidden)}

    @classmethod
    def from_description(cls, d: dict) -> Model:
        return cls(int(d["n_features"]), int(d["n_classes"]), tuple(int(h) for h in d["hidden"]))

    # ------------------------------------------------------------------ parameters
    def init(self, seed: int, dtype: torch.dtype = torch.float64, scheme: str = "default") -> torch.Tensor:
        """Seeded initial parameters as a flat vector.

        ``scheme='default'``: PyTorch's ``nn.Linear`` initialisation, U(−1/√fan_in, 1/√fan_in) for
        weights and biases (logistic regression starts at zero). ``scheme='normal1e-3'``: every
        parameter drawn from N(0, σ²) with σ = 1e-3, our reading of the SGD-IE authors' "N(0, 1e-3)"
        (``torch.nn.init.normal_(·, 0, 1e-3)`` takes a standard deviation). ``scheme='zeros'``: all zero.
        """
        g = torch.Generator().manual_seed(int(seed))
        parts = []
        for name, shape in self.shapes.items():
            if scheme == "zeros" or (scheme == "default" and self.is_linear):
                t = torch.zeros(shape, dtype=torch.float64)
            elif scheme == "default":
                bound = 1.0 / math.sqrt(shape[-1] if name.startswith("W") else self._fan_in(name))
                t = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
            elif scheme == "normal1e-3":
                t = torch.randn(shape, generator=g, dtype=torch.float64) * 1e-3
            else:
                raise ValueError(f"unknown init scheme {scheme!r}; use 'default', 'normal1e-3' or 'zeros'")
            parts.append(t.reshape(-1))
        return torch.cat(parts).to(dtype)

    def _fan_in(self, bias_name: str) -> int:
        return self.shapes["W" + bias_name[1:]][1]

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat vector (..., p) → dict of views with leading batch dims kept."""
        if theta.shape[-1] != self.n_params:
            raise ValueError(f"theta has {theta.shape[-1]} entries, model needs {self.n_params}")
        out, start = {}, 0
        lead = theta.shape[:-1]
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            out[name] = theta[..., start : start + size].reshape(*lead, *shape)
            start += size
        return out

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = set(self.shapes) - set(params)
        if missing:
            raise ValueError(f"params lack {sorted(missing)}")
        return torch.cat([params[k].reshape(-1) for k in self.shapes])

    # ------------------------------------------------------------------ functions
    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (m, n_out) (binary: (m, 1))."""
        n_layers = len(self.widths) - 1
        h = x
        for layer in range(n_layers):
            h = h @ params[f"W{layer}"].T + params[f"b{layer}"]
            if layer < n_layers - 1:
                h = torch.relu(h)
        return h

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.forward(self.unflatten(theta), x)

    def loss_from_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ℓ (no L2): logistic loss for binary, cross-entropy otherwise (:func:`row_losses`)."""
        if z.shape[-1] != self.n_out:
            raise ValueError(f"logits have {z.shape[-1]} columns, the model has {self.n_out} outputs")
        return row_losses(z, y)

    def losses(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample losses ℓ(z_i; θ) for a flat θ, shape (m,)."""
        return self.loss_from_logits(self.logits(theta, x), y)

    def loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss over the given samples, no L2 (the target loss L)."""
        return self.losses(theta, x, y).mean()

    def predict(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(theta, x)
        return (z[:, 0] > 0).long() if self.n_out == 1 else z.argmax(-1)

    def accuracy(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.predict(theta, x) == y.long()).double().mean())

    def output_grad(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∂ℓ/∂logits per sample: σ(z) − y (binary, shape (m, 1)) or softmax − onehot (m, C) (:func:`logit_grad`)."""
        if z.shape[-1] != self.n_out:
            raise ValueError(f"logits have {z.shape[-1]} columns, the model has {self.n_out} outputs")
        return logit_grad(z, y)

    def batch_grad(
        self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, denom: float, l2: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of ``Σ_i w_ri f_i(θ_r) / denom`` for k parameter vectors at once.

        ``theta`` (k, p), ``w`` (k, m). Returns (grads (k, p), per-sample losses (k, m)). Closed form for
        logistic regression (two batched matmuls, :mod:`influence.linear`) and for the ReLU MLPs of this class
        (backpropagation written out, :func:`_mlp_batch_grad`); ``vmap(grad)`` (:func:`_batch_grad_vmap`) for
        anything else (a :class:`~influence.module.ModuleModel`, which shares this method, or a subclass that
        redefines the forward pass or the loss).
        """
        if self.is_linear:
            p = self.unflatten(theta)
            z = linear.jvp(p["W0"], p["b0"], x)  # (k, m, o)
            loss = self.loss_from_logits(z, y.expand(z.shape[0], -1))
            r = self.output_grad(z.reshape(-1, z.shape[-1]), y.repeat(z.shape[0])).reshape(z.shape)
            g = linear.jt(r * (w / denom)[..., None], x)
        elif _closed_form_mlp(self):
            g, loss = _mlp_batch_grad(self, theta, x, y, w, denom)
        else:
            g, loss = _batch_grad_vmap(self, theta, x, y, w, denom)
        if l2:
            g = g + l2 * (w.sum(1, keepdim=True) / denom) * theta
        return g, loss

    def to_module(self, theta: torch.Tensor) -> torch.nn.Sequential:
        """An ``nn.Sequential`` of Linear/ReLU layers holding a copy of θ (for hook-based code)."""
        params = self.unflatten(theta.detach())
        layers: list[torch.nn.Module] = []
        n_layers = len(self.widths) - 1
        for layer in range(n_layers):
            lin = torch.nn.Linear(self.widths[layer], self.widths[layer + 1], dtype=theta.dtype)
            with torch.no_grad():
                lin.weight.copy_(params[f"W{layer}"])
                lin.bias.copy_(params[f"b{layer}"])
            layers.append(lin)
            if layer < n_layers - 1:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    def from_module(self, module: torch.nn.Module) -> torch.Tensor:
        """Flat θ from a module built by :meth:`to_module` (inverse of it)."""
        lins = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        params = {}
        for layer, lin in enumerate(lins):
            params[f"W{layer}"], params[f"b{layer}"] = lin.weight.detach(), lin.bias.detach()
        return self.flatten(params)


def _closed_form_mlp(model) -> bool:
    """True when ``model`` is an MLP (hidden layers) computing :class:`Model`'s own ReLU forward pass and loss (so
    that :func:`_mlp_batch_grad` is its gradient): a :class:`Model` whose subclass, if any, redefines neither."""
    cls = type(model)
    return (isinstance(model, Model) and not model.is_linear and cls.forward is Model.forward
            and cls.logits is Model.logits and cls.losses is Model.losses
            and cls.loss_from_logits is Model.loss_from_logits)


def _relu_backward(d: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """d ⊙ [a > 0] in one pass: the backward of ``relu`` as autograd forms it (``threshold_backward``; the
    derivative at 0 is 0), from the delta d and the activation a = relu(z) (a > 0 exactly where z > 0)."""
    return torch.ops.aten.threshold_backward(d, a, 0)


def _batch_grad_vmap(model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                     denom: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``vmap(grad)`` of ``Σ_i w_ri ℓ_i(θ_r) / denom`` over the k rows of θ (no L2): (grads (k, p), losses (k, m)).
    The generic path of :meth:`Model.batch_grad` and the reference its closed forms are tested against."""

    def obj(th: torch.Tensor, wr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ls = model.losses(th, x, y)
        return (wr * ls).sum() / denom, ls

    return torch.func.vmap(torch.func.grad(obj, has_aux=True))(theta, w)


def _mlp_forward(model: Model, theta: torch.Tensor,
                 x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None], torch.Tensor]:
    """Forward pass of k ReLU MLPs θ (k, p) on shared inputs x (m, d): the weights (k, out, in) per layer (views
    of θ), the hidden activations feature-major, A[l] of shape (k, h_l, m) the input of layer l ≥ 1 (A[0] is
    None), and the logits (k, m, o). The first layer is one GEMM over the k·h_1 weight rows."""
    n_layers = len(model.widths) - 1
    P = model.unflatten(theta)
    Ws, bs = [P[f"W{layer}"] for layer in range(n_layers)], [P[f"b{layer}"] for layer in range(n_layers)]
    Z = torch.matmul(Ws[0], x.T)  # (k, h_1, m)
    Z += bs[0][:, :, None]
    A: list[torch.Tensor | None] = [None, Z.relu_()]
    for layer in range(1, n_layers - 1):
        A.append(torch.baddbmm(bs[layer][:, :, None], Ws[layer], A[layer]).relu_())
    # logits sample-major (k, m, o): the output layer reads A and Wᵀ as transposed views
    Zo = torch.baddbmm(bs[-1][:, None, :], A[-1].transpose(1, 2), Ws[-1].transpose(1, 2))
    return Ws, A, Zo


def _mlp_batch_logits(model: Model, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits (k, m, o) of k ReLU MLPs θ (k, p) on shared inputs x (m, d) (``vmap`` of :meth:`Model.logits`
    written out, :func:`_mlp_forward`)."""
    return _mlp_forward(model, theta, x)[2]


def _mlp_batch_grad(model: Model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                    denom: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ``Σ_i w_ri ∇ℓ_i(θ_r) / denom`` (no L2) and the losses ℓ_i(θ_r) of k ReLU MLPs on one batch.

    Backpropagation written out for the k runs at once, activations held feature-major, A_l of shape
    (k, h_l, m): the first layer is one GEMM with the shared inputs, Z_1 = [W_0^1; …; W_0^k] xᵀ of shape
    (k·h_1, m); later layers are batched matmuls; the output gradient is in closed form,
    G_ri = (w_ri / denom)(softmax(z_ri) − onehot(y_i)) (σ(z_ri) − y_i for one logit); the deltas go back by
    D_l = (W_lᵀ D_{l+1}) ⊙ [A_l > 0] (ReLU's derivative at 0 taken as 0, as autograd does), and the first
    layer's weight gradient is one GEMM, [D_1^1; …; D_1^k] x of shape (k·h_1, d). Equal to
    :func:`_batch_grad_vmap` to rounding (``tests/test_batch_grad_closed_form.py``) at a fraction of its cost.
    Returns (grads (k, p), per-sample losses (k, m)).
    """
    k, m = w.shape
    h1 = model.widths[1]
    Ws, A, Zo = _mlp_forward(model, theta, x)
    scale = (w / denom)[:, :, None]
    if Zo.shape[-1] == 1:
        yf = y.to(Zo.dtype).expand(k, m)
        loss = F.binary_cross_entropy_with_logits(Zo[..., 0], yf, reduction="none")
        G = (torch.sigmoid(Zo) - yf[..., None]) * scale
    else:
        lsm = torch.log_softmax(Zo, -1)
        yi = y.long().view(1, m, 1).expand(k, m, 1)
        loss = -lsm.gather(-1, yi)[..., 0]
        G = lsm.exp()
        G.scatter_add_(-1, yi, torch.full_like(scale, -1.0))
        G *= scale
    # backward: per layer (k, out, in) weight gradients and (k, out) bias gradients, last layer first
    gT = G.transpose(1, 2)  # (k, o, m)
    grads = [G.sum(1), torch.bmm(gT, A[-1].transpose(1, 2)).reshape(k, -1)]
    D = _relu_backward(torch.bmm(Ws[-1].transpose(1, 2), gT), A[-1])  # (k, h_{L-1}, m)
    for layer in range(len(Ws) - 2, 0, -1):
        grads += [D.sum(2), torch.bmm(D, A[layer].transpose(1, 2)).reshape(k, -1)]
        D = _relu_backward(torch.bmm(Ws[layer].transpose(1, 2), D), A[layer])
    grads += [D.sum(2), torch.mm(D.reshape(k * h1, m), x).view(k, -1)]  # one GEMM over the k·h_1 rows
    return torch.cat(grads[::-1], dim=1), loss


def logistic_regression(n_features: int, n_classes: int = 2) -> Model:
    """Binary (one logit, logistic loss) or multinomial (softmax) logistic regression."""
    return Model(n_features, n_classes, (), name="logreg")


def mlp(n_features: int, hidden: tuple[int, ...] | list[int], n_classes: int) -> Model:
    """ReLU MLP ``n_features → hidden… → n_out``; e.g. ``mlp(784, (128,), 10)``."""
    hidden = tuple(int(h) for h in hidden)
    if not hidden:
        raise ValueError("an MLP needs at least one hidden layer; use logistic_regression for none")
    return Model(n_features, n_classes, hidden, name="mlp-" + "-".join(map(str, hidden)))


class SmallCNN(torch.nn.Module):
    """Conv(c→8, 3×3, pad 1) → ReLU → MaxPool 2 → Conv(8→16, 3×3, pad 1) → ReLU → MaxPool 2 → Linear → logits.

    Input (m, c, s, s) with s divisible by 4 (28 for MNIST); used by the tests and the cost benchmark.
    """

    def __init__(self, in_channels: int = 1, side: int = 28, n_out: int = 10, width: int = 8,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if side % 4:
            raise ValueError(f"side must be divisible by 4, got {side}")
        self.side, self.in_channels = side, in_channels
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 3, padding=1, dtype=dtype), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(width, 2 * width, 3, padding=1, dtype=dtype), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(2 * width * (side // 4) ** 2, n_out, dtype=dtype),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.reshape(x.shape[0], self.in_channels, self.side, self.side)
        return self.net(x)


# ---------------------------------------------------------------------------------------------- transformers
def sequence_losses(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sequence language-model loss from logits z (m, T, V) and next-token targets y (m, T):
    ℓ_i = (1/T) Σ_τ CE(z_iτ, y_iτ), shape (m,)."""
    if z.ndim != 3 or y.shape != z.shape[:2]:
        raise ValueError(f"sequence logits must be (m, T, V) with targets (m, T); got {tuple(z.shape)} and "
                         f"{tuple(y.shape)}")
    m, T, V = z.shape
    return F.cross_entropy(z.reshape(-1, V), y.reshape(-1).long(), reduction="none").reshape(m, T).mean(1)


def example_losses(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example loss, shape (m,): :func:`row_losses` for logits (m, o), :func:`sequence_losses` (mean token
    cross-entropy) for a language model's logits (m, T, V)."""
    if z.ndim == 3:
        return sequence_losses(z, y)
    if z.ndim == 2:
        return row_losses(z, y)
    raise ValueError(f"logits must be (m, n_out) or (m, T, V) for sequences, got {tuple(z.shape)}")


def sequence_logit_grad(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """g = ∂ℓ_i/∂z_i for :func:`sequence_losses`: (softmax(z_iτ) − onehot(y_iτ)) / T, shape (m, T, V)."""
    T, V = z.shape[1], z.shape[2]
    return (torch.softmax(z, -1) - F.one_hot(y.long(), V).to(z.dtype)) / T


class _Attention(torch.nn.Module):
    """Multi-head self-attention from two ``nn.Linear`` layers (qkv and output projection), written out
    (no fused kernel) so that hooks see every weight and ``torch.func`` transforms compose with it."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, dtype: torch.dtype) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.causal = n_heads, causal
        self.qkv = torch.nn.Linear(d_model, 3 * d_model, dtype=dtype)
        self.proj = torch.nn.Linear(d_model, d_model, dtype=dtype)

    def forward(self, x: torch.Tensor, key_pad: torch.Tensor | None = None) -> torch.Tensor:
        m, T, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).reshape(m, T, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (m, h, T, d/h)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)
        if self.causal:
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(future, float("-inf"))
        if key_pad is not None:
            att = att.masked_fill(key_pad[:, None, None, :], float("-inf"))
        out = torch.softmax(att, -1) @ v  # (m, h, T, d/h)
        return self.proj(out.transpose(1, 2).reshape(m, T, d))


class _Block(torch.nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP of width 4d."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(d_model, dtype=dtype)
        self.attn = _Attention(d_model, n_heads, causal, dtype)
        self.ln2 = torch.nn.LayerNorm(d_model, dtype=dtype)
        self.fc = torch.nn.Linear(d_model, 4 * d_model, dtype=dtype)
        self.out = torch.nn.Linear(4 * d_model, d_model, dtype=dtype)

    def forward(self, x: torch.Tensor, key_pad: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), key_pad)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class _Transformer(torch.nn.Module):
    def __init__(self, vocab_size: int, context: int, d_model: int, n_layers: int, n_heads: int, causal: bool,
                 n_out: int, head_bias: bool, dtype: torch.dtype, seed: int | None) -> None:
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("context", context), ("d_model", d_model),
                        ("n_layers", n_layers), ("n_heads", n_heads)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.vocab_size, self.context = int(vocab_size), int(context)
        # a seed initialises from its own stream and leaves the global RNG untouched
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.tok = torch.nn.Embedding(vocab_size, d_model, dtype=dtype)
            self.pos = torch.nn.Embedding(context, d_model, dtype=dtype)
            self.blocks = torch.nn.ModuleList(_Block(d_model, n_heads, causal, dtype) for _ in range(n_layers))
            self.ln_f = torch.nn.LayerNorm(d_model, dtype=dtype)
            self.head = torch.nn.Linear(d_model, n_out, bias=head_bias, dtype=dtype)
            # GPT-2 initialisation: N(0, 0.02²) for weights and embeddings, zero biases
            for mod in self.modules():
                if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
                    torch.nn.init.normal_(mod.weight, 0.0, 0.02)
                    if getattr(mod, "bias", None) is not None:
                        torch.nn.init.zeros_(mod.bias)

    def _encode(self, idx: torch.Tensor, key_pad: torch.Tensor | None = None) -> torch.Tensor:
        if idx.ndim != 2:
            raise ValueError(f"token ids must be (m, T), got shape {tuple(idx.shape)}")
        m, T = idx.shape
        if T > self.context:
            raise ValueError(f"sequence length {T} exceeds the context {self.context}")
        idx = idx.long()
        # positions indexed per row, so that hooks see a per-sample (m, T) input of the position embedding
        pos = torch.arange(T, device=idx.device).expand(m, T)
        x = self.tok(idx) + self.pos(pos)
        for blk in self.blocks:
            x = blk(x, key_pad)
        return self.ln_f(x)


class TinyGPT(_Transformer):
    """Decoder-only transformer language model (GPT-2 layout, Radford et al. 2019; nanoGPT-sized down).

    Token + learned position embeddings → ``n_layers`` pre-LN blocks (causal multi-head attention from
    Linear layers, GELU MLP of width 4d) → final LayerNorm → untied Linear head to ``vocab_size``
    logits. ``forward(idx)`` maps token ids (m, T ≤ context) to logits (m, T, V). No dropout and no
    weight tying, so rows never interact and every parameter belongs to exactly one hooked layer (the
    per-layer Ghost and LAI products need that); the per-sequence loss is :func:`sequence_losses`.
    """

    def __init__(self, vocab_size: int, context: int = 64, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 *, dtype: torch.dtype = torch.float32, seed: int | None = None) -> None:
        super().__init__(vocab_size, context, d_model, n_layers, n_heads, True, vocab_size, False, dtype, seed)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self._encode(idx))


class TextClassifier(_Transformer):
    """Transformer encoder classifier: token + position embeddings → ``n_layers`` pre-LN blocks
    (bidirectional attention; padding keys masked) → final LayerNorm → mean over the non-padding
    tokens → Linear head to ``n_classes`` logits (m, C). Token id ``pad_id`` (default 0) is padding. A
    row of padding only (which the text loaders never produce) attends to all its positions and is
    pooled over all of them, so the result stays finite; the mask has no data-dependent control flow,
    so ``torch.func.vmap`` composes with it. Rows never interact (no dropout, no batch statistics)."""

    def __init__(self, vocab_size: int, n_classes: int, context: int = 64, d_model: int = 64, n_layers: int = 2,
                 n_heads: int = 4, *, pad_id: int = 0, dtype: torch.dtype = torch.float32,
                 seed: int | None = None) -> None:
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        super().__init__(vocab_size, context, d_model, n_layers, n_heads, False, n_classes, True, dtype, seed)
        self.pad_id = int(pad_id)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pad = idx == self.pad_id
        pad = pad & ~pad.all(1, keepdim=True)
        h = self._encode(idx, pad)
        keep = (~pad).to(h.dtype)[..., None]
        return self.head((h * keep).sum(1) / keep.sum(1))
