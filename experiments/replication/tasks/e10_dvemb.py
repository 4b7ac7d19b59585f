"""E10: Data Value Embedding's MNIST protocol (its MLP and its small CNN), every trajectory estimator on one run.

The protocol of DVEmb (Wang, Song, Zou, Mittal, Jia, ICLR 2025, arXiv 2412.09538, App. E.1 and Fig. 3): an MLP
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

The architecture is the setting ``arch``: ``"mlp"`` (the protocol above, hidden widths ``hidden``) or ``"cnn"``,
DVEmb's small CNN on MNIST (its appendix: "conv32-conv64-linear", 10 epochs; published Spearman 0.818
single-epoch / 0.682 all-epoch removal, in ``PUBLISHED`` with ``arch`` "cnn"). *Our reading* of
"conv32-conv64-linear" (the appendix's text was not at hand here: the kernel size, padding and pooling are our
choice, the usual small MNIST CNN): Conv2d(1→32, 3×3, padding 1) → ReLU → MaxPool 2 → Conv2d(32→64, 3×3,
padding 1) → ReLU → MaxPool 2 → Flatten → Linear(64·7·7 → 10), 320 + 18 496 + 31 370 = 50 186 parameters on
28×28 images (:func:`dvemb_cnn`). It is wrapped with
:class:`influence.module.ModuleModel`; the module's first layer reshapes the (n, 784) rows to (n, 1, 28, 28)
images (``nn.Unflatten``, no parameters), so the data, the estimators and the ground truth read the same rows as
for the MLP; θ₀ is PyTorch's default initialisation drawn under ``torch.manual_seed(seed)``
(:meth:`ModuleModel.init`). Every estimator above runs on it through ``torch.func`` (the unrolled forward
forms, trajectory LOO in both removal modes, the registry's estimators, LDS) and so does dattri's
``DVEmbAttributor``. Its factorised projection (``factorization_type`` "elementwise", its example's) hooks the
``nn.Linear`` layers only: on the CNN it sees the last layer's gradient (31 370 of the 50 186 parameters), not
the convolutions'; ``dattri: {factorization_type: none}`` projects the full per-sample gradients instead
(measured on 96 images, 2 epochs, 10 points: 14 s a seed against 2.7 s, per-target Spearman 0.56 / 0.70
against 0.65 / 0.61 on seeds 0 / 1 — no systematic gain, so the configurations keep its example's setting).
Influence functions are left out of the CNN settings: the default damping's power iteration (≈ 600
Hessian-vector products over the training set) took 145 s at 64 training images, ≈ 3 CPU-hours at 4500.
"""

from __future__ import annotations

import logging
import math
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
from influence.module import ModuleModel
from influence.provenance import measure
from influence.train import Schedule, Trajectory, train

__all__ = ["ARCHS", "DEFAULT", "PUBLISHED", "REMOVALS", "check_dvemb_config", "variant_settings", "published",
           "dvemb_cnn", "build_model", "setup", "run_protocol", "per_target_spearman", "tables"]

log = logging.getLogger(__name__)
os.environ.setdefault("TQDM_DISABLE", "1")

REMOVALS = ("all_epoch", "single_epoch")
ARCHS = ("mlp", "cnn")

# DVEmb, ICLR 2025: Spearman with trajectory LOO of 100 training points on MNIST; Fig. 3 (MLP 128-128) and the
# appendix's small CNN (conv32-conv64-linear, 10 epochs).
PUBLISHED: list[dict[str, Any]] = [
    {"arch": "mlp", "epochs": 3, "removal": "single_epoch", "spearman": 0.747},
    {"arch": "mlp", "epochs": 3, "removal": "all_epoch", "spearman": 0.736},
    {"arch": "mlp", "epochs": 10, "removal": "single_epoch", "spearman": 0.830},
    {"arch": "mlp", "epochs": 10, "removal": "all_epoch", "spearman": 0.715},
    {"arch": "cnn", "epochs": 10, "removal": "single_epoch", "spearman": 0.818},
    {"arch": "cnn", "epochs": 10, "removal": "all_epoch", "spearman": 0.682},
]
#: the published setting of each architecture (the ``hidden`` column of its published rows)
PUBLISHED_MODEL = {"mlp": "128-128", "cnn": "conv32-conv64"}

DEFAULT: dict[str, Any] = {
    # "mlp" (hidden widths ``hidden``) or "cnn" (DVEmb's small CNN, :func:`dvemb_cnn`; ``hidden`` is ignored)
    "arch": "mlp",
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
    # replays at once in the trajectory LOO (and, at most 64, in the LDS retrainings) and Hessian-vector products at
    # once in the forward forms: memory, not results (the CNN at batch 64 needs ~0.25 GB per replay in float64)
    "loo_chunk": 128, "vmap_chunk": 64,
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
    if int(out["loo_chunk"]) < 1 or int(out["vmap_chunk"]) < 1:
        raise ValueError(f"E10 (dvemb): loo_chunk and vmap_chunk must be >= 1, got {out['loo_chunk']}, "
                         f"{out['vmap_chunk']}")
    if out["arch"] not in ARCHS:
        raise ValueError(f"E10 (dvemb): arch must be one of {list(ARCHS)}, got {out['arch']!r}")
    return out


def variant_settings(base: dict, over: dict) -> dict:
    """The settings of a further E10 setting (the workflow's ``dvemb.variants``): ``over`` laid over the block's
    ``settings`` (``base``), the nested blocks (``dattri``, ``lds``, ``hparams``) key by key, then checked by
    :func:`check_dvemb_config`. So a variant shares the block's seeds (split, points, LDS) unless it sets them."""
    out = {**base, **over}
    for k in ("dattri", "lds", "hparams"):
        if isinstance(base.get(k), dict) and isinstance(over.get(k), dict):
            out[k] = {**base[k], **over[k]}
    return check_dvemb_config(out)


# ----------------------------------------------------------------------------------------------- model
def dvemb_cnn(side: int = 28, n_classes: int = 10) -> torch.nn.Module:
    """DVEmb's small CNN as we read "conv32-conv64-linear" (module docstring), taking flat rows of ``side²``
    pixels: Unflatten → Conv(1→32, 3, pad 1) → ReLU → MaxPool 2 → Conv(32→64, 3, pad 1) → ReLU → MaxPool 2 →
    Flatten → Linear(64·(side/4)² → n_classes)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Unflatten(-1, (1, side, side)),  # -1 and -3 (not 1): an unbatched row (side²,) works too (dattri's vmap)
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(-3), nn.Linear(64 * (side // 4) ** 2, n_classes))


def build_model(cfg: dict, n_features: int, n_classes: int) -> Any:
    """The functional model of a setting: :func:`influence.models.mlp` or :func:`dvemb_cnn` in a
    :class:`~influence.module.ModuleModel` (square single-channel images)."""
    if cfg["arch"] == "mlp":
        return mlp(n_features, tuple(cfg["hidden"]), n_classes)
    side = math.isqrt(int(n_features))
    if side * side != n_features or side % 4:
        raise ValueError(f"E10 (dvemb): the CNN needs square images with a side divisible by 4, got {n_features} "
                         "features")
    # float64 module: ModuleModel.init casts, but the template's dtype sets that of its frozen parts (none here)
    return ModuleModel(dvemb_cnn(side, n_classes).double(), n_classes=n_classes, name="dvemb_cnn")


def model_label(cfg: dict) -> list:
    """The ``hidden`` entry of a run's record: the MLP's hidden widths, or the CNN's conv layers."""
    return list(cfg["hidden"]) if cfg["arch"] == "mlp" else ["conv32", "conv64"]


# ----------------------------------------------------------------------------------------------- setup
def setup(cfg: dict, epochs: int, seed: int) -> dict:
    """Data, model and the recorded run (θ₀ and batch order from ``seed``), plus the 100 evaluated points."""
    sp = make_splits(load_dataset(cfg["dataset"]), int(cfg["n_train"]), int(cfg["n_target"]), 0,
                     seed=int(cfg["split_seed"]))
    train_ds, target_ds = sp["train"], sp["target"]
    model = build_model(cfg, train_ds.n_features, train_ds.n_classes)
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
def _unrolled(s: dict, name: str, epoch: int | None, vmap_chunk: int = 64) -> np.ndarray:
    traj, data, idx = s["traj"], s["train"], s["points"]
    if name == "sgd_ie" or (name == "acc_sgd_ie" and epoch is not None):
        # single-epoch ACC = SGD-IE (see acc_sgd_ie)
        return sgd_ie_params(traj, data, indices=idx, epoch=epoch, vmap_chunk=vmap_chunk)
    if name == "acc_sgd_ie":
        return acc_sgd_ie_params(traj, data, indices=idx, vmap_chunk=vmap_chunk)
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
        loo = trajectory_loo(traj, s["train"], s["target"], idx, removal_epoch=e, chunk=int(cfg["loo_chunk"]))
        truth[removal] = {"mean": loo.loss_change, "target": loo.target_losses - loo.base_target_losses[None, :]}
        costs.append({"what": f"trajectory LOO, {removal} ({len(idx)} points)", **_cost(loo.meta)})
        log.info("E10 ep%d seed%d: LOO %s done (%.1f s)", epochs, seed, removal, loo.meta.get("wall_s", np.nan))
    G, gbar = _target_grads(s)
    rows: list[dict] = []
    for removal, e in removal_epoch.items():
        for name in cfg["unrolled"]:
            with measure() as m:
                D = _unrolled(s, name, e, int(cfg["vmap_chunk"]))
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
    return {"epochs": int(epochs), "seed": int(seed), "arch": cfg["arch"], "n_params": int(s["model"].n_params),
            "n_train": len(s["train"]), "n_target": len(s["target"]),
            "n_points": len(idx), "batch_size": int(cfg["batch_size"]), "lr": float(cfg["lr"]),
            "hidden": model_label(cfg), "n_steps": int(traj.n_steps), "dataset": cfg["dataset"],
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
    chunk = min(64, int(cfg["loo_chunk"]))  # lds_ground_truth's default, or less where the LOO's is less
    with measure() as m1:
        same = lds_ground_truth(traj, tr, tg, masks, chunk=chunk).mean(1, keepdims=True)
    runs = [(traj.theta0, traj.schedule)] + [
        (s["model"].init(int(k)), Schedule(len(tr), batch_size=traj.schedule.batch_size, epochs=traj.schedule.epochs,
                                           lr=float(cfg["lr"]), seed=int(k)))
        for k in c["extra_seeds"]]
    with measure() as m2:
        multi = lds_ground_truth(traj, tr, tg, masks, runs=runs, chunk=chunk).mean(1, keepdims=True)
    rows = [{"estimator": name, "lds_trajectory": lds(sc[:, None], masks, same)[0],
             "lds_multi_seed": lds(sc[:, None], masks, multi)[0]} for name, sc in full.items()]
    cost = [{"what": f"LDS trajectory-specific ({len(masks)} subsets)", **_cost(m1)},
            {"what": f"LDS multi-seed ({len(masks)} subsets x {len(runs)} runs)", **_cost(m2)}]
    return rows, cost


def _cost(m: dict) -> dict:
    return {"wall_s": float(m.get("wall_s", np.nan)), "peak_rss_mb": float(m.get("peak_rss_mb", np.nan))}


# ---------------------------------------------------------------------------------------------- tables
RUN_KEYS = ("arch", "epochs", "seed", "dataset", "n_train", "n_target", "n_points", "batch_size", "lr", "n_steps",
            "target_accuracy", "majority_acc", "learned")
COLUMNS = (*RUN_KEYS, "hidden", "removal", "estimator", "library", "form", "spearman_per_target", "spearman",
           "kendall", "pearson", "rmse", "wall_s", "peak_rss_mb", "status", "note")
LDS_COLUMNS = (*RUN_KEYS, "hidden", "estimator", "lds_trajectory", "lds_multi_seed")
PUBLISHED_SOURCE = {"mlp": "DVEmb paper (Wang et al., ICLR 2025, Fig. 3)",
                    "cnn": "DVEmb paper (Wang et al., ICLR 2025, appendix, small CNN)"}
PUBLISHED_NOTE = {"mlp": "published: 10 % of MNIST, 100 points, lr 1e-2",
                  "cnn": "published: conv32-conv64-linear on MNIST, 100 points, 10 epochs"}


def published(arch: str | None = None, epochs: int | None = None) -> list[dict[str, Any]]:
    """The rows of :data:`PUBLISHED` of one architecture and / or epoch count (None: any)."""
    return [p for p in PUBLISHED if arch in (None, p["arch"]) and epochs in (None, p["epochs"])]


def tables(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rows of metrics/E10_dvemb.csv (every run's methods, then DVEmb's published values for the
    (architecture, epoch count) pairs that were run, estimator ``dvemb_published``) and of metrics/E10_lds.csv.
    A record without ``arch`` (written before the CNN joined) is an MLP run."""
    rows, lds_rows = [], []
    for r in records:
        key = {k: r.get(k, "mlp" if k == "arch" else None) for k in RUN_KEYS}
        hidden = "-".join(map(str, r["hidden"]))
        rows += [{**key, "hidden": hidden, **row} for row in r["rows"]]
        lds_rows += [{**key, "hidden": hidden, **row} for row in r["lds"]]
    run = {(r.get("arch", "mlp"), r["epochs"]) for r in records}
    for pub in PUBLISHED:
        if (pub["arch"], pub["epochs"]) in run:
            rows.append({"arch": pub["arch"], "epochs": pub["epochs"], "hidden": PUBLISHED_MODEL[pub["arch"]],
                         "removal": pub["removal"], "estimator": "dvemb_published",
                         "library": PUBLISHED_SOURCE[pub["arch"]], "form": "points",
                         "spearman_per_target": pub["spearman"], "status": "ok", "learned": True,
                         "note": PUBLISHED_NOTE[pub["arch"]]})
    return [{c: row.get(c, np.nan) for c in COLUMNS} for row in rows], lds_rows
