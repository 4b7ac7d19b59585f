"""Theory checks for SGD-IE and ACC-SGD-IE (claims ACC-1, ACC-3, ACC-4; part (a) of issue 3).

Every check trains small L2-logistic-regression runs, computes the exact trajectory leave-one-out
(masked replays of the same run through :func:`influence.train.train`) and compares the parameter-space
estimates Δθ̂_j of :func:`~influence.estimators.sgd_ie.sgd_ie_params` and
:func:`~influence.estimators.sgd_ie.acc_sgd_ie_params` with Δθ_j = θ^{-j}_T − θ_T.

Error measure ("relative parameter error"): Σ_j ‖Δθ̂_j − Δθ_j‖ / Σ_j ‖Δθ_j‖ over the samples checked.

Why the orders differ. Linearising the LOO replay around the recorded run gives
Δ_{t+1} = (I − η_t H_t^{(−j)}) Δ_t + (η_t/b_t)1[t∈O_j]∇f_j(θ_t) + O(‖Δ_t‖²): ACC-SGD-IE keeps every
first-order term, so its error is O(‖Δ‖²) (relative error O(‖Δ‖)). SGD-IE uses H_t instead of
H_t^{(−j)}; the missing (η_t/b_t)∇²f_j(θ_t)Δ_t is first order in Δ, so its relative error does not vanish
as ‖Δ‖ → 0 — *if* ‖Δ‖ is made small without changing j's curvature term. Down-weighting j by ε (weight
1 − ε) does change it (the curvature term becomes ε/b_t ∇²f_j), and then SGD-IE, the ε-derivative of the
run, is first-order exact as well. :func:`check_error_order` measures both families.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from influence.data import as_tensors
from influence.estimators.sgd_ie import acc_sgd_ie, acc_sgd_ie_params, metagradient, sgd_ie, sgd_ie_params
from influence.models import Model, logistic_regression, mlp
from influence.train import Schedule, Trajectory, train
from replication.bounds import Check

__all__ = [
    "check_one_epoch_identity",
    "check_metagradient",
    "check_error_vs_epochs",
    "check_error_order",
    "check_batch_size",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ helpers
def _blobs(n: int, n_target: int, d: int, n_classes: int, seed: int, sep: float = 1.5):
    """Gaussian blobs in float64 (train and target pairs)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, d, generator=g, dtype=torch.float64) * sep

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, n_classes, (m,), generator=g)
        return centers[y] + torch.randn(m, d, generator=g, dtype=torch.float64), y

    return draw(n), draw(n_target)


def _problem(data: Any, n: int, d: int, n_classes: int, seed: int):
    if data is None:
        return _blobs(n, max(20, n // 2), d, n_classes, seed)
    train_data, target_data = data
    return as_tensors(train_data), as_tensors(target_data)


def _run(model: Model, train_data, schedule: Schedule, l2: float) -> Trajectory:
    return train(model, model.init(0), train_data, schedule, l2=l2)


def _prefix(traj: Trajectory, epochs: int) -> Trajectory:
    """The first ``epochs`` epochs of a recorded run (a run with fewer epochs is a prefix of a longer one:
    epoch k's permutation and η_t do not depend on the total number of epochs)."""
    sched = traj.schedule.with_epochs(epochs)
    T = sched.n_steps
    return Trajectory(traj.model, sched, traj.l2, traj.thetas[: T + 1], traj.steps[: T + 1], traj.losses[:T])


def _loo_deltas(traj: Trajectory, train_data, idx: np.ndarray, record: list[int]) -> np.ndarray:
    """Exact trajectory LOO Δθ_j at the recorded steps ``record``: (len(record), len(idx), p)."""
    X, y = as_tensors(train_data)
    n = X.shape[0]
    W = torch.ones(len(idx) + 1, n, dtype=torch.float64)
    W[torch.arange(1, len(idx) + 1), torch.as_tensor(idx)] = 0.0  # row 0: the base run, same arithmetic
    th = train(traj.model, traj.theta0, (X, y), traj.schedule, weights=W, l2=traj.l2, record=record).thetas
    return (th[:, 1:] - th[:, :1]).numpy()


def _rel_err(est: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(est - truth, axis=1).sum() / np.linalg.norm(truth, axis=1).sum())


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return _loglog_fit(x, y)["slope"]


def _loglog_fit(x: Any, y: Any) -> dict[str, float]:
    """Least-squares line log y ≈ log_c + slope · log x (what the E5 figures draw beside the points)."""
    slope, icpt = np.polyfit(np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64)), 1)
    return {"slope": float(slope), "log_c": float(icpt)}


# ------------------------------------------------------------------------------------------ checks
def check_one_epoch_identity(
    *, data: Any = None, n: int = 80, d: int = 5, n_classes: int = 3, batch_size: int = 10, lr: float = 0.5,
    l2: float = 0.05, seed: int = 0, tol: float = 1e-12,
) -> Check:
    """ACC-1: with one epoch (every sample occurs once) ACC-SGD-IE equals SGD-IE.

    Criterion: max |score_ACC − score_SGD| ≤ tol · max |score| and the same for Δθ̂ (exact identity up to
    rounding: after j's only occurrence H_t^{(−j)} = H_t, and before it the state is zero).
    """
    (X, y), target = _problem(data, n, d, n_classes, seed)
    model = logistic_regression(X.shape[1], int(max(n_classes, int(y.max()) + 1)))
    traj = _run(model, (X, y), Schedule(len(y), batch_size, 1, lr, seed=seed), l2)
    s_acc, s_sgd = acc_sgd_ie(traj, (X, y), target), sgd_ie(traj, (X, y), target)
    p_acc, p_sgd = acc_sgd_ie_params(traj, (X, y)), sgd_ie_params(traj, (X, y))
    ds = float(np.abs(s_acc - s_sgd).max() / max(np.abs(s_sgd).max(), 1e-300))
    dp = float(np.abs(p_acc - p_sgd).max() / max(np.abs(p_sgd).max(), 1e-300))
    return Check(
        name="acc_sgd_ie_one_epoch_identity",
        passed=bool(ds <= tol and dp <= tol),
        criterion=f"relative max difference of scores and of Δθ̂ <= {tol:g}",
        measured={"score_rel_diff": ds, "param_rel_diff": dp},
        predicted={"score_rel_diff": 0.0, "param_rel_diff": 0.0},
        details={"n": len(y), "batch_size": batch_size, "lr": lr, "l2": l2, "epochs": 1,
                 "series": {"score_acc": s_acc.tolist(), "score_sgd_ie": s_sgd.tolist(),
                            "param_norm_acc": np.linalg.norm(p_acc, axis=1).tolist(),
                            "param_norm_sgd_ie": np.linalg.norm(p_sgd, axis=1).tolist()}},
    )


def check_metagradient(
    *, data: Any = None, n: int = 60, d: int = 5, n_classes: int = 3, hidden: int = 8, batch_size: int = 10,
    epochs: int = 3, lr: float = 0.3, l2: float = 0.01, seed: int = 0, tol: float = 1e-10,
) -> Check:
    """TRAJ-2: SGD-IE equals the exact metagradient −∂L(θ_T(w))/∂w_j at w = 1 (MAGIC's quantity for plain
    SGD), computed by reverse-mode autodiff through the replayed run, on a logistic regression and an MLP
    trained for several epochs. Criterion: relative max difference ≤ ``tol`` on both."""
    (X, y), target = _problem(data, n, d, n_classes, seed)
    C = int(max(n_classes, int(y.max()) + 1))
    diffs, series = {}, {}
    for name, model in (("logreg", logistic_regression(X.shape[1], C)), ("mlp", mlp(X.shape[1], (hidden,), C))):
        traj = _run(model, (X, y), Schedule(len(y), batch_size, epochs, lr, seed=seed), l2)
        ie, mg = sgd_ie(traj, (X, y), target), metagradient(traj, (X, y), target)
        diffs[name] = float(np.abs(ie - mg).max() / max(np.abs(mg).max(), 1e-300))
        series[name] = {"sgd_ie": ie.tolist(), "metagradient": mg.tolist()}
    return Check(
        name="sgd_ie_equals_metagradient",
        passed=bool(all(v <= tol for v in diffs.values())),
        criterion=f"relative max |SGD-IE - metagradient| <= {tol:g} on a logistic regression and an MLP",
        measured={f"rel_diff_{k}": v for k, v in diffs.items()},
        predicted={f"rel_diff_{k}": 0.0 for k in diffs},
        details={"n": len(y), "batch_size": batch_size, "epochs": epochs, "lr": lr, "l2": l2, "hidden": hidden,
                 "series": series},
    )


def check_error_vs_epochs(
    *, data: Any = None, epochs: tuple[int, ...] = (1, 2, 4, 8, 16), decay: str = "constant", n: int = 100,
    d: int = 5, n_classes: int = 2, batch_size: int = 10, lr: float = 0.5, l2: float = 0.1, seed: int = 0,
    n_check: int | None = None,
) -> Check:
    """ACC-2/ACC-3: relative parameter error vs trajectory LOO after K epochs, both methods.

    Prediction: equal at K = 1; for every K ≥ 2 ACC-SGD-IE's error is below SGD-IE's, and SGD-IE's
    error ratio to ACC grows with K (SGD-IE accumulates the first-order "own curvature" term once per
    extra occurrence of j). Pass: both hold (ratio at the largest K > ratio at the smallest K ≥ 2).
    The absolute errors per K are reported for the step-size comparison ('constant' vs 'inv_sqrt').
    """
    (X, y), _ = _problem(data, n, d, n_classes, seed)
    model = logistic_regression(X.shape[1], int(max(n_classes, int(y.max()) + 1)))
    K = sorted(set(int(k) for k in epochs))
    if K[0] < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    sched = Schedule(len(y), batch_size, K[-1], lr, seed=seed, decay=decay)
    traj = _run(model, (X, y), sched, l2)
    idx = np.arange(len(y)) if n_check is None else np.random.default_rng(seed).choice(len(y), n_check, False)
    ends = [k * sched.steps_per_epoch for k in K]
    truth = _loo_deltas(traj, (X, y), idx, ends)
    rel_acc, rel_sgd, abs_acc, abs_sgd, norm = [], [], [], [], []
    for r, k in enumerate(K):
        tk = _prefix(traj, k)
        a, s = acc_sgd_ie_params(tk, (X, y), indices=idx), sgd_ie_params(tk, (X, y), indices=idx)
        rel_acc.append(_rel_err(a, truth[r]))
        rel_sgd.append(_rel_err(s, truth[r]))
        abs_acc.append(float(np.linalg.norm(a - truth[r], axis=1).mean()))
        abs_sgd.append(float(np.linalg.norm(s - truth[r], axis=1).mean()))
        norm.append(float(np.linalg.norm(truth[r], axis=1).mean()))
    ratio = [s / a for s, a in zip(rel_sgd, rel_acc, strict=True)]
    multi = [i for i, k in enumerate(K) if k >= 2]
    better = all(rel_acc[i] < rel_sgd[i] for i in multi)
    grows = len(multi) < 2 or ratio[multi[-1]] > ratio[multi[0]]
    # descriptive (not judged): log-log fits of the errors against K over K >= 2, drawn in the E5 notebook
    fits = {} if len(multi) < 2 else {
        f"{kind}_{m}": _loglog_fit([K[i] for i in multi], [err[i] for i in multi])
        for kind, errs in (("rel_err", {"acc": rel_acc, "sgd_ie": rel_sgd}), ("abs_err", {"acc": abs_acc,
                                                                                         "sgd_ie": abs_sgd}))
        for m, err in errs.items()
    }
    return Check(
        name=f"acc_vs_sgd_ie_error_vs_epochs_{decay}",
        passed=bool(better and grows),
        criterion="rel. error ACC < SGD-IE for every K >= 2, and the ratio SGD/ACC grows from the smallest to the "
        "largest K >= 2",
        measured={"epochs": K, "rel_err_acc": rel_acc, "rel_err_sgd_ie": rel_sgd, "ratio_sgd_over_acc": ratio,
                  "abs_err_acc": abs_acc, "abs_err_sgd_ie": abs_sgd, "mean_norm_delta_theta": norm,
                  **{f"slope_{k}": v["slope"] for k, v in fits.items()}},
        predicted={"ratio_at_K1": 1.0, "acc_better_for_K>=2": True, "ratio_grows_with_K": True},
        details={"n": len(y), "batch_size": batch_size, "lr": lr, "l2": l2, "decay": decay,
                 "n_checked": len(idx), "fits_K_ge_2": fits},
    )


def _ghost_deltas(traj: Trajectory, X: torch.Tensor, y: torch.Tensor, j: int, eps: np.ndarray) -> np.ndarray:
    """Replays in which j is removed from the batch but (1 − ε)∇f_j(θ_t) *at the recorded θ_t* is added:
    θ'_{t+1} = θ'_t − η_t/b_t [Σ_{i∈S_t, i≠j} ∇f_i(θ'_t) + (1 − ε)∇f_j(θ_t)]. Its exact linearisation is
    ε·A^{ACC}_j (j's curvature fully removed while ‖Δ‖ = O(ε)). Returns Δθ (len(eps), p)."""
    model, l2 = traj.model, traj.l2
    k = len(eps) + 1
    e = torch.as_tensor(np.concatenate([[0.0], eps]), dtype=torch.float64)
    theta = traj.theta0.expand(k, -1).clone()
    lrs = traj.lrs()
    for t, S in enumerate(traj.batches()):
        m = len(S)
        w = torch.ones(k, m, dtype=torch.float64)
        hit = np.nonzero(S == j)[0]
        if hit.size:
            w[:, hit[0]] = 0.0
        g, _ = model.batch_grad(theta, X[S], y[S], w, float(m), l2)
        if hit.size:
            gj, _ = model.batch_grad(traj.thetas[t][None], X[[j]], y[[j]], torch.ones(1, 1, dtype=torch.float64),
                                     1.0, l2)
            g = g + ((1.0 - e) / m)[:, None] * gj
        theta = theta - float(lrs[t]) * g
    return (theta[1:] - theta[:1]).numpy()


def _weight_deltas(traj: Trajectory, X: torch.Tensor, y: torch.Tensor, j: int, eps: np.ndarray) -> np.ndarray:
    """Replays with sample j's weight 1 − ε (row 0: the base run). Returns Δθ (len(eps), p)."""
    W = torch.ones(len(eps) + 1, X.shape[0], dtype=torch.float64)
    W[1:, j] = torch.as_tensor(1.0 - eps)
    th = train(traj.model, traj.theta0, (X, y), traj.schedule, weights=W, l2=traj.l2, record="final").thetas[-1]
    return (th[1:] - th[:1]).numpy()


def check_error_order(
    *, data: Any = None, eps: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125), epochs: int = 5,
    n: int = 60, d: int = 5, n_classes: int = 2, batch_size: int = 10, lr: float = 0.5, l2: float = 0.1, seed: int = 0,
    n_samples: int = 6, slope_tol: float = 0.15, limit_rtol: float = 0.1,
) -> Check:
    """ACC-3: ACC-SGD-IE's parameter error is second order in ‖Δθ‖, SGD-IE's first order.

    Two families of perturbations of sample j shrink ‖Δθ‖ ∝ ε (K ≥ 2 epochs, so j occurs repeatedly):

    * "ghost" (removal with j's gradient source scaled by ε; j's curvature is removed entirely; see
      :func:`_ghost_deltas`). Estimates ε·A^{ACC}_j and ε·A^{SGD}_j. Prediction: the log-log slope of the
      relative error against ε is ≈ 1 for ACC (second order) and ≈ 0 for SGD-IE (first order).
    * "weight" (j's weight 1 − ε, ``train(weights=...)``). Estimates ε·A^{SGD}_j (the exact ε-derivative),
      ε·A^{ACC, c=ε}_j (ACC with the curvature correction scaled to the removed weight) and ε·A^{ACC}_j
      (full correction). Prediction: slopes ≈ 1, ≈ 1, and the full-correction ACC tends to the constant
      ‖A^{ACC} − A^{SGD}‖/‖A^{SGD}‖ — here SGD-IE is the accurate one: the weight family does not
      separate the methods in ACC's favour (scaling the weight also scales the curvature term).

    The two first-order cases are predicted to approach a computable limit as ε → 0: ghost SGD-IE →
    ‖A^{SGD} − A^{ACC}‖/‖A^{ACC}‖, weight ACC(full) → ‖A^{ACC} − A^{SGD}‖/‖A^{SGD}‖ (geometric means).

    Pass: the three second-order slopes are within ``slope_tol`` of 1, the two first-order errors at the
    smallest ε are within ``limit_rtol`` of their limits, and ghost ACC's error at ε = 1 is below SGD-IE's.
    Errors are geometric means over ``n_samples`` random samples.
    """
    (X, y), _ = _problem(data, n, d, n_classes, seed)
    model = logistic_regression(X.shape[1], int(max(n_classes, int(y.max()) + 1)))
    if epochs < 2:
        raise ValueError("the error-order check needs epochs >= 2 (with one epoch both methods coincide)")
    traj = _run(model, (X, y), Schedule(len(y), batch_size, epochs, lr, seed=seed), l2)
    e = np.asarray(sorted(eps, reverse=True), dtype=np.float64)
    js = np.random.default_rng(seed).choice(len(y), n_samples, replace=False)
    A_acc = acc_sgd_ie_params(traj, (X, y), indices=js)
    A_sgd = sgd_ie_params(traj, (X, y), indices=js)
    A_eps = {float(ei): acc_sgd_ie_params(traj, (X, y), indices=js, hessian_weight=float(ei)) for ei in e}
    errs: dict[str, list[list[float]]] = {k: [] for k in ("ghost_acc", "ghost_sgd", "weight_sgd", "weight_acc_eps",
                                                           "weight_acc_full")}
    abs_errs: dict[str, list[list[float]]] = {k: [] for k in errs}
    for r, j in enumerate(js):
        g = _ghost_deltas(traj, X, y, int(j), e)
        w = _weight_deltas(traj, X, y, int(j), e)
        rel = lambda est, tru: np.linalg.norm(est - tru, axis=1) / np.linalg.norm(tru, axis=1)  # noqa: E731
        errs["ghost_acc"].append(rel(e[:, None] * A_acc[r], g).tolist())
        errs["ghost_sgd"].append(rel(e[:, None] * A_sgd[r], g).tolist())
        errs["weight_sgd"].append(rel(e[:, None] * A_sgd[r], w).tolist())
        errs["weight_acc_eps"].append(rel(np.stack([ei * A_eps[float(ei)][r] for ei in e]), w).tolist())
        errs["weight_acc_full"].append(rel(e[:, None] * A_acc[r], w).tolist())
        for k, tru in (("ghost", g), ("weight", w)):  # ‖Δθ‖ of the replay, to turn relative into absolute errors
            for name in errs:
                if name.startswith(k):
                    abs_errs[name].append((np.asarray(errs[name][-1]) * np.linalg.norm(tru, axis=1)).tolist())
    gm = {k: np.exp(np.log(np.asarray(v)).mean(0)) for k, v in errs.items()}
    gm_abs = {k: np.exp(np.log(np.asarray(v)).mean(0)) for k, v in abs_errs.items()}
    slopes = {k: _slope(e, v) for k, v in gm.items()}
    dif = np.linalg.norm(A_sgd - A_acc, axis=1)
    limits = {
        "ghost_sgd": float(np.exp(np.log(dif / np.linalg.norm(A_acc, axis=1)).mean())),
        "weight_acc_full": float(np.exp(np.log(dif / np.linalg.norm(A_sgd, axis=1)).mean())),
    }
    second = ("ghost_acc", "weight_sgd", "weight_acc_eps")
    ok_slopes = all(abs(slopes[k] - 1.0) <= slope_tol for k in second)
    ok_limits = all(abs(gm[k][-1] - v) <= limit_rtol * v for k, v in limits.items())
    ok = ok_slopes and ok_limits and gm["ghost_acc"][0] < gm["ghost_sgd"][0]
    return Check(
        name="acc_vs_sgd_ie_error_order",
        passed=bool(ok),
        criterion=f"second-order cases (ghost ACC, weight SGD-IE, weight ACC with eps-scaled correction): log-log "
        f"slope of relative error vs eps within {slope_tol} of 1; first-order cases (ghost SGD-IE, weight ACC with "
        f"full correction): error at the smallest eps within {limit_rtol:.0%} of the predicted limit; ghost ACC < "
        "ghost SGD-IE at eps=1",
        measured={"eps": e.tolist(), "slope": slopes, "rel_err_geomean": {k: v.tolist() for k, v in gm.items()},
                  "rel_err_at_smallest_eps": {k: float(v[-1]) for k, v in gm.items()},
                  "abs_err_geomean": {k: v.tolist() for k, v in gm_abs.items()},
                  "abs_slope": {k: _slope(e, v) for k, v in gm_abs.items()}},
        predicted={"slope": {k: 1.0 for k in second}, "limit_as_eps_to_0": limits,
                   "abs_slope": {k: (2.0 if k in second else 1.0) for k in gm_abs}},
        details={"n": len(y), "epochs": epochs, "batch_size": batch_size, "lr": lr, "l2": l2,
                 "samples": js.tolist(), "rel_err_per_sample": errs,
                 "fits_abs": {k: _loglog_fit(e, v) for k, v in gm_abs.items()},
                 "fits_rel": {k: _loglog_fit(e, v) for k, v in gm.items()}},
    )


def check_batch_size(
    *, data: Any = None, batch_sizes: tuple[int, ...] = (5, 10, 20, 40), epochs: int = 8, n: int = 120, d: int = 5,
    n_classes: int = 2, lr: float = 0.5, l2: float = 0.1, seed: int = 0, n_check: int | None = None,
) -> Check:
    """ACC-4: larger batches help — ACC-SGD-IE's relative parameter error falls with the batch size.

    Same data, epochs, η and α; only b changes (so each run has n/b steps per epoch). The per-occurrence
    nonlinearity error is O((η/b)²) relative to O(η/b) updates, so the relative error should fall like
    ~1/b. Pass: ACC's relative error decreases monotonically in b and its log-log slope is < 0.
    SGD-IE's errors are reported alongside.
    """
    (X, y), _ = _problem(data, n, d, n_classes, seed)
    model = logistic_regression(X.shape[1], int(max(n_classes, int(y.max()) + 1)))
    bs = sorted(set(int(b) for b in batch_sizes))
    idx = np.arange(len(y)) if n_check is None else np.random.default_rng(seed).choice(len(y), n_check, False)
    rel_acc, rel_sgd = [], []
    for b in bs:
        sched = Schedule(len(y), b, epochs, lr, seed=seed)
        traj = _run(model, (X, y), sched, l2)
        truth = _loo_deltas(traj, (X, y), idx, [sched.n_steps])[0]
        rel_acc.append(_rel_err(acc_sgd_ie_params(traj, (X, y), indices=idx), truth))
        rel_sgd.append(_rel_err(sgd_ie_params(traj, (X, y), indices=idx), truth))
    mono = all(a2 < a1 for a1, a2 in zip(rel_acc, rel_acc[1:], strict=False))
    fits = {"acc": _loglog_fit(bs, rel_acc), "sgd_ie": _loglog_fit(bs, rel_sgd)}
    slope = fits["acc"]["slope"]
    return Check(
        name="acc_sgd_ie_error_vs_batch_size",
        passed=bool(mono and slope < 0),
        criterion="ACC relative parameter error strictly decreasing in batch size and log-log slope < 0",
        measured={"batch_sizes": bs, "rel_err_acc": rel_acc, "rel_err_sgd_ie": rel_sgd, "slope_acc": slope,
                  "slope_sgd_ie": _slope(np.asarray(bs, float), np.asarray(rel_sgd))},
        predicted={"slope_acc": "< 0 (about -1)", "monotone_decreasing": True},
        details={"n": len(y), "epochs": epochs, "lr": lr, "l2": l2, "n_checked": len(idx), "fits": fits},
    )
