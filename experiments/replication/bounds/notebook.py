"""The E5 notebook's helpers (notebooks/E5_bounds.ipynb): the check records by name, each section's generated
sentence collected for the closing summary, and the reference lines its figures draw."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

REF = "0.45"  # grey of reference lines (y = x, reference slopes)
EDGE = {"edgecolors": "0.2", "linewidths": 0.3}  # dark edges: light palette colours (Ghost's yellow) stay visible


class Sections:
    """The records of the checks that ran (``metrics/E5_series.json``), by name, and the sentences said so far.

    ``done`` holds ``(name, claims, passed, key)`` per sentence, in order: the closing summary lists them.
    """

    def __init__(self, records: Iterable[Mapping[str, Any]], out: Mapping[str, str]):
        self.by_name = {r["name"]: r for r in records}
        self.out = out
        self.done: list[tuple[str, str, bool, str]] = []

    def rec(self, name: str) -> Mapping[str, Any] | None:
        """The record of the check that returned a Check called ``name`` (None when it did not run)."""
        return self.by_name.get(name)

    def say(self, name: str, text: str, key: str) -> None:
        """Show the section's generated sentence; ``key`` (its main numbers, a few words) goes to the summary."""
        from IPython.display import Markdown, display

        r = self.rec(name)
        self.done.append((name, ";".join(r.get("claims", [])) or "no claim", bool(r["passed"]), key))
        display(Markdown(text))

    def not_run(self, fig_name: str, what: str) -> None:
        """A placeholder figure and a sentence for a check that did not run in this configuration."""
        from IPython.display import Markdown, display

        from replication.plotting import placeholder

        placeholder(self.out, fig_name, f"{what}: not run in this configuration")
        display(Markdown(f"*Not run in this configuration: {what}.*"))


def verdict(r: Mapping[str, Any]) -> str:
    """'**passes**' or '**fails**', as the check's record says."""
    return "**passes**" if r["passed"] else "**fails**"


def identity_line(ax, lo: float, hi: float, label: str = "$y = x$") -> None:
    """The dashed grey line y = x from ``lo`` to ``hi``, behind the points."""
    ax.plot([lo, hi], [lo, hi], color=REF, ls="--", lw=1, label=label, zorder=0)


def ref_slope(ax, x: Sequence[float], y0: float, slope: float, label: str) -> None:
    """A dotted reference line of log–log ``slope`` through (x[0], y0), labelled at its end."""
    x = np.asarray(x, float)
    ax.plot(x, y0 * (x / x[0]) ** slope, color=REF, ls=":", lw=1)
    ax.annotate(label, (x[-1], y0 * (x[-1] / x[0]) ** slope), fontsize=6, color=REF, ha="left", va="center")


def int_ticks(ax, values: Sequence[float]) -> None:
    """Ticks at ``values`` (integers) on a log x axis, without matplotlib's minor labels."""
    ax.set_xticks(values, [str(int(v)) for v in values])
    ax.set_xticks([], minor=True)


def powerline(x: Sequence[float], fit: Mapping[str, float]) -> np.ndarray:
    """The fitted power law ``exp(log_c) * x ** slope`` (a log–log least-squares fit of the check) at ``x``."""
    x = np.asarray(x, float)
    return np.exp(fit["log_c"]) * x ** fit["slope"]
