"""Atomic file output and stable hashes: the one place the library, the rule scripts and the notebooks write files.

Every file goes through :func:`atomic_write`: the bytes are written to a temporary file in the target's
own folder (so the final rename never crosses a file system), flushed, given the mode a plain ``open``
would give it (``0o666`` minus the process umask, not ``mkstemp``'s ``0o600``) and renamed into place
with ``os.replace``. On any failure the temporary file is removed, so an interrupted job never leaves a
half-written file that Snakemake would take as complete.

This module imports neither torch nor pandas, so the Snakefile can use :func:`config_hash` at plan time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_write",
    "jsonable",
    "save_json",
    "save_npy",
    "save_npz",
    "save_csv",
    "save_text",
    "read_json",
    "config_hash",
]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask (read by setting and restoring it; serialised across threads)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[IO[bytes]], Any]) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file object) to ``path`` atomically.

    Parent folders are created. The file gets mode ``0o666 & ~umask``. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(o: Any) -> Any:
    """``default=`` hook for :func:`json.dumps`: numpy scalars → Python scalars, arrays/tensors → lists."""
    if isinstance(o, np.generic):
        return o.item()
    if hasattr(o, "tolist"):  # numpy arrays, torch tensors
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def save_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True) -> Path:
    """JSON with one-space indentation and a final newline (keys sorted unless ``sort_keys=False``)."""
    text = json.dumps(obj, indent=1, sort_keys=sort_keys, default=jsonable) + "\n"
    return atomic_write(path, text.encode())


def save_npy(path: str | os.PathLike, array: Any) -> Path:
    """One array as ``.npy`` (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write(path, buf.getvalue())


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Named arrays as an uncompressed ``.npz`` (no pickles; object arrays are refused)."""
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"array {k!r} has dtype object; an .npz written here must load without pickles")
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def save_csv(path: str | os.PathLike, df: Any, *, float_format: str = "%.10g") -> Path:
    """A pandas DataFrame as CSV without its index."""
    return atomic_write(path, df.to_csv(index=False, float_format=float_format).encode())


def save_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, text.encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def config_hash(config: Any) -> str:
    """Short stable hash (12 hex digits of SHA-256) of a JSON-able configuration, key order ignored."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
