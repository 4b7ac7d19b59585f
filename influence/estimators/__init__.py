"""Influence estimators: one plain function per method, registered by name.

Every estimator returns one score per training sample with the project's sign convention:
the estimated change of the target loss when the sample is removed, ``L(θ^{-j}) − L(θ)``
(positive = the sample helps). Each module registers its public functions with :func:`register`;
the modules of this package are imported on first use of :data:`REGISTRY` / :func:`get`.

Detection direction: every estimator declares at registration which end of its scores is suspicious
(``@register("cg_score", suspicious="high")``): ``"high"`` for difficulty / irregularity scores
(CG-score, loss, EL2N, GraNd, forgetting, self-influence, random), ``"low"`` for loss-change estimates
(the most *negative* = most harmful sample is the most suspicious), or a function of the
hyperparameters. :func:`suspicion` turns scores into "higher = more suspicious" for
:mod:`influence.metrics`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "REGISTRY", "SUSPICIOUS", "RENAMED", "register", "check_inputs", "get", "names", "run", "suspicious", "suspicion",
]

REGISTRY: dict[str, Callable] = {}
# Which end of an estimator's scores is suspicious: "high", "low", or a function of the hyperparameters
# returning one of them. Declared once, at registration.
SUSPICIOUS: dict[str, str | Callable[[Mapping[str, Any]], str]] = {}
_DIRECTIONS = ("high", "low")
# Registry names that differ from the function's name, with the reason.
RENAMED: dict[str, str] = {}


def register(
    name: str, *, suspicious: str | Callable[[Mapping[str, Any]], str], renamed: str | None = None
) -> Callable[[Callable], Callable]:
    """Decorator: ``@register("cg_score", suspicious="high")`` adds the function to :data:`REGISTRY`.

    ``suspicious`` says which end of the scores flags a suspicious (e.g. mislabeled) sample: ``"low"``
    for loss-change estimates (most negative = most harmful), ``"high"`` for difficulty / irregularity
    scores, or a function ``hparams -> "high" | "low"`` when it depends on a hyperparameter.
    ``renamed`` is required when the registry name differs from the function's name: the reason.

    The registered function is wrapped by :func:`check_inputs` (the same for every estimator): the
    training and target data are validated before the estimator runs; the result is unchanged.
    """
    if not callable(suspicious) and suspicious not in _DIRECTIONS:
        raise ValueError(f"suspicious must be 'high', 'low' or a function of the hyperparameters, got {suspicious!r}")

    def deco(fn: Callable) -> Callable:
        if fn.__name__ != name and not renamed:
            raise ValueError(f"estimator {name!r} is the function {fn.__name__!r}: give the reason (renamed=...)")
        if name in REGISTRY and REGISTRY[name].__wrapped__ is not fn:
            raise ValueError(f"estimator name {name!r} registered twice")

        @functools.wraps(fn)
        def estimator(traj: Any, train_data: Any, target_data: Any = None, *args: Any, **hparams: Any) -> Any:
            check_inputs(name, traj, train_data, target_data)
            return fn(traj, train_data, target_data, *args, **hparams)

        REGISTRY[name] = estimator
        SUSPICIOUS[name] = suspicious
        if fn.__name__ != name:
            RENAMED[name] = renamed
        return estimator

    return deco


def check_inputs(name: str, traj: Any, train_data: Any, target_data: Any = None) -> None:
    """Validate an estimator's data (every registered estimator runs this first).

    :func:`influence.validation.check_data` on ``train_data`` (against the run's model and n when a
    run is given) and on ``target_data`` (same d and label range). Each error names the estimator
    and the argument.
    """
    from influence.validation import check_data

    if train_data is None:
        raise ValueError(f"{name}: train_data is required")
    model, schedule = getattr(traj, "model", None), getattr(traj, "schedule", None)
    n = getattr(schedule, "n", None)
    _, d = check_data(train_data, "train_data", name, model=model, n=n)
    if target_data is not None:
        check_data(target_data, "target_data", name, model=model, n_features=d)


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def names() -> list[str]:
    """Sorted names of all registered estimators."""
    _load_all()
    return sorted(REGISTRY)


def get(name: str) -> Callable:
    """The estimator registered as ``name`` (clear error listing the known names otherwise)."""
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown estimator {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def run(name: str, *args: Any, **hparams: Any) -> tuple[Any, dict]:
    """Call estimator ``name`` and return ``(scores, record)``; the record holds the hyperparameters,
    wall time, peak memory and library versions (the provenance kept next to every score file)."""
    import numpy as np

    from influence.provenance import environment, measure

    fn = get(name)
    with measure() as m:
        scores = fn(*args, **hparams)
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise FloatingPointError(f"estimator {name!r} returned NaN/inf scores")
    return scores, {"estimator": name, "hparams": hparams, **m, "env": environment()}


def suspicious(
    name: str, hparams: Mapping[str, Any] | None = None, overrides: Mapping[str, str] | None = None
) -> str:
    """``"high"`` or ``"low"``: which end of estimator ``name``'s scores is suspicious.

    ``overrides`` (a config's ``{name: "high" | "low"}``) wins over the direction declared at
    registration; a declared function is called with ``hparams``.
    """
    get(name)  # a clear error for an unknown name
    d = (overrides or {}).get(name)
    if d is None:
        d = SUSPICIOUS[name]
        if callable(d):
            d = d(dict(hparams or {}))
    if d not in _DIRECTIONS:
        raise ValueError(f"suspicious direction of {name!r} must be 'high' or 'low', got {d!r}")
    return d


def suspicion(
    name: str, scores: Any, overrides: Mapping[str, str] | None = None, hparams: Mapping[str, Any] | None = None
):
    """Scores turned into a suspicion (higher = more suspicious) for :mod:`influence.metrics`:
    ``scores`` if :func:`suspicious` is ``"high"``, ``−scores`` if it is ``"low"``."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    return s if suspicious(name, hparams, overrides) == "high" else -s
