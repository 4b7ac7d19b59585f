"""Workflow plumbing shared by the rule scripts: logging to the job's log file (failures included) and the thread
count.

Every rule script calls ``log = setup(snakemake)`` right after its imports. Snakemake's ``script:`` directive runs
the script as ``python <temporary copy>`` in a subprocess, so an exception nobody catches ends that interpreter
through :data:`sys.excepthook`. Importing this module from a rule script sets that hook to :func:`log_uncaught`,
which writes the exception (its type, message and full traceback) into the job's ``log:`` file and onto stderr; the
script then exits non-zero as before. An exception raised before ``setup`` (a failed import of the library) lands in
the log too: the hook opens it from the script's ``snakemake`` object.

The batched jobs of ``batch_seeds`` (experiments/scripts/seeds.py) call ``setup(snakemake, batch=True)``: the
per-seed scripts they run log into their own log files and into the batch job's, the log Snakemake names when the
batch fails.

The rules that are not ``script:`` rules do not use this module: ``shell:`` rules send their stderr to their log
(``2> {log}``); a ``notebook:`` rule's log is the executed notebook, written by Snakemake's notebook directive. When
a cell fails, papermill (if installed) still writes that notebook, the error in it; jupyter nbconvert (the fallback)
writes none, and the error (CellExecutionError, with the cell's traceback) is on Snakemake's stderr.

The scripts write their outputs with :mod:`influence.io` (atomic: an interrupted job never leaves a file
Snakemake would take as complete).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# the log file of the batch job running this script (seeds.py): kept by every later setup
_batch_handlers: list[logging.Handler] = []
_log = logging.getLogger("rule")  # the logger of the job, once setup has run
_configured = False


def setup(snakemake: Any, batch: bool = False) -> logging.Logger:
    """Log to the job's log file (and stderr), fix the torch thread count to the job's threads.

    ``batch``: this job runs other rule scripts (seeds.py), whose log records go to its log file too.
    """
    global _log, _configured
    _log_to(snakemake.log[0] if snakemake.log else None, batch)
    _log, _configured = logging.getLogger(f"rule.{snakemake.rule}"), True
    threads = max(1, int(snakemake.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if "torch" in sys.modules:  # only scripts that use torch pay for importing it
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
    return _log


def close_job_log() -> None:
    """In a batch job: stop logging to the log file of the script that ran last; the batch's own log stays."""
    _log_to(None)


def _log_to(path: str | None, batch: bool = False) -> None:
    """Send the root logger's records to stderr, the log file ``path`` (if any) and the batch job's log file."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if h not in _batch_handlers:
            h.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
        if batch:
            _batch_handlers.append(handlers[-1])
    for h in handlers + _batch_handlers:
        h.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(h)  # once: addHandler skips a handler it has
    root.setLevel(logging.INFO)


def log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """``sys.excepthook`` of a rule script: the exception, its message and traceback into the job's log and stderr."""
    if not _configured:  # failed before setup (an import): log to the job's file all the same
        job = getattr(sys.modules.get("__main__"), "snakemake", None)
        if job is None or not hasattr(job, "log"):
            sys.__excepthook__(exc_type, exc, tb)
            return
        _log_to(job.log[0] if job.log else None)
    _log.critical("the job failed: %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb))


def output_paths(paths: Any) -> list[str]:
    """A named output as a list of paths: Snakemake gives one path as a string, several as a list."""
    return [paths] if isinstance(paths, str) else list(paths)


if hasattr(sys.modules.get("__main__"), "snakemake"):  # imported by a rule script (not by a test, say)
    sys.excepthook = log_uncaught
