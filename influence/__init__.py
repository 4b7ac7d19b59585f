"""Training-data influence along the training trajectory: estimators, ground truth and checks.

The public API, importable from the package itself (``from influence import Recorder, trajectory_loo``)
or from its module:

* data — ``Dataset``, ``load_dataset``, ``make_splits``, ``as_tensors`` (:mod:`influence.data`);
* models — ``Model``, ``logistic_regression``, ``mlp`` (:mod:`influence.models`) and ``ModuleModel``, any
  ``nn.Module`` with any per-sample loss (:mod:`influence.module`);
* train / record — ``Schedule``, ``Trajectory`` and the function ``train.train`` (:mod:`influence.train`; the
  names ``influence.train`` and ``influence.capture`` are the modules); ``Recorder``, your own
  loop recorded (:mod:`influence.record`); ``SGD`` / ``AdamW`` updates (:mod:`influence.optim`);
* ground truth — ``trajectory_loo``, ``loo_to_optimum``, ``lds`` (:mod:`influence.loo`);
* estimators — ``estimators`` (the registry: ``estimators.get(name)``, ``estimators.run``, ``register``);
* online — ``capture.capture`` (:mod:`influence.capture`), ``curated_step`` (:mod:`influence.curation`);
* metrics — ``agreement`` and the detection metrics (:mod:`influence.metrics`).

Names load on first use, so ``import influence`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_HOME = {
    "Dataset": "data", "load_dataset": "data", "make_splits": "data", "as_tensors": "data",
    "Model": "models", "logistic_regression": "models", "mlp": "models",
    "ModuleModel": "module",
    "Schedule": "train", "Trajectory": "train", "TrainingDiverged": "train",
    "Recorder": "record", "SGD": "optim", "AdamW": "optim",
    "trajectory_loo": "loo", "loo_to_optimum": "loo", "lds": "loo",
    "curated_step": "curation",
    "agreement": "metrics",
}
_MODULES = ("data", "models", "module", "train", "record", "optim", "loo", "estimators", "capture", "curation",
            "metrics")

__all__ = ["__version__", *_HOME, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f"influence.{_HOME[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"influence.{name}")
    else:
        raise AttributeError(f"module 'influence' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
