"""The leave-one-out result and its files: :class:`LOOResult` (``.npz`` + JSON provenance sidecar), sharding
and merging. NumPy only, so that the jobs that merge and evaluate LOO results do not pay for importing torch;
:mod:`influence.loo` computes them (and re-exports everything here).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from influence.io import read_json, save_json, save_npz

__all__ = ["MEASURED_KEYS", "LOOResult", "sidecar", "read_provenance", "merge_provenance", "shard_indices", "merge_loo"]


#: The keys :func:`influence.provenance.measure` adds to ``LOOResult.meta``: how long and how much memory the
#: computation took. They vary from run to run, so :meth:`LOOResult.save` keeps them out of the ``.npz`` (whose
#: bytes then depend on the inputs only) and :meth:`LOOResult.save_provenance` writes them to a JSON sidecar.
MEASURED_KEYS = ("wall_s", "peak_rss_mb", "rss_before_mb", "peak_delta_mb", "max_rss_lifetime_mb")


@dataclass
class LOOResult:
    """Leave-one-out outcome for the removed samples ``indices``.

    ``loss_change[r] = L(θ^{-j}) − L(θ)`` for j = indices[r] (target loss without L2; positive = j
    helps), ``delta_theta[r] = θ^{-j} − θ``, ``target_losses[r]`` the per-target-sample losses at
    θ^{-j}, ``base_target_losses`` those at θ. ``meta``: the method and its settings, plus (in memory,
    fresh from a computation) the measurements of :data:`MEASURED_KEYS`.
    """

    indices: np.ndarray
    delta_theta: np.ndarray
    loss_change: np.ndarray
    target_losses: np.ndarray
    base_target_losses: np.ndarray
    meta: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        """The run-dependent part of ``meta``: the measurements (:data:`MEASURED_KEYS`) it holds."""
        return {k: self.meta[k] for k in MEASURED_KEYS if k in self.meta}

    def save(self, path: str | Path) -> None:
        """The arrays and the deterministic part of ``meta`` (measurements left out) as an ``.npz``: the same
        inputs give the same bytes."""
        arrays = {k: getattr(self, k) for k in ("indices", "delta_theta", "loss_change", "target_losses",
                                                "base_target_losses")}
        meta = {k: v for k, v in self.meta.items() if k not in MEASURED_KEYS}
        arrays["meta"] = np.array(json.dumps(meta, default=str, sort_keys=True))
        save_npz(path, **arrays)

    def save_provenance(self, path: str | Path, **extra: Any) -> None:
        """The JSON sidecar of a saved result (by convention ``<result>.npz.json``, see :func:`sidecar`): the
        measurements, the library versions (:func:`influence.provenance.environment`) and ``extra``."""
        from influence.provenance import environment  # (imports torch: only the job computing the result calls this)

        save_json(path, {**self.provenance(), "n_loo": len(self.indices), "env": environment(), **extra})

    @classmethod
    def load(cls, path: str | Path) -> LOOResult:
        """Read a result written by :meth:`save` (its sidecar is not read: :func:`read_provenance`)."""
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        meta = json.loads(str(d.pop("meta")))
        return cls(**d, meta=meta)

    def scores(self, n: int) -> np.ndarray:
        """Loss changes as a length-n vector, NaN for samples not computed."""
        out = np.full(n, np.nan)
        out[self.indices] = self.loss_change
        return out


def sidecar(path: str | Path) -> Path:
    """Where the provenance of the LOO result ``path`` lives: ``path`` + ``.json`` (``loo.npz.json``)."""
    return Path(str(path) + ".json")


def read_provenance(path: str | Path) -> dict:
    """The provenance record (:meth:`LOOResult.save_provenance`) of the LOO result ``path``, from its sidecar."""
    return read_json(sidecar(path))


def merge_provenance(records: Sequence[dict]) -> dict:
    """Provenance of merged shards: total ``wall_s`` (the shards' sum, as if run one after the other), the
    largest of each memory figure, the shard count and the shards' own records under ``shard_records``."""
    if not records:
        raise ValueError("nothing to merge")
    out: dict[str, Any] = {"wall_s": float(sum(r.get("wall_s", 0.0) for r in records))}
    for k in MEASURED_KEYS[1:]:
        vals = [r[k] for r in records if r.get(k) is not None]
        if vals:
            out[k] = float(max(vals))
    out["n_loo"] = int(sum(r.get("n_loo", 0) for r in records))
    out["shards"] = len(records)
    if "env" in records[0]:
        out["env"] = records[0]["env"]
    out["shard_records"] = list(records)
    return out


def shard_indices(n: int, n_shards: int, shard: int, subset: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices of the samples handled by ``shard`` of ``n_shards``: all n, or a seeded random subset
    of size ``subset``, split into contiguous nearly equal parts (sorted)."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in [0, {n_shards}), got {shard}")
    if subset is not None and not 1 <= subset <= n:
        raise ValueError(f"subset must be in [1, {n}], got {subset}")
    idx = np.arange(n) if subset is None else np.sort(np.random.default_rng(seed).choice(n, subset, replace=False))
    return np.array_split(idx, n_shards)[shard]


def merge_loo(parts: Sequence[LOOResult]) -> LOOResult:
    """Concatenate shards (checks that they share the base run)."""
    if not parts:
        raise ValueError("nothing to merge")
    base = parts[0].base_target_losses
    for p in parts[1:]:
        if not np.array_equal(p.base_target_losses, base):
            raise ValueError("LOO shards come from different base runs (base target losses differ)")
    idx = np.concatenate([p.indices for p in parts])
    if len(np.unique(idx)) != len(idx):
        raise ValueError("LOO shards overlap")
    order = np.argsort(idx)
    cat = lambda k: np.concatenate([getattr(p, k) for p in parts])[order]  # noqa: E731
    meta = {k: v for k, v in parts[0].meta.items() if k not in MEASURED_KEYS and k != "shard"}
    if all("wall_s" in p.meta for p in parts):  # fresh computations (a loaded .npz holds no measurements)
        meta["wall_s"] = float(sum(p.meta["wall_s"] for p in parts))
    meta["shards"] = len(parts)
    return LOOResult(idx[order], cat("delta_theta"), cat("loss_change"), cat("target_losses"), base, meta)
