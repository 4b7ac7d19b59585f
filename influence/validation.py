"""One validation path for the data every public entry point takes.

:func:`check_data` is called by :func:`influence.train.train`, :func:`influence.loo.trajectory_loo`,
the LOO-to-optimum and LDS functions and every registered estimator (through
:func:`influence.estimators.register`). A failure raises ``ValueError`` (``TypeError`` for a wrong
container) naming the function and the argument, and says what was expected:

* a :class:`~influence.data.Dataset` or an ``(X, y)`` pair of arrays or tensors;
* X two-dimensional (n, d) with n ≥ 1, numeric, finite;
* y of shape (n,), integer-valued (``0.5`` is refused rather than truncated), with every label in
  ``[0, n_classes)`` of the model (binary models take {0, 1}: ``±1`` labels are refused);
* a ``Dataset``'s declared ``n_classes`` equal to the model's;
* d equal to the model's ``n_features`` and, when a run is given, n equal to the run's.

For a :class:`~influence.module.ModuleModel` (``n_features is None``) inputs and targets may have any shape
with n rows (images, token ids, token targets, real-valued targets for MSE); the returned "d" is then the
input shape ``X.shape[1:]``, which ``n_features`` compares against.

This module imports neither torch nor pandas; tensors are read through ``.detach().cpu().numpy()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_data", "to_numpy"]


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy view of an array or a torch tensor (no copy where possible)."""
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _split(data: Any, where: str, what: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    if hasattr(data, "X") and hasattr(data, "y"):
        return to_numpy(data.X), to_numpy(data.y), getattr(data, "n_classes", None)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return to_numpy(data[0]), to_numpy(data[1]), None
    raise TypeError(f"{where}: {what} must be a Dataset or an (X, y) pair, got {type(data).__name__}")


def check_data(
    data: Any,
    what: str,
    where: str,
    *,
    model: Any = None,
    n: int | None = None,
    n_features: int | None = None,
    n_source: str = "the run was trained on",
) -> tuple[int, int]:
    """Validate one data argument; return its (n, d).

    Parameters
    ----------
    data : ``Dataset`` or ``(X, y)``.
    what, where : the argument's and the calling function's names, for the error message.
    model : a :class:`~influence.models.Model` (or anything with ``n_classes`` / ``n_features``): labels
        must lie in ``[0, n_classes)``, d must equal ``n_features``, a Dataset's ``n_classes`` must match.
    n, n_features : required number of rows / features (e.g. the run's n, the training set's d);
        ``n_source`` names where n comes from in the message.
    """
    X, y, declared = _split(data, where, what)
    shaped = getattr(model, "n_features", 0) is None  # a ModuleModel: inputs and targets of any shape
    if shaped:
        if X.ndim < 1 or y.ndim < 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"{where}: {what} X and y must have as many rows, got shapes {X.shape} and {y.shape}")
    elif X.ndim != 2:
        raise ValueError(f"{where}: {what} X must be 2-D (n, d), got shape {X.shape}")
    elif y.shape != (X.shape[0],):
        raise ValueError(f"{where}: {what} y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{where}: {what} is empty (0 samples)")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {what} X must be numeric, got dtype {X.dtype}")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).reshape(X.shape[0], -1).any(1).sum())
        raise ValueError(f"{where}: {what} X contains NaN or inf (in {bad} of {X.shape[0]} rows)")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {what} y must hold integer class labels, got dtype {y.dtype}")
    if shaped and getattr(model, "loss_name", "") != "cross_entropy":
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(f"{where}: {what} y contains NaN or inf")
    elif y.dtype.kind == "f" and not (np.isfinite(y).all() and np.array_equal(y, np.round(y))):
        raise ValueError(f"{where}: {what} y must hold integer class labels, got non-integer values such as "
                         f"{y[~np.isfinite(y) | (y != np.round(y))][:3].tolist()}")
    if n is not None and X.shape[0] != n:
        raise ValueError(f"{where}: {what} has {X.shape[0]} samples but {n_source} {n}")
    if shaped:
        d = tuple(X.shape[1:])
        if n_features is not None and d != tuple(n_features):
            raise ValueError(f"{where}: {what} has inputs of shape {d}, expected {tuple(n_features)} (as train_data)")
        if y.dtype.kind in "biu" and getattr(model, "n_classes", None) is not None:
            lo, hi, C = int(y.min()), int(y.max()), model.n_classes
            if lo < 0 or hi >= C:
                raise ValueError(f"{where}: {what} has labels in [{lo}, {hi}], the model has {C} classes")
        return X.shape[0], d
    d = X.shape[1]
    want_d = n_features if n_features is not None else getattr(model, "n_features", None)
    if want_d is not None and d != want_d:
        src = "the model expects" if n_features is None else "expected"
        raise ValueError(f"{where}: {what} has {d} features, {src} {want_d}")
    C = getattr(model, "n_classes", None)
    if C is not None:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= C:
            hint = " (binary models take labels 0/1, not ±1)" if C == 2 else ""
            raise ValueError(f"{where}: {what} has labels in [{lo}, {hi}], the model has {C} classes: labels must "
                             f"lie in [0, {C - 1}]{hint}")
        if declared is not None and int(declared) != C:
            raise ValueError(f"{where}: {what} is a {declared}-class Dataset, the model has {C} classes")
    return X.shape[0], d
