"""A tiny estimator plug-in: defined outside :mod:`influence.estimators`, registered by being imported.

Importable as ``plugin_example`` with ``tests/`` on the path (pytest puts it there). tests/test_plugins.py loads it
through each mechanism: the workflow config's ``plugins: [plugin_example]`` and an entry point of group
``influence.estimators`` (in a distribution's pyproject.toml:
``[project.entry-points."influence.estimators"] plugin_example = "plugin_example"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from influence.estimators import prepare, register


@register("plugin_example_loss", suspicious="high")
def plugin_example_loss(traj: Any, train_data: Any, target_data: Any = None, *, scale: float = 1.0) -> np.ndarray:
    """``scale`` times each training sample's loss at the end of the run (high = suspicious)."""
    p = prepare("plugin_example_loss", traj, train_data, target_data)
    return (scale * p.model.losses(traj.final, p.X, p.y)).detach().cpu().numpy()
