"""Per-sample gradients and Hessian-vector products, streamed in chunks.

Shared by the gradient-based estimators (TracIn, influence functions, Diff-In, …). Throughout, the
objective of sample i is ``f_i(θ) = ℓ(z_i; θ) + (α/2)‖θ‖²`` with ``α = l2`` (``l2=0`` gives the bare
loss ℓ), so ``∇f_i = ∇ℓ_i + αθ`` and ``∇²f_i = ∇²ℓ_i + αI``. "Mean" quantities are over the rows
passed in: ``∇F = (1/m) Σ_i ∇f_i`` and ``H = (1/m) Σ_i ∇²f_i``.

Logistic regression (``model.is_linear``) uses closed forms: the logits are linear in θ, so the
Jacobian-vector product of sample i is ``J_i v = model.logits(v, x_i)``, ``∇ℓ_i = J_iᵀ r_i`` with
``r_i = ∂ℓ/∂logits`` and ``∇²ℓ_i = J_iᵀ A_i J_i`` with ``A_i`` the Hessian of ℓ w.r.t. the logits
(σ(1−σ) for binary, diag(p) − ppᵀ for softmax), all from :mod:`influence.linear`. Nothing of size
n × p is built for these models.
MLPs use ``torch.func``: ``vmap(grad)`` for per-sample gradients (chunked; at most ``chunk × p`` in
memory), ``jvp`` (forward mode) for per-sample directional derivatives ⟨∇ℓ_i, v⟩ and nested ``jvp``
for per-sample curvatures ⟨v, ∇²ℓ_i u⟩, ``jvp`` of ``grad`` (forward-over-reverse) for exact HVPs.

Finite-difference HVPs follow Diff-In's published form: with û = u/‖u‖,
``forward``:  H u ≈ (∇F(θ + εû) − ∇F(θ)) ‖u‖/ε      (error O(ε)),
``central``:  H u ≈ (∇F(θ + εû) − ∇F(θ − εû)) ‖u‖/(2ε)  (error O(ε²)).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import torch
from torch.func import grad, jvp, vmap

from influence import linear
from influence.models import Model

__all__ = [
    "HVP_METHODS",
    "mean_grad",
    "per_sample_grads",
    "iter_per_sample_grads",
    "grad_dots",
    "grad_sqnorms",
    "grad_gram",
    "hvp",
    "loss_hvp",
    "per_sample_hvps",
    "per_sample_hvp_dots",
    "dense_hessian",
    "top_eigenvalue",
    "check_chunk",
]

log = logging.getLogger(__name__)

HVP_METHODS = ("exact", "forward", "central")


# ------------------------------------------------------------------------------------------ helpers
def check_chunk(chunk: int) -> int:
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return int(chunk)


def _check_method(method: str) -> None:
    if method not in HVP_METHODS:
        raise ValueError(f"hvp method must be one of {HVP_METHODS}, got {method!r}")


def _check_eps(eps: float) -> None:
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"finite-difference step eps must be a positive finite number, got {eps}")


def _as_matrix(V: torch.Tensor, p: int, what: str = "vectors") -> tuple[torch.Tensor, bool]:
    """(k, p) view of one vector (p,) or k vectors (k, p); the flag says whether the input was 1-D."""
    if V.ndim == 1:
        V = V[None]
        single = True
    elif V.ndim == 2:
        single = False
    else:
        raise ValueError(f"{what} must have shape (p,) or (k, p), got {tuple(V.shape)}")
    if V.shape[1] != p:
        raise ValueError(f"{what} have {V.shape[1]} entries, the model has p = {p} parameters")
    return V, single


def _jvp(model: Model, V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """J_i v for every sample and every row of V (k, p) of a linear model: (k, m, o)."""
    P = model.unflatten(V)
    return linear.jvp(P["W0"], P["b0"], X)


def _single_loss(model: Model) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def f(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model.losses(theta, x[None], y[None])[0]

    return f


# ------------------------------------------------------------------------------------------ gradients
def mean_grad(model: Model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, l2: float = 0.0) -> torch.Tensor:
    """∇ (1/m) Σ_i f_i(θ) over the rows of (X, y), shape (p,)."""
    if X.shape[0] == 0:
        raise ValueError("mean_grad needs at least one sample")
    w = torch.ones(1, X.shape[0], dtype=theta.dtype, device=theta.device)
    g, _ = model.batch_grad(theta.detach()[None], X, y, w, float(X.shape[0]), l2)
    return g[0].detach()


def per_sample_grads(
    model: Model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, l2: float = 0.0
) -> torch.Tensor:
    """Per-sample gradients ∇f_i(θ) of all rows, (m, p) — call on a chunk; see :func:`iter_per_sample_grads`."""
    return _psg(model, theta.detach(), X, y, l2)


def _psg(model: Model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Per-sample gradients without detaching θ (so that ``jvp`` can differentiate through them)."""
    if model.is_linear:
        r = model.output_grad(model.logits(theta, X), y)
        G = linear.per_sample(r, X)
    else:
        G = vmap(grad(_single_loss(model)), in_dims=(None, 0, 0))(theta, X, y)
    return G + l2 * theta if l2 else G


def iter_per_sample_grads(
    model: Model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, l2: float = 0.0, chunk: int = 256
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, G)`` with G = per-sample gradients of ``X[rows]``, ``chunk`` rows at a time."""
    chunk = check_chunk(chunk)
    for s in range(0, X.shape[0], chunk):
        sl = slice(s, min(s + chunk, X.shape[0]))
        yield sl, per_sample_grads(model, theta, X[sl], y[sl], l2=l2)


def grad_dots(
    model: Model,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    V: torch.Tensor,
    *,
    l2: float = 0.0,
    chunk: int = 256,
    method: str = "auto",
) -> torch.Tensor:
    """Per-sample inner products ⟨∇f_i(θ), v⟩ for every row i and every vector v.

    Parameters
    ----------
    V : (p,) or (k, p) vectors.
    method : ``'auto'`` (closed form for logistic regression; forward-mode ``jvp`` for MLPs when
        k ≤ 8, else ``vmap(grad)`` chunks multiplied by Vᵀ), ``'jvp'`` or ``'vmap'`` to force one.

    Returns
    -------
    (m,) if V is 1-D, else (m, k).
    """
    if method not in ("auto", "jvp", "vmap"):
        raise ValueError(f"method must be 'auto', 'jvp' or 'vmap', got {method!r}")
    chunk = check_chunk(chunk)
    theta = theta.detach()
    V, single = _as_matrix(V.to(theta.dtype), model.n_params)
    out = torch.empty(X.shape[0], V.shape[0], dtype=theta.dtype, device=theta.device)
    use_jvp = method == "jvp" or (method == "auto" and V.shape[0] <= 8)
    for s in range(0, X.shape[0], chunk):
        sl = slice(s, min(s + chunk, X.shape[0]))
        xc, yc = X[sl], y[sl]
        if model.is_linear and method == "auto":
            r = model.output_grad(model.logits(theta, xc), yc)  # (c, o)
            out[sl] = (r[None] * _jvp(model, V, xc)).sum(-1).T
        elif use_jvp:
            f = lambda th: model.losses(th, xc, yc)  # noqa: E731
            out[sl] = vmap(lambda v: jvp(f, (theta,), (v,))[1])(V).T
        else:
            out[sl] = per_sample_grads(model, theta, xc, yc) @ V.T
    if l2:
        out += l2 * (V @ theta)[None]
    return out[:, 0] if single else out


def grad_sqnorms(
    model: Model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, l2: float = 0.0, chunk: int = 256
) -> torch.Tensor:
    """‖∇f_i(θ)‖² per row, (m,) (closed form for logistic regression, chunked ``vmap(grad)`` else)."""
    theta = theta.detach()
    if model.is_linear:
        out = torch.empty(X.shape[0], dtype=theta.dtype, device=theta.device)
        for s in range(0, X.shape[0], check_chunk(chunk)):
            sl = slice(s, min(s + chunk, X.shape[0]))
            r = model.output_grad(model.logits(theta, X[sl]), y[sl])
            sq = (r**2).sum(1) * ((X[sl] ** 2).sum(1) + 1.0)
            if l2:  # ‖g + αθ‖² = ‖g‖² + 2α⟨g, θ⟩ + α²‖θ‖²
                sq = sq + 2 * l2 * grad_dots(model, theta, X[sl], y[sl], theta) + l2**2 * theta.dot(theta)
            out[sl] = sq
        return out
    return torch.cat([(G * G).sum(1) for _, G in iter_per_sample_grads(model, theta, X, y, l2=l2, chunk=chunk)])


def grad_gram(
    model: Model,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    X2: torch.Tensor,
    y2: torch.Tensor,
    *,
    l2: float = 0.0,
    l2_2: float = 0.0,
    chunk: int = 256,
) -> torch.Tensor:
    """Matrix of per-sample gradient inner products ⟨∇f_i(θ), ∇f'_t(θ)⟩, (m, m2).

    ``l2`` applies to the rows of X, ``l2_2`` to those of X2. Both sides are streamed in chunks
    (memory: two chunks of per-sample gradients); closed form ⟨r_i, r_t⟩(x_i·x_t + 1) for logistic
    regression.
    """
    chunk = check_chunk(chunk)
    theta = theta.detach()
    out = torch.empty(X.shape[0], X2.shape[0], dtype=theta.dtype, device=theta.device)
    if model.is_linear:
        r2 = model.output_grad(model.logits(theta, X2), y2)
        for s in range(0, X.shape[0], chunk):
            sl = slice(s, min(s + chunk, X.shape[0]))
            r = model.output_grad(model.logits(theta, X[sl]), y[sl])
            out[sl] = (r @ r2.T) * (X[sl] @ X2.T + 1.0)
        if l2 or l2_2:  # ⟨g_i + aθ, g_t + bθ⟩ = ⟨g_i, g_t⟩ + a⟨θ, g_t⟩ + b⟨g_i, θ⟩ + ab‖θ‖²
            a = grad_dots(model, theta, X, y, theta, chunk=chunk)
            b = grad_dots(model, theta, X2, y2, theta, chunk=chunk)
            out += l2 * b[None] + l2_2 * a[:, None] + l2 * l2_2 * theta.dot(theta)
        return out
    for s2 in range(0, X2.shape[0], chunk):
        sl2 = slice(s2, min(s2 + chunk, X2.shape[0]))
        G2 = per_sample_grads(model, theta, X2[sl2], y2[sl2], l2=l2_2)
        for sl, G in iter_per_sample_grads(model, theta, X, y, l2=l2, chunk=chunk):
            out[sl, sl2] = G @ G2.T
    return out


# ------------------------------------------------------------------------------------------ curvature
def hvp(fn: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Exact Hessian-vector product(s) ∇²fn(θ) v of a scalar function by forward-over-reverse
    (``jvp`` of ``grad``); V (p,) or (k, p) → same shape."""
    theta = theta.detach()
    V, single = _as_matrix(V.to(theta.dtype), theta.shape[0])
    out = vmap(lambda v: jvp(grad(fn), (theta,), (v,))[1])(V)
    return out[0] if single else out


def _shifted(theta: torch.Tensor, V: torch.Tensor, eps: float, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """θ + sign·ε·v̂ for every row of V (zero rows stay at θ) and the row norms."""
    norms = V.norm(dim=1)
    unit = V / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]
    return theta[None] + sign * eps * unit, norms


def loss_hvp(
    model: Model,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    V: torch.Tensor,
    *,
    l2: float = 0.0,
    method: str = "exact",
    eps: float = 1e-3,
    g0: torch.Tensor | None = None,
    chunk: int = 4,
) -> torch.Tensor:
    """H V with H = ∇² (1/m) Σ_i f_i(θ) over the rows of (X, y); V (p,) or (k, p) → same shape.

    For MLPs the k directions are processed ``chunk`` at a time (each one holds the activations of all m
    rows: many at once exhausted memory in E7 Task B).

    ``method='exact'``: closed form (1/m) Σ J_iᵀ A_i J_i v + αv for logistic regression, ``jvp`` of
    ``grad`` for MLPs. ``'forward'`` / ``'central'``: finite differences of the mean gradient along
    each normalised direction (``model.batch_grad`` at k shifted points at once); ``g0`` = ∇F(θ) may
    be passed to save one gradient in the forward scheme.
    """
    _check_method(method)
    theta = theta.detach()
    V, single = _as_matrix(V.to(theta.dtype), model.n_params)
    if not model.is_linear and V.shape[0] > chunk:
        check_chunk(chunk)
        if method == "forward" and g0 is None:
            g0 = mean_grad(model, theta, X, y, l2=l2)  # once, not once per chunk
        out = torch.cat([loss_hvp(model, theta, X, y, V[s : s + chunk], l2=l2, method=method, eps=eps, g0=g0,
                                  chunk=chunk) for s in range(0, V.shape[0], chunk)])
        return out[0] if single else out
    m = X.shape[0]
    if method == "exact":
        if model.is_linear:
            z = model.logits(theta, X)
            A = linear.logit_hessian(z)  # (m, o, o)
            JV = _jvp(model, V, X)  # (k, m, o)
            out = linear.jt(torch.einsum("mab,kmb->kma", A, JV), X) / m + l2 * V
        else:
            out = hvp(lambda th: model.loss(th, X, y) + 0.5 * l2 * th.dot(th), theta, V)
    else:
        _check_eps(eps)
        w = torch.ones(V.shape[0], m, dtype=theta.dtype, device=theta.device)
        plus, norms = _shifted(theta, V, eps, 1.0)
        gp, _ = model.batch_grad(plus, X, y, w, float(m), l2)
        if method == "forward":
            base = mean_grad(model, theta, X, y, l2=l2) if g0 is None else g0
            out = (gp.detach() - base[None]) * (norms / eps)[:, None]
        else:
            minus, _ = _shifted(theta, V, eps, -1.0)
            gm, _ = model.batch_grad(minus, X, y, w, float(m), l2)
            out = (gp - gm).detach() * (norms / (2 * eps))[:, None]
    return out[0] if single else out


def per_sample_hvps(
    model: Model,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    u: torch.Tensor,
    *,
    l2: float = 0.0,
    method: str = "exact",
    eps: float = 1e-3,
) -> torch.Tensor:
    """Per-sample Hessian-vector products ∇²f_i(θ) u for one direction u, (m, p) — call on a chunk.

    ``'exact'``: J_iᵀ A_i J_i u (logistic regression) or ``jvp`` of ``vmap(grad)``; ``'forward'`` /
    ``'central'``: (∇f_i(θ + εû) − ∇f_i(θ)) ‖u‖/ε, resp. the central difference.
    """
    _check_method(method)
    theta, u = theta.detach(), u.to(theta.dtype)
    if u.shape != theta.shape:
        raise ValueError(f"u must have shape {tuple(theta.shape)}, got {tuple(u.shape)}")
    if method == "exact":
        if model.is_linear:
            A = linear.logit_hessian(model.logits(theta, X))
            Ju = _jvp(model, u[None], X)[0]
            out = linear.per_sample(torch.einsum("mab,mb->ma", A, Ju), X)
        else:
            f = lambda th: _psg(model, th, X, y, 0.0)  # noqa: E731
            out = jvp(f, (theta,), (u,))[1]
        return out + l2 * u if l2 else out
    _check_eps(eps)
    nu = u.norm()
    if nu == 0:
        return torch.zeros(X.shape[0], theta.shape[0], dtype=theta.dtype, device=theta.device)
    up = per_sample_grads(model, theta + eps * u / nu, X, y, l2=l2)
    if method == "forward":
        return (up - per_sample_grads(model, theta, X, y, l2=l2)) * (nu / eps)
    return (up - per_sample_grads(model, theta - eps * u / nu, X, y, l2=l2)) * (nu / (2 * eps))


def per_sample_hvp_dots(
    model: Model,
    theta: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    V: torch.Tensor,
    u: torch.Tensor,
    *,
    l2: float = 0.0,
    method: str = "exact",
    eps: float = 1e-3,
    chunk: int = 256,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """⟨v, ∇²f_i(θ) u⟩ for every row i and every v in V ((p,) or (k, p)) → (m,) or (m, k).

    ``'exact'``: (J_i v)ᵀ A_i (J_i u) (logistic regression) or nested forward-mode ``jvp`` of the
    per-sample losses (no per-sample gradient is formed). ``'forward'``: (⟨∇f_i(θ+εû), v⟩ −
    ⟨∇f_i(θ), v⟩) ‖u‖/ε (``base`` = the second term from :func:`grad_dots`, if already computed);
    ``'central'``: the central difference. Two passes of :func:`grad_dots` — what Diff-In's fast
    target form needs for ⟨v_t, H_z G_B⟩.
    """
    _check_method(method)
    theta, u = theta.detach(), u.to(theta.dtype)
    if u.shape != theta.shape:
        raise ValueError(f"u must have shape {tuple(theta.shape)}, got {tuple(u.shape)}")
    V, single = _as_matrix(V.to(theta.dtype), model.n_params)
    if method == "exact":
        out = torch.empty(X.shape[0], V.shape[0], dtype=theta.dtype, device=theta.device)
        for s in range(0, X.shape[0], check_chunk(chunk)):
            sl = slice(s, min(s + chunk, X.shape[0]))
            xc, yc = X[sl], y[sl]
            if model.is_linear:
                A = linear.logit_hessian(model.logits(theta, xc))
                Ju = _jvp(model, u[None], xc)[0]  # (c, o)
                out[sl] = torch.einsum("kma,mab,mb->mk", _jvp(model, V, xc), A, Ju)
            else:
                f = lambda th: model.losses(th, xc, yc)  # noqa: E731

                def curv(v: torch.Tensor) -> torch.Tensor:
                    return jvp(lambda th: jvp(f, (th,), (v,))[1], (theta,), (u,))[1]

                out[sl] = vmap(curv)(V).T
        if l2:
            out += l2 * (V @ u)[None]
    else:
        _check_eps(eps)
        nu = u.norm()
        if nu == 0:
            out = torch.zeros(X.shape[0], V.shape[0], dtype=theta.dtype, device=theta.device)
        else:
            up = grad_dots(model, theta + eps * u / nu, X, y, V, l2=l2, chunk=chunk)
            if method == "forward":
                b = grad_dots(model, theta, X, y, V, l2=l2, chunk=chunk) if base is None else base
                out = (up - b.reshape(up.shape)) * (nu / eps)
            else:
                out = (up - grad_dots(model, theta - eps * u / nu, X, y, V, l2=l2, chunk=chunk)) * (nu / (2 * eps))
    return out[:, 0] if single else out


def dense_hessian(
    model: Model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, l2: float = 0.0
) -> torch.Tensor:
    """Dense Hessian ∇² (1/m) Σ_i f_i(θ), (p, p).

    Logistic regression: closed form (1/m) Σ_i J_iᵀ A_i J_i + αI (:func:`influence.linear.hessian`,
    binary: X̃ᵀ diag(σ(1−σ)) X̃ / m with x̃ = [x, 1]). MLPs: ``torch.func.hessian`` (only
    for small p).
    """
    theta = theta.detach()
    p, m = model.n_params, X.shape[0]
    if not model.is_linear:
        H = torch.func.hessian(lambda th: model.loss(th, X, y))(theta)
    else:
        H = linear.hessian(linear.augment(X), model.logits(theta, X)) / m
    if l2:
        H = H + l2 * torch.eye(p, dtype=H.dtype, device=H.device)
    return H.detach()


def top_eigenvalue(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    p: int,
    *,
    iters: int = 200,
    tol: float = 1e-9,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> float:
    """Largest-magnitude eigenvalue of a symmetric operator by power iteration (Rayleigh quotient).

    Stops when the relative change of the Rayleigh quotient falls below ``tol``; logs a warning if
    ``iters`` is reached first.
    """
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(p, generator=g, dtype=dtype).to(device or "cpu")  # the same start on every device
    v = v / v.norm()
    lam = 0.0
    for _ in range(int(iters)):
        w = matvec(v)
        new = float(v.dot(w))
        nw = w.norm()
        if nw == 0:
            return 0.0
        v = w / nw
        if abs(new - lam) <= tol * max(abs(new), 1e-300):
            return new
        lam = new
    log.warning("power iteration did not converge in %d iterations (last estimate %.6g)", iters, lam)
    return lam
