"""Influence estimators: one plain function per method, registered by name.

Adding an estimator (a file in this package; outside it, see "Plug-ins" below)::

    import numpy as np
    from influence.estimators import prepare, register

    @register("final_confidence", suspicious="low")   # which end of the scores flags a suspicious sample
    def final_confidence(traj, train_data, target_data=None, *, scale: float = 1.0) -> np.ndarray:
        p = prepare("final_confidence", traj, train_data)  # X, y in the run's dtype and device; n checked
        losses = p.model.losses(traj.final, p.X, p.y)    # traj: influence.train.Trajectory
        return (-scale * losses).detach().cpu().numpy()  # one float per training sample

Keyword arguments after ``target_data`` are the hyperparameters (``estimators.<name>.hparams`` in a config).
``register`` also takes ``needs_run=False`` (works with ``traj=None``), ``sgd_only=True`` (derived for plain SGD:
other runs are refused) and ``hparams_of="other"`` (forwards ``**hparams`` to estimator ``other``). The contract
tests (tests/test_estimator_contract.py) then check it; list it under a config's ``estimators:`` to run it.

Every estimator returns one score per training sample with the project's sign convention:
the estimated change of the target loss when the sample is removed, ``L(θ^{-j}) − L(θ)``
(positive = the sample helps). Each module registers its public functions with :func:`register`;
the modules of this package are imported on first use of :func:`names` / :func:`get`.

Detection direction: every estimator declares at registration which end of its scores is suspicious
(``@register("cg_score", suspicious="high")``): ``"high"`` for difficulty / irregularity scores
(CG-score, loss, EL2N, GraNd, forgetting, self-influence, random), ``"low"`` for loss-change estimates
(the most *negative* = most harmful sample is the most suspicious), or a function of the
hyperparameters. :func:`suspicion` turns scores into "higher = more suspicious" for
:mod:`influence.metrics`.

Plug-ins: an estimator defined outside this package registers by being imported. :func:`names` / :func:`get`
import the modules of the entry-point group ``influence.estimators`` of installed distributions
(``[project.entry-points."influence.estimators"] my_estimator = "my_package.my_module"`` in its pyproject.toml)
and those named in the environment variable ``INFLUENCE_PLUGINS`` (comma-separated); the workflow's config key
``plugins:`` (a list of importable module names) loads them with :func:`load_plugins` before checking
``estimators:`` and passes them on to its jobs in ``INFLUENCE_PLUGINS``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "REGISTRY", "SUSPICIOUS", "RENAMED", "SPECS", "Spec", "Prepared", "ENTRY_POINT_GROUP", "PLUGINS_ENV",
    "register", "check_inputs", "prepare", "class_labels", "get", "names", "run", "suspicious", "suspicion",
    "hparam_names", "load_plugins",
]

REGISTRY: dict[str, Callable] = {}
# Which end of an estimator's scores is suspicious: "high", "low", or a function of the hyperparameters
# returning one of them. Declared once, at registration.
SUSPICIOUS: dict[str, str | Callable[[Mapping[str, Any]], str]] = {}
_DIRECTIONS = ("high", "low")
# Registry names that differ from the function's name, with the reason.
RENAMED: dict[str, str] = {}

#: Entry-point group of estimator plug-ins (installed distributions) and the environment variable naming more
#: plug-in modules (comma-separated; the workflow sets it from its config's ``plugins:`` for its jobs).
ENTRY_POINT_GROUP = "influence.estimators"
PLUGINS_ENV = "INFLUENCE_PLUGINS"
# What a recorded run has (influence.train.Trajectory; checked by duck typing, so any recorder's run passes).
_RUN_ATTRS = ("model", "schedule", "thetas", "steps", "l2")


@dataclass(frozen=True)
class Spec:
    """What an estimator declared at registration (see :func:`register`)."""

    suspicious: str | Callable[[Mapping[str, Any]], str]
    renamed: str | None = None
    needs_run: bool = True
    sgd_only: bool = False
    hparams_of: str | None = None


#: Every registered estimator's declaration, by name.
SPECS: dict[str, Spec] = {}


def register(
    name: str,
    *,
    suspicious: str | Callable[[Mapping[str, Any]], str],
    renamed: str | None = None,
    needs_run: bool = True,
    sgd_only: bool = False,
    hparams_of: str | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator: ``@register("cg_score", suspicious="high", needs_run=False)`` adds the function to :data:`REGISTRY`.

    ``suspicious`` says which end of the scores flags a suspicious (e.g. mislabeled) sample: ``"low"``
    for loss-change estimates (most negative = most harmful), ``"high"`` for difficulty / irregularity
    scores, or a function ``hparams -> "high" | "low"`` when it depends on a hyperparameter.
    ``renamed`` is required when the registry name differs from the function's name: the reason.
    ``needs_run=False``: the estimator accepts ``traj=None`` (it needs no recorded run, e.g. CG-score).
    ``sgd_only=True``: derived for plain SGD (θ_{t+1} = θ_t − η_t∇L); a run recorded with momentum, optimiser
    weight decay or Adam is refused (:func:`influence.optim.require_plain_sgd`).
    ``hparams_of``: for an estimator taking ``**hparams`` and passing them on, the estimator whose keyword
    arguments they are (the workflow checks a config's hyperparameters against that signature).

    The registered function is wrapped by :func:`check_inputs` (the same for every estimator): the run and
    the training and target data are validated before the estimator runs; the result is unchanged.
    """
    if not callable(suspicious) and suspicious not in _DIRECTIONS:
        raise ValueError(f"suspicious must be 'high', 'low' or a function of the hyperparameters, got {suspicious!r}")
    if hparams_of is not None and (not isinstance(hparams_of, str) or hparams_of == name):
        raise ValueError(f"hparams_of of {name!r} must name another estimator, got {hparams_of!r}")
    spec = Spec(suspicious, renamed, bool(needs_run), bool(sgd_only), hparams_of)

    def deco(fn: Callable) -> Callable:
        if fn.__name__ != name and not renamed:
            raise ValueError(f"estimator {name!r} is the function {fn.__name__!r}: give the reason (renamed=...)")
        if name in REGISTRY and REGISTRY[name].__wrapped__ is not fn:
            raise ValueError(f"estimator name {name!r} registered twice")

        @functools.wraps(fn)
        def estimator(traj: Any, train_data: Any, target_data: Any = None, *args: Any, **hparams: Any) -> Any:
            check_inputs(name, traj, train_data, target_data, needs_run=spec.needs_run, sgd_only=spec.sgd_only)
            return fn(traj, train_data, target_data, *args, **hparams)

        REGISTRY[name] = estimator
        SUSPICIOUS[name] = suspicious
        SPECS[name] = spec
        if fn.__name__ != name:
            RENAMED[name] = renamed
        return estimator

    return deco


def _check_run(name: str, traj: Any) -> None:
    """``traj`` is a recorded run: ``ValueError`` for None, ``TypeError`` for anything else that is not one."""
    if traj is None:
        raise ValueError(f"{name} needs a recorded training run (traj), got None: pass an influence.train.Trajectory "
                         "(a trajectory recorded by train() or influence.record.Recorder)")
    if not all(hasattr(traj, a) for a in _RUN_ATTRS):
        raise TypeError(f"{name}: traj must be a recorded run (influence.train.Trajectory, from train() or "
                        f"influence.record.Recorder), got {type(traj).__name__}")


def check_inputs(
    name: str, traj: Any, train_data: Any, target_data: Any = None, *, needs_run: bool = True, sgd_only: bool = False
) -> None:
    """Validate an estimator's arguments (every registered estimator runs this first, with its declaration).

    ``traj`` must be a recorded run (``None`` too where ``needs_run`` is false) and, for ``sgd_only``, one
    trained with plain SGD; then :func:`influence.validation.check_data` on ``train_data`` (against the run's
    model and n when a run is given) and on ``target_data`` (same d and label range). Each error names the
    estimator and the argument.
    """
    from influence.validation import check_data

    if traj is not None or needs_run:
        _check_run(name, traj)
    if sgd_only and traj is not None:
        from influence.optim import require_plain_sgd

        require_plain_sgd(name, traj)
    if train_data is None:
        raise ValueError(f"{name}: train_data is required")
    model, schedule = getattr(traj, "model", None), getattr(traj, "schedule", None)
    n = getattr(schedule, "n", None)
    _, d = check_data(train_data, "train_data", name, model=model, n=n)
    if target_data is not None:
        check_data(target_data, "target_data", name, model=model, n_features=d)


class Prepared(NamedTuple):
    """What :func:`prepare` returns: the data as tensors in the run's dtype, on the run's device."""

    X: Any  # torch.Tensor (n, ...)
    y: Any  # torch.Tensor (n,)
    Xt: Any  # torch.Tensor or None (no target_data)
    yt: Any
    n: int  # training samples
    model: Any  # traj.model


def class_labels(y: Any, name: str) -> Any:
    """``y`` itself when it holds one class label per sample (a 1-D integer tensor); otherwise a ``ValueError`` naming
    estimator ``name``: scores defined per class label (CG-score, EL2N, forgetting) have none for a sequence model's
    token targets or real-valued targets."""
    if y.ndim != 1 or y.is_floating_point():
        raise ValueError(f"{name}: train_data y has shape {tuple(y.shape)} ({y.dtype}); {name} needs one class label "
                         "per sample (a sequence model's token targets or real-valued targets have none)")
    return y


def prepare(
    name: str, traj: Any, train_data: Any, target_data: Any = None, *, need_all_steps: bool = False
) -> Prepared:
    """The preamble shared by the estimators that read a recorded run: checks, then tensors.

    ``traj`` must be a recorded run (``ValueError`` for None, ``TypeError`` otherwise); with ``need_all_steps``,
    a single run recorded at every step (``train(..., record='all')``). ``train_data`` (and ``target_data``,
    when given) become tensors in the dtype and on the device of ``traj.thetas``; ``train_data`` must hold the
    run's n samples. Errors name the estimator ``name``.
    """
    from influence.data import as_tensors

    _check_run(name, traj)
    if need_all_steps:
        T = traj.schedule.n_steps
        steps = [int(s) for s in traj.steps]
        if traj.thetas.ndim != 2:
            raise ValueError(f"{name} needs a single run recorded at every step (train(..., record='all')); traj "
                             f"holds several runs (thetas of shape {tuple(traj.thetas.shape)}): pass a single run")
        if steps != list(range(T + 1)):
            raise ValueError(f"{name} needs a single run recorded at every step (train(..., record='all')); "
                             f"this run recorded {len(steps)} of {T + 1} steps")
    dtype, device = traj.thetas.dtype, traj.thetas.device
    X, y = (t.to(device) for t in as_tensors(train_data, dtype))
    if X.shape[0] != traj.schedule.n:
        raise ValueError(f"{name}: train_data has {X.shape[0]} samples but the run was trained on {traj.schedule.n}")
    Xt = yt = None
    if target_data is not None:
        Xt, yt = (t.to(device) for t in as_tensors(target_data, dtype))
    return Prepared(X, y, Xt, yt, int(X.shape[0]), traj.model)


# ------------------------------------------------------------------------------------------ loading, plug-ins
_plugins_state = {"scanned": False}  # entry points and $INFLUENCE_PLUGINS: imported once per process


def _import_plugin(label: str, load: Callable[[], Any]) -> None:
    before = set(REGISTRY)
    try:
        load()
    except Exception as e:
        for name in set(REGISTRY) - before:  # a half-imported plug-in leaves nothing registered
            for table in (REGISTRY, SUSPICIOUS, SPECS, RENAMED):
                table.pop(name, None)
        raise ImportError(f"estimator plug-in {label} failed to import: {type(e).__name__}: {e}") from e


def load_plugins(modules: Iterable[str] = ()) -> list[str]:
    """Import estimator plug-in modules (importable names, e.g. ``["my_package.my_estimators"]``); their
    ``@register`` calls add them to the registry. Returns the names they registered. An import error names
    the plug-in. (Entry points of group :data:`ENTRY_POINT_GROUP` and ``$INFLUENCE_PLUGINS`` are imported by
    :func:`names` / :func:`get` themselves.)"""
    if isinstance(modules, str) or not isinstance(modules, Iterable):
        raise TypeError(f"plug-ins must be a list of importable module names, got {modules!r}")
    modules = list(modules)
    if not all(isinstance(m, str) and m for m in modules):
        raise TypeError(f"plug-ins must be a list of importable module names, got {modules!r}")
    before = set(REGISTRY)
    for m in modules:
        _import_plugin(repr(m), functools.partial(importlib.import_module, m))
    return sorted(set(REGISTRY) - before)


def _load_plugins_once() -> None:
    if _plugins_state["scanned"]:
        return
    _plugins_state["scanned"] = True  # set first: a plug-in that calls names() while importing does not recurse
    try:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            _import_plugin(f"{ep.name!r} (entry point {ep.value!r} of group {ENTRY_POINT_GROUP!r})", ep.load)
        load_plugins([m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()])
    except BaseException:
        _plugins_state["scanned"] = False  # the next call raises the same error instead of going on without it
        raise


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    _load_plugins_once()


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


def hparam_names(name: str) -> list[str]:
    """Names of the hyperparameters of estimator ``name``: its keyword arguments after (traj, train_data,
    target_data), or, for one registered with ``hparams_of=...`` (it passes ``**hparams`` on), that estimator's.
    ``TypeError`` for an estimator taking ``**hparams`` without declaring where they go (they cannot be checked)."""
    fn, base, seen = get(name), name, [name]
    while SPECS[base].hparams_of is not None:
        base = SPECS[base].hparams_of
        if base in seen:
            raise ValueError(f"estimator {name!r}: hparams_of forms a cycle {' -> '.join([*seen, base])}")
        seen.append(base)
        fn = get(base)
    params = list(inspect.signature(fn.__wrapped__).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        raise TypeError(f"estimator {name!r} takes **hparams; declare the estimator it passes them to at registration "
                        f"(@register({base!r}, ..., hparams_of=\"<that estimator>\")) so that they can be checked")
    return [p.name for p in params[3:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


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
