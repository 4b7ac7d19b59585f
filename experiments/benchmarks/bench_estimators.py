"""Benchmark: time, peak memory and agreement with trajectory LOO of every trajectory estimator.

Timing cases (issue 3): binary logistic regression on mnist17 (n = 400, batch 100, 20 epochs, η = 0.1)
and, on mnist5k with n = 4000, 10-class logistic regression and an MLP 784-128-10. Every registered
estimator is called through :func:`influence.estimators.run` (wall time and peak RSS; ``cpu_s``, the
process CPU time of the call, is the figure to read on a shared machine when single-threaded); an estimator
that raises (e.g. it needs hyperparameters, or is still in progress) is skipped with the reason logged.
Issue 15 goal: ``diffin_self`` on the MLP case ≤ 20 s.
Against the machine's own limit (issue 26 item 3): for the SGD-IE and ACC-SGD-IE adjoints, ``gflop`` (FLOPs counted
from the algorithm, :func:`flops.adjoint_flops`), ``gemm_peak_gflops`` (the float64 GEMM rate measured in the same
process at the same thread count, :func:`flops.gemm_peak`), ``gflops`` and ``frac_peak`` (CPU time when
single-threaded, else wall time); ``closed_form`` marks the logistic-regression adjoints (goal ≥ 50 %).
Agreement: on the n = 400 mnist17 run, the prefixes after 2, 10 and 38 epochs are scored and compared
with ``trajectory_loo`` of the same prefix (Kendall τ, Spearman, top-10 % Jaccard; for SGD-IE and
ACC-SGD-IE also the relative parameter error Σ‖Δθ̂ − Δθ‖ / Σ‖Δθ‖).

Without ``influence.data`` (or its files) the script falls back to Gaussian-blob data of the same
shapes and says so in the log and in the ``data`` column.

    python experiments/benchmarks/bench_estimators.py [--out results/benchmarks/estimators.csv]
        [--estimators sgd_ie acc_sgd_ie] [--large-epochs 3] [--no-timing] [--no-agreement]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from flops import estimator_engine, estimator_flops, fraction, gemm_peak

from influence import estimators
from influence.io import atomic_write, save_text
from influence.loo import trajectory_loo
from influence.metrics import jaccard_top, kendall, spearman
from influence.models import logistic_regression, mlp
from influence.train import Schedule, Trajectory, train

log = logging.getLogger("bench_estimators")

TIMING_CASES = {
    "mnist17-logreg-n400": dict(dataset="mnist17", n=400, hidden=(), batch=100, epochs=20, lr=0.1, l2=1e-3),
    "mnist5k-logreg10-n4000": dict(dataset="mnist5k", n=4000, hidden=(), batch=100, epochs=None, lr=0.1, l2=1e-3),
    "mnist5k-mlp128-n4000": dict(dataset="mnist5k", n=4000, hidden=(128,), batch=100, epochs=None, lr=0.1,
                                 l2=1e-3),
}
AGREEMENT_CASE = dict(dataset="mnist17", n=400, hidden=(), batch=100, lr=0.1, l2=1e-3)
PARAM_ESTIMATORS = {"sgd_ie": "sgd_ie_params", "acc_sgd_ie": "acc_sgd_ie_params"}


def load(dataset: str, n: int, n_target: int, seed: int = 0) -> tuple[Any, Any, str]:
    """(train, target, data description); Gaussian blobs of the same shape if the dataset is missing."""
    try:
        from influence.data import load_dataset, make_splits

        ds = load_dataset(dataset)
        sp = make_splits(ds, n, n_target, 0, seed=seed)
        return sp["train"], sp["target"], dataset
    except Exception as exc:  # noqa: BLE001 - any failure means: use the synthetic stand-in
        log.warning("dataset %s unavailable (%s: %s); using synthetic blobs of the same shape", dataset,
                    type(exc).__name__, exc)
    d, C = 784, (2 if dataset == "mnist17" else 10)
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(C, d, generator=g, dtype=torch.float64)

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, C, (m,), generator=g)
        return (centers[y] + 0.5 * torch.rand(m, d, generator=g, dtype=torch.float64)).clamp(0, 1), y

    return draw(n), draw(n_target), f"synthetic-{dataset}-shape"


def make_model(tr: Any, hidden: tuple[int, ...]):
    X, y = (tr.X, tr.y) if hasattr(tr, "X") else tr
    d, C = int(X.shape[1]), int(getattr(tr, "n_classes", int(y.max()) + 1))
    C = max(C, 2)
    return mlp(d, hidden, C) if hidden else logistic_regression(d, C)


def prefix(traj: Trajectory, epochs: int) -> Trajectory:
    sched = traj.schedule.with_epochs(epochs)
    T = sched.n_steps
    return Trajectory(traj.model, sched, traj.l2, traj.thetas[: T + 1], traj.steps[: T + 1], traj.losses[:T])


def too_expensive(name: str, traj: Trajectory, max_hvps: float) -> str | None:
    """Reason to skip ACC-SGD-IE on a non-linear model when n·T HVPs exceed the budget."""
    if name == "acc_sgd_ie" and not traj.model.is_linear:
        hvps = traj.schedule.n * traj.n_steps
        if hvps > max_hvps:
            return f"ACC-SGD-IE on an MLP needs about n·T = {hvps:.2g} Hessian-vector products (> --max-hvps " \
                   f"{max_hvps:.2g}); run it on a GPU or raise --max-hvps"
    return None


def timing(names: list[str], large_epochs: int, max_hvps: float, peak: float = math.nan) -> list[dict]:
    rows = []
    for case, cfg in TIMING_CASES.items():
        tr, tg, data = load(cfg["dataset"], cfg["n"], 500)
        model = make_model(tr, cfg["hidden"])
        epochs = cfg["epochs"] or large_epochs
        traj = train(model, model.init(0), tr, Schedule(cfg["n"], cfg["batch"], epochs, cfg["lr"], seed=0),
                     l2=cfg["l2"])
        log.info("%s: %s, p = %d, T = %d steps", case, data, model.n_params, traj.n_steps)
        for name in names:
            row = {"kind": "timing", "case": case, "data": data, "estimator": name, "n": cfg["n"],
                   "p": model.n_params, "epochs": epochs, "steps": traj.n_steps}
            reason = too_expensive(name, traj, max_hvps)
            if reason is None:
                try:
                    c0 = time.process_time()
                    _, rec = estimators.run(name, traj, tr, tg)
                    row.update(wall_s=rec["wall_s"], cpu_s=time.process_time() - c0, peak_rss_mb=rec["peak_rss_mb"],
                               peak_delta_mb=rec["peak_delta_mb"], status="ok", threads=torch.get_num_threads(),
                               load_avg_1m=os.getloadavg()[0])
                    log.info("  %-20s %8.2f s (cpu %.2f s)  peak +%.0f MB", name, rec["wall_s"], row["cpu_s"],
                             rec["peak_delta_mb"])
                    engine = estimator_engine(name, model)
                    if engine:
                        n_target = int((tg.X if hasattr(tg, "X") else tg[0]).shape[0])
                        gflop = estimator_flops(name, model, traj.batches(), cfg["n"], n_target) / 1e9
                        single = row["threads"] == 1
                        rate, frac = fraction(gflop, row["cpu_s"] if single else row["wall_s"], peak)
                        row.update(engine=engine, closed_form=model.is_linear, gflop=gflop, gemm_peak_gflops=peak,
                                   gflops=rate, frac_peak=frac)
                        log.info("  %-20s %.3g GFLOP: %.3g GFLOP/s, %.0f%% of the %.3g GFLOP/s GEMM peak", name,
                                 gflop, rate, 100 * frac, peak)
                except Exception as exc:  # noqa: BLE001 - report and go on with the next estimator
                    reason = f"{type(exc).__name__}: {exc}"
            if reason is not None:
                log.warning("  %-20s skipped: %s", name, reason)
                row.update(status="skipped", reason=reason)
            rows.append(row)
    return rows


def agreement(names: list[str], epochs_list: list[int]) -> list[dict]:
    cfg = AGREEMENT_CASE
    tr, tg, data = load(cfg["dataset"], cfg["n"], 200)
    model = make_model(tr, cfg["hidden"])
    full = train(model, model.init(0), tr, Schedule(cfg["n"], cfg["batch"], max(epochs_list), cfg["lr"], seed=0),
                 l2=cfg["l2"])
    rows = []
    for K in sorted(epochs_list):
        traj = prefix(full, K)
        loo = trajectory_loo(traj, tr, tg)
        log.info("agreement at %d epochs: LOO %.1f s", K, loo.meta["wall_s"])
        for name in names:
            row = {"kind": "agreement", "case": f"mnist17-logreg-n400-K{K}", "data": data, "estimator": name,
                   "n": cfg["n"], "p": model.n_params, "epochs": K, "steps": traj.n_steps}
            try:
                s, rec = estimators.run(name, traj, tr, tg)
                row.update(kendall=kendall(s, loo.loss_change), spearman=spearman(s, loo.loss_change),
                           jaccard_top10=jaccard_top(s, loo.loss_change, 10), wall_s=rec["wall_s"], status="ok")
                if name in PARAM_ESTIMATORS:
                    from influence.estimators import sgd_ie as mod

                    est = getattr(mod, PARAM_ESTIMATORS[name])(traj, tr)
                    row["rel_param_err"] = float(np.linalg.norm(est - loo.delta_theta, axis=1).sum()
                                                 / np.linalg.norm(loo.delta_theta, axis=1).sum())
                log.info("  %-20s tau %.3f  rho %.3f  J10 %.3f", name, row["kendall"], row["spearman"],
                         row["jaccard_top10"])
            except Exception as exc:  # noqa: BLE001
                log.warning("  %-20s skipped: %s: %s", name, type(exc).__name__, exc)
                row.update(status="skipped", reason=f"{type(exc).__name__}: {exc}")
            rows.append(row)
    return rows


def markdown(df: pd.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    parts = []
    for kind, cols in (("timing", ["case", "data", "estimator", "p", "epochs", "wall_s", "cpu_s", "peak_delta_mb",
                                   "gflops", "frac_peak", "status", "reason"]),
                       ("agreement", ["case", "estimator", "epochs", "kendall", "spearman", "jaccard_top10",
                                      "rel_param_err", "wall_s", "status"])):
        sub = df[df["kind"] == kind]
        if sub.empty:
            continue
        cols = [c for c in cols if c in sub.columns]
        parts.append(f"### {kind}\n\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for _, r in sub.iterrows():
            parts.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
        parts.append("")
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/benchmarks/estimators.csv", help="CSV path (a .md table goes next to it)")
    ap.add_argument("--estimators", nargs="*", default=None, help="names (default: every registered estimator)")
    ap.add_argument("--large-epochs", type=int, default=3, help="epochs of the n = 4000 runs")
    ap.add_argument("--agreement-epochs", type=int, nargs="*", default=[2, 10, 38])
    ap.add_argument("--max-hvps", type=float, default=2e5, help="skip ACC-SGD-IE on MLPs above n·T HVPs")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-agreement", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--peak-size", type=int, default=2048, help="n of the n × n float64 GEMM of the peak")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.estimators or estimators.names()
    unknown = set(names) - set(estimators.names())
    if unknown:
        raise SystemExit(f"unknown estimators: {sorted(unknown)}; known: {estimators.names()}")
    log.info("estimators: %s; torch threads %d", names, torch.get_num_threads())
    rows: list[dict] = []
    if not args.no_timing:
        peak = gemm_peak(torch.float64, None, args.peak_size)
        log.info("float64 GEMM peak at %d threads: %.1f GFLOP/s", peak["threads"], peak["gflops"])
        rows += timing(names, args.large_epochs, args.max_hvps, peak["gflops"])
    if not args.no_agreement:
        rows += agreement(names, args.agreement_epochs)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    atomic_write(out, df.to_csv(index=False).encode())
    md = markdown(df)
    save_text(out.with_suffix(".md"), md)
    log.info("results\n%s", md)
    log.info("wrote %s and %s", out, out.with_suffix(".md"))


if __name__ == "__main__":
    main()
