"""Diff-In (Tan et al., 2025): second-order telescoped LOO differences with finite-difference HVPs.

Tan, Wu, Wu, Wang, Zhao, Xie, Xia, Qi, "Understanding Data Influence with Differential Approximation", arXiv
2508.14648 (2025). The LOO parameter shift I^T(z) = θ^T_{−z} − θ^T is written as
Σ_t (I^{t+1} − I^t); each difference is approximated to second order and every Hessian product is a
finite difference of first-order gradients, so the cost stays near TracIn's.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.func import jvp

from influence.autodiff import (
    HVP_METHODS,
    check_chunk,
    grad_dots,
    loss_hvp,
    mean_grad,
    per_sample_grads,
    per_sample_hvp_dots,
    per_sample_hvps,
)
from influence.data import as_tensors
from influence.estimators import prepare, register
from influence.estimators.tracin import target_grad_dots
from influence.ghost import GRAD_IMPLS, GradKernel, factor_dots, model_factors
from influence.models import Model
from influence.train import Trajectory

__all__ = ["diffin", "diffin_paper", "diffin_paper_negated", "diffin_self", "diffin_self_negated", "diffin_checkpoints",
           "diffin_direction", "NEGATED_FORMS", "add_negated_forms"]

log = logging.getLogger(__name__)

FORMS = ("paper", "full")
TARGETS = ("target", "self", "params")


def diffin_checkpoints(
    traj: Trajectory, m: int = 5, checkpoints: str | list[int] = "even", seed: int = 0
) -> np.ndarray:
    """Checkpoint steps t used by Diff-In (t = number of SGD steps taken, θ_t = ``traj.theta_at(t)``).

    ``'even'``: t_k = round(k·T/m), k = 1..m (the last is T; duplicates removed when m > T).
    ``'random'``: m distinct steps drawn uniformly from 1..T (seeded), sorted. A list: those steps.
    """
    T = traj.n_steps
    if isinstance(checkpoints, str):
        if int(m) < 1:
            raise ValueError(f"m (number of checkpoints) must be >= 1, got {m}")
        if checkpoints == "even":
            steps = np.unique(np.round(np.arange(1, m + 1) * T / m).astype(int))
        elif checkpoints == "random":
            if m > T:
                raise ValueError(f"cannot draw m = {m} distinct checkpoints from T = {T} steps")
            steps = np.sort(np.random.default_rng([seed, 1]).choice(np.arange(1, T + 1), m, replace=False))
        else:
            raise ValueError(f"checkpoints must be 'even', 'random' or a list of steps, got {checkpoints!r}")
    else:
        steps = np.unique(np.asarray(checkpoints, dtype=int).ravel())
        if steps.size == 0 or steps.min() < 0 or steps.max() > T:
            raise ValueError(f"checkpoint steps must be a non-empty list in [0, {T}]")
    missing = np.setdiff1d(steps, traj.steps)
    if missing.size:
        raise ValueError(f"the trajectory did not record steps {missing[:5].tolist()}…; train with record='all'")
    return steps


def diffin_direction(
    model, theta: torch.Tensor, Xz: torch.Tensor, yz: torch.Tensor, XB: torch.Tensor, yB: torch.Tensor, *,
    l2: float = 0.0, hvp: str = "exact", eps: float = 1e-3,
) -> torch.Tensor:
    """D_t(z) = H_B G_z + H_z G_B for every row z of (Xz, yz), (m, p) — materialised (small m only).

    Equals ∇_θ ⟨G_B(θ), G_z(θ)⟩ (product rule, Hessians symmetric). Used by the parameter form and
    by the tests; the target and self forms never build it.
    """
    G = per_sample_grads(model, theta, Xz, yz, l2=l2)
    GB = mean_grad(model, theta, XB, yB, l2=l2)
    HBG = loss_hvp(model, theta, XB, yB, G, l2=l2, method=hvp, eps=eps, g0=GB)
    HzGB = per_sample_hvps(model, theta, Xz, yz, GB, l2=l2, method=hvp, eps=eps)
    return HBG + HzGB


#: Rows × proxy-batch × width elements per tensor of the fast self form (4 MB in float64).
_SLOPE_ELEMENTS = 2**19


# ------------------------------------------------------------------------------------------ fast self form
def _loss_slopes(model, P: dict[str, torch.Tensor], acts: list[torch.Tensor], deltas: list[torch.Tensor],
                 kappa: torch.Tensor, XE: torch.Tensor, yE: torch.Tensor, l2: float,
                 U: dict[str, torch.Tensor] | None = None, mu: float | torch.Tensor = 0.0) -> torch.Tensor:
    """∂_κ ℓ(x_e; θ + μu + κ_i G_i) at κ = ``kappa`` for every row i of a chunk and evaluation row e, (c, E).

    G_i = g_i + αθ with g_i = {δ_il a_ilᵀ, δ_il} (:func:`influence.ghost.model_factors`), so layer l of the
    perturbed network maps an input h to ĥ = h W_lᵀ + b_l + μ(h U_lᵀ + u_l) + κ_i s_il(h), s_il(h) = α(h W_lᵀ + b_l) +
    δ_il (a_il·h + 1): the per-row perturbation costs inner products with a_il, never a per-row weight
    matrix. The tangent (forward mode by hand) is dĥ = s_il(h) + (1 + κ_i α) dh W_lᵀ + κ_i δ_il (a_il·dh)
    + μ dh U_lᵀ through ReLU masks, and ∂_κ ℓ = ⟨∂ℓ/∂z, dz⟩ at the logits z. ``XE`` (E, d) is shared by all
    rows (the proxy batch) or (c, E, d) per row (each row's own sample). Differentiable again in κ and μ
    (``torch.func.jvp``) for the exact second derivatives."""
    L = len(model.widths) - 1
    c = acts[0].shape[0]
    k = kappa[:, None, None]
    h, dh = XE, None
    for layer in range(L):
        W, b, a, dl = P[f"W{layer}"], P[f"b{layer}"], acts[layer], deltas[layer]
        base = h @ W.T + b  # (E, out) when the input is shared by every row, else (c, E, out)
        gram = (a @ h.T)[:, :, None] if h.ndim == 2 else torch.bmm(h, a[:, :, None])  # a_il·h, (c, E, 1)
        # s(h) = α base + (a·h + 1) δ and ĥ = base + κ s(h), fused (these tensors are rows × |B| × width)
        shift = torch.addcmul(l2 * base, gram + 1.0, dl[:, None, :]) if l2 else (gram + 1.0) * dl[:, None, :]
        pre = torch.addcmul(base, k, shift)
        if U is not None:
            pre = pre + mu * (h @ U[f"W{layer}"].T + U[f"b{layer}"])
        dpre = shift
        if dh is not None:
            dpre = torch.addcmul(torch.addcmul(shift, 1.0 + k * l2, dh @ W.T), k * torch.bmm(dh, a[:, :, None]),
                                 dl[:, None, :])
            if U is not None:
                dpre = dpre + mu * (dh @ U[f"W{layer}"].T)
        if layer < L - 1:
            # ReLU and its tangent dpre·1[pre > 0] (ATen's ReLU backward kernel: 3x faster than a bool mask here)
            h, dh = torch.relu(pre), torch.ops.aten.threshold_backward(dpre, pre, 0.0)
        else:
            h, dh = pre, dpre
    E, o = h.shape[1], h.shape[2]
    r = model.output_grad(h.reshape(c * E, o), yE.expand(c, E).reshape(-1)).reshape(c, E, o)
    return (r * dh).sum(-1)


def _self_terms(model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, batches: list[np.ndarray], *,
                l2: float, hvp: str, eps: float, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean over the proxy batches of ⟨G_z, D_t(z)⟩, ‖G_z‖²) for every training row z, both (N,).

    The self form of Diff-In (Tan et al., 2025) without one batch HVP per row. ⟨G_z, D_t(z)⟩ =
    ⟨G_z, H_B G_z⟩ + ⟨G_z, H_z G_B⟩, each Hessian product as ``hvp`` prescribes, is a difference of
    directional derivatives of the *losses* at perturbed parameters. With the bare-loss slopes
    e_B(κ) = ∂_κ L_B(θ + κG_z) and d_z(μ) = ∂_κ ℓ_z(θ + μG_B + κG_z) at κ = 0 (:func:`_loss_slopes`; the
    L2 parts α‖G_z‖² and α⟨G_z, G_B⟩ in closed form):

        forward   ⟨G_z, H_B G_z⟩ = (e_B(ε/‖G_z‖) − e_B(0)) ‖G_z‖/ε,   ⟨G_z, H_z G_B⟩ = (d_z(ε/‖G_B‖) − d_z(0)) ‖G_B‖/ε
        central   the same with e_B(−ε/‖G_z‖), d_z(−ε/‖G_B‖) in place of the 0 points, over 2ε
        exact     ∂_κ e_B(κ) and ∂_μ d_z(μ) at 0 (``torch.func.jvp`` of the slopes)

    — the very numbers of the materialised form (:func:`_self_terms_reference`: the finite-difference
    HVP vector dotted with G_z equals the slope at the shifted point; ``tests/test_diffin.py``, 1e-10).
    e_B(0) = ⟨g_B, G_z⟩ and ‖G_z‖² come from the factored gradients (:func:`influence.ghost.factor_dots`). Cost per
    checkpoint: O(N·|B|·width) elementwise work on chunks of rows, no n × p or per-row weight matrix.
    """
    N = X.shape[0]
    P = model.unflatten(theta)
    th2 = float(theta.dot(theta))
    sq = torch.empty(N, dtype=theta.dtype, device=theta.device)
    dot = torch.zeros(N, dtype=theta.dtype, device=theta.device)
    widest = max(model.widths[1:])
    GBs = [mean_grad(model, theta, X[S], y[S], l2=l2) for S in batches]
    gBs = [GB - l2 * theta for GB in GBs] if l2 else GBs  # bare batch-mean gradients
    for s in range(0, N, chunk):
        sl = slice(s, min(s + chunk, N))
        acts, deltas, pres = model_factors(model, P, X[sl], y[sl])
        gsq = sum((dl**2).sum(1) * ((a**2).sum(1) + 1.0) for a, dl in zip(acts, deltas, strict=True))
        gth = sum((dl * pr).sum(1) for dl, pr in zip(deltas, pres, strict=True))  # ⟨g_z, θ⟩
        Gsq = gsq + 2 * l2 * gth + l2**2 * th2 if l2 else gsq
        sq[sl] = Gsq
        nz = Gsq.clamp_min(0.0).sqrt()
        live = nz > 0
        c = nz.shape[0]
        ones = torch.ones(c, dtype=theta.dtype, device=theta.device)
        zeros = torch.zeros(c, dtype=theta.dtype, device=theta.device)
        for S, GB, gB in zip(batches, GBs, gBs, strict=True):
            XB, yB = X[S], y[S]
            # ⟨G_z, H_B G_z⟩: rows in sub-chunks so that (rows × |B| × width) stays small
            sub = max(1, min(c, _SLOPE_ELEMENTS // (len(S) * widest)))
            t1 = torch.empty(c, dtype=theta.dtype, device=theta.device)
            base_dot = factor_dots(acts, deltas, model.unflatten(gB)) + (l2 * float(theta.dot(gB)) if l2 else 0.0)
            for r in range(0, c, sub):
                rs = slice(r, min(r + sub, c))
                fa = [a[rs] for a in acts]
                fd = [dl[rs] for dl in deltas]

                def e_B(kap: torch.Tensor, fa=fa, fd=fd) -> torch.Tensor:
                    return _loss_slopes(model, P, fa, fd, kap, XB, yB, l2).mean(1)

                if hvp == "exact":
                    t1[rs] = jvp(e_B, (zeros[rs],), (ones[rs],))[1]
                else:
                    k0 = torch.where(live[rs], eps / torch.where(live[rs], nz[rs], 1.0), 0.0)
                    up = e_B(k0)
                    if hvp == "forward":
                        t1[rs] = (up - base_dot[rs]) * nz[rs] / eps
                    else:
                        t1[rs] = (up - e_B(-k0)) * nz[rs] / (2 * eps)
            t1 = t1 + l2 * Gsq if l2 else t1
            t1 = torch.where(live, t1, 0.0)
            # ⟨G_z, H_z G_B⟩: each row's own sample, parameters moved along the shared u = G_B
            nu = float(GB.norm())
            if nu == 0.0:
                t2 = torch.zeros(c, dtype=theta.dtype, device=theta.device)
            else:
                U = model.unflatten(GB)
                XZ, yZ = X[sl][:, None, :], y[sl][:, None]

                def d_z(m_: float | torch.Tensor) -> torch.Tensor:
                    return _loss_slopes(model, P, acts, deltas, zeros, XZ, yZ, l2, U, m_)[:, 0]

                if hvp == "exact":
                    t2 = jvp(d_z, (torch.zeros((), dtype=theta.dtype, device=theta.device),),
                             (torch.ones((), dtype=theta.dtype, device=theta.device),))[1]
                elif hvp == "forward":
                    t2 = (d_z(eps / nu) - d_z(0.0)) * nu / eps
                else:
                    t2 = (d_z(eps / nu) - d_z(-eps / nu)) * nu / (2 * eps)
                GzGB = factor_dots(acts, deltas, U) + (l2 * float(theta.dot(GB)) if l2 else 0.0)
                t2 = t2 + l2 * GzGB if l2 else t2
            dot[sl] += t1 + t2
    return dot / len(batches), sq


def _grads_and_directions(model: Any, theta: torch.Tensor, Xz: torch.Tensor, yz: torch.Tensor, X: torch.Tensor,
                          y: torch.Tensor, batches: Any, *, l2: float, hvp: str, eps: float | None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample gradients G(z) of the rows (Xz, yz) and their directions D_t(z) averaged over ``batches``
    (:func:`diffin_direction`, one batch HVP per row and batch)."""
    G = per_sample_grads(model, theta, Xz, yz, l2=l2)
    D = torch.zeros_like(G)
    for S in batches:
        D += diffin_direction(model, theta, Xz, yz, X[S], y[S], l2=l2, hvp=hvp, eps=eps)
    return G, D / len(batches)


def _self_terms_reference(model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, batches: list[np.ndarray],
                          *, l2: float, hvp: str, eps: float, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_self_terms` by materialised directions D_t(z) (:func:`diffin_direction`, one batch HVP per
    row): the definition, kept as the reference the fast form is tested against."""
    N = X.shape[0]
    dot = torch.zeros(N, dtype=theta.dtype, device=theta.device)
    sq = torch.zeros(N, dtype=theta.dtype, device=theta.device)
    for s in range(0, N, chunk):
        sl = slice(s, min(s + chunk, N))
        G, D = _grads_and_directions(model, theta, X[sl], y[sl], X, y, batches, l2=l2, hvp=hvp, eps=eps)
        dot[sl] = (G * D).sum(1)
        sq[sl] = (G * G).sum(1)
    return dot, sq


def _target_terms(kernel: GradKernel, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, Xt: torch.Tensor,
                  yt: torch.Tensor, batches: list[np.ndarray], *, l2: float, hvp: str, eps: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(⟨G_z, v_t⟩, mean over the proxy batches of ⟨v_t, D_t(z)⟩) for every training row z at one checkpoint, both
    (N,), from the gradient ``kernel`` alone (``impl='fast'`` / ``'per_sample'``): the numbers of the ``'auto'``
    target form, with the same finite differences (:func:`influence.autodiff.loss_hvp`,
    :func:`influence.autodiff.per_sample_hvp_dots`).

    ⟨v, H_B G_z⟩ = ⟨G_z, u⟩ with u = H_B v (H symmetric) shares the pass at θ with ⟨G_z, v⟩;
    ⟨v, H_z G_B⟩ = (⟨G_z(θ + εĜ_B), v⟩ − ⟨G_z(θ), v⟩)‖G_B‖/ε is one more pass at the shifted point (``'central'``:
    θ ± εĜ_B over 2ε).
    """
    v = kernel.mean_grad(theta, Xt, yt)  # v_t: the mean target gradient, no L2
    nv = float(v.norm())
    # the glue in Python floats and fused ops: on small models it costs as much as a gradient pass
    at_plus = torch.add(theta, v, alpha=eps / nv) if nv > 0 else theta
    at_minus = torch.add(theta, v, alpha=-eps / nv) if nv > 0 and hvp == "central" else theta
    us, gbs = [], []
    for S in batches:
        S = torch.from_numpy(np.asarray(S))
        XB, yB = X[S], y[S]
        GB = kernel.mean_grad(theta, XB, yB, l2=l2)
        if hvp == "forward":
            us.append(kernel.mean_grad(at_plus, XB, yB, l2=l2).sub_(GB).mul_(nv / eps))
        else:
            up = kernel.mean_grad(at_plus, XB, yB, l2=l2)
            us.append(up.sub_(kernel.mean_grad(at_minus, XB, yB, l2=l2)).mul_(nv / (2 * eps)))
        gbs.append(GB)
    d = kernel.dots(theta, X, y, torch.stack([v, *us]), l2=l2)  # one pass: ⟨G_z, v⟩ and every ⟨G_z, H_B v⟩
    base, second = d[:, 0], d[:, 1:].sum(1)
    for GB in gbs:
        nu = float(GB.norm())
        if nu == 0:
            continue
        plus = kernel.dots(torch.add(theta, GB, alpha=eps / nu), X, y, v[None], l2=l2)[:, 0]
        if hvp == "forward":
            second.add_(plus.sub_(base), alpha=nu / eps)
        else:
            minus = kernel.dots(torch.add(theta, GB, alpha=-eps / nu), X, y, v[None], l2=l2)[:, 0]
            second.add_(plus.sub_(minus), alpha=nu / (2 * eps))
    return base, second / len(batches)


@register("diffin", suspicious="low", sgd_only=True)
def diffin(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    *,
    form: str = "full",
    target: str = "target",
    hvp: str = "forward",
    eps: float = 1e-3,
    m: int = 5,
    checkpoints: str | list[int] = "even",
    proxy_batch: int = 128,
    batches_per_checkpoint: int = 1,
    per_target: bool = False,
    include_l2: bool = True,
    seed: int = 0,
    chunk: int = 256,
    impl: str = "auto",
) -> np.ndarray:
    """Diff-In (Tan et al., 2025): the telescoping LOO estimate, first- plus second-order term by default.

    Registered as ``diffin`` (``form='full'``, the estimate of the LOO change) and ``diffin_paper``
    (``form='paper'``, the second-order term alone as in the authors' code). The names keep a table
    reader from mistaking the paper's correction term, which is anti-correlated with LOO, for the
    estimator.

    Parameters
    ----------
    traj : recorded run (checkpoints must be recorded; ``record='all'`` covers every choice).
    train_data, target_data : ``Dataset`` or ``(X, y)``; ``target_data`` is unused for
        ``target='self'`` / ``'params'`` and may be None there.
    form : ``'paper'`` (second-order term only, as in the authors' code) or ``'full'`` (adds the
        first-order term, see Notes).
    target : ``'target'`` (influence on the mean target loss; the fast batched form), ``'self'``
        (self-influence) or ``'params'`` (the parameter shift estimate, an (n, p) array).
    hvp : ``'forward'`` (published, ε = ``eps``), ``'central'`` or ``'exact'`` (double backprop /
        closed form; for validation).
    eps : finite-difference step ε (on the normalised direction).
    m, checkpoints : number and placement of checkpoints (:func:`diffin_checkpoints`).
    proxy_batch : size of the fresh random proxy batch B drawn (without replacement, seeded) from the
        training set at each checkpoint; ``batches_per_checkpoint`` such batches are averaged.
    per_target : target form only: return (n_train, n_target) per-target-sample scores (row mean =
        the scores; v_t is then each target sample's own gradient).
    include_l2 : gradients and Hessians of the training objective f = ℓ + (α/2)‖θ‖² (default; α from
        the run) for G_z, G_B, H_z, H_B; False uses the bare loss ℓ. v_t never includes L2.
    seed, chunk : proxy-batch (and random-checkpoint) seed; samples per chunk of per-sample gradients.
    impl : how the target form's gradients are computed (the scores agree to float64 rounding):
        ``'auto'`` (default) as described under "Fast target form" below (closed forms for logistic regression,
        forward-mode ``jvp`` for MLPs, the first-order term ghost-factorised); ``'fast'`` / ``'per_sample'``
        the two implementations :class:`influence.ghost.GradKernel` gives TracIn too (``tracin(impl=…)``), so
        that their costs compare like for like (claim DIFF-5): factorised forward/backward passes, resp.
        explicit ``vmap(grad)`` per-sample gradients. These need ``target='target'`` without ``per_target``
        and a finite-difference ``hvp``; each checkpoint then costs the mean gradients of the targets and of
        the proxy batch, one HVP of the batch (one more batch gradient), and two passes over the training
        rows (three with ``'central'``) where TracIn takes one: ⟨G_z(θ), v_t⟩ and ⟨G_z(θ), H_B v_t⟩ from one
        pass, ⟨G_z(θ + εĜ_B), v_t⟩ from the other (:func:`_target_terms`).

    Returns
    -------
    (n_train,) scores; (n_train, n_target) with ``per_target``; (n_train, p) for ``target='params'``.

    Notes
    -----
    With G^t_z = ∇f(z; θ_t), G^t_B the proxy-batch mean gradient, H the matching Hessians,
    v_t = ∇L(V; θ_t), N training samples and checkpoints T_m (m of them):

        D_t(z) = H^t_B G^t_z + H^t_z G^t_B  (= ∇_θ⟨G_B, G_z⟩),   a_t = −t η_t² / (N m),
        params   I_θ(z)  = Σ_{t∈T_m} a_t D_t(z)
        target   I(z, V) = Σ_{t∈T_m} a_t ⟨v_t, D_t(z)⟩
        self     I(z, z) = Σ_{t∈T_m} a_t ⟨G^t_z, D_t(z)⟩

    ``form='full'`` adds the first-order term (T/m) Σ_{t∈T_m} (η_t/N) × (G^t_z, ⟨v_t, G^t_z⟩ or
    ‖G^t_z‖² respectively): the Monte-Carlo estimate over the checkpoints of Σ_{t<T} (η_t/N) G^t_z, the
    expected first-order LOO increment of SGD (z is in a batch of size b with probability b/N). The
    second-order term keeps the published a_t (no T/m factor), as the authors' code does.

    Indexing: t is the number of SGD steps taken (θ_t after t updates, θ_T final); η_t =
    ``lrs[min(t, T−1)]``, the step size applied at θ_t.

    Sign, by derivation (E5 notebook, check :func:`replication.bounds.diffin.one_step_sign`): for SGD with batch
    means, I^t = θ^t_{−z} − θ^t (removal, batch denominators kept) obeys exactly
    I^{t+1} − I^t = (η_t/b)1[z∈S_t] G_z(θ^t_{−z}) − η_t[g_{S_t}(θ^t_{−z}) − g_{S_t}(θ^t)]. To second order, with
    I^t ≈ (tη/N)G_z (the first-order part accumulated, E[1[z∈S]/b] = 1/N):

        I^{t+1} − I^t ≈ (η/N) G^t_z − (tη²/N) H_B G^t_z                     (first-order term at θ^t)
                      = (η/N) G^0_z − (tη²/N)(H_B G^t_z + H_z G_B)         (at θ^0: G^t_z ≈ G^0_z − tηH_zG_B)

    dropping the O(1/N²) term (tη²/N²)H_zG_z. The first-order term is positive (removing z undoes its
    descent steps), the H_B G_z term negative. Eq. 9's a_t = −tη²/(Nm) < 0 with D_t = H_B G_z + H_z G_B is this
    second-order term of the **removal** parameter shift (the sum over m checkpoints; the authors' code,
    ``diff_in/estimator.py``, sets ``a_t = -ckpt.step * (ckpt.lr ** 2) / (N * m)`` and adds ``a_t·⟨∇L(V), D_t⟩``
    with no conversion). Inclusion θ − θ_{−z} or up-weighting dθ/dε would carry +tη² (and no 1/N for dθ/dε).
    So Eq. 9 is written in our convention: the target form ⟨v, I_θ⟩ estimates (the second-order part of)
    L(θ_{−z}) − L(θ), positive = helpful, and ``diffin_paper`` keeps the published sign; the other sign is
    the supplementary ``diffin_paper_negated``. Checked on the exact one-step difference (float64): the error
    of (η/N)G_z − (tη²/N)H_BG_z falls like η³, that of the flipped sign like η² (twice first order's). The
    measured anti-correlation of the paper form with LOO follows: the second-order term alone is a
    correction opposing the first-order term (H_B ⪰ 0 near convexity), not an estimate of the LOO change.
    Two consequences for ``form='full'``, reported, not changed here: its first-order term is taken at θ^t,
    so adding the whole D_t counts −(tη²/N)H_zG_B twice (the E5 check measures its per-step error at O(η²));
    and a_t keeps the published 1/m with no T (the Monte-Carlo sum over m of T steps would have T/m), so its
    second-order term is T times smaller than the derivation's. See :func:`diffin_self` for the suspicious
    direction.

    Fast target form: H symmetric ⇒ ⟨v_t, H_B G_z⟩ = ⟨H_B v_t, G_z⟩ with u_t = H_B v_t one HVP per
    checkpoint, and ⟨v_t, H_z G_B⟩ = (⟨G_z(θ + εĜ_B), v_t⟩ − ⟨G_z(θ), v_t⟩)‖G_B‖/ε needs per-sample
    gradients at two shared points — about two TracIn passes.

    Fast self form: ⟨G_z, H_B G_z⟩ needs the batch at a point moved along each row's own G_z; the
    finite difference of HVP vectors dotted with G_z is a difference of loss slopes along G_z, and the
    moved network is evaluated from the factored per-sample gradient {δ_l a_lᵀ, δ_l} + αθ (a rank-one
    change per layer) in chunks of rows (:func:`_self_terms`): the same numbers, no per-row HVP.

    References
    ----------
    H. Tan, S. Wu, X. Wu, W. Wang, B. Zhao, Z. Xie, G.-S. Xia, X. Qi. Understanding Data Influence with
    Differential Approximation. arXiv:2508.14648, 2025.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if hvp not in HVP_METHODS:
        raise ValueError(f"hvp must be one of {HVP_METHODS}, got {hvp!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if int(proxy_batch) < 1 or int(batches_per_checkpoint) < 1:
        raise ValueError("proxy_batch and batches_per_checkpoint must be >= 1")
    if per_target and target != "target":
        raise ValueError("per_target is only available for target='target'")
    if traj is None:
        raise ValueError("diffin needs a recorded Trajectory")
    if impl != "auto":
        if impl not in GRAD_IMPLS:
            raise ValueError(f"impl must be 'auto' or one of {GRAD_IMPLS}, got {impl!r}")
        if target != "target" or per_target or hvp == "exact":
            raise ValueError(f"impl={impl!r} implements the target form (target='target', no per_target) with a "
                             f"finite-difference hvp ('forward', 'central'); use impl='auto' for the others")
    chunk = check_chunk(chunk)
    model, dtype = traj.model, traj.thetas.dtype
    X, y = prepare("diffin", traj, train_data)[:2]
    N, p = X.shape[0], model.n_params
    if target == "target":
        if target_data is None:
            raise ValueError("target='target' needs target data")
        Xt, yt = as_tensors(target_data, dtype)
        if Xt.shape[0] == 0:
            raise ValueError("the target set is empty")
    l2 = traj.l2 if include_l2 else 0.0
    steps = diffin_checkpoints(traj, m, checkpoints, seed)
    kernel = GradKernel(model, impl, chunk=chunk) if impl != "auto" else None
    mm, T = len(steps), traj.n_steps
    lrs = traj.lrs()
    rng = np.random.default_rng([seed, 0])
    b = min(int(proxy_batch), N)
    if target == "params":
        if N * p > 5e7:
            raise ValueError(f"target='params' materialises n × p = {N}×{p}; too large")
        out = torch.zeros(N, p, dtype=dtype, device=X.device)
    elif per_target:
        out = torch.zeros(N, Xt.shape[0], dtype=dtype, device=X.device)
    else:
        out = torch.zeros(N, dtype=dtype, device=X.device)

    for t in steps:
        theta = traj.theta_at(int(t))
        eta = float(lrs[min(int(t), T - 1)])
        a_t = -t * eta**2 / (N * mm)
        c1 = (T / mm) * eta / N
        batches = [rng.choice(N, b, replace=False) for _ in range(int(batches_per_checkpoint))]
        if impl != "auto":
            base, second = _target_terms(kernel, theta, X, y, Xt, yt, batches, l2=l2, hvp=hvp, eps=eps)
            out.add_(second, alpha=a_t)
            if form == "full":
                out.add_(base, alpha=c1)
        elif target == "target":
            V = per_sample_grads(model, theta, Xt, yt) if per_target else mean_grad(model, theta, Xt, yt)[None]
            base = target_grad_dots(model, theta, X, y, Xt, yt, per_target=per_target, l2=l2, chunk=chunk)  # ⟨G_z, v_t⟩
            second = torch.zeros_like(base)
            for S in batches:
                XB, yB = X[S], y[S]
                GB = mean_grad(model, theta, XB, yB, l2=l2)
                U = loss_hvp(model, theta, XB, yB, V, l2=l2, method=hvp, eps=eps, g0=GB)  # H_B v_t
                second += grad_dots(model, theta, X, y, U, l2=l2, chunk=chunk)
                second += per_sample_hvp_dots(model, theta, X, y, V, GB, l2=l2, method=hvp, eps=eps, chunk=chunk,
                                              base=base)
            contrib = a_t * second / len(batches)
            if form == "full":
                contrib = contrib + c1 * base
            out += contrib if per_target else contrib[:, 0]
        elif target == "self":
            # the factorised form needs the layered Model; any other module takes the materialised definition
            terms = _self_terms if isinstance(model, Model) else _self_terms_reference
            dots, sq = terms(model, theta, X, y, batches, l2=l2, hvp=hvp, eps=eps, chunk=chunk)
            out += a_t * dots + (c1 * sq if form == "full" else 0.0)
        else:
            for s in range(0, N, chunk):
                sl = slice(s, min(s + chunk, N))
                G, D = _grads_and_directions(model, theta, X[sl], y[sl], X, y, batches, l2=l2, hvp=hvp, eps=eps)
                out[sl] += a_t * D + (c1 * G if form == "full" else 0.0)
    return out.cpu().numpy()


@register("diffin_paper", suspicious="low", sgd_only=True, hparams_of="diffin")
def diffin_paper(traj: Trajectory, train_data: Any, target_data: Any, **hparams: Any) -> np.ndarray:
    """Diff-In as published (``diffin(..., form='paper')``): the second-order term Σ a_t⟨v_t, D_t(z)⟩
    alone, no first-order term. It correlates *negatively* with trajectory LOO (see :func:`diffin`,
    Notes); other options as :func:`diffin`."""
    hparams.setdefault("form", "paper")
    return diffin(traj, train_data, target_data, **hparams)


@register("diffin_paper_negated", suspicious="high", sgd_only=True, hparams_of="diffin")
def diffin_paper_negated(traj: Trajectory, train_data: Any, target_data: Any, **hparams: Any) -> np.ndarray:
    """The other sign of Eq. 9: −:func:`diffin_paper` (same options, same proxy batches), i.e. +Σ (tη_t²/(Nm))
    ⟨v_t, D_t(z)⟩ — what Eq. 9 would be if it were written for inclusion θ − θ_{−z} or up-weighting dθ/dε.
    *Not* the derived sign (see :func:`diffin`, Notes, "Sign"): a supplementary row only. Suspicious end
    "high" (the negation of a "low" loss-change estimate)."""
    return -diffin_paper(traj, train_data, target_data, **hparams)


@register("diffin_self_negated", suspicious="high", sgd_only=True, hparams_of="diffin")
def diffin_self_negated(traj: Trajectory, train_data: Any, target_data: Any = None, **hparams: Any) -> np.ndarray:
    """−:func:`diffin_self`: its *low* end ranked first (the end the paper form's second-order term puts flipped
    labels at, measured), against the derived "high". A supplementary row only (E2 adds it from
    ``diffin_self``'s scores, :func:`add_negated_forms`)."""
    return -diffin_self(traj, train_data, target_data, **hparams)


#: Forms scored as the negation of another registered form: E1 and E2 add their rows from the other's scores
#: (:func:`add_negated_forms`) instead of estimating again — the same numbers, no extra job.
NEGATED_FORMS: dict[str, str] = {"diffin_paper_negated": "diffin_paper", "diffin_self_negated": "diffin_self"}


def add_negated_forms(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``scores`` plus, for each ``new, base`` of :data:`NEGATED_FORMS` with ``base`` present and ``new`` absent,
    ``scores[new] = −scores[base]`` (equal to running the registered ``new`` with ``base``'s options)."""
    out = dict(scores)
    for new, base in NEGATED_FORMS.items():
        if base in out and new not in out:
            out[new] = -np.asarray(out[base])
    return out


@register("diffin_self", suspicious="high", sgd_only=True, hparams_of="diffin")
def diffin_self(traj: Trajectory, train_data: Any, target_data: Any = None, **hparams: Any) -> np.ndarray:
    """Diff-In self-influence I(z, z) (``diffin(..., target='self')``, paper form by default).

    Suspicious end **by derivation**: I(z, z) estimates the removal change of z's own loss,
    ℓ_z(θ_{−z}) − ℓ_z(θ) (the project's removal sign, which Eq. 9 is written in: see :func:`diffin`, Notes). A
    flipped label is fitted only by memorising it, so removing it raises its own loss most: **high** =
    suspicious, in both forms, as for TracIn self-influence (``tests/test_diffin.py`` checks the end on the exact
    self-LOO of a tiny model). In the **paper form** the second-order term alone, −Σ|a_t|⟨G_z, D_t(z)⟩, has the
    sign opposite to the omitted first-order term Σ (η_t/N)‖G_z‖², so it ranks flipped labels at its *low* end
    (measured); that end is the supplementary ``diffin_self_negated`` (E2 adds it from these scores), never the
    derived one. Scores are returned unconverted, in the sign of the formula.
    """
    hparams.setdefault("target", "self")
    hparams.setdefault("form", "paper")
    return diffin(traj, train_data, target_data, **hparams)
