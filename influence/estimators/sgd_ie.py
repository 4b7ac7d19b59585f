"""SGD-IE (Hara et al., 2019) and ACC-SGD-IE (Shi et al., 2025): linearised trajectory leave-one-out.

Both estimate the trajectory-specific leave-one-out change Δθ_j = θ^{-j}_T − θ_T of a recorded SGD run
(see :mod:`influence.train`) by linearising the replay around the recorded parameters θ_t. With
f_i(θ) = ℓ(z_i; θ) + (α/2)‖θ‖², b_t = |S_t|, O_j = {t : j ∈ S_t} and

    H_t        = (1/b_t) Σ_{i∈S_t} ∇²f_i(θ_t)                      (batch Hessian, L2 included)
    H_t^{(−j)} = H_t − (1/b_t) 1[t∈O_j] ∇²f_j(θ_t)                  (j's own curvature removed)

the estimates are the end points of the forward ("accumulative state") recursions

    SGD-IE:      A_{t+1} = (I − η_t H_t)      A_t + (η_t/b_t) 1[t∈O_j] ∇f_j(θ_t)
    ACC-SGD-IE:  A_{t+1} = (I − η_t H_t^{(−j)}) A_t + (η_t/b_t) 1[t∈O_j] ∇f_j(θ_t)

with A_0 = 0, Δθ̂_j = A_T and score_j = ⟨∇L(θ_T), A_T⟩ (estimated L(θ^{-j}_T) − L(θ_T), positive = j
helps). ACC-SGD-IE is the exact first-order expansion of the LOO recursion in Δ; SGD-IE is the
derivative of the run with respect to j's weight at weight 1 (it keeps j's curvature in H_t after j's
first occurrence) — the exact metagradient −∂L(θ_T(w))/∂w_j at w = 1 that MAGIC (Ilyas & Engstrom,
2025) computes for a deterministic run, here for plain SGD (:func:`metagradient` computes it by autodiff
through the replay; the tests check the two agree to 1e-10). With one epoch both coincide.

The backward (adjoint) form computes the same scores with u_T = ∇L(θ_T), u_t = (I − η_t H_t^{(·)}) u_{t+1}
and score_j = Σ_{t∈O_j} (η_t/b_t) ⟨u^{(j)}_{t+1}, ∇f_j(θ_t)⟩: SGD-IE needs one shared adjoint (T
Hessian-vector products), ACC-SGD-IE one adjoint per sample.

Implementation. Logistic regression (binary and multiclass) uses closed-form batched Hessian products,
H U = (1/b) X̃_Sᵀ Λ (X̃_S U) + αU with Λ the per-sample logit Hessian (σ(1−σ) or diag(π) − ππᵀ), and the
per-column correction drops sample j's term from column j. MLPs use ``torch.func``: ``vmap`` over the
columns of ``jvp(grad(batch loss))`` and of the per-sample ``jvp(grad(ℓ_j))``. Columns (samples) are
processed in chunks that each run through the whole trajectory, so memory is O(chunk · p). Columns are
ordered so that only the samples already reached by the recursion (seen so far in the forward form,
passed in the backward form) are multiplied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from influence import linear
from influence.data import as_tensors
from influence.estimators import prepare, register
from influence.models import Model
from influence.train import Trajectory

__all__ = ["sgd_ie", "acc_sgd_ie", "sgd_ie_params", "acc_sgd_ie_params", "metagradient"]

log = logging.getLogger(__name__)

_MEM_DOUBLES = 40_000_000  # default chunk: about 320 MB per (chunk, p) float64 buffer
_NONE = torch.empty(0, dtype=torch.long)


# ------------------------------------------------------------------------------------------ per-step algebra
def _pair_extra(extra: float, m: int) -> float:
    """The diagonal ``l2_quirk`` adds to the Hessian of a column at a step that holds its sample j.

    The authors' ACC step (``infl.py``, ``infl_accumulative_sgd``) differentiates the batch loss
    (1/m)Σ_{i∈S}ℓ_i + (α/2)‖θ‖² minus ℓ_j/m plus (α/2)‖θ‖² once more: (1/m)Σ_{i≠j}∇²ℓ_i + 2αI. The consistent
    H^{(−j)} is (1/m)Σ_{i≠j}∇²ℓ_i + α(1 − 1/m)I, so the quirk adds α(1 + 1/m) there (extra = α); steps
    without j and the shared SGD-IE adjoint use H_t + αI in both.
    """
    return extra * (1.0 + 1.0 / m) if extra else 0.0


class _LogregStep:
    """Curvature and gradients of one batch for logistic regression, in closed form.

    Works in the internal layout θ = vec([W, b]) of shape (o, d+1) (:mod:`influence.linear`), so that
    the logits are z_i = Θ x̃_i with x̃ = [x, 1]. For directions U (k, p): dz = U X̃_Sᵀ, and the contraction
    U ← (I − η H^{(−·)}) U is one in-place GEMM: U ← (1 − η α') U − (η/m) (Λ dz) X̃_S, with Λ_i the
    logit Hessian of sample i and column j's own term of the batch dropped (weight 1 − c).
    """

    def __init__(self, model: Model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        self.o, self.m = model.n_out, x.shape[0]
        self.xa = linear.augment(x)  # (m, d+1)
        self.d1 = self.xa.shape[1]
        z = self.xa @ theta.view(self.o, self.d1).T  # (m, o)
        self.r = model.output_grad(z, y)  # (m, o) = ∂ℓ/∂z
        if self.o == 1:
            self.lam = linear.sigmoid_curvature(z).T  # (1, m)
        else:
            self.pi = torch.softmax(z, -1).T  # (o, m)

    def contract(
        self, U: torch.Tensor, eta: float, rows: torch.Tensor, pos: torch.Tensor, c: float, l2: float, extra: float
    ) -> None:
        """In place: U_r ← U_r − η [(1/m)Σ_i ∇²ℓ_i U_r + l2 U_r − c (1/m)(∇²ℓ_j + l2) U_r + e U_r] where
        the last two terms apply to the paired columns (rows[r] ↔ batch position pos[r] = j) only, with
        e = extra·(1 + 1/m) (:func:`_pair_extra`: the authors' doubled L2, ``l2_quirk``)."""
        k = U.shape[0]
        U2 = U.view(k * self.o, self.d1)
        dz = (U2 @ self.xa.T).view(k, self.o, self.m)
        if self.o == 1:
            q = dz * self.lam
        else:
            q = self.pi * dz
            q = q - self.pi * q.sum(1, keepdim=True)
        corr = c != 0 and rows.numel() > 0
        if corr:
            q[rows, :, pos] *= 1.0 - c
            keep = U[rows].clone()
        U2.addmm_(q.reshape(k * self.o, self.m), self.xa, beta=1.0 - eta * l2, alpha=-eta / self.m)
        if corr:
            U[rows] += eta * (c * l2 / self.m - _pair_extra(extra, self.m)) * keep

    def grads(self, pos: torch.Tensor) -> torch.Tensor:
        """∇ℓ_i(θ) for the batch members at positions ``pos``, (len(pos), p) (internal layout)."""
        return (self.r[pos][:, :, None] * self.xa[pos][:, None, :]).reshape(len(pos), -1)

    def dots(self, V: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """⟨V_r, ∇ℓ_{pos_r}⟩ for paired rows."""
        dz = (V.view(V.shape[0], self.o, self.d1) * self.xa[pos][:, None, :]).sum(-1)
        return (dz * self.r[pos]).sum(1)

    def shared_dots(self, u: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """⟨u, ∇ℓ_i⟩ for the batch members at ``pos`` (one shared direction)."""
        return ((self.xa[pos] @ u.view(self.o, self.d1).T) * self.r[pos]).sum(1)


class _FuncStep:
    """The same quantities for any model through ``torch.func`` (used for MLPs)."""

    def __init__(
        self, model: Model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, vmap_chunk: int
    ) -> None:
        self.model, self.theta, self.x, self.y, self.m = model, theta, x, y, x.shape[0]
        self.vmap_chunk = vmap_chunk
        self._g: torch.Tensor | None = None

    def _loss1(self, th: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return self.model.losses(th, xi[None], yi[None])[0]

    def contract(
        self, U: torch.Tensor, eta: float, rows: torch.Tensor, pos: torch.Tensor, c: float, l2: float, extra: float
    ) -> None:
        """In place: U ← U − η H^{(−·)} U (see :meth:`_LogregStep.contract`), HVPs by forward-over-reverse."""
        from torch.func import grad, jvp, vmap

        x, y, th = self.x, self.y, self.theta
        gb = grad(lambda t: self.model.losses(t, x, y).mean())
        HU = vmap(lambda v: jvp(gb, (th,), (v,))[1], chunk_size=self.vmap_chunk)(U)
        HU += l2 * U
        if c != 0 and rows.numel():
            def self_hvp(xi: torch.Tensor, yi: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                return jvp(grad(lambda t: self._loss1(t, xi, yi)), (th,), (v,))[1]

            hj = vmap(self_hvp, chunk_size=self.vmap_chunk)(x[pos], y[pos], U[rows])
            HU[rows] -= (c / self.m) * (hj + l2 * U[rows]) - _pair_extra(extra, self.m) * U[rows]
        U.add_(HU, alpha=-eta)

    def _all_grads(self) -> torch.Tensor:
        if self._g is None:
            from torch.func import grad, vmap

            self._g = vmap(grad(self._loss1), in_dims=(None, 0, 0))(self.theta, self.x, self.y)
        return self._g

    def grads(self, pos: torch.Tensor) -> torch.Tensor:
        return self._all_grads()[pos]

    def dots(self, V: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return (self._all_grads()[pos] * V).sum(1)

    def shared_dots(self, u: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """⟨u, ∇ℓ_i⟩ for the members at ``pos``: one forward-mode derivative of the per-sample losses."""
        x, y = self.x[pos], self.y[pos]
        return torch.func.jvp(lambda t: self.model.losses(t, x, y), (self.theta,), (u,))[1]


class _MLPStep:
    """The same quantities for a ReLU MLP in closed form: Pearlmutter's R-operator, batched over directions.

    One shared forward pass keeps the layer inputs h_{l−1}, the ReLU masks D_l and the output gradients
    g_i = ∂ℓ_i/∂z_i; for directions U (k, p) the R-pass gives R(z_l) = h_{l−1}V_lᵀ + v_l + R(h_{l−1})W_lᵀ and
    R(h_l) = D_l ⊙ R(z_l), the output curvature R(g) = Λ R(z_L) (σ(1−σ) or diag(π) − ππᵀ), and the backward
    R-pass δ_{l−1} = (δ_l W_l) ⊙ D_{l−1}, R(δ_{l−1}) = (R(δ_l) W_l + δ_l V_l) ⊙ D_{l−1} (ReLU'' = 0), so that
    H U = Σ_i w_i [R(δ_{l,i}) h_{l−1,i}ᵀ + δ_{l,i} R(h_{l−1,i})ᵀ] per layer. Each sample's contribution is
    linear in (g_i, R(g_i)), so weighting them per (direction, sample) drops column j's own curvature exactly
    (weight 1 − c), as :class:`_LogregStep` does. Every product is a batched GEMM; equal to :class:`_FuncStep`
    (``vmap`` of forward-over-reverse) to rounding (tested).
    """

    def __init__(self, model: Model, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.m = model, x.shape[0]
        self.P = model.unflatten(theta)
        self.L = len(model.widths) - 1
        h, self.hs, self.masks = x, [x], []
        for layer in range(self.L):
            z = h @ self.P[f"W{layer}"].T + self.P[f"b{layer}"]
            if layer < self.L - 1:
                mask = (z > 0).to(z.dtype)
                h = z * mask
                self.masks.append(mask)
                self.hs.append(h)
        self.z = z  # (m, o)
        self.g = model.output_grad(z, y)  # (m, o)
        if model.n_out == 1:
            self.lam = linear.sigmoid_curvature(z)  # (m, 1)
        else:
            self.pi = torch.softmax(z, -1)
        # shared backward deltas δ_l (m, w_l) of the per-sample losses
        d, self.deltas = self.g, [None] * self.L
        for layer in range(self.L - 1, -1, -1):
            self.deltas[layer] = d
            if layer:
                d = (d @ self.P[f"W{layer}"]) * self.masks[layer - 1]

    def _curv(self, rz: torch.Tensor) -> torch.Tensor:
        if self.model.n_out == 1:
            return self.lam * rz
        return self.pi * rz - self.pi * (rz * self.pi).sum(-1, keepdim=True)

    def hvp(self, U: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ_i w_ri ∇²ℓ_i U_r for directions U (k, p) and weights w (k, m); (k, p)."""
        k = U.shape[0]
        V = self.model.unflatten(U)
        rh: dict[int, torch.Tensor] = {}  # R(h_l), the R-pass of the layer inputs (R(h_0) = 0)
        for layer in range(self.L):
            Vw = V[f"W{layer}"]  # (k, w_l, w_{l-1}): one GEMM with the shared inputs
            rz = (Vw.reshape(-1, Vw.shape[-1]) @ self.hs[layer].T).view(k, Vw.shape[1], self.m).transpose(1, 2)
            rz = rz + V[f"b{layer}"][:, None, :]
            if layer:
                rz = rz + rh[layer] @ self.P[f"W{layer}"].T
            if layer < self.L - 1:
                rh[layer + 1] = rz * self.masks[layer]
        wg = w[:, :, None]
        rd = wg * self._curv(rz)  # R(δ_L), (k, m, o)
        out = {}
        for layer in range(self.L - 1, -1, -1):
            d = wg * self.deltas[layer]  # weighted δ_l, (k, m, w_l)
            rdt = rd.transpose(1, 2).reshape(-1, self.m)  # (k·w_l, m)
            gw = (rdt @ self.hs[layer]).view(k, -1, self.hs[layer].shape[1])
            if layer:
                gw = gw + d.transpose(1, 2) @ rh[layer]
            out[f"W{layer}"], out[f"b{layer}"] = gw, rd.sum(1)
            if layer:
                rd = (rd @ self.P[f"W{layer}"] + d @ V[f"W{layer}"]) * self.masks[layer - 1]
        return torch.cat([out[k].reshape(U.shape[0], -1) for k in self.model.shapes], 1)

    def contract(
        self, U: torch.Tensor, eta: float, rows: torch.Tensor, pos: torch.Tensor, c: float, l2: float, extra: float
    ) -> None:
        """In place: U ← U − η H^{(−·)} U (see :meth:`_LogregStep.contract`)."""
        k = U.shape[0]
        w = torch.full((k, self.m), 1.0 / self.m, dtype=U.dtype, device=U.device)
        corr = c != 0 and rows.numel() > 0
        if corr:
            w[rows, pos] *= 1.0 - c
        HU = self.hvp(U, w) + l2 * U
        if corr:
            HU[rows] -= (c * l2 / self.m - _pair_extra(extra, self.m)) * U[rows]
        U.add_(HU, alpha=-eta)

    def grads(self, pos: torch.Tensor) -> torch.Tensor:
        """∇ℓ_i(θ) for the batch members at ``pos``, (len(pos), p)."""
        parts = {}
        for layer in range(self.L):
            d = self.deltas[layer][pos]
            parts[f"W{layer}"] = d[:, :, None] * self.hs[layer][pos][:, None, :]
            parts[f"b{layer}"] = d
        return torch.cat([parts[k].reshape(len(pos), -1) for k in self.model.shapes], 1)

    def dots(self, V: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """⟨V_r, ∇ℓ_{pos_r}⟩ for paired rows, without forming the gradients."""
        P = self.model.unflatten(V)
        out = torch.zeros(V.shape[0], dtype=V.dtype, device=V.device)
        for layer in range(self.L):
            d, h = self.deltas[layer][pos], self.hs[layer][pos]
            out += torch.einsum("rj,rji,ri->r", d, P[f"W{layer}"], h) + (d * P[f"b{layer}"]).sum(1)
        return out

    def shared_dots(self, u: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """⟨u, ∇ℓ_i⟩ for the members at ``pos`` (one shared direction)."""
        P = self.model.unflatten(u)
        out = torch.zeros(len(pos), dtype=u.dtype, device=u.device)
        for layer in range(self.L):
            d, h = self.deltas[layer][pos], self.hs[layer][pos]
            out += ((d @ P[f"W{layer}"]) * h).sum(1) + d @ P[f"b{layer}"]
        return out


def _layout(model: Model) -> np.ndarray | None:
    """Permutation ``perm`` with internal = flat[perm] (logistic regression: rows [W_c, b_c]); None = identity."""
    if not model.is_linear:
        return None
    return linear.internal_order(model.n_features, model.n_out)


# ------------------------------------------------------------------------------------------ set-up
def _setup(traj: Trajectory, train_data: Any) -> dict:
    X, y = prepare("SGD-IE / ACC-SGD-IE", traj, train_data, need_all_steps=True)[:2]
    T = traj.n_steps
    if traj.model.n_features is not None and X.shape[1] != traj.model.n_features:
        raise ValueError(f"train_data has {X.shape[1]} features, the model expects {traj.model.n_features}")
    batches = traj.batches()
    first = np.full(X.shape[0], T, dtype=np.int64)
    occ: list[list[int]] = [[] for _ in range(X.shape[0])]
    for t, S in enumerate(batches):
        for i in S:
            occ[i].append(t)
    for i, o in enumerate(occ):
        if o:
            first[i] = o[0]
    perm = _layout(traj.model)
    thetas = traj.thetas if perm is None else traj.thetas[:, torch.as_tensor(perm)].contiguous()
    return {
        "model": traj.model, "X": X, "y": y, "thetas": thetas, "final_flat": traj.thetas[-1], "perm": perm,
        "batches": batches,
        "lrs": traj.lrs(), "l2": float(traj.l2), "T": T, "first": first, "occ": occ, "n": X.shape[0],
    }


def _step(ctx: dict, t: int, vmap_chunk: int) -> _LogregStep | _FuncStep:
    S = ctx["batches"][t]
    theta = ctx["thetas"][t]
    model = ctx["model"]
    if model.is_linear:
        return _LogregStep(model, theta, ctx["X"][S], ctx["y"][S])
    if isinstance(model, Model):
        return _MLPStep(model, theta, ctx["X"][S], ctx["y"][S])
    return _FuncStep(model, theta, ctx["X"][S], ctx["y"][S], vmap_chunk)  # any module (ModuleModel)


def _members(S: np.ndarray, colpos: np.ndarray, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows in the chunk, positions in the batch) of the batch members that belong to the chunk
    (and, if ``limit`` is given, whose row is < limit)."""
    r = colpos[S]
    keep = r >= 0 if limit is None else (r >= 0) & (r < limit)
    return torch.as_tensor(r[keep]), torch.as_tensor(np.nonzero(keep)[0])


def _indices(n: int, indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must lie in [0, {n})")
    if len(np.unique(idx)) != len(idx):
        raise ValueError("indices contain duplicates")
    return idx


def _chunk_size(chunk: int | None, p: int, k: int) -> int:
    if chunk is None:
        return max(1, min(k, _MEM_DOUBLES // max(p, 1)))
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return int(chunk)


def _corr_until(T: int, truncate: int | None) -> int:
    """Steps t < s get the per-sample correction; ``truncate`` final steps use the shared Hessian."""
    if truncate is None:
        return T
    if not 0 <= truncate <= T:
        raise ValueError(f"truncate must be in [0, T={T}] steps, got {truncate}")
    return T - int(truncate)


def _removal_steps(ctx: dict, traj: Trajectory, epoch: int | None) -> tuple[int, int] | None:
    """Steps [lo, hi) of a single-epoch removal (``epoch``; negative from the end), None for all-epoch."""
    if epoch is None:
        return None
    E, spe = traj.schedule.epochs, traj.schedule.steps_per_epoch
    if not -E <= int(epoch) < E:
        raise ValueError(f"epoch must lie in [-{E}, {E}) for a {E}-epoch run, got {epoch}")
    e = int(epoch) % E
    return e * spe, min((e + 1) * spe, ctx["T"])


def _first_in(ctx: dict, lo: int, hi: int) -> np.ndarray:
    """Each sample's first occurrence in steps [lo, hi) (T when it has none)."""
    first = np.full(ctx["n"], ctx["T"], dtype=np.int64)
    for i, occ in enumerate(ctx["occ"]):
        inside = [t for t in occ if lo <= t < hi]
        if inside:
            first[i] = inside[0]
    return first


# ------------------------------------------------------------------------------------------ forward form
def _forward(
    ctx: dict, idx: np.ndarray, *, s: int, c: float, extra_l2: float, chunk: int, vmap_chunk: int,
    removed: tuple[int, int] | None = None,
) -> torch.Tensor:
    """A_T (internal layout) for the samples ``idx`` (in that order), (len(idx), p).

    Correction c·(1/b)∇²f_j at steps t < s. ``removed`` = [lo, hi): j is removed (gradient injected,
    correction applied) only at its occurrences in those steps (single-epoch removal); None: everywhere."""
    n, T, p = ctx["n"], ctx["T"], ctx["model"].n_params
    alpha, lrs, batches = ctx["l2"], ctx["lrs"], ctx["batches"]
    lo, hi = (0, T) if removed is None else removed
    first = ctx["first"] if removed is None else _first_in(ctx, lo, hi)
    order = idx[np.argsort(first[idx], kind="stable")]
    out = torch.empty(len(idx), p, dtype=ctx["thetas"].dtype, device=ctx["thetas"].device)
    where = np.empty(n, dtype=np.int64)
    where[idx] = np.arange(len(idx))
    for c0 in range(0, len(order), chunk):
        J = order[c0 : c0 + chunk]
        firsts = first[J]
        colpos = np.full(n, -1, dtype=np.int64)
        colpos[J] = np.arange(len(J))
        A = torch.zeros(len(J), p, dtype=out.dtype, device=out.device)
        nact = 0
        for t in range(T):
            S, eta, m = batches[t], float(lrs[t]), len(batches[t])
            inside = lo <= t < hi
            rows_all, pos_all = _members(S, colpos) if inside else (_NONE, _NONE)
            if nact == 0 and rows_all.numel() == 0:
                continue
            step = _step(ctx, t, vmap_chunk)
            ct = c if t < s and inside else 0.0
            if nact:
                rows, pos = _members(S, colpos, nact)
                step.contract(A[:nact], eta, rows, pos, ct, alpha, extra_l2)
            if rows_all.numel():
                G = step.grads(pos_all) + alpha * ctx["thetas"][t]
                A[rows_all] += (eta / m) * G
            nact = int(np.searchsorted(firsts, t, side="right"))
        out[torch.as_tensor(where[J])] = A
    return out


# ------------------------------------------------------------------------------------------ backward form
def _backward(
    ctx: dict, idx: np.ndarray, u_T: torch.Tensor, *, s: int, c: float, extra_l2: float, chunk: int,
    vmap_chunk: int, removed: tuple[int, int] | None = None,
) -> np.ndarray:
    """Scores ⟨u, ·⟩ for the samples ``idx`` by the adjoint recursion; per-sample adjoints at steps t < s.

    ``removed`` = [lo, hi): only j's occurrences in those steps are removed (single-epoch removal)."""
    n, T, p = ctx["n"], ctx["T"], ctx["model"].n_params
    alpha, lrs, batches = ctx["l2"], ctx["lrs"], ctx["batches"]
    lo, hi = (0, T) if removed is None else removed
    # activation step: last removed occurrence before s (−1: j's adjoint never leaves the shared one)
    act = np.full(n, -1, dtype=np.int64)
    if c != 0:
        for i in idx:
            before = [t for t in ctx["occ"][i] if t < s and lo <= t < hi]
            act[i] = before[-1] if before else -1
    order = idx[np.argsort(-act[idx], kind="stable")]
    scores = np.zeros(n)
    n_act_total = int((act[idx] >= 0).sum())
    # columns that never activate only need the shared adjoint: one pass covers them all
    chunks = [order[c0 : c0 + chunk] for c0 in range(0, n_act_total, chunk)] or [order[:0]]
    rest = order[n_act_total:]
    for ci, J in enumerate(chunks):
        Jall = np.concatenate([J, rest]) if ci == 0 else J
        acts = act[J]
        colpos = np.full(n, -1, dtype=np.int64)
        colpos[Jall] = np.arange(len(Jall))
        sc = torch.zeros(len(Jall), dtype=u_T.dtype, device=u_T.device)
        u = u_T.clone()
        U = torch.empty(len(J), p, dtype=u_T.dtype, device=u_T.device)
        nact = 0
        for t in range(T - 1, -1, -1):
            S, eta, m = batches[t], float(lrs[t]), len(batches[t])
            theta = ctx["thetas"][t]
            new = int((acts >= t).sum())
            if new > nact:
                U[nact:new] = u
                nact = new
            step = _step(ctx, t, vmap_chunk)
            inside = lo <= t < hi
            rows_all, pos_all = _members(S, colpos) if inside else (_NONE, _NONE)
            if rows_all.numel():
                is_act = rows_all < nact
                sh = ~is_act
                if bool(sh.any()):
                    sc[rows_all[sh]] += (eta / m) * (step.shared_dots(u, pos_all[sh]) + alpha * (u @ theta))
                if bool(is_act.any()):
                    V = U[rows_all[is_act]]
                    sc[rows_all[is_act]] += (eta / m) * (step.dots(V, pos_all[is_act]) + alpha * (V @ theta))
            if nact:
                rows, pos = _members(S, colpos, nact)
                step.contract(U[:nact], eta, rows, pos, c if t < s and inside else 0.0, alpha, extra_l2)
            if t > 0:
                u = u.clone()
                step.contract(u[None], eta, _NONE, _NONE, 0.0, alpha, extra_l2)
        scores[Jall] = sc.cpu().numpy()
    return scores[idx]


def _target_grad(ctx: dict, target_data: Any) -> torch.Tensor:
    model, theta = ctx["model"], ctx["final_flat"].detach()
    Xt, yt = as_tensors(target_data, theta.dtype, theta.device)
    if model.n_features is not None and Xt.shape[1] != model.n_features:
        raise ValueError(f"target_data has {Xt.shape[1]} features, the model expects {model.n_features}")
    if Xt.shape[0] == 0:
        raise ValueError("target_data is empty")
    g = torch.func.grad(lambda th: model.loss(th, Xt, yt))(theta)
    return g if ctx["perm"] is None else g[torch.as_tensor(ctx["perm"])]


def _to_flat(ctx: dict, A: torch.Tensor) -> np.ndarray:
    """Internal layout (k, p) → the model's flat layout."""
    if ctx["perm"] is None:
        return A.cpu().numpy()
    out = torch.empty_like(A)
    out[:, torch.as_tensor(ctx["perm"])] = A
    return out.cpu().numpy()


# ------------------------------------------------------------------------------------------ public API
@register("sgd_ie", suspicious="low", sgd_only=True)
def sgd_ie(
    traj: Trajectory, train_data: Any, target_data: Any, *, vmap_chunk: int = 64, epoch: int | None = None
) -> np.ndarray:
    """SGD-influence (SGD-IE; Hara, Nitanda & Maehara, NeurIPS 2019).

    Parameters
    ----------
    traj : Trajectory
        Recorded run with θ_t at every step (``train(..., record='all')``).
    train_data, target_data : Dataset or (X, y)
        Training set of the run and the target set of L (mean loss, no L2).
    vmap_chunk : int, default 64
        Columns per ``vmap`` call in the MLP Hessian-vector products (memory bound only).
    epoch : None (default) or an epoch index (negative from the end, −1 = the last)
        None: *all-epoch removal* (j dropped at every occurrence). An epoch: *single-epoch removal* (Wang et
        al., ICLR 2025, DVEmb's Fig. 3): j is dropped only at its occurrence in that epoch, so its gradient is
        injected (and, for ACC, its curvature removed) only there; compare with
        ``trajectory_loo(..., removal_epoch=epoch)``.

    Returns
    -------
    scores : ndarray (n_train,)
        Estimated L(θ^{-j}_T) − L(θ_T); positive = j helps.

    Notes
    -----
    One shared adjoint backwards through the run: u_T = ∇L(θ_T); for t = T−1, …, 0, every j ∈ S_t gets
    (η_t/|S_t|)⟨u_{t+1}, ∇f_j(θ_t)⟩ and u_t = (I − η_t H_t) u_{t+1}, with H_t = (1/|S_t|)Σ_{i∈S_t}∇²f_i(θ_t)
    (L2 included, j included). Equals ⟨∇L(θ_T), A_T⟩ of the forward recursion in the module docstring
    (:func:`sgd_ie_params`). Sign: the same as the authors' code (their ground truth is
    L(θ^{-j}) − L(θ) and the estimate accumulates +η_t/|S_t|⟨u, ∇f_j⟩), so no conversion is needed.
    Cost: T Hessian-vector products plus one gradient-direction product per (step, batch member).

    References
    ----------
    S. Hara, A. Nitanda, T. Maehara. Data Cleansing for Models Trained with SGD. NeurIPS 2019.
    """
    ctx = _setup(traj, train_data)
    u_T = _target_grad(ctx, target_data)
    idx = np.arange(ctx["n"])
    return _backward(ctx, idx, u_T, s=0, c=0.0, extra_l2=0.0, chunk=1, vmap_chunk=vmap_chunk,
                     removed=_removal_steps(ctx, traj, epoch))


@register("acc_sgd_ie", suspicious="low", sgd_only=True)
def acc_sgd_ie(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    *,
    l2_quirk: bool = False,
    truncate: int | None = None,
    form: str = "auto",
    chunk: int | None = None,
    vmap_chunk: int = 64,
    indices: Sequence[int] | np.ndarray | None = None,
    epoch: int | None = None,
) -> np.ndarray:
    """Accumulative SGD-influence (ACC-SGD-IE; Shi, Yang, Su, Zhang, Xu, 2025).

    Parameters
    ----------
    traj : Trajectory
        Recorded run with θ_t at every step (``train(..., record='all')``).
    train_data, target_data : Dataset or (X, y)
        Training set of the run and the target set of L (mean loss, no L2).
    l2_quirk : bool, default False
        Reproduce the authors' ACC step (``infl.py``: the leave-j-out batch loss adds (α/2)‖θ‖² to a batch
        loss that already holds it): at the steps that contain j, j's Hessian is (1/|S_t|)Σ_{i∈S_t, i≠j}
        ∇²ℓ_i + 2αI instead of H_t^{(−j)} = (1/|S_t|)Σ_{i≠j}∇²ℓ_i + α(1 − 1/|S_t|)I; steps without j use
        H_t = (1/|S_t|)Σ_i ∇²ℓ_i + αI as in the consistent form (checked against a loop over the authors'
        coefficients in ``tests/test_sgd_ie.py``). No effect when α = 0. False: the consistent form of the
        module docstring.
    truncate : int or None, default None
        Truncated variant: the last ``truncate`` steps (t ≥ T − truncate) use the shared SGD-IE Hessian
        H_t, only the earlier steps the per-sample H_t^{(−j)}. ``None`` or 0 is the full method;
        ``truncate = T`` is SGD-IE. (Unlike the authors' code, no update is skipped at the boundary.)
        Cheaper in the backward form: the late steps cost one Hessian-vector product each.
    form : {'auto', 'backward', 'forward'}, default 'auto'
        'backward': one adjoint per sample, u^{(j)}_t = (I − η_t H_t^{(−j)}) u^{(j)}_{t+1}; 'forward': the
        accumulative state A_T of the module docstring, then ⟨∇L, A_T⟩. Same scores up to rounding.
        'auto' = 'backward' (never more expensive: it also exploits ``truncate``) for all samples, and
        'forward' with ``indices``: only the states of those samples are propagated, each from its first
        occurrence on (the way to score a subset, e.g. the 100 points of DVEmb's protocol).
    chunk : int or None
        Samples whose adjoints / states are held at once (memory O(chunk · p)); default: as many as fit
        in about 320 MB of float64.
    vmap_chunk : int, default 64
        Columns per ``vmap`` call in the MLP Hessian-vector products.
    indices : samples to score (default: all); the result then has ``len(indices)`` entries, in that order.
    epoch : None (default) or an epoch index (negative from the end, −1 = the last)
        None: *all-epoch removal* (j dropped at every occurrence). An epoch: *single-epoch removal* (Wang et
        al., ICLR 2025, DVEmb's Fig. 3): j is dropped only at its occurrence in that epoch, so its gradient is
        injected (and, for ACC, its curvature removed) only there; compare with
        ``trajectory_loo(..., removal_epoch=epoch)``.
        With one removed occurrence the state starts there and j is present at every later step, so
        the correction never acts: single-epoch ACC-SGD-IE equals single-epoch SGD-IE (tested).

    Returns
    -------
    scores : ndarray (n_train,) or (len(indices),)
        Estimated L(θ^{-j}_T) − L(θ_T); positive = j helps.

    Notes
    -----
    score_j = ⟨∇L(θ_T), A_T^{(j)}⟩ with A_{t+1} = (I − η_t H_t^{(−j)}) A_t + (η_t/|S_t|) 1[t∈O_j] ∇f_j(θ_t),
    H_t^{(−j)} = H_t − (1/|S_t|) 1[t∈O_j] ∇²f_j(θ_t) (j's loss curvature and its share of the L2 term
    removed, batch denominator |S_t| as in the LOO replay). This is the exact linearisation of the LOO
    recursion around the recorded run. Identical to SGD-IE when every sample occurs once (one epoch).
    Cost: one Hessian-vector product per (step, sample already reached), vectorised.

    References
    ----------
    Shi, Yang, Su, Zhang, Xu. "Accumulative SGD Influence Estimation for Data Attribution", arXiv 2510.26185, 2025.
    S. Hara, A. Nitanda, T. Maehara. Data Cleansing for Models Trained with SGD. NeurIPS 2019.
    """
    if form not in ("auto", "backward", "forward"):
        raise ValueError(f"form must be 'auto', 'backward' or 'forward', got {form!r}")
    ctx = _setup(traj, train_data)
    u_T = _target_grad(ctx, target_data)
    s = _corr_until(ctx["T"], truncate)
    extra = ctx["l2"] if l2_quirk else 0.0
    idx = _indices(ctx["n"], indices)
    k = _chunk_size(chunk, ctx["model"].n_params, len(idx))
    if form == "auto" and indices is not None:
        form = "forward"
    removed = _removal_steps(ctx, traj, epoch)
    if form == "forward":
        A = _forward(ctx, idx, s=s, c=1.0, extra_l2=extra, chunk=k, vmap_chunk=vmap_chunk, removed=removed)
        return (A @ u_T).cpu().numpy()
    return _backward(ctx, idx, u_T, s=s, c=1.0, extra_l2=extra, chunk=k, vmap_chunk=vmap_chunk, removed=removed)


def sgd_ie_params(
    traj: Trajectory, train_data: Any, *, indices: Sequence[int] | np.ndarray | None = None,
    chunk: int | None = None, vmap_chunk: int = 64, epoch: int | None = None,
) -> np.ndarray:
    """Parameter-space SGD-IE: Δθ̂_j = A_T of the SGD-IE forward recursion, shape (len(indices), p).

    A_{t+1} = (I − η_t H_t) A_t + (η_t/|S_t|) 1[t∈O_j] ∇f_j(θ_t), A_0 = 0 (H_t: full batch Hessian,
    L2 included). Compare with ``trajectory_loo(...).delta_theta``. ``indices`` default: all samples.
    ``epoch``: single-epoch removal as in :func:`sgd_ie` (O_j = j's step in that epoch only).
    """
    ctx = _setup(traj, train_data)
    idx = _indices(ctx["n"], indices)
    k = _chunk_size(chunk, ctx["model"].n_params, len(idx))
    removed = _removal_steps(ctx, traj, epoch)
    return _to_flat(ctx, _forward(ctx, idx, s=0, c=0.0, extra_l2=0.0, chunk=k, vmap_chunk=vmap_chunk,
                                  removed=removed))


def acc_sgd_ie_params(
    traj: Trajectory, train_data: Any, *, indices: Sequence[int] | np.ndarray | None = None,
    l2_quirk: bool = False, truncate: int | None = None, chunk: int | None = None, vmap_chunk: int = 64,
    hessian_weight: float = 1.0, epoch: int | None = None,
) -> np.ndarray:
    """Parameter-space ACC-SGD-IE: Δθ̂_j = A_T of the accumulative-state recursion, (len(indices), p).

    A_{t+1} = (I − η_t H_t^{(−j)}) A_t + (η_t/|S_t|) 1[t∈O_j] ∇f_j(θ_t) with
    H_t^{(−j)} = H_t − (c/|S_t|) 1[t∈O_j] ∇²f_j(θ_t); c = ``hessian_weight`` (1: removal, the method;
    c = ε is the exact linearisation of down-weighting j by ε instead of removing it, used by the theory
    checks; c = 0 is SGD-IE). ``l2_quirk``, ``truncate`` and ``epoch`` as in :func:`acc_sgd_ie`.
    """
    ctx = _setup(traj, train_data)
    idx = _indices(ctx["n"], indices)
    k = _chunk_size(chunk, ctx["model"].n_params, len(idx))
    s = _corr_until(ctx["T"], truncate)
    extra = ctx["l2"] if l2_quirk else 0.0
    A = _forward(ctx, idx, s=s, c=float(hessian_weight), extra_l2=extra, chunk=k, vmap_chunk=vmap_chunk,
                 removed=_removal_steps(ctx, traj, epoch))
    return _to_flat(ctx, A)


@register("metagradient", suspicious="low")
def metagradient(traj: Trajectory, train_data: Any, target_data: Any) -> np.ndarray:
    """The exact metagradient −∂L(θ_T(w))/∂w_j at w = 1, by reverse-mode autodiff through the replayed run.

    Any recorded optimiser: a run with momentum or AdamW (``traj.optimizer``, e.g. from
    :class:`influence.record.Recorder`) is replayed with that update (:mod:`influence.optim`) and differentiated
    through it, optimiser state included — MAGIC's quantity for that run. (SGD-IE's recursion is its plain-SGD
    special case; for other optimisers only this autodiff form exists here.)

    The recorded run is replayed as a function of per-sample weights w,

        θ_{t+1}(w) = θ_t(w) − (η_t/|S_t|) Σ_{i∈S_t} w_i ∇f_i(θ_t(w)),   f_i = ℓ_i + (α/2)‖θ‖²,

    from the recorded θ_0 with the recorded batches and step sizes, and ``torch.func.grad`` differentiates
    the target loss L(θ_T(w)) with respect to w through all T steps (second derivatives of the f_i
    included). This is the quantity MAGIC (Ilyas & Engstrom, 2025) computes for a deterministic run —
    the metagradient of the target with respect to the data weights — here for plain SGD. Its negative
    is the first-order estimate of L(θ^{-j}_T) − L(θ_T) (sign as every score of this package), and it
    equals :func:`sgd_ie` exactly: SGD-IE's backward recursion u_t = (I − η_t H_t) u_{t+1} is this
    reverse-mode sweep written out (the test suite checks the two to 1e-10). ACC-SGD-IE is the
    one-step-more-accurate counterpart (it drops j's own curvature after j's removal).

    Cost: the whole run's graph is kept, O(T · p) memory, so this is a reference for small runs;
    :func:`sgd_ie` computes the same numbers with T Hessian-vector products and O(p) memory.

    Returns
    -------
    np.ndarray (n_train,) of −∂L/∂w_j.
    """
    from influence.optim import is_plain_sgd

    if traj.thetas.ndim != 2:
        raise ValueError("metagradient needs a single recorded run")
    dtype, dev = traj.thetas.dtype, traj.thetas.device
    X, y = as_tensors(train_data, dtype, dev)
    Xt, yt = as_tensors(target_data, dtype, dev)
    model, l2 = traj.model, float(traj.l2)
    opt = None if is_plain_sgd(getattr(traj, "optimizer", None)) else traj.optimizer
    batches = [torch.as_tensor(S, dtype=torch.long) for S in traj.batches()]
    lrs = [float(a) for a in traj.lrs()]
    theta0 = traj.thetas[0].detach()

    def target_loss(w: torch.Tensor) -> torch.Tensor:
        th = theta0
        state = None if opt is None else opt.init(th[None])
        for t, (S, lr) in enumerate(zip(batches, lrs, strict=True)):
            wS = w[S]

            def batch_objective(th_: torch.Tensor, wS: torch.Tensor = wS, S: torch.Tensor = S) -> torch.Tensor:
                return ((wS * model.losses(th_, X[S], y[S])).sum() + 0.5 * l2 * wS.sum() * th_.dot(th_)) / len(S)

            g = torch.func.grad(batch_objective)(th)
            if opt is None:
                th = th - lr * g
            else:
                th, state = opt.step(th[None], g[None], state, lr, t)
                th = th[0]
        return model.loss(th, Xt, yt)

    w1 = torch.ones(X.shape[0], dtype=dtype, device=X.device)
    return (-torch.func.grad(target_loss)(w1)).detach().cpu().numpy()
