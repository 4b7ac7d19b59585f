"""LAI vs Ghost: the per-layer Cauchy–Schwarz bound (claim LAI-5) and per-step Shapley fidelity (LAI-2).

Bound. For a Linear layer l with (bias-augmented) input ã_i = [a_i; 1] and output gradient
b_i = J_iᵀ g_i, where J_i = ∂logits_i/∂(output of layer l) and g_i = ∂ℓ_i/∂logits,

    Ghost_l(i, j) = ⟨ã_i, ã_j⟩⟨b_i, b_j⟩,   LAI_l(i, j) = ⟨ã_i, ã_j⟩⟨g_i, g_j⟩,
    |Ghost_l − LAI_l| = |⟨ã_i, ã_j⟩| |g_iᵀ(J_i J_jᵀ − I) g_j| ≤ ‖ã_i‖‖ã_j‖‖g_i‖‖g_j‖‖J_i J_jᵀ − I‖₂,

and the gap is 0 on the last layer (J = I). (Derived here; the paper's own constants are not
available.) Ghost and LAI come from the hook capture (:mod:`influence.estimators.online`), J from
``torch.func.jacrev`` of the functional tail of the network, the norms from a functional forward pass:
the two sides are computed independently.

Shapley. At step t, for a batch B of 16 and a target subset V, the one-step utility of a coalition S ⊆ B
is U(S) = L_V(θ_t) − L_V(θ_t − (η_t/|B|) Σ_{i∈S} ∇f_i(θ_t)); Monte-Carlo permutation Shapley values of U
are compared (Pearson) with the per-step LAI and Ghost scores of the same batch and targets.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.func import jacrev, vmap

from influence.capture import capture
from influence.data import as_tensors
from influence.estimators.online import _bias_count, batch_scores, ghost_flat_inner, ghost_inner, lai_inner
from influence.ghost import layer_forward
from influence.metrics import pearson, spearman
from influence.models import Model
from influence.shapley import step_shapley_module
from influence.train import Trajectory
from replication.bounds import Check

__all__ = ["lai_ghost_gap", "check_lai_bound", "check_lai_bound_over_training", "step_shapley",
           "check_lai_shapley", "lai_ghost_gap_module", "check_lai_bound_module", "check_lai_bound_transformers"]

log = logging.getLogger(__name__)


def _tail(model: Model, theta: torch.Tensor, layer: int):
    """h^l (one sample, (width,)) → logits (n_out,)."""
    p = model.unflatten(theta)
    n = len(model.widths) - 1

    def f(h: torch.Tensor) -> torch.Tensor:
        for k in range(layer + 1, n):
            h = torch.relu(h) @ p[f"W{k}"].T + p[f"b{k}"]
        return h

    return f


def lai_ghost_gap(model: Model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *,
                  bias: bool = True) -> dict[str, torch.Tensor]:
    """Per-layer, per-pair Ghost and LAI inner products, their gap and the Cauchy–Schwarz bound.

    Returns a dict of tensors of shape (n_layers, m, m): ``ghost``, ``lai``, ``gap`` = |ghost − lai|,
    ``bound`` = ‖ã_i‖‖ã_j‖‖g_i‖‖g_j‖‖J_iJ_jᵀ − I‖₂ (ã = input augmented by 1 when ``bias``).
    """
    module = model.to_module(theta)
    cap = capture(module, x, y, backward=True)
    ghost = ghost_inner(cap, per_layer=True, bias=bias)
    lai = lai_inner(cap, per_layer=True, bias=bias)
    a, h = layer_forward(model, model.unflatten(theta.detach()), x)
    z = h[-1]
    g = model.output_grad(z, y)
    gn = g.norm(dim=1)
    n_layers = len(a)
    bounds = []
    eye = torch.eye(model.n_out, dtype=theta.dtype)
    for k in range(n_layers):
        an = (a[k].pow(2).sum(1) + (1.0 if bias else 0.0)).sqrt()
        J = vmap(jacrev(_tail(model, theta.detach(), k)))(h[k])  # (m, n_out, width)
        M = torch.einsum("iow,jpw->ijop", J, J) - eye
        spec = torch.linalg.matrix_norm(M, ord=2)
        bounds.append((an[:, None] * an[None, :]) * (gn[:, None] * gn[None, :]) * spec)
    bound = torch.stack(bounds)
    return {"ghost": ghost, "lai": lai, "gap": (ghost - lai).abs(), "bound": bound}


def _ratio(res: dict[str, torch.Tensor], tol: torch.Tensor) -> torch.Tensor:
    """gap / bound, with 0 where both vanish (to rounding): the last layer, where J = I."""
    zero = res["gap"] <= tol
    return torch.where(zero, torch.zeros_like(res["gap"]), res["gap"] / res["bound"].clamp_min(1e-300))


def _tolerance(res: dict[str, torch.Tensor]) -> torch.Tensor:
    eps = torch.finfo(res["ghost"].dtype).eps
    # rounding in Ghost, LAI *and* the bound itself (norms, a spectral norm): where the bound is attained
    # (e.g. i = j with one logit) gap and bound agree to a few ulps of the bound
    scale = res["ghost"].abs() + res["lai"].abs() + res["bound"].abs()
    return 256 * eps * scale + 1e-300


def check_lai_bound(model: Model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *,
                    bias: bool = True) -> Check:
    """The per-layer bound |Ghost_l − LAI_l| ≤ ‖ã_i‖‖ã_j‖‖g_i‖‖g_j‖‖J_iJ_jᵀ − I‖₂ for all pairs, and a zero
    gap on the last layer, at one parameter vector (tolerance: 256 ε (|Ghost| + |LAI| + bound) per entry)."""
    res = lai_ghost_gap(model, theta, x, y, bias=bias)
    return _bound_check(
        res, "lai_ghost_bound",
        "|Ghost_l - LAI_l| <= |a_i||a_j||g_i||g_j||J_i J_j^T - I|_2 for every pair and layer (+256 eps relative), "
        "and gap = 0 on the last layer",
        details={"n_pairs": int(res["gap"][0].numel()), "n_layers": int(res["gap"].shape[0])},
    )


def _pairs(res: dict[str, torch.Tensor], key: str) -> list[list[float]]:
    """Per layer, the values of ``res[key]`` on the pairs i ≤ j (the matrices are symmetric): for the E5
    scatter of gap against bound."""
    m = res[key].shape[-1]
    iu = torch.triu_indices(m, m)
    return res[key][:, iu[0], iu[1]].tolist()


def _bound_check(res: dict[str, Any], name: str, criterion: str, *, measured: dict | None = None,
                 details: dict | None = None) -> Check:
    """The verdict of a per-pair, per-layer bound ``res`` (``gap``, ``bound``, ``ghost``, ``lai``; the last
    layer the output layer): no violation beyond rounding, and a zero gap on the last layer."""
    tol = _tolerance(res)
    viol = res["gap"] > res["bound"] + tol
    last_ok = bool((res["gap"][-1] <= tol[-1]).all())
    ratio = _ratio(res, tol)[:-1]
    return Check(
        name=name,
        passed=bool(not viol.any()) and last_ok,
        criterion=criterion,
        measured={"max_gap_per_layer": res["gap"].amax((1, 2)).tolist(),
                  "last_layer_max_gap": float(res["gap"][-1].max()),
                  "max_gap_over_bound": float(ratio.max()) if ratio.numel() else 0.0,
                  "n_violations": int(viol.sum()), **(measured or {})},
        predicted={"max_bound_per_layer": res["bound"].amax((1, 2)).tolist(), "last_layer_gap": 0.0},
        details={**(details or {}),
                 "median_gap_over_bound_per_layer": [float(r.median()) for r in ratio] if ratio.numel() else []},
    )


def check_lai_bound_over_training(traj: Trajectory, train_data: Any, *, steps: Any = None, n_samples: int = 16,
                                  n_steps: int = 6, seed: int = 0, bias: bool = True) -> Check:
    """The bound along a recorded run: at ``steps`` (default ``n_steps`` evenly spaced recorded steps), for all
    pairs of ``n_samples`` random training samples. Details hold, per step and layer, the gap quantiles
    and the gap/bound ratio quantiles (how tight the bound is, and how it evolves with training)."""
    X, y = as_tensors(train_data, traj.thetas.dtype)
    rng = np.random.default_rng(seed)
    if steps is None:
        steps = traj.steps[np.unique(np.linspace(0, len(traj.steps) - 1, n_steps).round().astype(int))]
    rows, series = [], []
    passed, n_viol = True, 0
    for s in steps:
        idx = rng.choice(X.shape[0], size=min(n_samples, X.shape[0]), replace=False)
        theta = traj.theta_at(int(s))
        res = lai_ghost_gap(traj.model, theta, X[idx], y[idx], bias=bias)
        tol = _tolerance(res)
        v = res["gap"] > res["bound"] + tol
        n_viol += int(v.sum())
        passed &= bool((res["gap"][-1] <= tol[-1]).all())
        ratio = _ratio(res, tol)
        series.append({"step": int(s), "gap": _pairs(res, "gap"), "bound": _pairs(res, "bound")})
        for layer in range(res["gap"].shape[0]):
            gp, rt = res["gap"][layer].flatten(), ratio[layer].flatten()
            rows.append({"step": int(s), "layer": layer, "gap_median": float(gp.median()), "gap_max": float(gp.max()),
                         "ratio_median": float(rt.median()), "ratio_max": float(rt.max()),
                         "ghost_abs_median": float(res["ghost"][layer].abs().median())})
    return Check(
        name="lai_ghost_bound_over_training",
        passed=passed and n_viol == 0,
        criterion="bound holds for every pair, layer and step; last-layer gap 0",
        measured={"n_violations": n_viol,
                  "max_ratio_hidden_layers": max([r["ratio_max"] for r in rows if r["layer"] < max(
                      q["layer"] for q in rows)], default=0.0),
                  "last_layer_max_gap": max(r["gap_max"] for r in rows if r["layer"] == max(q["layer"] for q in rows))},
        predicted={"last_layer_gap": 0.0, "ratio_max_le": 1.0},
        details={"per_step_layer": rows, "n_samples": int(min(n_samples, X.shape[0])),
                 "model": traj.model.describe(), "series": series},
    )


def _output_jacobian(module: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                     out_shape: tuple[int, ...]) -> torch.Tensor:
    """J = ∂vec(logits)/∂vec(output of ``layer``) for one row ``x`` (1, …), by reverse mode through a
    forward hook that adds a perturbation δ to the layer's output (J = ∂logits/∂δ at δ = 0)."""

    def f(delta: torch.Tensor) -> torch.Tensor:
        h = layer.register_forward_hook(lambda _m, _a, out: out + delta)
        try:
            return module(x).reshape(-1)
        finally:
            h.remove()

    zero = torch.zeros((1, *out_shape), dtype=x.dtype if x.is_floating_point() else torch.get_default_dtype())
    J = jacrev(f)(zero.to(next(module.parameters()).dtype))
    return J.detach().reshape(J.shape[0], -1)


def lai_ghost_gap_module(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                         bias: bool = True) -> dict[str, torch.Tensor]:
    """The LAI–Ghost bound for any hookable network (transformers included), per Linear layer and pair.

    With token sequences a Linear layer's input is a_i ∈ R^{T×k} and its output gradient b_i ∈ R^{T×o};
    flattening both (the position-aligned Ghost of the LAI authors, :func:`ghost_flat_inner`) gives
    vec b_i = J_iᵀ vec g_i with J_i = ∂vec(logits_i)/∂vec(output_i), so exactly as for vectors

        |Ghost_flat_l − LAI_l| = |⟨ã_i, ã_j⟩| |g_iᵀ(J_iJ_jᵀ − I)g_j| ≤ ‖ã_i‖‖ã_j‖‖g_i‖‖g_j‖‖J_iJ_jᵀ − I‖₂

    (ã = vec a augmented by one constant 1 per bias position). The exact Ghost (all token pairs,
    :func:`ghost_inner`) is returned as well: the bound is *not* a bound on its gap to LAI when T > 1.
    J comes from ``torch.func.jacrev`` through a perturbation hook, independently of the capture.

    Returns (n_weight_layers, m, m) tensors ``ghost`` (flattened), ``ghost_exact``, ``lai``, ``gap`` =
    |ghost − lai|, ``bound``, ``gap_exact`` = |ghost_exact − lai|, and ``names`` of the layers.
    """
    cap = capture(module, x, y, backward=True)
    weight = [k for k, lc in enumerate(cap.layers) if lc.is_weight_layer]
    ghost = ghost_flat_inner(cap, per_layer=True, bias=bias)
    exact = ghost_inner(cap, per_layer=True, layers=weight, bias=bias)
    lai = lai_inner(cap, per_layer=True, bias=bias)
    m = x.shape[0]
    gn = cap.g.reshape(m, -1).norm(dim=1)
    bounds = []
    for k in weight:
        lc = cap.layers[k]
        an = (lc.a_flat.pow(2).sum(1) + (float(_bias_count(lc)) if bias else 0.0)).sqrt()
        out_shape = tuple(lc.b.shape[1:]) if not isinstance(lc.module, torch.nn.Conv2d) else None
        if out_shape is None:
            raise ValueError("lai_ghost_gap_module supports Linear layers (use lai_ghost_gap for the CNN form)")
        J = torch.stack([_output_jacobian(module, lc.module, x[i : i + 1], out_shape) for i in range(m)])
        M = torch.einsum("iaw,jbw->ijab", J, J) - torch.eye(J.shape[1], dtype=J.dtype)
        spec = torch.linalg.matrix_norm(M, ord=2)
        bounds.append((an[:, None] * an[None, :]) * (gn[:, None] * gn[None, :]) * spec)
    bound = torch.stack(bounds)
    return {"ghost": ghost, "ghost_exact": exact, "lai": lai, "gap": (ghost - lai).abs(), "bound": bound,
            "gap_exact": (exact - lai).abs(), "names": [cap.layers[k].name for k in weight]}


def check_lai_bound_module(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                           bias: bool = True) -> Check:
    """:func:`check_lai_bound` for any hookable network (e.g. :class:`~influence.models.TinyGPT`): the
    per-layer bound on the flattened Ghost for every pair and Linear layer, a zero gap on the layer whose
    output is the logits, and — measured, not judged — how often the *exact* Ghost's gap to LAI exceeds
    the same bound."""
    res = lai_ghost_gap_module(module, x, y, bias=bias)
    exact_over = res["gap_exact"] > res["bound"] + _tolerance(res)
    return _bound_check(
        res, "lai_ghost_bound_module",
        "|Ghost_flat_l - LAI_l| <= |a_i||a_j||g_i||g_j||J_i J_j^T - I|_2 for every pair and Linear layer "
        "(+256 eps relative), and gap = 0 on the output layer",
        measured={"exact_ghost_pairs_over_bound": int(exact_over.sum())},
        details={"layers": res["names"], "n_pairs": int(res["gap"][0].numel()),
                 "series": {k: _pairs(res, k) for k in ("gap", "bound", "gap_exact")}},
    )


def check_lai_bound_transformers(*, steps: tuple[int, ...] = (0, 40), n_samples: int = 4, context: int = 6,
                                 d_model: int = 16, n_layers: int = 1, n_heads: int = 2, batch_size: int = 16,
                                 lr: float = 3e-3, seed: int = 0) -> list[Check]:
    """:func:`check_lai_bound_module` on the LAI paper's model families, in float64 and on real text: a
    :class:`~influence.models.TinyGPT` on Shakespeare character windows and a
    :class:`~influence.models.TextClassifier` on Rotten Tomatoes snippets (:mod:`replication.text`), each
    trained with AdamW and checked at the given steps (0 = the initialisation) on ``n_samples`` training
    rows (all pairs). One :class:`Check` per model; it passes if the bound holds at every step."""
    from influence.curation import curated_step
    from influence.models import TextClassifier, TinyGPT
    from replication.text import lm_splits, text_classification_splits

    lm = lm_splits(context, n_train=batch_size * 8, n_val=8, n_test=8, seed=seed)
    Xl = torch.as_tensor(lm["train"])
    cls = text_classification_splits("rotten_tomatoes", max_len=context, vocab_size=300,
                                     n_train=batch_size * 8, seed=seed)
    cases = {
        "gpt": (TinyGPT(lm["vocab"].size, context, d_model, n_layers, n_heads, dtype=torch.float64, seed=seed),
                Xl[:, :-1], Xl[:, 1:]),
        "encoder": (TextClassifier(cls["vocab"].size, 2, context, d_model, n_layers, n_heads, dtype=torch.float64,
                                   seed=seed),
                    torch.as_tensor(cls["X_train"]), torch.as_tensor(cls["y_train"])),
    }
    out = []
    for name, (module, X, Y) in cases.items():
        opt = torch.optim.AdamW(module.parameters(), lr=lr)
        rng = np.random.default_rng(seed)
        per_step, passed = [], True
        for t in range(max(steps) + 1):
            if t in steps:
                idx = rng.choice(X.shape[0], size=n_samples, replace=False)
                chk = check_lai_bound_module(module, X[idx], Y[idx])
                passed &= chk.passed
                per_step.append({"step": t, **chk.measured, "layers": chk.details["layers"],
                                 "series": chk.details["series"]})
            S = rng.choice(X.shape[0], size=batch_size, replace=False)
            opt.zero_grad(set_to_none=True)
            curated_step(module, "vanilla", X[S], Y[S])
            opt.step()
        out.append(Check(
            name=f"lai_ghost_bound_{name}",
            passed=bool(passed),
            criterion="per-layer bound on the flattened Ghost for every pair, Linear layer and step; zero gap on "
                      "the output layer",
            measured={"n_violations": sum(r["n_violations"] for r in per_step),
                      "max_gap_over_bound": max(r["max_gap_over_bound"] for r in per_step),
                      "last_layer_max_gap": max(r["last_layer_max_gap"] for r in per_step),
                      "exact_ghost_pairs_over_bound": sum(r["exact_ghost_pairs_over_bound"] for r in per_step)},
            predicted={"n_violations": 0, "last_layer_gap": 0.0},
            details={"model": name, "steps": list(steps), "per_step": per_step,
                     "sizes": {"context": context, "d_model": d_model, "n_layers": n_layers, "n_heads": n_heads}},
        ))
    return out


def step_shapley(model: Model, theta: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, xv: torch.Tensor,
                 yv: torch.Tensor, lr: float, *, l2: float = 0.0, n_perm: int = 400, seed: int = 0,
                 chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo permutation Shapley values of the one-step target-loss reduction.

    U(S) = L_V(θ) − L_V(θ − (η/|B|) Σ_{i∈S} ∇f_i(θ)), f_i = ℓ_i + (α/2)‖θ‖² (denominator |B| as in
    curation). ``n_perm`` random permutations (antithetic pairs: ``max(1, n_perm // 2)`` of them), evaluated
    ``chunk`` permutations' prefixes per vmapped call, by :func:`influence.shapley.step_shapley_module` on
    ``model.to_module(θ)`` (the one implementation of the game). Returns (values (|B|,), standard errors
    (|B|,): std over the permutations / √n).
    """
    module = model.to_module(theta).to(theta.device)
    res = step_shapley_module(module, xb, yb, xv, yv, float(lr), n_perm=2 * max(1, int(n_perm) // 2), seed=seed,
                              chunk=max(1, int(chunk) * (xb.shape[0] - 1)), l2=float(l2))
    return res["values"], res["se_permutations"]


def check_lai_shapley(traj: Trajectory, train_data: Any, target_data: Any, *, n_steps: int = 8,
                      batch_size: int = 16, target_size: int = 32, n_perm: int = 400, seed: int = 0) -> Check:
    """LAI-2: per-step Pearson correlation of LAI and of Ghost scores with Monte-Carlo Shapley values.

    At ``n_steps`` evenly spaced steps t of the recorded run, take ``batch_size`` members of S_t (or
    random training samples when S_t is smaller) and ``target_size`` random targets, compute the Shapley
    values of the one-step loss reduction (:func:`step_shapley`, with the run's η_t and α) and the per-step
    LAI / Ghost scores of the same batch against the same targets. Passed (the claim) if the mean Pearson
    correlation of LAI is ≥ Ghost's.
    """
    dtype = traj.thetas.dtype
    X, y = as_tensors(train_data, dtype)
    Xt, yt = as_tensors(target_data, dtype)
    T = traj.n_steps
    steps = np.unique(np.linspace(0, T - 1, n_steps).round().astype(int))
    rng = np.random.default_rng(seed)
    batches, lrs = traj.batches(), traj.lrs()
    module = traj.model.to_module(traj.thetas[0])
    rows = []
    for t in steps:
        S = batches[t]
        idx = rng.choice(S, size=batch_size, replace=False) if len(S) >= batch_size else \
            rng.choice(X.shape[0], size=batch_size, replace=False)
        V = rng.choice(Xt.shape[0], size=min(target_size, Xt.shape[0]), replace=False)
        theta = traj.theta_at(int(t))
        torch.nn.utils.vector_to_parameters(theta, module.parameters())
        cap = capture(module, torch.cat([X[idx], Xt[V]]), torch.cat([y[idx], yt[V]]), backward=True)
        lai = batch_scores(cap, batch_size, "lai").numpy()
        ghost = batch_scores(cap, batch_size, "ghost").numpy()
        shap, se = step_shapley(traj.model, theta, X[idx], y[idx], Xt[V], yt[V], float(lrs[t]), l2=traj.l2,
                                n_perm=n_perm, seed=int(rng.integers(2**31)))
        rows.append({"step": int(t), "pearson_lai": pearson(lai, shap), "pearson_ghost": pearson(ghost, shap),
                     "spearman_lai": spearman(lai, shap), "spearman_ghost": spearman(ghost, shap),
                     "shapley_se_over_sd": float(se.mean() / max(shap.std(), 1e-300)),
                     "shapley": shap.tolist(), "shapley_se": se.tolist(), "lai": lai.tolist(),
                     "ghost": ghost.tolist()})
    r_lai = float(np.nanmean([r["pearson_lai"] for r in rows]))
    r_ghost = float(np.nanmean([r["pearson_ghost"] for r in rows]))
    return Check(
        name="lai_shapley_fidelity",
        passed=r_lai >= r_ghost,
        criterion="mean per-step Pearson(LAI, Shapley) >= mean per-step Pearson(Ghost, Shapley) (paper: 0.96 vs 0.90)",
        measured={"pearson_lai": r_lai, "pearson_ghost": r_ghost},
        predicted={"pearson_lai_paper": 0.96, "pearson_ghost_paper": 0.90},
        details={"per_step": rows, "batch_size": batch_size, "target_size": target_size, "n_perm": n_perm},
    )
