"""What the notebooks (notebooks/E*.ipynb) share: showing the figure a cell saved, numbers for the generated text,
intervals over seeds, a palette for many policies and the closing claims section.

The notebooks only read results and draw; they import these so that each opens with its inputs, not with helpers.
The E5 notebook's own helpers (check records, reference lines) are in :mod:`replication.bounds.notebook`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np


def show(out: Mapping[str, str], name: str) -> None:
    """Display the PNG of figure ``name`` just written (so the executed notebook and its HTML copy carry it)."""
    from IPython.display import Image, display

    display(Image(filename=out[f"{name}_png"]))


def sig(x: float | None, digits: int = 3) -> str:
    """A number for the generated text: ``digits`` significant digits, or 'n/a' (None, nan, inf)."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def t_interval(x: Iterable[float]) -> tuple[float, float]:
    """Mean and 95 % t-interval half-width over seeds (nan half-width for one seed; non-finite values left out)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return (float(x.mean()) if len(x) else np.nan), np.nan
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def policy_palette(names: Iterable[str], reference: str = "vanilla_clean") -> dict[str, str]:
    """``{name: colour}``: :func:`replication.plotting.palette`'s fixed colour per name, except that a name whose
    colour an earlier one has gets the next free colour of seaborn's colour-blind palette (the hash colours of
    similar names can collide), and ``reference`` (the clean-data run) is grey."""
    import seaborn as sns

    from replication.plotting import palette

    grey = "#949494"
    out, used = {}, set()
    free = [c for c in sns.color_palette("colorblind").as_hex() if c != grey]
    for n in names:
        c = grey if n == reference else palette([n])[n]
        if c in used:
            c = next(f for f in free if f not in used)
        out[n] = c
        used.add(c)
    return out


def claims_section(ids: Iterable[str], inp: Mapping[str, str]) -> str:
    """The closing claims section (Markdown) of a notebook whose named inputs are ``inp``: the claims ``ids``
    judged on the notebook's tables (every input but ``claims_yaml``; :func:`replication.report.notebook_claims`)."""
    from replication.plotting import read
    from replication.report import notebook_claims

    tables = {Path(p).stem: read(p) for k, p in inp.items() if k != "claims_yaml" and p}
    return notebook_claims(ids, inp["claims_yaml"], tables)
