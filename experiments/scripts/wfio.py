"""Plumbing shared by the rule scripts: logging to the job's log file, thread count, atomic writes.

Every output goes through a temporary file in the same folder and ``os.replace`` (see
``influence.train._atomic``), so an interrupted job never leaves a file Snakemake would take as complete.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def setup(snakemake: Any) -> logging.Logger:
    """Log to the job's log file (and stderr), fix the torch thread count to the job's threads."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    threads = max(1, int(snakemake.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if "torch" in sys.modules:  # only scripts that use torch pay for importing it
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
    return logging.getLogger(f"rule.{snakemake.rule}")


def _atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    _atomic(path, (json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n").encode())


def write_npy(path: str | os.PathLike, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    _atomic(path, buf.getvalue())


def write_csv(path: str | os.PathLike, df: Any) -> None:
    _atomic(path, df.to_csv(index=False, float_format="%.10g").encode())


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic(path, text.encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())
