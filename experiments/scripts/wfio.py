"""Workflow plumbing shared by the rule scripts: logging to the job's log file and the thread count.

The scripts write their outputs with :mod:`influence.io` (atomic: an interrupted job never leaves a file
Snakemake would take as complete).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any


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


def output_paths(paths: Any) -> list[str]:
    """A named output as a list of paths: Snakemake gives one path as a string, several as a list."""
    return [paths] if isinstance(paths, str) else list(paths)
