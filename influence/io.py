"""Atomic file output and stable hashes: the one place the library, the rule scripts and the notebooks write files.

Every file goes through :func:`atomic_write`: the bytes are written to a temporary file in the target's
own folder (so the final rename never crosses a file system), flushed, given the mode a plain ``open``
would give it (``0o666`` minus the process umask, not ``mkstemp``'s ``0o600``) and renamed into place
with ``os.replace``. On any failure the temporary file is removed, so an interrupted job never leaves a
half-written file that Snakemake would take as complete.

A process killed mid-write (SIGKILL, power loss) cannot remove its temporary file: an orphan
``.<name>.<8 random characters>.tmp`` stays in the target's folder. Nothing reads those (the workflow names
its files exactly, and no reader globs a pattern such a name matches: they start with a dot and end in
``.tmp``), and the next write of the same target removes its orphans older than :data:`STALE_TMP_AGE_S`
(an hour: far longer than any write, so a concurrent writer's file is never touched).

This module imports neither torch nor pandas, so the Snakefile can use :func:`config_hash` at plan time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import time
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
    "STALE_TMP_AGE_S",
]

#: Age (seconds since the last modification) after which :func:`atomic_write` removes an orphaned temporary
#: file of the target it writes.
STALE_TMP_AGE_S = 3600.0

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
    _remove_stale_tmp(path)
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


def _remove_stale_tmp(path: Path, max_age: float | None = None) -> None:
    """Remove ``path``'s orphaned temporaries (``.<name>.<8 characters>.tmp``, as ``mkstemp`` names them
    in :func:`atomic_write`) last modified more than ``max_age`` seconds ago (default
    :data:`STALE_TMP_AGE_S`). Other files, and other targets' temporaries, are left alone."""
    max_age = STALE_TMP_AGE_S if max_age is None else max_age
    pattern = re.compile(r"\." + re.escape(path.name) + r"\.[a-z0-9_]{8}\.tmp")
    now = time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for e in entries:
        if not pattern.fullmatch(e.name):
            continue
        try:
            if e.is_file(follow_symlinks=False) and now - e.stat(follow_symlinks=False).st_mtime > max_age:
                os.unlink(e.path)
        except OSError:  # removed meanwhile, or not ours to remove
            pass


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
