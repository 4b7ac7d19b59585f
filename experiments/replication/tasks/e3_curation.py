"""E3: online curation under label noise (claims LAI-1 and LAI-3; LAI-4 cost is in the benchmark script).

Train an MLP on a dataset whose training labels carry 40 % cyclic noise (y → y + k mod C), under each
curation policy (:mod:`influence.curation`) and several seeds; return test-accuracy curves (end of every
epoch), the per-step curation logs summarised (kept fraction, fraction of noisy samples dropped, scoring
time, memory) and, for the vanilla run, the per-step Spearman correlation between the LAI and Ghost
scores of the batch (LAI-1). The validation ("target") and test splits are clean.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from influence.capture import capture
from influence.curation import POLICIES, Curator, summarize
from influence.data import as_tensors
from influence.estimators.online import batch_scores
from influence.metrics import spearman
from influence.models import Model, mlp
from influence.train import Schedule, StepInfo, train
from replication.tasks.common import noisy_splits

__all__ = ["run_policy", "run_e3"]

log = logging.getLogger(__name__)


def _n_classes(data: Any, *others: Any) -> int:
    if hasattr(data, "n_classes"):
        return int(data.n_classes)
    return int(max(int(np.asarray(d[1]).max()) for d in (data, *others))) + 1


class _AgreementProbe:
    """Wraps a curator; every ``every`` steps also scores the batch with LAI and Ghost against the same
    fresh target subset and records Spearman(LAI, Ghost). Never changes the weights."""

    def __init__(self, inner: Curator, model: Model, target: tuple[torch.Tensor, torch.Tensor], every: int,
                 target_size: int, seed: int) -> None:
        self.inner, self.model, self.target, self.every = inner, model, target, max(1, int(every))
        self.target_size, self.rng = target_size, np.random.default_rng(seed + 7919)
        self.module = None

    def __call__(self, info: StepInfo) -> dict:
        rec = self.inner(info)
        if info.step % self.every == 0 and len(info.batch) > 2:
            if self.module is None:
                self.module = self.model.to_module(info.theta)
            torch.nn.utils.vector_to_parameters(info.theta, self.module.parameters())
            Xt, yt = self.target
            V = self.rng.choice(Xt.shape[0], size=min(self.target_size, Xt.shape[0]), replace=False)
            cap = capture(self.module, torch.cat([info.x, Xt[V].to(info.x)]), torch.cat([info.y, yt[V]]))
            lai = batch_scores(cap, len(info.batch), "lai").numpy()
            ghost = batch_scores(cap, len(info.batch), "ghost").numpy()
            rec["spearman_lai_ghost"] = spearman(lai, ghost)
        return rec


def run_policy(splits: dict[str, Any], policy: str, *, seed: int = 0, hidden: tuple[int, ...] = (128,),
               epochs: int = 10, batch_size: int = 32, lr: float = 0.1, l2: float = 0.0, warmup_epochs: int = 1,
               target_size: int = 32, dtype: torch.dtype = torch.float32, probe_every: int = 0,
               learned_margin: float = 0.05) -> dict[str, Any]:
    """One curated run; returns accuracy curves, per-step logs, their summary and (``probe_every``) LAI-1 probes.

    ``splits`` holds 'train', 'target', 'test' (``Dataset`` or (X, y)) and optionally 'noise_mask'.
    Test and clean-train accuracy are evaluated at the end of every epoch (θ recorded only there). The run
    *learned* when its final test accuracy is at least the test set's majority-class rate plus
    ``learned_margin`` (the claims table marks claims resting on runs that did not as "invalid run").
    """
    train_d, target_d, test_d = splits["train"], splits["target"], splits["test"]
    X, y = as_tensors(train_d, dtype)
    Xt, yt = as_tensors(target_d, dtype)
    Xs, ys = as_tensors(test_d, dtype)
    C = _n_classes(train_d, target_d, test_d)
    model = mlp(X.shape[1], hidden, C)
    sched = Schedule(n=X.shape[0], batch_size=batch_size, epochs=epochs, lr=lr, seed=seed)
    mask = splits.get("noise_mask")
    cur = Curator(model, (Xt, yt), policy, noise_mask=mask, warmup_epochs=warmup_epochs, target_size=target_size,
                  seed=seed)
    cb = _AgreementProbe(cur, model, (Xt, yt), probe_every, target_size, seed) if probe_every else cur
    record = [k * sched.steps_per_epoch for k in range(epochs + 1)]
    t0 = time.perf_counter()
    traj = train(model, model.init(seed, dtype=dtype), (X, y), sched, l2=l2, callback=cb, record=record)
    wall = time.perf_counter() - t0
    test_acc = [model.accuracy(th, Xs, ys) for th in traj.thetas]
    out: dict[str, Any] = {
        "policy": policy, "seed": seed, "epochs": list(range(epochs + 1)), "test_acc": test_acc,
        "final_test_acc": test_acc[-1], "wall_s": wall, "time_per_step_s": wall / sched.n_steps,
        "majority_acc": float(np.bincount(ys.long().numpy()).max() / len(ys)),
        "summary": summarize(traj.logs),
        "kept_fraction_per_epoch": _per_epoch(traj.logs, "kept_fraction", epochs),
        # per-step logs (without the dropped index lists): kept fraction, noisy counts, scoring time, memory
        "step_logs": {k: [r.get(k) for r in traj.logs] for k in ("step", "epoch", "curating", "kept_fraction",
                                                                "n_noisy", "n_noisy_dropped", "score_time_s",
                                                                "rss_mb", "capture_mb")},
    }
    if mask is not None:
        ytrue = torch.as_tensor(np.asarray(splits["clean_y"])) if "clean_y" in splits else None
        if ytrue is not None:
            out["train_clean_acc"] = [model.accuracy(th, X, ytrue) for th in traj.thetas]
        out["noisy_dropped_per_epoch"] = _ratio_per_epoch(traj.logs, epochs)
    out["learned"] = bool(out["final_test_acc"] >= out["majority_acc"] + learned_margin)
    if probe_every:
        rho = [r["spearman_lai_ghost"] for r in traj.logs if "spearman_lai_ghost" in r]
        out["spearman_lai_ghost"] = rho
        out["spearman_lai_ghost_mean"] = float(np.nanmean(rho)) if rho else float("nan")
    return out


def _per_epoch(logs: list[dict], key: str, epochs: int) -> list[float]:
    return [float(np.mean([r[key] for r in logs if r["epoch"] == k])) if any(r["epoch"] == k for r in logs)
            else float("nan") for k in range(epochs)]


def _ratio_per_epoch(logs: list[dict], epochs: int) -> list[float]:
    out = []
    for k in range(epochs):
        rs = [r for r in logs if r["epoch"] == k]
        n = sum(r["n_noisy"] for r in rs)
        out.append(sum(r["n_noisy_dropped"] for r in rs) / n if n else float("nan"))
    return out


def run_e3(dataset: str = "mnist1d", *, policies: tuple[str, ...] = POLICIES, seeds: tuple[int, ...] = (0, 1, 2),
           n_train: int = 2000, n_target: int = 500, n_test: int = 1000, noise_rate: float = 0.4,
           hidden: tuple[int, ...] = (128,), epochs: int = 10, batch_size: int = 32, lr: float = 0.1,
           l2: float = 0.0, warmup_epochs: int = 1, target_size: int = 32, probe_every: int = 5,
           dtype: torch.dtype = torch.float32, splits: dict[str, Any] | None = None) -> dict[str, Any]:
    """E3 for one dataset: every policy × seed. The split and the noise are drawn with each seed.

    ``splits`` (optional) replaces the data loading (e.g. synthetic data in tests; then all seeds share
    it). The vanilla run also records per-step Spearman(LAI, Ghost) every ``probe_every`` steps (LAI-1).

    Returns {'runs': [run_policy dicts], 'table': per policy mean ± sd of the final test accuracy and
    the summary keys, 'config': the arguments}.
    """
    for p in policies:
        if p not in POLICIES:
            raise ValueError(f"unknown policy {p!r}; use a subset of {POLICIES}")
    runs = []
    for seed in seeds:
        sp = splits if splits is not None else noisy_splits(dataset, n_train=n_train, n_target=n_target,
                                                            n_test=n_test, noise="cyclic",
                                                            noise_rate=noise_rate, seed=seed)
        for p in policies:
            r = run_policy(sp, p, seed=seed, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, l2=l2,
                           warmup_epochs=warmup_epochs, target_size=target_size, dtype=dtype,
                           probe_every=probe_every if p == "vanilla" else 0)
            r["dataset"] = dataset
            log.info("E3 %s seed %d %s: test acc %.4f", dataset, seed, p, r["final_test_acc"])
            runs.append(r)
    table = {}
    for p in policies:
        rs = [r for r in runs if r["policy"] == p]
        acc = np.array([r["final_test_acc"] for r in rs])
        row = {"acc_mean": float(acc.mean()), "acc_sd": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
               "n_seeds": len(acc), "time_per_step_s": float(np.mean([r["time_per_step_s"] for r in rs]))}
        for key in ("kept_fraction", "noisy_dropped_fraction", "clean_dropped_fraction", "dropped_noisy_precision",
                    "score_time_s", "max_rss_mb", "capture_mb"):
            vals = [r["summary"][key] for r in rs if key in r["summary"]]
            if vals:
                row[key] = float(np.mean(vals))
        if p == "vanilla" and probe_every:
            row["spearman_lai_ghost"] = float(np.nanmean([r["spearman_lai_ghost_mean"] for r in rs]))
        table[p] = row
    config = {"dataset": dataset, "policies": list(policies), "seeds": list(seeds), "n_train": n_train,
              "n_target": n_target, "n_test": n_test, "noise_rate": noise_rate, "hidden": list(hidden),
              "epochs": epochs, "batch_size": batch_size, "lr": lr, "l2": l2, "warmup_epochs": warmup_epochs,
              "target_size": target_size, "probe_every": probe_every, "dtype": str(dtype)}
    return {"runs": runs, "table": table, "config": config}
