"""Influence estimators: one plain function per method, registered by name.

Every estimator returns one score per training sample with the project's sign convention:
the estimated change of the target loss when the sample is removed, ``L(θ^{-j}) − L(θ)``
(positive = the sample helps). Each module registers its public functions with :func:`register`;
the modules of this package are imported on first use of :data:`REGISTRY` / :func:`get`.

Detection direction: a registered function may carry ``fn.suspicion`` = +1 ("high score =
suspicious": CG-score, loss, EL2N, GraNd, forgetting, self-influence, random) or −1 (the default: a
loss-change estimate, where the most *negative* = most harmful sample is the most suspicious).
:func:`suspicion` turns scores into "higher = more suspicious" for :mod:`influence.metrics`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

__all__ = ["REGISTRY", "register", "get", "names", "run", "suspicion_direction", "suspicion"]

REGISTRY: dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: ``@register("tracin")`` adds the function to :data:`REGISTRY` under ``name``."""

    def deco(fn: Callable) -> Callable:
        if name in REGISTRY and REGISTRY[name] is not fn:
            raise ValueError(f"estimator name {name!r} registered twice")
        REGISTRY[name] = fn
        return fn

    return deco


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


def run(name: str, *args, **hparams):
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


def suspicion_direction(estimator) -> int:
    """+1 if high scores of this estimator are suspicious, −1 otherwise (its ``suspicion`` attribute;
    default −1, the loss-change sign convention)."""
    fn = get(estimator) if isinstance(estimator, str) else estimator
    d = int(getattr(fn, "suspicion", -1))
    if d not in (-1, 1):
        raise ValueError(f"estimator {estimator!r} has suspicion={d}; must be +1 or -1")
    return d


def suspicion(estimator, scores):
    """Scores turned into a suspicion (higher = more suspicious) for :mod:`influence.metrics`."""
    import numpy as np

    return suspicion_direction(estimator) * np.asarray(scores, dtype=np.float64)
