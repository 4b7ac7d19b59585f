"""E6: cost — wall time and peak memory of every estimator and of the trajectory-LOO ground truth.

:func:`cost_table` reads the provenance records written next to every score file
(:func:`influence.estimators.run`: estimator, hyperparameters, ``wall_s``, ``peak_rss_mb``, setting, …)
and the provenance sidecars of the LOO ground-truth files (``loo.npz.json`` next to ``loo.npz``, written by
:meth:`influence.loo.LOOResult.save_provenance` / :func:`influence.loo.merge_provenance`: wall time summed
over the shards, peak memory), and flattens them into one table with one row per (setting, estimator).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from influence.io import read_json

__all__ = ["SETTING_KEYS", "cost_table"]

#: The setting a LOO file belongs to, read from its five parent folders ``…/<dataset>/<noise>/<model>/
#: <epochs>/<seed>/loo.npz`` (the workflow's layout; ``epochs`` and ``seed`` as ``ep<k>`` / ``seed<k>``).
SETTING_KEYS = ("dataset", "noise", "model", "epochs", "seed")


def _loo_record(path: str | os.PathLike) -> dict[str, Any]:
    """The cost of one LOO ground truth: its timing from the sidecar ``<path>.json``, its size from ``path``."""
    with np.load(path, allow_pickle=False) as z:
        n_loo = len(z["indices"])
    prov = read_json(f"{os.fspath(path)}.json")
    setting = dict(zip(SETTING_KEYS, str(path).split("/")[-6:-1], strict=True))
    return {"estimator": "trajectory_loo", "kind": "ground_truth", "wall_s": prov.get("wall_s"),
            "peak_rss_mb": prov.get("peak_rss_mb"), "n_loo": n_loo, "n_train": n_loo,
            **{f"setting_{k}": v for k, v in setting.items()}}


def cost_table(provenance: Iterable[str | os.PathLike], loo: Iterable[str | os.PathLike] = ()) -> pd.DataFrame:
    """One row per estimator provenance record (``kind='estimator'``, duplicates of a path read once) and
    per LOO file (``kind='ground_truth'``, ``estimator='trajectory_loo'``; its wall time and peak memory from
    the sidecar ``<loo>.json``).

    The setting becomes ``setting_<key>`` columns (``setting_epochs`` / ``setting_seed`` as integers);
    nested values (hyperparameters, environment) are dropped.
    """
    records = []
    for p in dict.fromkeys(provenance):
        r = read_json(p)
        r.update({f"setting_{k}": v for k, v in r.pop("setting", {}).items()})
        r["kind"] = "estimator"
        records.append(r)
    records += [_loo_record(p) for p in loo]
    table = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in records])
    for col in ("setting_epochs", "setting_seed"):
        if col in table:
            table[col] = table[col].astype(str).str.replace(r"^(ep|seed)", "", regex=True).astype(int)
    return table
