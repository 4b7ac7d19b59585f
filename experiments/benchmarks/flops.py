"""Replay engines against the machine's own limit: GEMM peak, analytic FLOP counts, fraction of peak (issue 26 item 3).

Three things, used by ``bench_loo.py``, ``bench_estimators.py`` and ``summary.py``:

* :func:`gemm_peak`: the machine's measured dense matrix-multiply rate, best of a few square ``torch.mm`` calls
  (n = 2048 by default) in float64 or float32 at a given thread count. The thread count is set with
  ``torch.set_num_threads``: that is what governs torch's GEMM here (MKL is linked into libtorch and threaded with
  OpenMP, so threadpoolctl does not list MKL; it lists numpy's / scipy's OpenBLAS and torch's libgomp, and limiting
  libgomp through it changes torch's thread count too; :func:`blas_info` records what it sees).
* The FLOP counts of every replay engine, derived from the algorithm (the formulas are in each function's
  docstring). Convention: the FLOPs of the dense products the engine issues, 2·a·b·c for an (a × b)·(b × c)
  product (``mm``, ``addmm``, ``bmm``, ``baddbmm``, their in-place forms, and ``@`` / ``einsum`` where they lower to
  those) — what ``torch.utils.flop_counter.FlopCounterMode`` counts (:func:`counter` adds the in-place ``addmm_``
  and ``baddbmm_``, which it misses); ``tests/test_bench_summary.py`` checks every formula against that counter on
  small runs of the engines themselves. Elementwise work (sigmoid, softmax,
  scaling), matrix-vector and dot products, gathers and the Python around them are not counted: they are where
  the time that does not reach the peak goes (:func:`time_split` measures it).
* Achieved FLOP/s = counted FLOPs / measured time, and its fraction of the peak at the same dtype and thread count.

"Closed-form engines" (issue 26 item 3's goal, ≥ 50 % of the GEMM peak): the logistic-regression replays of
:mod:`influence.train` (``_LinearReplay``, two GEMMs per step; ``_DualLinearReplay``, one GEMM per step against the
Gram matrix) that ``trajectory_loo`` and ``lds_ground_truth`` use, and the logistic-regression adjoints of SGD-IE /
ACC-SGD-IE (``_LogregStep``). The MLP paths (``Model.batch_grad`` or closed-form ``_MLPReplay`` replays, the
R-operator adjoints ``_MLPStep``) are counted and reported without the goal.

Run as a script it writes (``kind``) the peak table (``peak``: float64 and float32 at one thread and at all), the LDS
retraining and the SGD-IE / ACC-SGD-IE adjoints at one thread on ``bench_estimators``' logistic-regression cases
(``engine``), and where the time of the closed-form engines goes (``profile``, :func:`time_split`):

    python experiments/benchmarks/flops.py [--out results/benchmarks/flops.csv] [--threads 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("bench_flops")

#: ATen ops whose time counts as GEMM in :func:`time_split` (the ops the FLOP counts cover).
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::baddbmm_")
#: Matrix-vector and dot products (not counted as FLOPs: bandwidth-bound).
GEMV_OPS = ("aten::mv", "aten::dot", "aten::addmv", "aten::addmv_", "aten::vdot")


# ------------------------------------------------------------------------------------------------ the peak
def blas_info() -> str:
    """Which BLAS / thread pools govern torch's GEMM here, in one line."""
    parts = [f"torch {torch.__version__}", f"MKL {'yes' if torch.backends.mkl.is_available() else 'no'}",
             f"torch threads {torch.get_num_threads()}"]
    try:
        from threadpoolctl import threadpool_info

        parts.append("threadpoolctl sees " + ", ".join(f"{i['internal_api']} ({i['num_threads']} threads)"
                                                       for i in threadpool_info()))
    except ImportError:
        parts.append("threadpoolctl not installed")
    return "; ".join(parts)


def gemm_peak(dtype: torch.dtype = torch.float64, threads: int | None = None, n: int = 2048, repeats: int = 3) -> dict:
    """Measured GEMM rate: the best of ``repeats`` n × n ``torch.mm`` calls (after one warm-up), at ``threads``
    torch threads (None: the current setting; restored afterwards). Returns GFLOP/s = 2n³ / best time / 1e9 with
    the setting it was measured at. The time is the process CPU time when single-threaded (``basis`` 'cpu': the
    time the core spent on it, what the engines are judged on at one thread, so that other jobs on a shared
    machine slow neither side), else the wall time (``basis`` 'wall'); ``best_wall_s`` is always the wall time."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g, dtype=dtype)
        b = torch.randn(n, n, generator=g, dtype=dtype)
        c = torch.empty(n, n, dtype=dtype)
        torch.mm(a, b, out=c)
        used = torch.get_num_threads()
        best_wall = best_cpu = math.inf
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            torch.mm(a, b, out=c)
            best_wall = min(best_wall, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    finally:
        torch.set_num_threads(old)
    on_cpu = used == 1 and best_cpu > 0
    best = best_cpu if on_cpu else best_wall
    return {"dtype": str(dtype).replace("torch.", ""), "threads": used, "n": n, "repeats": repeats, "best_s": best,
            "basis": "cpu" if on_cpu else "wall", "best_wall_s": best_wall, "gflops": 2.0 * n**3 / best / 1e9,
            "load_avg_1m": os.getloadavg()[0]}


def fraction(gflop: float, seconds: float, peak_gflops: float) -> tuple[float, float]:
    """(achieved GFLOP/s, fraction of the peak) for ``gflop`` counted FLOPs (in 1e9) done in ``seconds``."""
    if not (seconds > 0 and math.isfinite(seconds) and math.isfinite(gflop)):
        return math.nan, math.nan
    rate = gflop / seconds
    return rate, rate / peak_gflops if peak_gflops > 0 else math.nan


# ------------------------------------------------------------------------------------------------ counting
def mm(a: int, b: int, c: int) -> int:
    """FLOPs of an (a × b)·(b × c) product: 2abc (one multiply and one add per term)."""
    return 2 * int(a) * int(b) * int(c)


def counter() -> Any:
    """``FlopCounterMode`` (no display) that also counts the in-place ``addmm_`` and ``baddbmm_`` (2abc per
    product, as their out-of-place forms)."""
    from torch.utils.flop_counter import FlopCounterMode

    def addmm_inplace(self_shape: Any, a: Any, b: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
        return mm(a[0], a[1], b[1])

    def baddbmm_inplace(self_shape: Any, a: Any, b: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
        return a[0] * mm(a[1], a[2], b[2])

    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_inplace,
                                                          torch.ops.aten.baddbmm_: baddbmm_inplace})


def _layers(widths: Sequence[int]) -> list[tuple[int, int]]:
    return list(zip(widths[:-1], widths[1:], strict=True))


def forward_flops(widths: Sequence[int], rows: int) -> int:
    """Logits of ``rows`` inputs through the layers of ``widths`` (d, h_1, …, o): Σ_l 2·rows·w_l·w_{l+1}."""
    return sum(mm(rows, a, b) for a, b in _layers(widths))


def grad_flops(widths: Sequence[int], rows: int) -> int:
    """One reverse-mode gradient of a loss of ``rows`` samples with respect to the parameters (not the inputs):
    forward Σ_l 2·rows·w_l·w_{l+1}, weight gradients the same again, input gradients for the layers l ≥ 1 once
    more: Σ_l 2·rows·w_l·w_{l+1}·(2 if l = 0 else 3)."""
    return sum(mm(rows, a, b) * (2 if i == 0 else 3) for i, (a, b) in enumerate(_layers(widths)))


def linear_replay_flops(n: int, d: int, o: int, k: int, batch_sizes: Sequence[int], engine: str,
                        n_recorded: int = 1) -> int:
    """k logistic-regression replays through ``influence.train``'s closed-form engines (o logits, d features,
    n samples, the batch sizes m_t of the T steps, θ formed at ``n_recorded`` steps).

    * ``'primal'`` (``_LinearReplay``): per step the logits Z = X_S [W_1; …; W_k]ᵀ and the update
      W ← c W − η Rᵀ X_S, two GEMMs of m_t × d × k·o: Σ_t 4·m_t·d·k·o.
    * ``'dual'`` (``_DualLinearReplay``): the Gram matrix X Xᵀ (2n²d) and Z₀ = X W₀ᵀ (2ndo) once, per step
      K[S] A, an (m_t × n)·(n × k·o) GEMM, and θ = Aᵀ X (2·k·o·n·d) at each recorded step:
      2n²d + 2ndo + Σ_t 2·m_t·n·k·o + n_recorded·2·k·o·n·d.
    """
    if engine == "primal":
        return sum(2 * mm(m, d, k * o) for m in batch_sizes)
    if engine == "dual":
        return mm(n, d, n) + mm(n, d, o) + sum(mm(m, n, k * o) for m in batch_sizes) + n_recorded * mm(k * o, n, d)
    raise ValueError(f"engine must be 'primal' or 'dual', got {engine!r}")


def generic_replay_flops(widths: Sequence[int], k: int, batch_sizes: Sequence[int]) -> int:
    """k replays of an MLP: one batch gradient per run and step, Σ_t k·:func:`grad_flops`(widths, m_t) — the same
    count for ``Model.batch_grad`` (``vmap(grad)``) and for the closed-form ``_MLPReplay`` of ``influence.train``
    where it exists (per layer the forward GEMM, the weight-gradient GEMM and, for l ≥ 1, the delta GEMM)."""
    return sum(k * grad_flops(widths, m) for m in batch_sizes)


def replay_engine(model: Any, n: int, k: int, schedule: Any, n_recorded: int = 1,
                  dtype: torch.dtype = torch.float64) -> str:
    """The engine ``influence.train.train`` picks for k plain-SGD runs without a callback: ``'primal'`` / ``'dual'``
    (its own ``_linear_engine``, for logistic regression), ``'mlp'`` (its closed-form ``_MLPReplay``, where that
    exists and is on) or ``'generic'`` (``Model.batch_grad``)."""
    if not model.is_linear:
        from influence import models
        from influence import train as train_mod

        closed = getattr(models, "_closed_form_mlp", None)
        on = getattr(train_mod, "_MLP_ENGINE", False) and closed is not None and closed(model)
        return "mlp" if on else "generic"
    from influence.train import _linear_engine

    return _linear_engine(model, torch.empty((n, model.n_features), dtype=dtype, device="meta"), k, schedule,
                          n_recorded)


def train_flops(model: Any, n: int, k: int, schedule: Any, n_recorded: int = 1,
                dtype: torch.dtype = torch.float64) -> tuple[int, str]:
    """(FLOPs, engine) of ``train(model, θ₀, data, schedule, weights=(k, n), record=…)`` with ``n_recorded``
    recorded steps after step 0 (``record='final'``: 1)."""
    sizes = [len(S) for S in schedule.batches()]
    engine = replay_engine(model, n, k, schedule, n_recorded, dtype)
    if engine in ("generic", "mlp"):
        return generic_replay_flops(model.widths, k, sizes), engine
    return linear_replay_flops(n, model.n_features, model.n_out, k, sizes, engine, n_recorded), engine


def _chunks(total: int, chunk: int) -> list[int]:
    return [min(chunk, total - s) for s in range(0, total, chunk)]


def trajectory_loo_flops(model: Any, n: int, n_target: int, schedule: Any, chunk: int = 128,
                         n_indices: int | None = None) -> tuple[int, str]:
    """(FLOPs, engine of the chunks) of ``influence.loo.trajectory_loo`` in float64: the base replay (k = 1),
    the base target losses (:func:`forward_flops` of n_target rows), then per chunk of k replays
    :func:`train_flops` (k runs, θ at the last step) and their target losses (forward of k·n_target rows)."""
    idx = n if n_indices is None else n_indices
    base, _ = train_flops(model, n, 1, schedule)
    total = base + forward_flops(model.widths, n_target)
    engines = []
    for k in _chunks(idx, chunk):
        f, engine = train_flops(model, n, k, schedule)
        total += f + forward_flops(model.widths, k * n_target)
        engines.append(engine)
    return total, (engines[0] if engines else "none")


def lds_flops(model: Any, n: int, n_target: int, schedules: Sequence[Any], m: int, chunk: int = 64,
              dtype: torch.dtype = torch.float64) -> tuple[int, str]:
    """(FLOPs, engine of the first chunk) of ``influence.loo.lds_ground_truth`` with m subsets and one run per
    schedule: per run and chunk of k subsets, :func:`train_flops` (k runs) plus the target losses (forward of
    k·n_target rows)."""
    total, engines = 0, []
    for sched in schedules:
        for k in _chunks(m, chunk):
            f, engine = train_flops(model, n, k, sched, 1, dtype)
            total += f + forward_flops(model.widths, k * n_target)
            engines.append(engine)
    return total, (engines[0] if engines else "none")


# ------------------------------------------------------------------------ SGD-IE / ACC-SGD-IE adjoints
def _adjoint_parts(model: Any) -> dict[str, Callable[..., int]]:
    """Per-step FLOPs of the adjoint step objects of :mod:`influence.estimators.sgd_ie`:
    ``init(m)`` (the shared forward / backward of the batch), ``hvp(k, m)`` (k directions contracted),
    ``shared(r)`` (⟨u, ∇ℓ_i⟩ for r batch members), ``dots(r)`` (paired ⟨V_r, ∇ℓ_{pos_r}⟩)."""
    w = model.widths
    if model.is_linear:
        d1, o = model.n_features + 1, model.n_out
        # _LogregStep, internal layout (o, d+1): z = X̃_S Θᵀ; U X̃_Sᵀ and the in-place addmm_ with X̃_S; X̃[pos] uᵀ;
        # dots are elementwise
        return {"init": lambda m: mm(m, d1, o), "hvp": lambda k, m: 2 * mm(k * o, d1, m),
                "shared": lambda r: mm(r, d1, o), "dots": lambda r: 0}
    layers = _layers(w)
    # _MLPStep: forward h_l W_lᵀ per layer and backward deltas δ_l W_l for l ≥ 1; the R-pass of k directions
    # is 2 GEMMs in layer 0 (V_0 h_0ᵀ, R(δ_0)ᵀ h_0) and 6 in every later layer (V_l h_lᵀ, R(h_l) W_lᵀ,
    # R(δ_l)ᵀ h_l, δ_lᵀ R(h_l), R(δ_l) W_l, δ_l V_l), each k·m·w_l·w_{l+1} multiply-adds
    return {"init": lambda m: sum(mm(m, a, b) * (1 if i == 0 else 2) for i, (a, b) in enumerate(layers)),
            "hvp": lambda k, m: sum(mm(k * m, a, b) * (2 if i == 0 else 6) for i, (a, b) in enumerate(layers)),
            "shared": lambda r: sum(mm(r, b, a) for a, b in layers),
            # dots: einsum("rj,rji,ri->r") lowers to a batched (r × w_{l+1} × w_l) product, then a batched dot
            # over w_{l+1} (an elementwise product where w_{l+1} = 1)
            "dots": lambda r: sum(mm(r, b, a) + (mm(r, b, 1) if b > 1 else 0) for a, b in layers)}


def adjoint_flops(model: Any, batches: Sequence[np.ndarray], n: int, n_target: int, *, acc: bool,
                  chunk: int | None = None) -> int:
    """FLOPs of the backward (adjoint) form of SGD-IE (``acc=False``) or ACC-SGD-IE (``acc=True``, all samples,
    no truncation, all-epoch removal), :func:`influence.estimators.sgd_ie._backward`, as it runs.

    ∇L(θ_T) on the n_target targets (:func:`grad_flops`). Then per chunk of samples (ACC: ``chunk`` samples
    whose adjoints are held at once, ordered by their last occurrence a_j; SGD-IE: one pass, no per-sample
    adjoints), backwards over t = T−1, …, 0 with m_t = |S_t| and h(k, m) the FLOPs of k Hessian-vector products
    on a batch of m (logistic regression: 2 GEMMs, 4·k·o·m·(d+1); MLP: R-operator, :func:`_adjoint_parts`):

        init(m_t)                      the batch's forward (and, for MLPs, backward) pass
      + h(a_t, m_t)                    the a_t = #{j in the chunk : a_j ≥ t} active per-sample adjoints (ACC)
      + shared(members of S_t not yet active) + dots(members active)
      + h(1, m_t)  for t > 0           the shared adjoint u_t = (I − η_t H_t) u_{t+1}

    SGD-IE is the ACC sum with no active adjoint: Σ_t init + shared(m_t) + Σ_{t>0} h(1, m_t), a chain of
    (o × (d+1))·((d+1) × m) products — matrix-vector shaped for binary logistic regression.
    """
    from influence.estimators.sgd_ie import _chunk_size

    T = len(batches)
    part = _adjoint_parts(model)
    total = grad_flops(model.widths, n_target)
    act = np.full(n, -1, dtype=np.int64)
    if acc:
        for t, S in enumerate(batches):
            act[np.asarray(S)] = t  # the last occurrence wins
    order = np.argsort(-act, kind="stable")
    n_act = int((act >= 0).sum())
    k = _chunk_size(chunk, model.n_params, n)
    chunks = [order[c0 : c0 + k] for c0 in range(0, n_act, k)] or [order[:0]]
    rest = order[n_act:]
    for ci, J in enumerate(chunks):
        Jall = np.concatenate([J, rest]) if ci == 0 else J
        acts = np.sort(act[J])
        colpos = np.full(n, -1, dtype=np.int64)
        colpos[Jall] = np.arange(len(Jall))
        for t in range(T - 1, -1, -1):
            S = np.asarray(batches[t])
            m = len(S)
            nact = int(len(acts) - np.searchsorted(acts, t, side="left"))  # #{a_j ≥ t}
            rows = colpos[S]
            rows = rows[rows >= 0]
            total += part["init"](m)
            n_sh = int((rows >= nact).sum())
            if n_sh:
                total += part["shared"](n_sh)
            if len(rows) - n_sh:
                total += part["dots"](len(rows) - n_sh)
            if nact:
                total += part["hvp"](nact, m)
            if t > 0:
                total += part["hvp"](1, m)
    return total


def sgd_ie_flops(model: Any, batches: Sequence[np.ndarray], n: int, n_target: int) -> int:
    """FLOPs of ``sgd_ie`` (one shared adjoint): :func:`adjoint_flops` with ``acc=False``."""
    return adjoint_flops(model, batches, n, n_target, acc=False)


def acc_sgd_ie_flops(model: Any, batches: Sequence[np.ndarray], n: int, n_target: int,
                     chunk: int | None = None) -> int:
    """FLOPs of ``acc_sgd_ie`` over all samples (backward form): :func:`adjoint_flops` with ``acc=True``."""
    return adjoint_flops(model, batches, n, n_target, acc=True, chunk=chunk)


ESTIMATOR_FLOPS: dict[str, Callable[..., int]] = {"sgd_ie": sgd_ie_flops, "acc_sgd_ie": acc_sgd_ie_flops}


def estimator_flops(name: str, model: Any, batches: Sequence[np.ndarray], n: int, n_target: int) -> float:
    """Counted FLOPs of estimator ``name`` with its defaults (NaN for an estimator not counted here)."""
    fn = ESTIMATOR_FLOPS.get(name)
    return math.nan if fn is None else float(fn(model, batches, n, n_target))


def estimator_engine(name: str, model: Any) -> str:
    """A short name of the engine an adjoint estimator runs on ('' for the others)."""
    if name not in ESTIMATOR_FLOPS:
        return ""
    return "closed-form logreg adjoint" if model.is_linear else "MLP R-operator adjoint"


# --------------------------------------------------------------------------------------- where the time goes
def time_split(fn: Callable[[], Any], gflop: float = math.nan) -> dict:
    """Run ``fn`` once unprofiled (wall and CPU time) and once under ``torch.profiler``; split the profiled wall time
    into GEMM (:data:`GEMM_OPS`' self time), matrix-vector / dot products, every other ATen op (elementwise,
    softmax, gathers, copies, reductions) and the rest (Python, dispatch, the profiler's own overhead) = wall − Σ
    self time. Also the five other ops that took longest and, given the call's counted ``gflop``, the rate inside
    the GEMMs themselves: ``gemm_gflops`` = gflop / (GEMM share × the unprofiled time), that time being the CPU time
    when single-threaded (the profiler's self times are wall times of the calling thread, which other jobs on a
    shared machine stretch), else the wall time."""
    from torch.profiler import ProfilerActivity, profile

    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        pwall = time.perf_counter() - t0
    gemm = gemv = other = 0.0
    others: list[tuple[float, str]] = []
    for ev in prof.key_averages():
        s = ev.self_cpu_time_total / 1e6
        if ev.key in GEMM_OPS:
            gemm += s
        elif ev.key in GEMV_OPS:
            gemv += s
        elif ev.key.startswith("aten::"):
            other += s
            others.append((s, ev.key))
    others.sort(reverse=True)
    rest = max(pwall - gemm - gemv - other, 0.0)
    return {"wall_s": wall, "cpu_s": cpu, "profiled_wall_s": pwall, "gemm_s": gemm, "gemv_s": gemv,
            "other_ops_s": other, "gflop": gflop,
            "gemm_gflops": gflop / (gemm / pwall * (cpu if torch.get_num_threads() == 1 else wall)) if gemm > 0
            else math.nan,
            "python_s": rest, "gemm_share": gemm / pwall, "gemv_share": gemv / pwall, "other_share": other / pwall,
            "python_share": rest / pwall,
            "top_other": ", ".join(f"{k.replace('aten::', '')} {s / pwall:.0%}" for s, k in others[:5])}


# ------------------------------------------------------------------------------------------------ script
def _logreg_case(dataset: str, n: int, n_target: int, epochs: int):
    from influence.data import load_dataset, make_splits
    from influence.models import logistic_regression
    from influence.train import Schedule, train

    ds = load_dataset(dataset)
    sp = make_splits(ds, n, n_target, 0, seed=0)
    tr, tg = sp["train"], sp["target"]
    model = logistic_regression(tr.n_features, ds.n_classes)
    sched = Schedule(n, 100, epochs, 0.1, seed=0)
    return model, tr, tg, sched, train(model, model.init(0), tr, sched, l2=1e-3)


def _engine_row(case: str, what: str, engine: str, dtype: torch.dtype, gflop: float, fn: Callable[[], Any],
                peaks: dict, closed_form: bool) -> dict:
    threads = torch.get_num_threads()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    dt = str(dtype).replace("torch.", "")
    peak = peaks.get((dt, threads), math.nan)
    rate, frac = fraction(gflop, cpu if threads == 1 else wall, peak)
    row = {"kind": "engine", "case": case, "what": what, "engine": engine, "dtype": dt, "threads": threads,
           "gflop": gflop, "wall_s": wall, "cpu_s": cpu, "gflops": rate, "peak_gflops": peak, "frac_peak": frac,
           "closed_form": closed_form, "load_avg_1m": os.getloadavg()[0]}
    log.info("%s %s (%s, %s, %d threads): %.3g GFLOP in %.3g s wall / %.3g s CPU: %.3g GFLOP/s, %.0f%% of peak",
             case, what, engine, dt, threads, gflop, wall, cpu, rate, 100 * frac)
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/benchmarks/flops.csv")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts of the peak table (default: 1 and all cores); the engines run at the first")
    ap.add_argument("--peak-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test of the pipeline")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from influence.io import save_csv, save_text
    from influence.loo import lds_ground_truth, lds_subsets, trajectory_loo

    threads = args.threads or sorted({1, os.cpu_count() or 1})
    size = 768 if args.quick else args.peak_size
    rows: list[dict] = []
    peaks: dict[tuple[str, int], float] = {}
    info = blas_info()
    log.info("%s", info)
    for t in threads:
        for dtype in (torch.float64, torch.float32):
            p = gemm_peak(dtype, t, size, 2 if args.quick else args.repeats)
            peaks[(p["dtype"], p["threads"])] = p["gflops"]
            rows.append({"kind": "peak", **p, "case": f"gemm {size}", "what": info})
            log.info("GEMM peak %s, %d threads: %.1f GFLOP/s", p["dtype"], p["threads"], p["gflops"])

    torch.set_num_threads(threads[0])
    from influence.estimators.sgd_ie import acc_sgd_ie, sgd_ie

    # one small call of each engine first, so that no row pays for first-call costs (imports, set-up)
    _, trw, tgw, _, trajw = _logreg_case("mnist17", 400, 50, 1)
    for dtype in (torch.float64, torch.float32):
        lds_ground_truth(trajw, trw, tgw, lds_subsets(400, 2, 0.5, seed=0), dtype=dtype)
    trajectory_loo(trajw, trw, tgw, np.arange(4))
    sgd_ie(trajw, trw, tgw)
    acc_sgd_ie(trajw, trw, tgw)
    # LDS retraining of 10-class logistic regression (closed-form engines): float64 and float32
    n, nt, m = (300, 50, 20) if args.quick else (1000, 200, 50)
    model, tr, tg, sched, traj = _logreg_case("mnist5k", n, nt, 3 if args.quick else 20)
    masks = lds_subsets(n, m, 0.5, seed=0)
    for dtype in (torch.float64, torch.float32):
        gf, engine = lds_flops(model, n, nt, [sched], m, dtype=dtype)
        rows.append(_engine_row(f"mnist5k-logreg10-n{n}", f"lds_ground_truth ({m} subsets)", engine, dtype, gf / 1e9,
                                lambda dtype=dtype: lds_ground_truth(traj, tr, tg, masks, dtype=dtype), peaks, True))
    # the SGD-IE / ACC-SGD-IE adjoints at threads[0] on bench_estimators' logistic-regression cases (it runs them at
    # torch's default thread count)
    adjoint_cases = [("mnist17-logreg-n400", "mnist17", 400, 2 if args.quick else 20)]
    if not args.quick:
        adjoint_cases.append(("mnist5k-logreg10-n4000", "mnist5k", 4000, 3))
    for case, dataset, na, epochs in adjoint_cases:
        ma, tra, tga, sa, traja = _logreg_case(dataset, na, 500, epochs)
        for name, fn in (("sgd_ie", sgd_ie), ("acc_sgd_ie", acc_sgd_ie)):
            gf = estimator_flops(name, ma, sa.batches(), na, 500) / 1e9
            rows.append(_engine_row(case, name, estimator_engine(name, ma), torch.float64, gf,
                                    lambda fn=fn, t=traja, a=tra, b=tga: fn(t, a, b), peaks, True))

    # where the rest goes: the time split of the closed-form engines (threads[0]; ACC-SGD-IE also at the last
    # thread count, the one bench_estimators runs it at by default)
    k = min(200, n)
    m17, tr17, tg17, s17, traj17 = _logreg_case("mnist17", 400, 500, 2 if args.quick else 20)
    c5k, c17 = f"mnist5k-logreg10-n{n}", "mnist17-logreg-n400"
    f64, f32 = torch.float64, torch.float32
    splits = [
        (c5k, "LOO replay, one chunk of 200", f64, threads[0], trajectory_loo_flops(model, n, nt, sched, k, k)[0],
         lambda: trajectory_loo(traj, tr, tg, np.arange(k), chunk=k)),
        (c5k, f"LDS retraining ({m} subsets, float32)", f32, threads[0], lds_flops(model, n, nt, [sched], m,
                                                                                   dtype=f32)[0],
         lambda: lds_ground_truth(traj, tr, tg, masks, dtype=f32)),
        (c17, "SGD-IE adjoint", f64, threads[0], sgd_ie_flops(m17, s17.batches(), 400, 500),
         lambda: sgd_ie(traj17, tr17, tg17))]
    for t in dict.fromkeys([threads[0], threads[-1]]):
        splits.append((c17, "ACC-SGD-IE adjoints", f64, t, acc_sgd_ie_flops(m17, s17.batches(), 400, 500),
                       lambda: acc_sgd_ie(traj17, tr17, tg17)))
    for case, what, dtype, t, gf, fn in splits:
        torch.set_num_threads(t)
        sp = time_split(fn, gf / 1e9)
        dt = str(dtype).replace("torch.", "")
        peak = peaks.get((dt, t), math.nan)
        rows.append({"kind": "profile", "case": case, "what": what, "dtype": dt, "threads": t, **sp,
                     "frac_peak": fraction(sp["gflop"], sp["cpu_s"] if t == 1 else sp["wall_s"], peak)[1],
                     "gemm_frac_peak": sp["gemm_gflops"] / peak, "peak_gflops": peak,
                     "load_avg_1m": os.getloadavg()[0]})
        log.info("%s, %s (%d threads): GEMM %.0f%% (at %.0f%% of peak), matrix-vector %.0f%%, other ops %.0f%% "
                 "(%s), Python/dispatch %.0f%% of %.3g s profiled (%.3g s wall, %.3g s CPU unprofiled)", case, what, t,
                 100 * sp["gemm_share"], 100 * sp["gemm_gflops"] / peak, 100 * sp["gemv_share"],
                 100 * sp["other_share"], sp["top_other"], 100 * sp["python_share"], sp["profiled_wall_s"],
                 sp["wall_s"], sp["cpu_s"])
    torch.set_num_threads(threads[0])
    import pandas as pd

    df = pd.DataFrame(rows)
    save_csv(args.out, df, float_format=None)
    save_text(Path(args.out).with_suffix(".md"), df.to_markdown(index=False, floatfmt=".3g") + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
