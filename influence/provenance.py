"""Time, peak memory and provenance of a computation.

``with measure() as m: ...`` records wall time and the peak resident set size of the process while the
block ran (sampled by a background thread every ``interval`` seconds, so allocations shorter than that
can be missed; the process-lifetime peak from ``getrusage`` is recorded too). Torch allocates outside
Python's allocator, so ``tracemalloc`` would miss most of it; RSS does not.
"""

from __future__ import annotations

import functools
import platform
import resource
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

__all__ = ["measure", "environment", "source_commit"]


@contextmanager
def measure(interval: float = 0.005) -> Iterator[dict[str, float]]:
    """Measure a block: yields a dict filled on exit with ``wall_s``, ``peak_rss_mb`` (peak RSS while
    the block ran), ``rss_before_mb``, ``peak_delta_mb`` (peak minus RSS before) and
    ``max_rss_lifetime_mb``."""
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], proc.memory_info().rss)

    thread = threading.Thread(target=poll, daemon=True)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    thread.start()
    try:
        yield out
    finally:
        wall = time.perf_counter() - t0
        stop.set()
        thread.join()
        peak[0] = max(peak[0], proc.memory_info().rss)
        mb = 1024.0**2
        out.update(
            wall_s=wall,
            peak_rss_mb=peak[0] / mb,
            rss_before_mb=before / mb,
            peak_delta_mb=(peak[0] - before) / mb,
            max_rss_lifetime_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        )


def environment() -> dict[str, Any]:
    """Library versions, the git commit of the checkout (:func:`source_commit`), thread count and platform, for
    provenance records."""
    from influence import __version__

    return {
        "influence": __version__,
        "commit": source_commit(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


@functools.cache
def source_commit() -> str | None:
    """The git commit of the checkout the library is imported from, with ``-dirty`` appended when tracked files
    differ from it (``git describe --always --dirty --abbrev=40``); ``None`` for an installed wheel or where git
    is missing. Read once per process."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    top = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                         timeout=10, check=False)
    if top.returncode != 0 or not (Path(top.stdout.strip()) / "influence" / "provenance.py").is_file():
        return None  # a wheel installed inside some other git repository: that commit is not ours
    return out.stdout.strip() or None
