"""Shared helpers of the report notebooks: palette, table reading, figure and table output.

The notebooks only draw: they read the metric tables written by the workflow with :func:`read` and write
the figures and tables named by their Snakemake rule with :func:`savefig`, :func:`placeholder` and
:func:`savetable`. Every file goes through :func:`influence.io.atomic_write`.

Matplotlib and seaborn are imported only when a function needs them; the module never imports torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from influence.io import atomic_write, read_json, save_csv, save_text
from replication.report import escape, tex_unicode

__all__ = [
    "COLUMN_WIDTH",
    "PALETTE",
    "color",
    "palette",
    "set_theme",
    "read",
    "savefig",
    "placeholder",
    "ascii_tex",
    "savetable",
]

#: Width of one paper column, in inches.
COLUMN_WIDTH = 3.4

# fmt: off
# seaborn's "colorblind", then its "dark" and "pastel" palettes (10 colours each), as hex, and two of "deep".
_COLORS = (
    "#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133", "#56b4e9",
    "#001c7f", "#b1400d", "#12711c", "#8c0800", "#591e71", "#592f0d", "#a23582", "#3c3c3c", "#b8850a", "#006374",
    "#a1c9f4", "#ffb482", "#8de5a1", "#ff9f9b", "#d0bbff", "#debb9b", "#fab0e4", "#cfcfcf", "#fffea3", "#b9f2f0",
    # for the other-sign rows of Diff-In (seaborn's "deep" blue and orange) and the metagradient ("deep" green)
    "#4c72b0", "#dd8452", "#55a868",
)

# Estimators, then curation policies and baselines; the position gives the colour.
_ORDER = (
    "sgd_ie", "acc_sgd_ie", "diffin_paper", "diffin", "diffin_self", "tracin", "grad_dot", "influence_function",
    "ghost", "lai", "lai_last_layer", "self_influence", "cg_score", "loss", "el2n", "grand", "forgetting",
    "random", "oracle", "random_removal", "trajectory_loo", "vanilla", "small_loss",
    "ghost_flat", "lai_self", "lai_self_offdiag", "ghost_self", "ghost_flat_self", "vanilla_clean", "dvemb",
    "diffin_paper_negated", "diffin_self_negated", "metagradient",
)

# E7 colours its bars by library; those names never share a figure with the names above.
_LIBRARIES = ("ours", "dattri", "captum", "kronfluence", "traker")

#: Fixed colour (hex) of every known estimator, policy, baseline and peer library name.
PALETTE: Mapping[str, str] = MappingProxyType(
    {**{n: _COLORS[i] for i, n in enumerate(_ORDER)}, **{n: _COLORS[i] for i, n in enumerate(_LIBRARIES)}}
)

# fmt: on


def color(name: str) -> str:
    """Colour (hex) of one name.

    Known names get their entry of :data:`PALETTE`; any other name a colour picked by a hash of the name,
    the same in every process and figure.
    """
    if name in PALETTE:
        return PALETTE[name]
    return _COLORS[int(hashlib.sha256(str(name).encode()).hexdigest(), 16) % len(_COLORS)]


def palette(names: Iterable[str]) -> dict[str, str]:
    """``{name: colour}`` for the distinct ``names``, e.g. a seaborn ``palette=`` argument."""
    return {n: color(n) for n in dict.fromkeys(names)}


def set_theme() -> None:
    """Seaborn style of every report figure (paper context, white grid)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)


def read(path: str | os.PathLike | None) -> pd.DataFrame:
    """A metric table (CSV, or JSON records); empty when the experiment was not run in this configuration.

    A missing, empty or unset (``None``, ``""``, ``[]``) path gives an empty DataFrame.
    """
    if not path:
        return pd.DataFrame()
    try:
        if Path(path).suffix == ".json":
            return pd.DataFrame(read_json(path))
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, FileNotFoundError):
        return pd.DataFrame()


def savefig(fig: Any, out: Mapping[str, str], name: str) -> None:
    """Write ``fig`` to ``out[f"{name}_pdf"]`` and ``out[f"{name}_png"]`` (160 dpi), then close it.

    Both are reproducible: the same figure gives the same bytes. The PDF gets no ``CreationDate`` (its only
    time-dependent field; ``Producer`` names the matplotlib version); the PNG already has none (its
    ``Software`` text names the matplotlib version).
    """
    import matplotlib.pyplot as plt

    atomic_write(out[f"{name}_pdf"], lambda f: fig.savefig(f, format="pdf", bbox_inches="tight",
                                                           metadata={"CreationDate": None}))
    atomic_write(out[f"{name}_png"], lambda f: fig.savefig(f, format="png", dpi=160, bbox_inches="tight"))
    plt.close(fig)


def placeholder(out: Mapping[str, str], name: str, message: str) -> None:
    """Write a figure holding only ``message`` (an experiment not run in this configuration)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 1.0))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    savefig(fig, out, name)


def ascii_tex(tex: str) -> str:
    """``tex`` (LaTeX) with every non-ASCII character as TeX that plain pdflatex renders (math symbols as math,
    accents as accent commands, an unknown character as a visible ``[U+XXXX]``): the project's one escaper,
    :func:`replication.report.tex_unicode`."""
    return tex_unicode(tex)


def savetable(
    df: pd.DataFrame, out: Mapping[str, str], name: str, caption: str, tex_df: pd.DataFrame | None = None
) -> None:
    """Write ``df`` to ``out[f"{name}_csv"]`` and a bare LaTeX tabular to ``out[f"{name}_tex"]``.

    Parameters
    ----------
    df : DataFrame
        The full table; CSV without index, floats as ``%.6g``.
    out : mapping
        Output paths by key (``snakemake.output``).
    name : str
        Table name; the keys are ``{name}_csv`` and ``{name}_tex``.
    caption : str
        First line of the TeX file as a comment (the report sets the caption), or the note written
        instead of the tabular when the table is empty.
    tex_df : DataFrame, optional
        A compact version of ``df`` for the TeX file (floats as ``%.3g``, missing values as ``--``).
    """
    save_csv(out[f"{name}_csv"], df, float_format="%.6g")
    t = df if tex_df is None else tex_df
    if len(t):
        tex = f"% {caption}\n" + t.to_latex(index=False, float_format="%.3g", escape=True, na_rep="--")
    else:
        tex = "\\emph{" + escape(caption) + ": not run in this configuration.}\n"
    save_text(out[f"{name}_tex"], ascii_tex(tex))


#: Columns of the ``make bench`` summary (``experiments/benchmarks/summary.py``) the notebooks show.
BENCH_COLUMNS = ["group", "case", "ours", "reference", "unit", "ours_time", "ref_time", "ref_over_ours",
                 "cpu_ref_over_ours", "ours_peak_mb", "ref_peak_mb", "goal", "met", "basis", "threads", "load_avg"]


def bench_rows(bench: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """The rows of a ``make bench`` summary in ``groups`` (empty if there is no summary)."""
    if not len(bench) or "group" not in bench:
        return pd.DataFrame()
    t = bench[bench["group"].isin(groups)]
    return t[[c for c in BENCH_COLUMNS if c in t]].reset_index(drop=True)


def bench_words(t: pd.DataFrame, what: str) -> list[str]:
    """Markdown lines: each row of ``t`` with a goal (ours vs the reference, the ratio on the row's basis, met or
    not), then how many goals were met; or that no benchmark table was given."""
    if not len(t):
        return [f"**{what}**: no `make bench` table was given (config `bench_summary`); not run."]
    threads = ", ".join(str(int(x)) for x in sorted(t["threads"].dropna().unique())) if "threads" in t else "?"
    lines = [f"**{what}** (`make bench`, {len(t)} rows; a stored measurement of one machine, threads {threads}, "
             f"load average {t['load_avg'].min():.2g}–{t['load_avg'].max():.2g}):"]
    goals = t[t["goal"].notna() & (t["goal"].astype(str) != "")]
    for _, r in goals.iterrows():
        cpu = r.get("basis") == "cpu"
        ratio = r["cpu_ref_over_ours"] if cpu else r["ref_over_ours"]
        lines.append(f"- `{r['case']}`: ours (`{r['ours']}`) {r['ours_time']:.3g} {r['unit']} vs `{r['reference']}` "
                     f"{r['ref_time']:.3g} {r['unit']}, reference / ours {ratio:.3g} ({'CPU' if cpu else 'wall'} "
                     f"time); goal {r['goal']}: **{'met' if r['met'] == 'yes' else 'not met'}**")
    n_met = int((goals["met"] == "yes").sum())
    lines.append(f"- goals met: {n_met} of {len(goals)}" if len(goals) else "- no row of these groups has a goal")
    return lines


def bench_tex(t: pd.DataFrame) -> pd.DataFrame:
    """A compact ``make bench`` table for the report: the rows with a goal, ours vs the reference and the ratio on
    each row's basis (CPU or wall time)."""
    if not len(t) or "goal" not in t:
        return pd.DataFrame()
    g = t[t["goal"].notna() & (t["goal"].astype(str) != "")]
    ratio = [r["cpu_ref_over_ours"] if r.get("basis") == "cpu" else r["ref_over_ours"] for _, r in g.iterrows()]
    return pd.DataFrame({"case": g["case"], "ours": g["ours"], "reference": g["reference"], "unit": g["unit"],
                         "ours time": g["ours_time"], "reference time": g["ref_time"], "ref/ours": ratio,
                         "basis": g["basis"], "goal": g["goal"], "met": g["met"]}).reset_index(drop=True)
