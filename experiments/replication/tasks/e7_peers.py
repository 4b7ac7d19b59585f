"""E7: side by side with dattri, Captum, kronfluence and traker on two MNIST tasks (A and B below).

Every method, ours and the peers', sees the same data, the same model, the same parameters and the same
checkpoints. Peers are called through their public APIs with their documented calling conventions
(loss reductions, sign and orientation of the returned matrices; see each wrapper's docstring); each
call runs inside ``try/except`` and a failure is recorded as found (status ``failed: <error>``), never
worked around silently.

Task A — binary logistic regression, MNIST 1 vs 7 (``mnist17``), 800 train / 200 target, L2 α = 1e-3 on
w and b, float64. Single-point methods (influence functions, Grad-Dot, TRAK, EK-FAC) are evaluated at the
exact optimum θ* (Newton, :func:`influence.loo.fit_optimum`); checkpoint methods (TracIn) and our
trajectory estimators read a recorded SGD run. Ground truth: exact LOO-to-optimum of 200 random training
points (:func:`influence.loo.loo_to_optimum`) and, for the trajectory estimators, the trajectory-specific
LOO of the same points (:func:`influence.loo.trajectory_loo`), which no peer can measure.

Task B — MLP 784-64-10 (ReLU), ``mnist5k`` 4000 train / 1000 target, SGD lr 0.1, batch 64, 10 epochs,
checkpoint at every epoch end. Ground truth: LDS over the first 100 target samples, 50 random half
subsets retrained with 3 seeds (θ₀ and batch order from each seed; losses averaged over seeds: *multi-seed
LDS*) and removed from the recorded run itself (same θ₀ and batch order, masked: *trajectory-specific LDS*).

Sign: every attribution returned here is ``L(θ^{-j}) − L(θ)`` estimated per target sample (positive =
helpful). dattri IF/TracIn/TRAK, Captum proponents, kronfluence and traker use the same orientation
(positive = the training sample lowers the target loss); no flips.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from influence import estimators
from influence.data import Dataset, as_tensors, load_dataset, make_splits
from influence.loo import fit_optimum, lds, lds_ground_truth, lds_subsets, loo_to_optimum, trajectory_loo
from influence.models import Model, logistic_regression, mlp
from influence.provenance import measure
from influence.train import Schedule, Trajectory, train

__all__ = [
    "TASK_A",
    "TASK_B",
    "PeerSetup",
    "Attribution",
    "PEERS",
    "setup_task_a",
    "setup_task_b",
    "ground_truth_a",
    "ground_truth_b",
    "run_ours",
    "run_peers",
    "evaluate_a",
    "evaluate_b",
    "run_task_a",
    "run_task_b",
    "peer_versions",
]

log = logging.getLogger(__name__)
os.environ.setdefault("TQDM_DISABLE", "1")  # dattri / kronfluence progress bars

TASK_A: dict[str, Any] = {
    "dataset": "mnist17", "n_train": 800, "n_target": 200, "split_seed": 0, "l2": 1e-3,
    "sgd": {"batch_size": 64, "epochs": 10, "lr": 0.05, "seed": 0},
    "n_loo": 200, "loo_seed": 0, "peer_dtype": "float64",
    "trak_proj_dim": 512, "kfac_seed": 0, "kfac_damping": 1e-3,  # = α: H = GGN + αI exactly for L2-logreg
    # self-influence scores measure a sample's effect on itself, not on the target set
    "skip": {"self_influence": "self-influence, not a target estimator",
             "diffin_self": "self-influence, not a target estimator"},
    "hparams": {},
}

TASK_B: dict[str, Any] = {
    "dataset": "mnist5k", "n_train": 4000, "n_target": 1000, "split_seed": 0, "l2": 0.0, "hidden": [64],
    "sgd": {"batch_size": 64, "epochs": 10, "lr": 0.1, "seed": 0}, "init_seed": 0,
    "n_lds_targets": 100, "lds_m": 50, "lds_frac": 0.5, "lds_seed": 0, "lds_seeds": [0, 1, 2],
    "peer_dtype": "float32", "trak_proj_dim": 512, "kfac_seed": 0, "kfac_damping": "heuristic",
    "if_damping": 1e-2, "cg_iters": 10,
    "skip": {"self_influence": "self-influence, not a target estimator",
             "diffin_self": "self-influence, not a target estimator",
             "acc_sgd_ie": "one adjoint per training sample: n = 4000 HVPs per step x 630 steps on an MLP with "
                           "p = 50890; not run by default"},
    # estimators without a per-target mode are called once per target sample only if listed here (sgd_ie:
    # one backward pass per target sample and step, i.e. 100x its mean-target cost, so not by default)
    "per_target_loop": [],
    "hparams": {"influence_function": {"solver": "cg", "damping": 1e-2, "cg_maxiter": 10}},
}


# --------------------------------------------------------------------------------------------- setup
@dataclass
class PeerSetup:
    """One task: data, model, recorded SGD run, evaluation point and checkpoints shared by every method.

    ``theta_eval`` is where single-point methods are evaluated (θ* for Task A, θ_T for Task B);
    ``eval_traj`` is a two-point trajectory (θ₀, θ_eval) so that registry estimators that read the last
    recorded θ (Grad-Dot) see θ_eval. ``checkpoints``/``etas``: epoch-end steps of ``traj`` and the step
    sizes TracIn weights them with.
    """

    name: str
    model: Model
    train: Dataset
    target: Dataset
    traj: Trajectory
    theta_eval: torch.Tensor
    eval_traj: Trajectory
    checkpoints: np.ndarray
    etas: np.ndarray
    l2: float
    peer_dtype: torch.dtype
    cfg: dict
    meta: dict = field(default_factory=dict)


@dataclass
class Attribution:
    """Scores of one method: ``per_target`` (n_train, n_target) when the method gives them, ``scores`` the
    row mean (effect on the mean target loss), cost and status (``ok`` or ``failed: …``)."""

    method: str
    library: str
    scores: np.ndarray | None
    per_target: np.ndarray | None
    wall_s: float
    peak_rss_mb: float
    status: str = "ok"
    note: str = ""


def _merge(default: dict, cfg: dict | None) -> dict:
    out = copy.deepcopy(default)
    for k, v in (cfg or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _epoch_steps(sched: Schedule) -> np.ndarray:
    return np.arange(1, sched.epochs + 1) * sched.steps_per_epoch


def _two_point(traj: Trajectory, theta: torch.Tensor) -> Trajectory:
    T = traj.n_steps
    return Trajectory(traj.model, traj.schedule, traj.l2, torch.stack([traj.theta0, theta.to(traj.thetas.dtype)]),
                      np.array([0, T]), traj.losses, meta={"two_point": True})


def setup_task_a(cfg: dict | None = None) -> PeerSetup:
    """Task A: L2-logistic regression on MNIST 1 vs 7, θ* by Newton, plus a recorded SGD run from 0."""
    cfg = _merge(TASK_A, cfg)
    sp = make_splits(load_dataset(cfg["dataset"]), cfg["n_train"], cfg["n_target"], 0, seed=cfg["split_seed"])
    train_ds, target_ds = sp["train"], sp["target"]
    model = logistic_regression(train_ds.n_features, 2)
    sched = Schedule(len(train_ds), **cfg["sgd"])
    traj = train(model, model.init(0), train_ds, sched, l2=cfg["l2"])
    opt = fit_optimum(model, train_ds, cfg["l2"])
    steps = _epoch_steps(sched)
    return PeerSetup("A", model, train_ds, target_ds, traj, opt, _two_point(traj, opt), steps,
                     traj.lrs()[np.minimum(steps, traj.n_steps - 1)], cfg["l2"], getattr(torch, cfg["peer_dtype"]),
                     cfg, {"eval_point": "optimum"})


def setup_task_b(cfg: dict | None = None) -> PeerSetup:
    """Task B: MLP 784-64-10 on mnist5k, SGD lr 0.1, batch 64, 10 epochs (float64, every step recorded)."""
    cfg = _merge(TASK_B, cfg)
    sp = make_splits(load_dataset(cfg["dataset"]), cfg["n_train"], cfg["n_target"], 0, seed=cfg["split_seed"])
    train_ds = sp["train"]
    target_ds = sp["target"].subset(np.arange(cfg["n_lds_targets"]))
    model = mlp(train_ds.n_features, tuple(cfg["hidden"]), train_ds.n_classes)
    sched = Schedule(len(train_ds), **cfg["sgd"])
    traj = train(model, model.init(cfg["init_seed"]), train_ds, sched, l2=cfg["l2"])
    steps = _epoch_steps(sched)
    X, y = as_tensors(sp["target"])
    acc = model.accuracy(traj.final, X, y)
    return PeerSetup("B", model, train_ds, target_ds, traj, traj.final, _two_point(traj, traj.final), steps,
                     traj.lrs()[np.minimum(steps, traj.n_steps - 1)], cfg["l2"], getattr(torch, cfg["peer_dtype"]),
                     cfg, {"eval_point": "theta_T", "target_accuracy": acc})


# ----------------------------------------------------------------------------------------- ground truth
def ground_truth_a(s: PeerSetup) -> dict:
    """Exact LOO-to-optimum and trajectory LOO of ``n_loo`` random training points (same points)."""
    cfg = s.cfg
    rng = np.random.default_rng(cfg["loo_seed"])
    idx = np.sort(rng.choice(len(s.train), cfg["n_loo"], replace=False))
    opt = loo_to_optimum(s.model, s.train, s.target, s.l2, idx, theta_opt=s.theta_eval)
    traj = trajectory_loo(s.traj, s.train, s.target, idx)
    return {"indices": idx, "loo_opt": opt, "traj_loo": traj,
            "cost": [{"task": "A", "what": f"LOO-to-optimum ({len(idx)} points)", **_cost(opt.meta)},
                     {"task": "A", "what": f"trajectory LOO ({len(idx)} points)", **_cost(traj.meta)}]}


def ground_truth_b(s: PeerSetup) -> dict:
    """LDS ground truth: target losses (m, n_target) after retraining on m half subsets, seed-averaged
    (``target_losses``, multi-seed LDS), and the same subsets removed from the recorded run itself — same θ₀,
    same batch order, masked (``target_losses_traj``, trajectory-specific LDS, the setting of MAGIC / DVEmb)."""
    cfg = s.cfg
    masks = lds_subsets(len(s.train), cfg["lds_m"], cfg["lds_frac"], seed=cfg["lds_seed"])
    runs = [(s.model.init(int(seed)), Schedule(len(s.train), **{**cfg["sgd"], "seed": int(seed)}))
            for seed in cfg["lds_seeds"]]
    with measure() as m:
        losses = lds_ground_truth(s.traj, s.train, s.target, masks, runs=runs)
    with measure() as m_traj:
        losses_traj = lds_ground_truth(s.traj, s.train, s.target, masks)
    return {"masks": masks, "target_losses": losses, "target_losses_traj": losses_traj,
            "cost": [{"task": "B", "what": f"LDS retraining ({len(masks)} subsets x {len(runs)} seeds)", **_cost(m)},
                     {"task": "B", "what": f"LDS trajectory-specific ({len(masks)} subsets, the recorded run masked)",
                      **_cost(m_traj)}]}


def _cost(m: dict) -> dict:
    return {"wall_s": float(m.get("wall_s", np.nan)), "peak_rss_mb": float(m.get("peak_rss_mb", np.nan))}


# ---------------------------------------------------------------------------------------------- ours
def _ours_call(s: PeerSetup, name: str, per_target: bool) -> tuple[np.ndarray, np.ndarray | None, dict]:
    fn = estimators.get(name)
    params = inspect.signature(fn).parameters
    hp = dict(s.cfg["hparams"].get(name, {}))
    traj = s.traj
    if name == "influence_function" and s.name == "A":
        traj = None
        hp.update(theta=s.theta_eval, model=s.model, l2=s.l2)
    elif name == "grad_dot":
        traj = s.eval_traj
    takes_kwargs = any(q.kind is inspect.Parameter.VAR_KEYWORD for q in params.values())
    if per_target and ("per_target" in params or takes_kwargs):
        P, rec = estimators.run(name, traj, s.train, s.target, per_target=True, **hp)
        return P.mean(1), P, rec
    scores, rec = estimators.run(name, traj, s.train, s.target, **hp)
    if per_target and name in s.cfg.get("per_target_loop", []):
        cols, wall = [], rec["wall_s"]
        for t in range(len(s.target)):
            col, r = estimators.run(name, traj, s.train, s.target.subset(np.array([t])), **hp)
            cols.append(col)
            wall += r["wall_s"]
        rec = {**rec, "wall_s": wall}
        return scores, np.stack(cols, 1), rec
    return scores, None, rec


def run_ours(s: PeerSetup, *, per_target: bool, names: list[str] | None = None) -> dict[str, Attribution]:
    """Every registry estimator on the task (``names`` restricts the list); failures are recorded."""
    out: dict[str, Attribution] = {}
    for name in names if names is not None else estimators.names():
        if name in s.cfg["skip"]:
            out[name] = Attribution(name, "ours", None, None, np.nan, np.nan, "skipped", s.cfg["skip"][name])
            continue
        log.info("task %s: ours %s", s.name, name)
        try:
            scores, P, rec = _ours_call(s, name, per_target)
            out[name] = Attribution(name, "ours", scores, P, rec["wall_s"], rec["peak_rss_mb"],
                                    note=_note(s, name))
        except Exception as e:  # noqa: BLE001 — recorded, not hidden
            log.warning("ours %s failed on task %s: %s", name, s.name, e)
            out[name] = Attribution(name, "ours", None, None, np.nan, np.nan, f"failed: {type(e).__name__}: {e}")
    return out


def _note(s: PeerSetup, name: str) -> str:
    if name == "influence_function":
        return "exact dense solve at θ*" if s.name == "A" else str(s.cfg["hparams"].get(name, {}))
    if name == "grad_dot":
        return "at θ*" if s.name == "A" else "at θ_T"
    if name == "tracin":
        return f"{len(s.checkpoints)} epoch checkpoints"
    return ""


# --------------------------------------------------------------------------------------------- peers
def _module(s: PeerSetup, theta: torch.Tensor) -> torch.nn.Sequential:
    return s.model.to_module(theta.detach().to(s.peer_dtype))


def _tensors(s: PeerSetup, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return as_tensors(data, s.peer_dtype)


def _loader(X: torch.Tensor, y: torch.Tensor, batch: int | None = None) -> torch.utils.data.DataLoader:
    ds = torch.utils.data.TensorDataset(X, y)
    return torch.utils.data.DataLoader(ds, batch_size=batch or len(ds), shuffle=False)


def _functional_loss(s: PeerSetup, module: torch.nn.Module, l2: float) -> Callable:
    """dattri-style loss: ``f(params, (x, y))`` = batch **mean** loss (+ (α/2)‖θ‖² when l2 > 0)."""
    model = s.model

    def f(params: dict, data: tuple) -> torch.Tensor:
        x, y = data
        z = torch.func.functional_call(module, params, (x,))
        loss = model.loss_from_logits(z, y).mean()
        if l2:
            loss = loss + 0.5 * l2 * sum((p**2).sum() for p in params.values())
        return loss

    return f


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _last_layer(module: torch.nn.Sequential) -> list[str]:
    idx = [i for i, m in enumerate(module) if isinstance(m, torch.nn.Linear)][-1]
    return [f"{idx}.weight", f"{idx}.bias"]


def dattri_if(s: PeerSetup, solver: str = "explicit") -> tuple[np.ndarray, str]:
    """dattri IFAttributorExplicit / IFAttributorCG at θ_eval; (n, t) / n in our scale.

    The training objective handed to dattri is the batch mean loss + (α/2)‖θ‖² (a sum would silently
    rescale the Hessian by n), the target function the plain mean loss, and the full training set
    is cached as **one** batch (dattri sums inverse-HVPs over the batches of the cached loader)."""
    from dattri.algorithm.influence_function import IFAttributorCG, IFAttributorExplicit
    from dattri.task import AttributionTask

    mod = _module(s, s.theta_eval)
    task = AttributionTask(loss_func=_functional_loss(s, mod, s.l2), model=mod, checkpoints=_state(mod),
                           target_func=_functional_loss(s, mod, 0.0))
    X, y = _tensors(s, s.train)
    Xt, yt = _tensors(s, s.target)
    damping = 0.0 if s.name == "A" else float(s.cfg["if_damping"])
    if s.name == "A":
        layer, note = None, "full model"
    else:
        layer, note = _last_layer(mod), "last layer only"
    if solver == "explicit":
        att = IFAttributorExplicit(task, layer_name=layer, regularization=damping)
    else:
        att = IFAttributorCG(task, layer_name=layer, regularization=damping, max_iter=int(s.cfg.get("cg_iters", 10)))
        note += f", CG {s.cfg.get('cg_iters', 10)} iters"
    att.cache(_loader(X, y))
    S = att.attribute(_loader(X, y, 256), _loader(Xt, yt, 256)).detach()
    return S.double().numpy() / len(y), note + f", damping {damping:g}"


def dattri_tracin(s: PeerSetup, grad_dot: bool = False) -> tuple[np.ndarray, str]:
    """dattri TracInAttributor with the identity projection (exact gradients): epoch checkpoints weighted
    by η_c (TracIn), or θ_eval with weight 1 (Grad-Dot)."""
    from dattri.algorithm.tracin import TracInAttributor
    from dattri.task import AttributionTask

    if grad_dot:
        thetas, weights = [s.theta_eval], torch.ones(1)
    else:
        thetas, weights = [s.traj.theta_at(int(c)) for c in s.checkpoints], torch.as_tensor(s.etas)
    mod = _module(s, thetas[-1])
    ckpts = [_state(_module(s, th)) for th in thetas]
    loss = _functional_loss(s, mod, 0.0)
    task = AttributionTask(loss_func=loss, model=mod, checkpoints=ckpts)
    # pass every projector key: dattri updates its module-level default dict in place
    proj = {"proj_type": "identity", "proj_dim": 512, "proj_max_batch_size": 32, "proj_seed": 0, "device": "cpu"}
    att = TracInAttributor(task, weight_list=weights.to(s.peer_dtype), normalized_grad=False, projector_kwargs=proj)
    X, y = _tensors(s, s.train)
    Xt, yt = _tensors(s, s.target)
    S = att.attribute(_loader(X, y, 256), _loader(Xt, yt, 256)).detach()
    return S.double().numpy(), ("at θ_eval" if grad_dot else f"{len(thetas)} checkpoints") + ", identity projection"


def dattri_trak(s: PeerSetup) -> tuple[np.ndarray, str]:
    """dattri TRAKAttributor with one checkpoint (θ_eval), margin output function, normal projection."""
    from dattri.algorithm.trak import TRAKAttributor
    from dattri.task import AttributionTask

    mod = _module(s, s.theta_eval)
    model = s.model

    def margin(params: dict, data: tuple) -> torch.Tensor:
        x, y = data
        z = torch.func.functional_call(mod, params, (x,))
        logp = -model.loss_from_logits(z, y).mean()
        return logp - torch.log(1 - torch.exp(logp))

    def correct_prob(params: dict, data: tuple) -> torch.Tensor:
        x, y = data
        z = torch.func.functional_call(mod, params, (x[None],))
        return torch.exp(-model.loss_from_logits(z, y[None]).mean())

    task = AttributionTask(loss_func=margin, model=mod, checkpoints=[_state(mod)])
    k = int(s.cfg["trak_proj_dim"])
    proj = {"proj_type": "normal", "proj_dim": k, "proj_max_batch_size": 32, "proj_seed": 0, "device": "cpu"}
    att = TRAKAttributor(task, correct_probability_func=correct_prob, projector_kwargs=proj, device="cpu")
    X, y = _tensors(s, s.train)
    Xt, yt = _tensors(s, s.target)
    att.cache(_loader(X, y, 256))
    S = att.attribute(_loader(Xt, yt, 256)).detach()
    return S.double().numpy(), f"TRAK-1 (1 checkpoint), proj_dim {k}"


class _CaptumLoss(torch.nn.Module):
    """Our per-sample loss with the ``reduction`` attribute Captum inspects."""

    def __init__(self, model: Model, reduction: str) -> None:
        super().__init__()
        self.m, self.reduction = model, reduction

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ls = self.m.loss_from_logits(z, y)
        return ls if self.reduction == "none" else (ls.sum() if self.reduction == "sum" else ls.mean())


def captum_tracin(s: PeerSetup, fast: bool = False) -> tuple[np.ndarray, str]:
    """Captum TracInCP (``reduction='none'``) or TracInCPFast (last layer, ``reduction='sum'``) over the
    epoch checkpoints; the checkpoint loader returns η_c. Captum returns (n_target, n_train)."""
    from captum.influence import TracInCP, TracInCPFast

    mod = _module(s, s.traj.final)
    etas = dict(zip(s.checkpoints.tolist(), s.etas.tolist(), strict=True))

    def load(m: torch.nn.Module, c: int) -> float:
        m.load_state_dict(_module(s, s.traj.theta_at(int(c))).state_dict())
        return float(etas[int(c)])

    X, y = _tensors(s, s.train)
    Xt, yt = _tensors(s, s.target)
    ds = torch.utils.data.TensorDataset(X, y)
    ckpts = [int(c) for c in s.checkpoints]
    if fast:
        last = [m for m in mod if isinstance(m, torch.nn.Linear)][-1]
        tc = TracInCPFast(mod, last, ds, checkpoints=ckpts, checkpoints_load_func=load,
                          loss_fn=_CaptumLoss(s.model, "sum"), batch_size=256)
        note = "last layer (weight only)"
    else:
        tc = TracInCP(mod, ds, checkpoints=ckpts, checkpoints_load_func=load, loss_fn=_CaptumLoss(s.model, "none"),
                      batch_size=256, sample_wise_grads_per_batch=False)
        note = "all layers"
    S = tc.influence((Xt, yt), k=None).detach()
    return S.double().numpy().T, note + f", {len(ckpts)} checkpoints"


def kronfluence_ekfac(s: PeerSetup) -> tuple[np.ndarray, str]:
    """kronfluence EK-FAC at θ_eval (default damping heuristic, sampled-label Fisher seeded)."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    ours = s.model

    class _Task(Task):
        def compute_train_loss(self, batch: Any, model: torch.nn.Module, sample: bool = False) -> torch.Tensor:
            x, y = batch
            z = model(x)
            if sample:
                with torch.no_grad():
                    if ours.n_out == 1:
                        y = torch.bernoulli(torch.sigmoid(z[:, 0])).long()
                    else:
                        y = torch.multinomial(torch.softmax(z, -1), 1)[:, 0]
            return ours.loss_from_logits(z, y).sum()

        def compute_measurement(self, batch: Any, model: torch.nn.Module) -> torch.Tensor:
            x, y = batch
            return ours.loss_from_logits(model(x), y).sum()

    torch.manual_seed(int(s.cfg["kfac_seed"]))
    task = _Task()
    mod = prepare_model(_module(s, s.theta_eval), task)  # a Sequential: a bare Linear recurses forever
    X, y = _tensors(s, s.train)
    Xt, yt = _tensors(s, s.target)
    dt = s.peer_dtype
    fargs = FactorArguments(strategy="ekfac", activation_covariance_dtype=dt, gradient_covariance_dtype=dt,
                            per_sample_gradient_dtype=dt, lambda_dtype=dt, eigendecomposition_dtype=torch.float64)
    damping = s.cfg.get("kfac_damping", "heuristic")
    sargs = ScoreArguments(score_dtype=dt, per_sample_gradient_dtype=dt, precondition_dtype=dt,
                           damping_factor=None if damping == "heuristic" else float(damping))
    with tempfile.TemporaryDirectory(prefix="kronfluence-") as tmp:
        an = Analyzer(analysis_name="e7", model=mod, task=task, cpu=True, disable_tqdm=True, output_dir=tmp,
                      log_level=logging.WARNING)
        an.fit_all_factors(factors_name="ekfac", dataset=torch.utils.data.TensorDataset(X, y),
                           per_device_batch_size=256, factor_args=fargs, overwrite_output_dir=True)
        an.compute_pairwise_scores(scores_name="s", factors_name="ekfac",
                                   query_dataset=torch.utils.data.TensorDataset(Xt, yt),
                                   train_dataset=torch.utils.data.TensorDataset(X, y), per_device_query_batch_size=256,
                                   per_device_train_batch_size=256, score_args=sargs, overwrite_output_dir=True)
        S = an.load_pairwise_scores("s")["all_modules"].detach()
    return S.double().numpy().T, f"EK-FAC, damping {damping}, sampled Fisher (seeded)"


def traker_trak(s: PeerSetup) -> tuple[np.ndarray, str]:
    """traker TRAKer, one checkpoint (θ_eval), CPU BasicProjector (rademacher), full precision."""
    from trak import TRAKer
    from trak.projectors import BasicProjector, ProjectionType

    mod = _module(s, s.theta_eval)
    X, y = _tensors(s, s.train)
    Xt, yt = _tensors(s, s.target)
    k = int(s.cfg["trak_proj_dim"])
    proj = BasicProjector(grad_dim=s.model.n_params, proj_dim=k, seed=0, proj_type=ProjectionType.rademacher,
                          device=torch.device("cpu"), dtype=s.peer_dtype)
    with tempfile.TemporaryDirectory(prefix="traker-") as tmp:
        tr = TRAKer(model=mod, task="image_classification", train_set_size=len(y), save_dir=tmp, device="cpu",
                    projector=proj, proj_dim=k, use_half_precision=False, logging_level=logging.ERROR)
        tr.load_checkpoint(mod.state_dict(), model_id=0)
        for s0 in range(0, len(y), 256):
            tr.featurize(batch=(X[s0:s0 + 256], y[s0:s0 + 256]), num_samples=len(y[s0:s0 + 256]))
        tr.finalize_features()
        tr.start_scoring_checkpoint(exp_name="e7", checkpoint=mod.state_dict(), model_id=0, num_targets=len(yt))
        for s0 in range(0, len(yt), 256):
            tr.score(batch=(Xt[s0:s0 + 256], yt[s0:s0 + 256]), num_samples=len(yt[s0:s0 + 256]))
        S = np.asarray(tr.finalize_scores(exp_name="e7"), dtype=np.float64)
    return S, f"TRAK-1 (1 checkpoint), proj_dim {k}"


#: peer methods: name -> (library, function(setup) -> ((n_train, n_target) attributions, note))
PEERS: dict[str, tuple[str, Callable[[PeerSetup], tuple[np.ndarray, str]]]] = {
    "dattri_if_explicit": ("dattri", lambda s: dattri_if(s, "explicit")),
    "dattri_if_cg": ("dattri", lambda s: dattri_if(s, "cg")),
    "dattri_tracin": ("dattri", lambda s: dattri_tracin(s, grad_dot=False)),
    "dattri_grad_dot": ("dattri", lambda s: dattri_tracin(s, grad_dot=True)),
    "dattri_trak": ("dattri", dattri_trak),
    "captum_tracincp": ("captum", lambda s: captum_tracin(s, fast=False)),
    "captum_tracincp_fast": ("captum", lambda s: captum_tracin(s, fast=True)),
    "kronfluence_ekfac": ("kronfluence", kronfluence_ekfac),
    "traker_trak": ("traker", traker_trak),
}


def run_peers(s: PeerSetup, names: list[str] | None = None) -> dict[str, Attribution]:
    """Every peer method on the task; an exception is recorded as the method's status."""
    out: dict[str, Attribution] = {}
    for name in names if names is not None else list(PEERS):
        lib, fn = PEERS[name]
        log.info("task %s: peer %s", s.name, name)
        try:
            with measure() as m:
                S, note = fn(s)
            if not np.isfinite(S).all():
                raise FloatingPointError("non-finite attributions")
            out[name] = Attribution(name, lib, S.mean(1), S, m["wall_s"], m["peak_rss_mb"], note=note)
        except Exception as e:  # noqa: BLE001 — peers' failures are findings
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            log.warning("peer %s failed on task %s: %s: %s\n%s", name, s.name, type(e).__name__, msg,
                        traceback.format_exc(limit=3))
            out[name] = Attribution(name, lib, None, None, np.nan, np.nan, f"failed: {type(e).__name__}: {msg}")
    return out


def peer_versions() -> dict[str, str]:
    """Installed versions of the peer libraries (``'missing'`` if not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("dattri", "captum", "kronfluence", "traker", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


# ------------------------------------------------------------------------------------------ evaluate
def _corr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan, np.nan
    return float(stats.pearsonr(a, b)[0]), float(stats.spearmanr(a, b)[0])


def _base_row(task: str, a: Attribution) -> dict:
    return {"task": task, "method": a.method, "library": a.library, "status": a.status, "note": a.note,
            "wall_s": a.wall_s, "peak_rss_mb": a.peak_rss_mb}


def evaluate_a(results: dict[str, Attribution], gt: dict) -> pd.DataFrame:
    """Pearson / Spearman of the mean-target scores vs LOO-to-optimum and vs trajectory LOO."""
    idx = gt["indices"]
    rows = []
    for a in results.values():
        row = _base_row("A", a)
        if a.scores is not None:
            row["pearson_loo"], row["spearman_loo"] = _corr(a.scores[idx], gt["loo_opt"].loss_change)
            row["pearson_traj_loo"], row["spearman_traj_loo"] = _corr(a.scores[idx], gt["traj_loo"].loss_change)
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_b(results: dict[str, Attribution], gt: dict) -> pd.DataFrame:
    """LDS (per target, averaged; needs per-target attributions) and the aggregate LDS (Spearman of the
    predicted vs actual mean target loss across subsets, available for every method), each against the
    multi-seed ground truth (``lds``, ``lds_mean_target``) and the trajectory-specific one (``*_traj``)."""
    masks = gt["masks"]
    rows = []
    for a in results.values():
        row = _base_row("B", a)
        for suffix, tl in (("", gt["target_losses"]), ("_traj", gt.get("target_losses_traj"))):
            if tl is None:
                continue
            if a.per_target is not None:
                row[f"lds{suffix}"] = lds(a.per_target, masks, tl)[0]
            if a.scores is not None:
                row[f"lds_mean_target{suffix}"] = lds(a.scores[:, None], masks, tl.mean(1, keepdims=True))[0]
        rows.append(row)
    return pd.DataFrame(rows)


def run_task_a(cfg: dict | None = None, *, ours: list[str] | None = None,
               peers: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run Task A end to end: (table of methods, table of ground-truth costs)."""
    s = setup_task_a(cfg)
    gt = ground_truth_a(s)
    res = {**run_ours(s, per_target=False, names=ours), **run_peers(s, peers)}
    return evaluate_a(res, gt), pd.DataFrame(gt["cost"])


def run_task_b(cfg: dict | None = None, *, ours: list[str] | None = None,
               peers: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run Task B end to end: (table of methods, table of ground-truth costs)."""
    s = setup_task_b(cfg)
    gt = ground_truth_b(s)
    res = {**run_ours(s, per_target=True, names=ours), **run_peers(s, peers)}
    return evaluate_b(res, gt), pd.DataFrame(gt["cost"])
