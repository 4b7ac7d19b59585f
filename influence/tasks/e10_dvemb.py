"""E10: Data Value Embedding's MNIST-MLP protocol, every trajectory estimator on the same recorded run.

The protocol of DVEmb (Wang, Mittal, Song, Jia, ICLR 2025, arXiv 2412.09538, App. E.1 and Fig. 3): an MLP
with two hidden layers of 128 trained by plain SGD (lr 1e-2) on 10 % of MNIST; 100 random training points;
their exact trajectory-specific leave-one-out, removed either at every occurrence (*all-epoch removal*)
or only at the occurrence in the last epoch (*single-epoch removal*); Spearman correlation of estimate and
ground truth. Here:

- data: ``mnist5k`` (5000 real MNIST images, ≈ 8 % of MNIST; the default config uses a subset of it, see
  ``DEFAULT``); target set: held-out images; batch size 64 (the value of dattri's DVEmb example, which
  follows the authors; the paper's appendix does not state it) — recorded in every output;
- ground truth: :func:`influence.loo.trajectory_loo` (vectorised masked replays, float64), both removal modes;
- metrics per removal mode: the *per-target* Spearman (for each target image, Spearman across the 100
  points of the estimated and actual change of that image's loss, averaged over the images — the metric of
  DVEmb's and dattri's evaluation) for the estimators with per-target scores, and, for every estimator,
  Spearman / Kendall / Pearson / RMSE on the change of the mean target loss (the convention of E1);
- estimators on the same run: SGD-IE and ACC-SGD-IE (forward forms restricted to the 100 points: their
  parameter changes Δθ̂_j, dotted with each target gradient), our DVEmb (exact embeddings of the 100 points,
  :func:`influence.estimators.dvemb.dvemb_params`), dattri's ``DVEmbAttributor`` fed the recorded run
  (random projection, as its example), and the registry's TracIn, influence functions, Diff-In (both forms)
  and in-run Ghost for the mean target loss. Single-epoch removal has a first-order counterpart only for the
  unrolled methods (SGD-IE = ACC-SGD-IE there, DVEmb, dattri's DVEmb with ``epoch``); the others are scored
  against it with their all-epoch scores, as in DVEmb's Fig. 3;
- LDS: random half subsets of the whole training set retrained from the *same* θ₀ with the *same* batch
  order (masked, trajectory-specific, the setting of MAGIC / DVEmb) and, beside it, averaged over runs
  with other seeds (multi-seed), both on the mean target loss.

DVEmb's published Spearman (Fig. 3, MLP): 3 epochs 0.747 (single-epoch) / 0.736 (all-epoch); 10 epochs
0.830 / 0.715 (``PUBLISHED``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from scipy import stats

from influence import estimators
from influence.autodiff import per_sample_grads
from influence.data import as_tensors, load_dataset, make_splits
from influence.estimators.dvemb import dvemb_params
from influence.estimators.sgd_ie import acc_sgd_ie_params, sgd_ie_params
from influence.loo import lds, lds_ground_truth, lds_subsets, trajectory_loo
from influence.models import mlp
from influence.provenance import measure
from influence.train import Schedule, Trajectory, train

__all__ = ["DEFAULT", "PUBLISHED", "REMOVALS", "check_dvemb_config", "setup", "run_protocol", "per_target_spearman"]

log = logging.getLogger(__name__)
os.environ.setdefault("TQDM_DISABLE", "1")

REMOVALS = ("all_epoch", "single_epoch")

# DVEmb, ICLR 2025, Fig. 3 (MLP on MNIST): Spearman with trajectory LOO of 100 training points.
PUBLISHED: list[dict[str, Any]] = [
    {"epochs": 3, "removal": "single_epoch", "spearman": 0.747},
    {"epochs": 3, "removal": "all_epoch", "spearman": 0.736},
    {"epochs": 10, "removal": "single_epoch", "spearman": 0.830},
    {"epochs": 10, "removal": "all_epoch", "spearman": 0.715},
]

DEFAULT: dict[str, Any] = {
    "dataset": "mnist5k", "n_train": 4000, "n_target": 500, "split_seed": 0, "hidden": [128, 128],
    "batch_size": 64, "lr": 0.01, "n_points": 100, "points_seed": 0,
    # first-order unrolled methods with per-target scores (forward forms on the points)
    "unrolled": ["sgd_ie", "acc_sgd_ie", "dvemb"],
    # registry estimators scored for the mean target loss (all n training samples, so also LDS)
    "registry": ["sgd_ie", "dvemb", "tracin", "influence_function", "diffin", "diffin_paper", "ghost", "random"],
    # influence functions at θ_T with the default damping (1e-2 plus −λ_min(H) when H is indefinite)
    "hparams": {"influence_function": {"solver": "cg", "cg_maxiter": 20}},
    "dattri": {"enabled": True, "proj_dim": 4096, "factorization_type": "elementwise", "proj_seed": 0},
    "lds": {"m": 20, "frac": 0.5, "seed": 0, "extra_seeds": [1, 2]},
    # a run learned when its final target accuracy is at least the majority-class rate plus this
    "learned_margin": 0.05,
}


def check_dvemb_config(cfg: dict) -> dict:
    """Merge ``cfg`` over :data:`DEFAULT` and validate it (clear errors for unknown keys and names)."""
    unknown = sorted(set(cfg) - set(DEFAULT))
    if unknown:
        raise ValueError(f"E10 (dvemb): unknown keys {unknown}; known: {sorted(DEFAULT)}")
    out = {**DEFAULT, **cfg}
    for k in ("dattri", "lds"):
        extra = sorted(set(out[k]) - set(DEFAULT[k]))
        if extra:
            raise ValueError(f"E10 (dvemb): unknown keys {extra} in {k!r}; known: {sorted(DEFAULT[k])}")
        out[k] = {**DEFAULT[k], **out[k]}
    bad = sorted(set(out["unrolled"]) - {"sgd_ie", "acc_sgd_ie", "dvemb"})
    if bad:
        raise ValueError(f"E10 (dvemb): 'unrolled' takes sgd_ie, acc_sgd_ie, dvemb; got {bad}")
    known = set(estimators.names())
    bad = sorted(set(out["registry"]) - known)
    if bad:
        raise ValueError(f"E10 (dvemb): unknown estimators {bad}; known: {sorted(known)}")
    if not 0 < int(out["n_points"]) <= int(out["n_train"]):
        raise ValueError(f"E10 (dvemb): n_points must be in [1, n_train], got {out['n_points']}")
    return out


# ----------------------------------------------------------------------------------------------- setup
def setup(cfg: dict, epochs: int, seed: int) -> dict:
    """Data, model and the recorded run (θ₀ and batch order from ``seed``), plus the 100 evaluated points."""
    sp = make_splits(load_dataset(cfg["dataset"]), int(cfg["n_train"]), int(cfg["n_target"]), 0,
                     seed=int(cfg["split_seed"]))
    train_ds, target_ds = sp["train"], sp["target"]
    model = mlp(train_ds.n_features, tuple(cfg["hidden"]), train_ds.n_classes)
    sched = Schedule(len(train_ds), batch_size=int(cfg["batch_size"]), epochs=int(epochs), lr=float(cfg["lr"]),
                     seed=int(seed))
    with measure() as m:
        traj = train(model, model.init(int(seed)), train_ds, sched)
    rng = np.random.default_rng([int(cfg["points_seed"]), int(seed)])
    points = np.sort(rng.choice(len(train_ds), int(cfg["n_points"]), replace=False))
    Xt, yt = as_tensors(target_ds)
    return {"train": train_ds, "target": target_ds, "model": model, "traj": traj, "points": points,
            "train_cost": dict(m), "target_accuracy": float(traj.model.accuracy(traj.final, Xt, yt)),
            "majority_acc": float(np.bincount(yt.numpy()).max() / len(yt)),
            "train_loss_final": float(traj.losses[-1]) if len(traj.losses) else float("nan")}


# --------------------------------------------------------------------------------------------- metrics
def per_target_spearman(est: np.ndarray, truth: np.ndarray) -> float:
    """Mean over target columns of Spearman(est[:, t], truth[:, t]) across the rows (points); NaN columns
    (a constant column) are left out, as in dattri's evaluation."""
    vals = [stats.spearmanr(est[:, t], truth[:, t])[0] for t in range(truth.shape[1])
            if np.ptp(est[:, t]) > 0 and np.ptp(truth[:, t]) > 0]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _mean_metrics(est: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    if not np.isfinite(est).all() or np.ptp(est) == 0:
        return {"spearman": float("nan"), "kendall": float("nan"), "pearson": float("nan"),
                "rmse": float(np.sqrt(np.mean((est - truth) ** 2))) if np.isfinite(est).all() else float("nan")}
    return {"spearman": float(stats.spearmanr(est, truth)[0]), "kendall": float(stats.kendalltau(est, truth)[0]),
            "pearson": float(stats.pearsonr(est, truth)[0]), "rmse": float(np.sqrt(np.mean((est - truth) ** 2)))}


def _target_grads(s: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-target gradients at θ_T (n_target, p) and their mean (the gradient of the mean target loss)."""
    Xt, yt = as_tensors(s["target"], torch.float64)
    G = per_sample_grads(s["model"], s["traj"].final, Xt, yt)
    return G, G.mean(0)


# ------------------------------------------------------------------------------------------- estimators
def _unrolled(s: dict, name: str, epoch: int | None) -> np.ndarray:
    traj, data, idx = s["traj"], s["train"], s["points"]
    if name == "sgd_ie" or (name == "acc_sgd_ie" and epoch is not None):
        return sgd_ie_params(traj, data, indices=idx, epoch=epoch)  # single-epoch ACC = SGD-IE (see acc_sgd_ie)
    if name == "acc_sgd_ie":
        return acc_sgd_ie_params(traj, data, indices=idx)
    return dvemb_params(traj, data, idx, epoch=epoch)


def _dattri_dvemb(s: dict, cfg: dict) -> dict[str | None, np.ndarray]:
    """dattri's DVEmbAttributor fed the recorded run (its model, batches and step sizes, float32 like its
    examples): per-target scores (n_train, n_target) for all-epoch (key None) and last-epoch removal."""
    from dattri.algorithm.dvemb import DVEmbAttributor
    from dattri.task import AttributionTask

    traj: Trajectory = s["traj"]
    X, y = as_tensors(s["train"], torch.float32)
    Xt, yt = as_tensors(s["target"], torch.float32)
    module = traj.model.to_module(traj.thetas[0].float())
    factorized = cfg["factorization_type"] not in (None, "none")

    if factorized:
        def loss(model: torch.nn.Module, batch: tuple, device: str) -> torch.Tensor:  # dattri's 3-argument form
            return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])
    else:
        def loss(params: dict, batch: tuple) -> torch.Tensor:
            z = torch.func.functional_call(module, params, (batch[0],))
            return torch.nn.functional.cross_entropy(z, batch[1])

    task = AttributionTask(loss_func=loss, model=module, checkpoints=[module.state_dict()])
    att = DVEmbAttributor(task, proj_dim=cfg["proj_dim"], proj_seed=int(cfg["proj_seed"]),
                          factorization_type=cfg["factorization_type"])
    spe = traj.schedule.steps_per_epoch
    lrs = traj.lrs()
    for t, S in enumerate(traj.batches()):
        torch.nn.utils.vector_to_parameters(traj.thetas[t].float(), module.parameters())  # dattri reads the live model
        idx = torch.as_tensor(S)
        att.cache_gradients(t // spe, (X[idx], y[idx]), idx, float(lrs[t]))
    att.cache()
    torch.nn.utils.vector_to_parameters(traj.thetas[-1].float(), module.parameters())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xt, yt), batch_size=256)
    E = traj.schedule.epochs
    return {None: att.attribute(loader).detach().double().numpy(),
            E - 1: att.attribute(loader, epoch=E - 1).detach().double().numpy()}


def _registry(s: dict, name: str, cfg: dict) -> tuple[np.ndarray, dict]:
    hp = dict(cfg["hparams"].get(name, {}))
    scores, rec = estimators.run(name, s["traj"], s["train"], s["target"], **hp)
    return np.asarray(scores, dtype=np.float64), rec


def _row(removal: str, method: str, library: str, form: str, est_mean: np.ndarray | None, truth: dict,
         est_target: np.ndarray | None, cost: dict, note: str = "", status: str = "ok") -> dict:
    """One table row. ``form``: 'points' (scores of the evaluated points, per target) or 'all_n' (a registry
    estimator scoring every training sample for the mean target loss)."""
    row = {"removal": removal, "estimator": method, "library": library, "form": form, "status": status,
           "note": note,
           "wall_s": float(cost.get("wall_s", np.nan)), "peak_rss_mb": float(cost.get("peak_rss_mb", np.nan)),
           "spearman_per_target": float("nan"), "spearman": float("nan"), "kendall": float("nan"),
           "pearson": float("nan"), "rmse": float("nan")}
    if est_mean is not None:
        row.update(_mean_metrics(est_mean, truth["mean"]))
    if est_target is not None:
        row["spearman_per_target"] = per_target_spearman(est_target, truth["target"])
    return row


# -------------------------------------------------------------------------------------------- protocol
def run_protocol(cfg: dict, epochs: int, seed: int) -> dict:
    """One (epochs, seed) run of the protocol: ground truth, every estimator, metrics, LDS and costs."""
    cfg = check_dvemb_config(cfg)
    s = setup(cfg, epochs, seed)
    traj, idx = s["traj"], s["points"]
    E = traj.schedule.epochs
    removal_epoch = {"all_epoch": None, "single_epoch": E - 1}
    truth, costs = {}, [{"what": "train (record every step)", **_cost(s["train_cost"])}]
    for removal, e in removal_epoch.items():
        loo = trajectory_loo(traj, s["train"], s["target"], idx, removal_epoch=e)
        truth[removal] = {"mean": loo.loss_change, "target": loo.target_losses - loo.base_target_losses[None, :]}
        costs.append({"what": f"trajectory LOO, {removal} ({len(idx)} points)", **_cost(loo.meta)})
        log.info("E10 ep%d seed%d: LOO %s done (%.1f s)", epochs, seed, removal, loo.meta.get("wall_s", np.nan))
    G, gbar = _target_grads(s)
    rows: list[dict] = []
    for removal, e in removal_epoch.items():
        for name in cfg["unrolled"]:
            with measure() as m:
                D = _unrolled(s, name, e)
            Dt = torch.as_tensor(D)
            note = "forward form on the points; single-epoch = SGD-IE" if name == "acc_sgd_ie" and e is not None \
                else "forward form on the points"
            rows.append(_row(removal, name, "ours", "points", (Dt @ gbar).numpy(), truth[removal],
                             (Dt @ G.T).numpy(), m, note))
    dattri: dict = {}
    if cfg["dattri"]["enabled"]:
        try:
            with measure() as m:
                dattri = _dattri_dvemb(s, cfg["dattri"])
            for removal, e in removal_epoch.items():
                P = dattri[e][idx]
                rows.append(_row(removal, "dattri_dvemb", "dattri", "points", P.mean(1), truth[removal], P, m,
                                 f"DVEmbAttributor, proj_dim {cfg['dattri']['proj_dim']}, "
                                 f"{cfg['dattri']['factorization_type']}; time covers both modes"))
        except Exception as exc:  # noqa: BLE001 — recorded, not hidden
            log.warning("dattri DVEmb failed: %s", exc)
            for removal in REMOVALS:
                rows.append(_row(removal, "dattri_dvemb", "dattri", "points", None, truth[removal], None, {},
                                 status=f"failed: {type(exc).__name__}: {exc}"))
    full: dict[str, np.ndarray] = {}
    for name in cfg["registry"]:
        try:
            scores, rec = _registry(s, name, cfg)
        except Exception as exc:  # noqa: BLE001
            log.warning("E10 %s failed: %s", name, exc)
            for removal in REMOVALS:
                rows.append(_row(removal, name, "ours", "all_n", None, truth[removal], None, {},
                                 status=f"failed: {type(exc).__name__}: {exc}"))
            continue
        full[name] = scores
        for removal in REMOVALS:
            rows.append(_row(removal, name, "ours", "all_n", scores[idx], truth[removal], None, rec,
                             "registry estimator, all-epoch scores"))
    if dattri:
        full["dattri_dvemb"] = dattri[None].mean(1)
    lds_rows, lds_cost = _lds(s, cfg, full)
    costs += lds_cost
    return {"epochs": int(epochs), "seed": int(seed), "n_train": len(s["train"]), "n_target": len(s["target"]),
            "n_points": len(idx), "batch_size": int(cfg["batch_size"]), "lr": float(cfg["lr"]),
            "hidden": list(cfg["hidden"]), "n_steps": int(traj.n_steps), "dataset": cfg["dataset"],
            "target_accuracy": s["target_accuracy"], "majority_acc": s["majority_acc"],
            "learned": bool(s["target_accuracy"] >= s["majority_acc"] + float(cfg["learned_margin"])),
            "points": idx.tolist(), "rows": rows, "lds": lds_rows,
            "costs": costs}


def _lds(s: dict, cfg: dict, full: dict[str, np.ndarray]) -> tuple[list[dict], list[dict]]:
    """LDS on the mean target loss: trajectory-specific (same θ₀ and batch order, masked) and multi-seed."""
    c = cfg["lds"]
    if int(c["m"]) < 2 or not full:
        return [], []
    traj, tr, tg = s["traj"], s["train"], s["target"]
    masks = lds_subsets(len(tr), int(c["m"]), float(c["frac"]), seed=int(c["seed"]))
    with measure() as m1:
        same = lds_ground_truth(traj, tr, tg, masks).mean(1, keepdims=True)
    runs = [(traj.theta0, traj.schedule)] + [
        (s["model"].init(int(k)), Schedule(len(tr), batch_size=traj.schedule.batch_size, epochs=traj.schedule.epochs,
                                           lr=float(cfg["lr"]), seed=int(k)))
        for k in c["extra_seeds"]]
    with measure() as m2:
        multi = lds_ground_truth(traj, tr, tg, masks, runs=runs).mean(1, keepdims=True)
    rows = [{"estimator": name, "lds_trajectory": lds(sc[:, None], masks, same)[0],
             "lds_multi_seed": lds(sc[:, None], masks, multi)[0]} for name, sc in full.items()]
    cost = [{"what": f"LDS trajectory-specific ({len(masks)} subsets)", **_cost(m1)},
            {"what": f"LDS multi-seed ({len(masks)} subsets x {len(runs)} runs)", **_cost(m2)}]
    return rows, cost


def _cost(m: dict) -> dict:
    return {"wall_s": float(m.get("wall_s", np.nan)), "peak_rss_mb": float(m.get("peak_rss_mb", np.nan))}


# ---------------------------------------------------------------------------------------------- tables
RUN_KEYS = ("epochs", "seed", "dataset", "n_train", "n_target", "n_points", "batch_size", "lr", "n_steps",
            "target_accuracy", "majority_acc", "learned")
COLUMNS = (*RUN_KEYS, "hidden", "removal", "estimator", "library", "form", "spearman_per_target", "spearman",
           "kendall", "pearson", "rmse", "wall_s", "peak_rss_mb", "status", "note")
LDS_COLUMNS = (*RUN_KEYS, "hidden", "estimator", "lds_trajectory", "lds_multi_seed")
PUBLISHED_SOURCE = "DVEmb paper (Wang et al., ICLR 2025, Fig. 3)"


def tables(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rows of metrics/E10_dvemb.csv (every run's methods, then DVEmb's published values for the epoch
    counts that were run, estimator ``dvemb_published``) and of metrics/E10_lds.csv."""
    rows, lds_rows = [], []
    for r in records:
        key = {k: r.get(k) for k in RUN_KEYS}
        hidden = "-".join(map(str, r["hidden"]))
        rows += [{**key, "hidden": hidden, **row} for row in r["rows"]]
        lds_rows += [{**key, "hidden": hidden, **row} for row in r["lds"]]
    for pub in PUBLISHED:
        if any(r["epochs"] == pub["epochs"] for r in records):
            rows.append({"epochs": pub["epochs"], "hidden": "128-128", "removal": pub["removal"],
                         "estimator": "dvemb_published", "library": PUBLISHED_SOURCE, "form": "points",
                         "spearman_per_target": pub["spearman"], "status": "ok", "learned": True,
                         "note": "published: 10 % of MNIST, 100 points, lr 1e-2"})
    return [{c: row.get(c, np.nan) for c in COLUMNS} for row in rows], lds_rows
