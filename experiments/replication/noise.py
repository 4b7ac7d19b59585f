"""Label noise and feature corruption. Every function returns the noisy data and the boolean mask of
corrupted samples.

Exactly ⌊r·n⌋ samples are corrupted (chosen uniformly without replacement from a seeded generator), so
"rate" is a fraction of the data, not a per-sample probability. Label noise always changes the label.

* symmetric: the new label is uniform over the C − 1 other classes.
* pair (asymmetric): y → (y + 1) mod C.
* cyclic (the LAI authors' scheme): the corrupted samples, in random order, get y → (y + k) mod C with
  k cycling through 1, 2, …, C − 1, so every offset is used equally often.
* gaussian features: x → x + N(0, σ²) on the corrupted rows.
* tf-idf features: on the corrupted rows, a fraction ``frac`` of the features is set to 1.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "symmetric_noise",
    "pair_noise",
    "cyclic_noise",
    "gaussian_features",
    "tfidf_features",
    "apply_noise",
    "NOISE_KINDS",
]


def _choose(n: int, rate: float, seed: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    if not (0 <= rate < 1):
        raise ValueError(f"noise rate must be in [0, 1), got {rate}")
    rng = np.random.default_rng(seed)
    k = int(np.floor(rate * n + 1e-9))
    idx = rng.choice(n, k, replace=False)
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return rng, idx, mask


def _labels(y: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    return y.astype(np.int64)


def symmetric_noise(y: np.ndarray, rate: float, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip ⌊rate·n⌋ labels to a uniformly drawn *other* class. Returns (noisy labels, mask)."""
    y = _labels(y, n_classes)
    rng, idx, mask = _choose(len(y), rate, seed)
    out = y.copy()
    out[idx] = (y[idx] + rng.integers(1, n_classes, size=len(idx))) % n_classes
    return out, mask


def pair_noise(y: np.ndarray, rate: float, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip ⌊rate·n⌋ labels y → (y + 1) mod C. Returns (noisy labels, mask)."""
    y = _labels(y, n_classes)
    _, idx, mask = _choose(len(y), rate, seed)
    out = y.copy()
    out[idx] = (y[idx] + 1) % n_classes
    return out, mask


def cyclic_noise(y: np.ndarray, rate: float, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip ⌊rate·n⌋ labels y → (y + k) mod C, k cycling 1..C−1 over the flipped samples."""
    y = _labels(y, n_classes)
    _, idx, mask = _choose(len(y), rate, seed)
    out = y.copy()
    offsets = np.arange(len(idx)) % (n_classes - 1) + 1
    out[idx] = (y[idx] + offsets) % n_classes
    return out, mask


def _features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d), got shape {X.shape}")
    return X


def gaussian_features(X: np.ndarray, rate: float, sigma: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Add N(0, σ²) noise to ⌊rate·n⌋ rows. Returns (noisy features, mask)."""
    X = _features(X)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    rng, idx, mask = _choose(len(X), rate, seed)
    out = X.copy()
    out[idx] += rng.normal(0.0, sigma, size=(len(idx), X.shape[1]))
    return out, mask


def tfidf_features(X: np.ndarray, rate: float, frac: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """On ⌊rate·n⌋ rows set ⌈frac·d⌉ randomly chosen features to 1 (TF-IDF corruption)."""
    X = _features(X)
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    rng, idx, mask = _choose(len(X), rate, seed)
    out = X.copy()
    k = int(np.ceil(frac * X.shape[1]))
    for i in idx:
        out[i, rng.choice(X.shape[1], k, replace=False)] = 1.0
    return out, mask


NOISE_KINDS = ("clean", "symmetric", "pair", "cyclic", "gaussian", "tfidf")


def apply_noise(ds, kind: str, rate: float, seed: int = 0, **kwargs):
    """Corrupt a :class:`~influence.data.Dataset`: returns (noisy dataset, mask).

    ``kind`` is one of :data:`NOISE_KINDS`; ``kwargs`` go to the noise function (``sigma``, ``frac``).
    """
    if kind == "clean":
        return ds.replace(noise="clean"), np.zeros(len(ds), dtype=bool)
    label = {"symmetric": symmetric_noise, "pair": pair_noise, "cyclic": cyclic_noise}
    feature = {"gaussian": gaussian_features, "tfidf": tfidf_features}
    if kind in label:
        y, mask = label[kind](ds.y, rate, ds.n_classes, seed)
        return ds.replace(y=y, noise=kind, noise_rate=rate), mask
    if kind in feature:
        X, mask = feature[kind](ds.X, rate, seed=seed, **kwargs)
        return ds.replace(X=X, noise=kind, noise_rate=rate), mask
    raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
