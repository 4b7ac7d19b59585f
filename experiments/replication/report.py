"""The numbers of the report: metric tables and the claims table turned into LaTeX macros.

The report (``paper/report.tex``) types no number and no verdict: it reads them from
``results/report/numbers.tex``, written by the workflow's ``numbers`` rule with :func:`write_numbers`.
Every macro is one ``\\newcommand{\\<name>}{<value>}`` line; the report reads it as ``\\val{<name>}``.

* **One function per experiment**, registered with :func:`experiment` (the tables it reads, relative to the
  results folder, and a name prefix). It receives the tables (``None`` for a table that is missing or empty,
  e.g. of an experiment the configuration switched off) and returns ``{key: value}``. A value of ``None``
  becomes :data:`NOT_RUN`; so does every value computed from a missing table, so an experiment that did not
  run still defines all its macros and the PDF builds under any configuration. A column the function needs
  but a present table lacks raises :class:`ReportError` naming the table and the column.
  Adding an experiment (say E10, ``metrics/E10_dvemb.csv``) is one more decorated function.
* **The claims** (``report/claims.csv``, :func:`claim_numbers`): per claim id, its verdict, the paper's number,
  our estimate with its 95 % interval, the diagnosis, claim, criterion and measured values as text, the flags
  ``ok`` (reproduced), ``refuted``, ``inconclusive`` and ``judged``, and the count of claims per verdict.
* **The claims table** (:func:`claims_latex`, :func:`claims_detail_latex`, :func:`claims_markdown`; the
  ``claims`` rule): the table a researcher reads in one minute (id, claim, the paper's number, ours with its
  95 % interval, verdict, one-line diagnosis) and a detailed one (what *ours* measures, the criterion, the
  verdicts per setting, the measured values). :func:`notebook_claims` is the same table for the claims a
  notebook tests, its closing section.
* **The PDF** (:func:`build_pdf`, the ``paper`` rule): latexmk on a copy of the report source, with LaTeX's own
  files kept out of the results folder.
* **The setup** (:func:`setup_numbers`): the sizes, seeds and epochs of the configuration that ran, so that
  the text stating the setup cannot disagree with it either.

Macro names (:func:`macro_name`): letters only (TeX's rule); numbers become lower-case Roman numerals, e.g.
``macro_name("verdict", "LAI-2") == "verdictLAIii"``, ``macro_name("E1", "spearman", "diffin_paper") ==
"EiSpearmanDiffinPaper"``. Values are LaTeX-escaped text (:func:`escape`) or numbers (:func:`fmt`);
:class:`TeX` marks a value that is already LaTeX. :func:`escape` (plain text) and :func:`tex_unicode` (the
non-ASCII characters of text that is already LaTeX) are the project's one TeX escaper: every character becomes TeX
that pdflatex renders (``–`` ``−`` ``×`` ``≥`` ``≈`` ``τ`` ``ρ`` ``ℓ`` ``→``, accents, …) or, for a character it
does not know, a visible ``[U+XXXX]``; none is dropped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "NOT_RUN",
    "ReportError",
    "TeX",
    "EXPERIMENTS",
    "experiment",
    "macro_name",
    "escape",
    "fmt",
    "read_tables",
    "claim_numbers",
    "setup_numbers",
    "numbers",
    "to_tex",
    "write_numbers",
    "build_pdf",
    "claims_markdown",
    "claims_latex",
    "protocol_pairs",
    "protocols_markdown",
    "protocols_latex",
    "claims_detail_latex",
    "claims_summary",
    "claims_legend",
    "notebook_claims",
    "short_claim",
    "tex_unicode",
    "verdicts",
    "VERDICT_MEANING",
]

log = logging.getLogger(__name__)

#: What the macro of a quantity that was not measured (experiment off, estimator not listed) expands to.
NOT_RUN = "not run"
Value = Any  # float | int | str | TeX | None


class ReportError(ValueError):
    """A table the report reads lacks a column it needs (or a macro name is defined twice)."""


class TeX(str):
    """A value that is already LaTeX (not escaped again)."""


def escape(s: Any) -> str:
    """LaTeX for plain text: the specials (``& % $ # _ { } ~ ^ \\ [ ]``) escaped, doubled ``-`` ``'`` `` ` ``
    ``<`` ``>`` ``,`` kept from becoming ligatures, and every non-ASCII character as TeX that pdflatex renders
    (:func:`tex_unicode`). The one TeX escaper of the project: the report's macros and claims table
    (:mod:`replication.report`) and the notebooks' tables and captions (:mod:`replication.plotting`) use it."""
    s = str(s)
    out = []
    for i, ch in enumerate(s):
        if ch in _ASCII_TEX:
            out.append(_ASCII_TEX[ch])
        elif ord(ch) < 32 or ord(ch) == 127:  # a control character: visible, never dropped
            out.append(f"{{[}}U+{ord(ch):04X}{{]}}")
        elif ord(ch) < 128:
            out.append(ch)
            if ch in "-'`<>,!?" and s[i + 1:i + 2] in ("-", "'", "`", "<", ">", ","):
                out.append("{}")
        else:
            out.append(_char_tex(ch))
    return "".join(out)


def tex_unicode(tex: str) -> str:
    """``tex`` (already LaTeX: its ASCII is left as it is) with every non-ASCII character as TeX that pdflatex
    renders: ``–`` → ``--``, ``−`` → ``\\ensuremath{-}``, ``×`` ``≥`` ``≈`` ``τ`` ``ρ`` ``ℓ`` ``→`` … as math,
    accented letters as accent commands, and anything else as a visible ``[U+XXXX]``: no character is dropped.
    The output is ASCII, so plain pdflatex (any input encoding) compiles it."""
    return "".join(ch if ord(ch) < 128 else _char_tex(ch) for ch in str(tex))


# ASCII that is special to TeX (as text). Brackets are braced: a cell that starts with "[" after "\\" would be read
# as the optional argument of "\\".
_ASCII_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
              "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "[": "{[}", "]": "{]}",
              "\n": " ", "\r": " ", "\t": " "}

# Non-ASCII as text-mode TeX (T1 font encoding; \text... symbols of textcomp, part of the LaTeX kernel).
_TEXT_TEX = {
    "\u2013": "--", "\u2014": "---", "\u2012": "--", "\u2015": "---", "\u2010": "-", "\u2011": "-", "\u00ad": "-",
    "\u2026": "...", "\u2018": r"\textquoteleft{}", "\u2019": r"\textquoteright{}", "\u201c": r"\textquotedblleft{}",
    "\u201d": r"\textquotedblright{}", "\u201a": r"\quotesinglbase{}", "\u201e": r"\quotedblbase{}",
    "\u00ab": r"\guillemotleft{}", "\u00bb": r"\guillemotright{}", "\u2039": r"\guilsinglleft{}",
    "\u203a": r"\guilsinglright{}", "\u00a0": "~", "\u2009": r"\,", "\u202f": r"\,", "\u2002": r"\enspace{}",
    "\u2003": r"\quad{}", "\u2007": "~", "\u2008": r"\,", "\u200a": r"\,", "\u200b": r"\hspace{0pt}",
    "\u00b0": r"\textdegree{}", "\u00a7": r"\S{}", "\u00b6": r"\P{}", "\u2020": r"\dag{}", "\u2021": r"\ddag{}",
    "\u2022": r"\textbullet{}", "\u00a9": r"\textcopyright{}", "\u00ae": r"\textregistered{}",
    "\u2122": r"\texttrademark{}", "\u20ac": r"\texteuro{}", "\u00a3": r"\pounds{}", "\u00a5": r"\textyen{}",
    "\u00a2": r"\textcent{}", "\u2030": r"\textperthousand{}", "\u2116": r"\textnumero{}",
    "\u00a1": r"\textexclamdown{}", "\u00bf": r"\textquestiondown{}", "\u00df": r"\ss{}", "\u00e6": r"\ae{}",
    "\u00c6": r"\AE{}", "\u0153": r"\oe{}", "\u0152": r"\OE{}", "\u00f8": r"\o{}", "\u00d8": r"\O{}",
    "\u0142": r"\l{}", "\u0141": r"\L{}", "\u0131": r"\i{}", "\u0237": r"\j{}", "\u00f0": r"\dh{}",
    "\u00d0": r"\DH{}", "\u00fe": r"\th{}", "\u00de": r"\TH{}", "\u2044": "/", "\u2215": "/", "\u2032": "'",
    "\u2033": "''", "\u00b4": "'", "\u02bc": "'", "\u2212": r"\ensuremath{-}",
}

# Non-ASCII as math (amssymb for \lesssim, \gtrsim, \mathbb: loaded by the report).
_MATH_TEX = {
    "\u00d7": r"\times", "\u00b1": r"\pm", "\u2213": r"\mp", "\u00f7": r"\div", "\u2264": r"\leq", "\u2265": r"\geq",
    "\u2a7d": r"\leq", "\u2a7e": r"\geq", "\u2248": r"\approx", "\u2260": r"\neq", "\u2261": r"\equiv",
    "\u223c": r"\sim", "\u2243": r"\simeq", "\u2245": r"\cong", "\u221d": r"\propto", "\u226a": r"\ll",
    "\u226b": r"\gg", "\u2272": r"\lesssim", "\u2273": r"\gtrsim", "\u2208": r"\in", "\u2209": r"\notin",
    "\u2282": r"\subset", "\u2286": r"\subseteq", "\u222a": r"\cup", "\u2229": r"\cap", "\u2205": r"\emptyset",
    "\u221e": r"\infty", "\u2207": r"\nabla", "\u2202": r"\partial", "\u2211": r"\sum", "\u220f": r"\prod",
    "\u222b": r"\int", "\u221a": r"\surd", "\u00b7": r"\cdot", "\u22c5": r"\cdot", "\u2219": r"\cdot",
    "\u2218": r"\circ", "\u2217": "*", "\u2113": r"\ell", "\u2016": r"\|", "\u2225": r"\|", "\u2223": "|",
    "\u2192": r"\rightarrow", "\u2190": r"\leftarrow", "\u2194": r"\leftrightarrow", "\u21d2": r"\Rightarrow",
    "\u21d0": r"\Leftarrow", "\u21d4": r"\Leftrightarrow", "\u2191": r"\uparrow", "\u2193": r"\downarrow",
    "\u21a6": r"\mapsto", "\u27e8": r"\langle", "\u27e9": r"\rangle", "\u2200": r"\forall", "\u2203": r"\exists",
    "\u00ac": r"\neg", "\u2227": r"\wedge", "\u2228": r"\vee", "\u22a4": r"\top", "\u22a5": r"\bot",
    "\u2295": r"\oplus", "\u2297": r"\otimes", "\u211d": r"\mathbb{R}", "\u2115": r"\mathbb{N}",
    "\u2124": r"\mathbb{Z}", "\U0001d53c": r"\mathbb{E}", "\u00b5": r"\mu", "\u03f5": r"\epsilon",
    "\u03d1": r"\vartheta", "\u03d5": r"\phi", "\u03c2": r"\varsigma",
}

_GREEK = {  # unicodedata names → TeX; capitals that look Latin are written as the Latin letter
    "alpha": r"\alpha", "beta": r"\beta", "gamma": r"\gamma", "delta": r"\delta", "epsilon": r"\varepsilon",
    "zeta": r"\zeta", "eta": r"\eta", "theta": r"\theta", "iota": r"\iota", "kappa": r"\kappa", "lamda": r"\lambda",
    "mu": r"\mu", "nu": r"\nu", "xi": r"\xi", "omicron": "o", "pi": r"\pi", "rho": r"\rho", "sigma": r"\sigma",
    "tau": r"\tau", "upsilon": r"\upsilon", "phi": r"\varphi", "chi": r"\chi", "psi": r"\psi", "omega": r"\omega",
}
_GREEK_CAPITAL = {"gamma", "delta", "theta", "lamda", "xi", "pi", "sigma", "upsilon", "phi", "psi", "omega"}
_GREEK_LATIN = {"alpha": "A", "beta": "B", "epsilon": "E", "zeta": "Z", "eta": "H", "iota": "I", "kappa": "K",
                "mu": "M", "nu": "N", "omicron": "O", "rho": "P", "tau": "T", "chi": "X"}

# Combining accents (after NFD) → TeX accent commands.
_ACCENTS = {"\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0308": '"', "\u0303": "~", "\u0304": "=", "\u0307": ".",
            "\u0306": "u", "\u030c": "v", "\u030b": "H", "\u030a": "r", "\u0327": "c", "\u0328": "k", "\u0323": "d",
            "\u0331": "b"}

_SUPER = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱ", "0123456789+-=()ni", strict=True))
_SUB = dict(zip("₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎", "0123456789+-=()", strict=True))


def _char_tex(ch: str) -> str:
    """TeX for one non-ASCII character (see :func:`tex_unicode`)."""
    import unicodedata

    if ch in _TEXT_TEX:
        return _TEXT_TEX[ch]
    if ch in _MATH_TEX:
        return r"\ensuremath{" + _MATH_TEX[ch] + "}"
    if ch in _SUPER:
        return r"\textsuperscript{" + _SUPER[ch] + "}"
    if ch in _SUB:
        return r"\textsubscript{" + _SUB[ch] + "}"
    name = unicodedata.name(ch, "")
    m = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER ([A-Z]+)", name)
    if m and m.group(2).lower() in _GREEK:
        g = m.group(2).lower()
        if m.group(1) == "SMALL":
            return r"\ensuremath{" + _GREEK[g] + "}"
        if g in _GREEK_CAPITAL:
            return "\\ensuremath{\\" + g.replace("lamda", "lambda").capitalize() + "}"
        return _GREEK_LATIN[g]
    if unicodedata.category(ch).startswith("Z"):  # other spaces
        return " "
    nfd = unicodedata.normalize("NFD", ch)
    if len(nfd) > 1 and ord(nfd[0]) < 128 and nfd[0].isalpha() and all(c in _ACCENTS for c in nfd[1:]):
        tex = {"i": r"\i", "j": r"\j"}.get(nfd[0], nfd[0]) if nfd[1] not in "\u0327\u0328\u0323\u0331" else nfd[0]
        for c in nfd[1:]:
            tex = "\\" + _ACCENTS[c] + "{" + tex + "}"
        return tex
    nfkd = unicodedata.normalize("NFKD", ch)
    if nfkd != ch and all(ord(c) < 128 or c in _TEXT_TEX or c in _MATH_TEX for c in nfkd):
        return "".join(_ASCII_TEX.get(c, c) if ord(c) < 128 else _char_tex(c) for c in nfkd)
    return f"{{[}}U+{ord(ch):04X}{{]}}"  # visible, never dropped


# ------------------------------------------------------------------------------------------- names
_ROMAN = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"), (40, "xl"),
          (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))


def _roman(n: int) -> str:
    if n == 0:
        return "zero"
    out = []
    for value, letters in _ROMAN:
        while n >= value:
            out.append(letters)
            n -= value
    return "".join(out)


def macro_name(*parts: str) -> str:
    """A TeX macro name (letters only) from ``parts``: words split at anything but letters and digits, each
    word after the first capitalised, digit runs as lower-case Roman numerals.

    ``macro_name("verdict", "LAI-2") == "verdictLAIii"``; ``macro_name("E8", "pearson", "ghost_flat") ==
    "EviiiPearsonGhostFlat"``; ``macro_name("E2", "auroc", "el2n") == "EiiAurocEliin"``.
    """
    words = [w for w in re.split(r"[^A-Za-z0-9]+", " ".join(str(p) for p in parts)) if w]
    if not words:
        raise ReportError(f"no letters or digits to name a macro in {parts!r}")
    out = []
    for i, w in enumerate(words):
        if i and w[0].isalpha():
            w = w[0].upper() + w[1:]
        out.append(re.sub(r"\d+", lambda m: _roman(int(m.group())), w))
    return "".join(out)


# ----------------------------------------------------------------------------------------- numbers
def fmt(x: Value, digits: int = 3) -> str:
    """A value as LaTeX text: ``None`` → :data:`NOT_RUN`; NaN → ``n/a``; bools → ``yes`` / ``no``; integers
    as they are; floats to ``digits`` significant digits (``1.2\\times10^{-5}`` for small or large ones;
    the minus sign in math); strings escaped; :class:`TeX` as given."""
    if x is None:
        return NOT_RUN
    if isinstance(x, TeX):
        return str(x)
    if isinstance(x, str):
        return escape(x)
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x)) if x >= 0 else rf"\ensuremath{{-}}{-int(x)}"
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    sign = r"\ensuremath{-}" if x < 0 else ""
    a = abs(x)
    if 1e-3 <= a < 1e5:
        s = f"{a:.{digits}g}"
        return sign + s
    mant, exp = f"{a:.{max(digits - 1, 0)}e}".split("e")
    return sign + rf"\ensuremath{{{mant}\times10^{{{int(exp)}}}}}"


def _pct(x: float | None) -> Value:
    """A fraction in [0, 1] as a percentage (``37\\,\\%``); ``None`` stays ``None``."""
    if x is None or not math.isfinite(float(x)):
        return x
    return TeX(f"{100 * float(x):.0f}\\,\\%")


# ------------------------------------------------------------------------------------------ tables
@dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``prefix`` of its macro names, ``tables`` (paths relative to the results
    folder) and ``fn`` (tables by stem → {key: value})."""

    prefix: str
    tables: tuple[str, ...]
    fn: Callable[[Mapping[str, pd.DataFrame | None]], dict[str, Value]]


#: The registered experiments, in report order (:func:`experiment` appends).
EXPERIMENTS: list[Experiment] = []


def experiment(prefix: str, *tables: str) -> Callable:
    """Register ``fn(tables) -> {key: value}`` as the numbers of one experiment.

    ``prefix`` starts every macro name (``"E1"`` → ``\\Ei…``) and the flag ``ran<prefix>`` (1 when every table
    is present and non-empty); ``tables`` are paths relative to the results folder, passed to ``fn`` by stem
    (``"metrics/E1_fidelity.csv"`` → ``tables["E1_fidelity"]``).
    """
    def register(fn: Callable) -> Callable:
        if any(e.prefix == prefix for e in EXPERIMENTS):
            raise ReportError(f"an experiment with prefix {prefix!r} is registered twice")
        EXPERIMENTS.append(Experiment(prefix, tuple(tables), fn))
        return fn

    return register


def _read(path: Path) -> pd.DataFrame | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    return df if len(df) else None


def read_tables(results: str | os.PathLike, paths: Iterable[str]) -> dict[str, pd.DataFrame | None]:
    """The tables at ``results/<path>`` by file stem; ``None`` for a missing or empty one."""
    return {Path(p).stem: _read(Path(results) / p) for p in paths}


def _need(df: pd.DataFrame, cols: Iterable[str], table: str) -> None:
    missing = [c for c in cols if c not in df]
    if missing:
        raise ReportError(f"table {table}: no column {', '.join(map(repr, missing))} (it has {', '.join(df.columns)})")


def _sel(df: pd.DataFrame | None, table: str, where: Mapping[str, Any] | None = None) -> pd.DataFrame | None:
    """Rows of ``df`` matching ``where`` ({column: value, list of values, or a comparison like ``">=2"``});
    ``None`` when ``df`` is ``None`` or no row matches."""
    if df is None:
        return None
    where = dict(where or {})
    _need(df, where, table)
    for col, cond in where.items():
        if isinstance(cond, (list, tuple, set)):
            df = df[df[col].astype(str).isin([str(c) for c in cond])]
        elif isinstance(cond, str) and (m := re.fullmatch(r"(>=|<=|>|<)(-?[\d.eE+-]+)", cond.replace(" ", ""))):
            v = pd.to_numeric(df[col], errors="coerce")
            x = float(m.group(2))
            df = df[{">=": v >= x, "<=": v <= x, ">": v > x, "<": v < x}[m.group(1)]]
        else:
            df = df[df[col].astype(str) == str(cond)]
    return df if len(df) else None


def _selected(df: pd.DataFrame | None, col: str, table: str, where: Mapping[str, Any] | None,
              by: Iterable[str]) -> tuple[pd.DataFrame, pd.Series] | None:
    """The selected rows and their ``col`` as numbers (columns checked first); ``None`` when nothing is selected."""
    if df is not None:
        _need(df, [col, *by], table)
    df = _sel(df, table, where)
    return None if df is None else (df, pd.to_numeric(df[col], errors="coerce"))


def _mean(df: pd.DataFrame | None, col: str, table: str, where: Mapping[str, Any] | None = None,
          by: Iterable[str] = ()) -> float | None:
    """Mean of ``col`` over the selected rows; with ``by``, the mean of the group means (e.g. datasets first,
    so a dataset with more seeds does not weigh more). ``None`` when nothing is selected."""
    sel = _selected(df, col, table, where, by)
    if sel is None:
        return None
    df, vals = sel
    if by:
        vals = vals.groupby([df[b] for b in by]).mean()
    vals = vals.dropna()
    return float(vals.mean()) if len(vals) else float("nan")


def _sd(df: pd.DataFrame | None, col: str, table: str, where: Mapping[str, Any] | None = None,
        by: Iterable[str] = ()) -> float | None:
    """Sample standard deviation (ddof 1) of ``col`` over the selected rows (e.g. seeds; 0 for one row); with
    ``by``, the mean of the groups' standard deviations. ``None`` when nothing is selected."""
    sel = _selected(df, col, table, where, by)
    if sel is None:
        return None
    df, vals = sel
    groups = [g.dropna() for _, g in vals.groupby([df[b] for b in by])] if by else [vals.dropna()]
    return float(np.mean([g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups]))


def _count(df: pd.DataFrame | None, table: str, where: Mapping[str, Any] | None = None,
           unique: Iterable[str] = ()) -> int | None:
    """Number of selected rows (of distinct ``unique`` combinations); ``None`` when ``df`` is ``None``."""
    if df is None:
        return None
    unique = [u for u in unique if u in df]
    df = _sel(df, table, where)
    if df is None:
        return 0
    return int(len(df.drop_duplicates(unique))) if unique else int(len(df))


def _corr(a: pd.Series, b: pd.Series, method: str = "pearson") -> float:
    a, b = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
    ok = a.notna() & b.notna()
    if ok.sum() < 3 or a[ok].nunique() < 2 or b[ok].nunique() < 2:
        return float("nan")
    return float(a[ok].corr(b[ok], method=method))


def _cmp(a: float | None, b: float | None) -> str | None:
    """``higher`` if a > b, ``lower`` if a < b, ``equal`` otherwise; ``n/a`` for NaN; ``None`` if one is missing."""
    if a is None or b is None:
        return None
    if not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    return "higher" if a > b else "lower" if a < b else "equal"


def _flag(x: bool | None) -> int:
    return int(bool(x))


def _names(values: Iterable[Any]) -> str | None:
    """A readable list ``a, b and c`` (plain text, escaped later); ``None`` for an empty list."""
    vals = [str(v) for v in values]
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else ", ".join(vals[:-1]) + " and " + vals[-1]


SETTING = ("dataset", "noise", "model", "epochs", "seed")


def _breakable(tex: str) -> str:
    """Escaped text with line-break opportunities after ``/``, ``=`` and ``_`` (long run names in the measured
    values would overflow a line otherwise)."""
    return re.sub(r"(?<!\\)(/|=)|\\_", lambda m: m.group(0) + r"\allowbreak{}", tex)


# ------------------------------------------------------------------------------------------- claims
def claim_numbers(claims: pd.DataFrame | None, ids: Iterable[str] = ()) -> dict[str, str]:
    """Macros of the claims table (``report/claims.csv``), per claim id ``X``: the text of its columns,
    ``verdictX``, ``claimX``, ``paperX`` (the paper's name), ``experimentX``, ``criterionX``, ``measuredX``,
    ``paperValueX`` (the paper's published number), ``effectX`` (what *ours* measures), ``oursX`` (our estimate
    with its 95 % interval), ``diagnosisX``, ``settingsX`` and ``protocolX``; the flags (1 or 0) ``okX`` (reproduced),
    ``refutedX`` (refuted), ``inconclusiveX`` and ``judgedX`` (reproduced, refuted, inconclusive or partly: a
    verdict on valid evidence); and the counts ``claimsN`` (all) and one per verdict of :func:`verdicts`:
    ``claimsReproduced``, ``claimsRefuted``, ``claimsInconclusive``, ``claimsPartly``, ``claimsNotRun``,
    ``claimsInvalidRun``.

    An empty ``paper_value`` reads "none published", an empty ``ours`` "no interval". A column of
    :data:`CLAIM_COLUMNS` the table lacks reads as empty; ``id`` and ``verdict`` are required.
    ``ids``: claim ids that must have macros even when the table is missing (then :data:`NOT_RUN`).
    """
    out: dict[str, str] = {}
    fields = ("verdict", "measured", "claim", "criterion", "paper", "experiment", "paper_value", "effect", "ours",
              "diagnosis", "settings", "protocol")
    empty = {"paper_value": "none published", "ours": "no interval", "diagnosis": "none", "effect": "see measured",
             "settings": "none", "protocol": "ours"}
    if claims is not None:
        _need(claims, ["id", "verdict"], "claims")
    rows = {} if claims is None else {str(r["id"]): r for _, r in claims.iterrows()}
    for cid in dict.fromkeys([*ids, *rows]):
        r = rows.get(cid)
        for f in fields:
            text = None if r is None else _text(r, f) or empty.get(f, "")
            out[macro_name(f, cid)] = NOT_RUN if text is None else _breakable(escape(text))
        verdict = None if r is None else str(r["verdict"])
        out[macro_name("ok", cid)] = "1" if verdict == "reproduced" else "0"
        out[macro_name("refuted", cid)] = "1" if verdict == "refuted" else "0"
        out[macro_name("inconclusive", cid)] = "1" if verdict == "inconclusive" else "0"
        out[macro_name("judged", cid)] = "1" if verdict in ("reproduced", "refuted", "inconclusive", "partly") else "0"
    counts = {} if claims is None else claims["verdict"].astype(str).value_counts().to_dict()
    out["claimsN"] = NOT_RUN if claims is None else str(len(claims))
    for v in verdicts():
        out[macro_name("claims", *v.split())] = NOT_RUN if claims is None else str(counts.get(v, 0))
    return out


# -------------------------------------------------------------------------------------------- setup
def _list(xs: Iterable[Any]) -> str:
    return ", ".join(str(x) for x in xs)


def setup_numbers(config: Mapping[str, Any] | None) -> dict[str, str]:
    """Macros of the configuration that ran (prefix ``cfg``): its name, and per experiment the datasets,
    sizes, noise settings, models, epochs and seed counts (:data:`NOT_RUN` for a disabled experiment), and the
    Diff-In and CG-score hyperparameters in force.

    Reads the keys every merged configuration has (``experiments/config/default.yaml`` holds their defaults).
    """
    if config is None:
        return {"cfgName": NOT_RUN}
    out: dict[str, Value] = {"name": config.get("name", "?")}
    exps = config.get("experiments", {})
    data, models, noise = config.get("data", {}), config.get("models", {}), config.get("noise", {})

    def on(name: str) -> bool:
        return name in exps and bool(exps[name].get("enabled", True))

    def block(name: str, values: Callable[[Mapping[str, Any]], dict[str, Value]]) -> None:
        """The values of experiment ``name``'s block, all ``None`` (not run) when it is disabled; the flag
        ``cfgOn<name>`` is 1 when it is enabled."""
        vals = values(exps.get(name, {}))
        out.update(vals if on(name) else dict.fromkeys(vals))
        out[f"on {name}"] = int(on(name))

    def grid(key: str) -> Callable[[Mapping[str, Any]], dict[str, Value]]:
        def values(b: Mapping[str, Any]) -> dict[str, Value]:
            got: dict[str, list] = {k: [] for k in ("datasets", "noises", "models", "epochs", "seeds")}
            for g in b.get("grids", []):
                for k, vals in got.items():
                    vals += [v for v in g[k] if v not in vals]
            ds, nz, ms = got["datasets"], got["noises"], got["models"]
            return {
                f"{key} datasets": _list(ds),
                f"{key} sizes": _list(f"{d} {data[d]['n_train']}/{data[d]['n_target']}/{data[d]['n_test']}"
                                      for d in ds if d in data),
                f"{key} noises": _list(f"{z} ({noise[z]['kind']}, {noise[z]['rate']:g})" for z in nz if z in noise),
                f"{key} models": _list(
                    f"{m} ({'-'.join(map(str, models[m]['hidden'])) or 'linear'}; batch {models[m]['batch_size']}, "
                    f"lr {models[m]['lr']:g}, L2 {models[m]['l2']:g})" for m in ms if m in models),
                f"{key} epochs": _list(got["epochs"]),
                f"{key} seeds": len(got["seeds"]),
                f"{key} estimators": _list(b.get("estimators", [])),
            }
        return values

    for key, name in (("Ei", "fidelity"), ("Eii", "detection"), ("Eiv", "deletion"), ("Evi", "cost")):
        block(name, grid(key))
    block("curation", lambda c: {
        "Eiii datasets": _list(c["datasets"]), "Eiii seeds": len(c["seeds"]), "Eiii noise": _pct(c["noise_rate"]),
        "Eiii epochs": c["run"]["epochs"], "Eiii hidden": _list(c["run"]["hidden"]),
        "Eiii warmup": c["run"]["warmup_epochs"], "Eiii target size": c["run"]["target_size"],
        "Eiii policies": _list(c["policies"])})
    block("bounds", lambda b: {"Ev checks": len(b.get("checks", []))})
    block("online_cost", lambda b: {"online repeats": b["repeats"]})
    block("lm", lambda lm: {
        "Eviii seeds": len(lm["seeds"]), "Eviii windows": lm["data"]["n_train"],
        "Eviii noise": _pct(lm["noise"]["rate"]), "Eviii noise kind": lm["noise"]["kind"],
        "Eviii model": f"context {lm['model']['context']}, width {lm['model']['d_model']}, "
                       f"{lm['model']['n_layers']} layer(s), {lm['model']['n_heads']} heads",
        "Eviii batch": lm["run"]["batch_size"], "Eviii shapley steps": lm["shapley"]["n_steps"],
        "Eviii shapley batch": lm["shapley"]["batch_size"], "Eviii shapley perms": lm["shapley"]["n_perm"],
        "Eviii shapley eta": lm["shapley"]["eta"], "Eviii policies": _list(lm["policies"])})
    block("text", lambda tx: {
        "Eix datasets": _list(f"{d['name']} ({d['n_train']}/{d['n_val']}/{d['n_test']})" for d in tx["datasets"]),
        "Eix seeds": len(tx["seeds"]), "Eix noise": _pct(tx["noise_rate"]), "Eix epochs": tx["run"]["epochs"],
        "Eix warmup": tx["run"]["warmup_epochs"],
        "Eix model": f"width {tx['model']['d_model']}, {tx['model']['n_layers']} layer(s), "
                     f"{tx['model']['n_heads']} heads",
        "Eix policies": _list(tx["policies"])})
    block("peers", lambda b: {"Evii tasks": _list(b.get("tasks", []))})
    block("sec71", lambda b: {"Exi seeds": len({s for g in b.get("grids", []) for s in g["seeds"]}),
                              "Exi models": _list(dict.fromkeys(m for g in b.get("grids", []) for m in g["models"]))})
    block("cg_pruning", lambda b: {"Exii seeds": len(b["seeds"]), "Exii epochs": b["run"]["epochs"],
                                   "Exii fractions": _list(b["keep_fractions"])})
    out["loo shards"] = config.get("loo", {}).get("shards")
    # hyperparameters in force: the estimator's defaults, overridden by the configuration's hparams
    for est, keys in (("diffin_paper", ("m", "proxy_batch", "eps", "hvp", "checkpoints")), ("cg_score", ("rep",))):
        hp = _hparams(est, config)
        for k in keys:
            out[f"{est} {k}"] = hp.get(k)
    return {macro_name("cfg", k): fmt(v) for k, v in out.items()}


def _hparams(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword defaults of registered estimator ``name`` (of the one it passes them to, declared at registration
    as ``hparams_of``: e.g. ``diffin_paper`` → ``diffin``, whose own defaults are set inside), then the config's
    ``hparams``."""
    import inspect

    from influence import estimators

    estimators.get(name)
    fn = estimators.get(estimators.SPECS[name].hparams_of or name)
    sig = inspect.signature(getattr(fn, "__wrapped__", fn))
    hp = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    if name == "diffin_paper":
        hp["form"] = "paper"
    hp.update((config.get("estimators", {}).get(name) or {}).get("hparams") or {})
    return hp


# -------------------------------------------------------------------------------------- experiments
#: Estimators whose E1 agreement the report cites (absent ones expand to "not run").
E1_ESTIMATORS = ("sgd_ie", "acc_sgd_ie", "diffin_paper", "diffin", "tracin", "grad_dot", "influence_function",
                 "ghost", "lai", "lai_last_layer", "dvemb", "random")


def _paired_gain(df: pd.DataFrame | None, table: str, key: str, a: str, b: str, metric: str,
                 where: Mapping[str, Any] | None = None, pair: Iterable[str] = ("seed",)) -> float | None:
    """Mean over pairs (rows of ``a`` and ``b`` under ``key`` sharing every other column of ``pair`` and the
    settings) of ``metric(a) − metric(b)``; ``None`` when either side is absent or no pair matches."""
    if df is not None:
        _need(df, [key, metric], table)
    sa, sb = _sel(df, table, {**(where or {}), key: a}), _sel(df, table, {**(where or {}), key: b})
    if sa is None or sb is None:
        return None
    idx = [c for c in (*SETTING, *pair) if c in sa and c != key]
    idx = list(dict.fromkeys(idx))
    j = sa.set_index(idx)[[metric]].join(sb.set_index(idx)[[metric]].rename(columns={metric: "_b"}), how="inner")
    d = (pd.to_numeric(j[metric], errors="coerce") - pd.to_numeric(j["_b"], errors="coerce")).dropna()
    return float(d.mean()) if len(d) else None


def _pair(a: pd.DataFrame, b: pd.DataFrame, idx: list[str], cols: list[str]) -> pd.DataFrame:
    """``cols`` of ``a`` beside those of ``b`` (suffixed ``_sgd``) on the rows of the same run (``idx``)."""
    right = b.set_index(idx)[cols].rename(columns=lambda c: f"{c}_sgd")
    return a.set_index(idx)[cols].join(right, how="inner")


@experiment("E1", "metrics/E1_fidelity.csv")
def e1_fidelity(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E1 (agreement with trajectory LOO), over the runs with at least 2 epochs unless named ``one epoch``:
    per estimator the mean Spearman, Kendall and RMSE, the number of runs with a positive / negative
    Spearman; runs, the ACC-vs-SGD-IE Kendall gain per epoch count, the one-epoch ACC-SGD-IE − SGD-IE gap."""
    name, df = "E1_fidelity", t["E1_fidelity"]
    out: dict[str, Value] = {}
    if df is not None:
        _need(df, ["estimator", "epochs", "spearman", "kendall", "rmse"], name)
    multi = {"epochs": ">=2"}
    out["runs"] = _count(df, name, unique=SETTING)
    out["runs multi"] = _count(df, name, multi, unique=SETTING)
    out["estimators"] = None if df is None else df["estimator"].nunique()
    for est in E1_ESTIMATORS:
        w = {**multi, "estimator": est}
        for m in ("spearman", "kendall", "rmse"):
            out[f"{m} {est}"] = _mean(df, m, name, w)
        sel = _sel(df, name, w)
        out[f"runs {est}"] = None if sel is None else len(sel)
        out[f"has {est}"] = _flag(sel is not None)  # 1: the estimator is in the table (runs with K >= 2)
        out[f"positive {est}"] = None if sel is None else int((sel["spearman"] > 0).sum())
        out[f"negative {est}"] = None if sel is None else int((sel["spearman"] < 0).sum())
        out[f"min spearman {est}"] = None if sel is None else float(sel["spearman"].min())
        out[f"max spearman {est}"] = None if sel is None else float(sel["spearman"].max())
    sp = out["spearman diffin_paper"]
    out["paper anti"] = _flag(sp is not None and sp < 0)  # the published form ranks against LOO on average
    # the Diff-In authors' protocol: agreement on the 30 samples each estimator ranks most influential
    top = df is not None and "spearman_top30" in df
    for est in ("diffin_paper", "diffin", "tracin", "influence_function", "sgd_ie", "random"):
        out[f"top30 spearman {est}"] = _mean(df, "spearman_top30", name, {**multi, "estimator": est}) if top \
            else (None if df is None else float("nan"))
    neg = _sel(df, name, {**multi, "estimator": "diffin_paper_negated"})
    out["spearman diffin_paper_negated"] = None if neg is None else float(neg["spearman"].mean())
    # ACC-SGD-IE vs SGD-IE, run by run (same setting and seed)
    a, s = _sel(df, name, {**multi, "estimator": "acc_sgd_ie"}), _sel(df, name, {**multi, "estimator": "sgd_ie"})
    if a is None or s is None:
        out.update({"acc kendall wins": None, "acc rmse wins": None, "acc pairs": None, "acc gain by epochs": None})
    else:
        idx = [c for c in SETTING if c in df]
        j = _pair(a, s, idx, ["kendall", "rmse"])
        out["acc pairs"] = len(j)
        out["acc kendall wins"] = int((j["kendall"] > j["kendall_sgd"]).sum())
        out["acc rmse wins"] = int((j["rmse"] < j["rmse_sgd"]).sum())
        gain = (j["kendall"] - j["kendall_sgd"]).groupby(level="epochs").mean().sort_index()
        out["acc gain by epochs"] = TeX("; ".join(f"{fmt(float(g), 2)} at {int(e)} epochs" for e, g in gain.items()))
    one_a, one_s = _sel(df, name, {"epochs": 1, "estimator": "acc_sgd_ie"}), _sel(df, name, {"epochs": 1,
                                                                                             "estimator": "sgd_ie"})
    if one_a is None or one_s is None:
        out["one epoch max gap"] = None
    else:
        idx = [c for c in SETTING if c in df]
        j = _pair(one_a, one_s, idx, ["kendall", "spearman", "rmse"])
        out["one epoch max gap"] = float(max((j[c] - j[f"{c}_sgd"]).abs().max() for c in ("kendall", "spearman",
                                                                                              "rmse")))
    return out


#: Estimators and baselines whose E2 numbers the report cites.
E2_ESTIMATORS = ("sgd_ie", "acc_sgd_ie", "tracin", "influence_function", "diffin_self", "self_influence", "ghost",
                 "lai", "cg_score", "loss", "el2n", "grand", "forgetting", "random")
E2_CLEANSE = ("sgd_ie", "acc_sgd_ie", "tracin", "influence_function", "diffin_self", "self_influence", "oracle",
              "random_removal")


@experiment("E2", "metrics/E2_detection.csv", "metrics/E2_cleansing.csv")
def e2_detection(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E2: mean AUROC per estimator over the noisy settings, the best one; test accuracy after removing the
    k = (number of noisy samples) most suspicious samples and retraining, per estimator and baseline."""
    det, cl = t["E2_detection"], t["E2_cleansing"]
    out: dict[str, Value] = {}
    if det is not None:
        _need(det, ["estimator", "auroc"], "E2_detection")
    out["settings"] = _count(det, "E2_detection", unique=("dataset", "noise", "model", "epochs", "seed"))
    for est in E2_ESTIMATORS:
        out[f"auroc {est}"] = _mean(det, "auroc", "E2_detection", {"estimator": est})
    if det is None:
        out["best"], out["best auroc"] = None, None
    else:
        means = det.groupby("estimator")["auroc"].mean().sort_values(ascending=False)
        out["best"], out["best auroc"] = str(means.index[0]), float(means.iloc[0])
    for est in E2_CLEANSE:
        out[f"cleansed acc {est}"] = _mean(cl, "test_accuracy", "E2_cleansing",
                                           {"estimator": est, "fraction": ">=0.99"})
    return out


E3_POLICIES = ("vanilla", "lai", "lai_last_layer", "ghost", "small_loss")


@experiment("E3", "metrics/E3_curation.csv")
def e3_curation(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E3 (MLPs, cyclic noise): mean final test accuracy per policy (mean of the dataset means), its sd over
    seeds, the mean per-step Spearman(LAI, Ghost) of the vanilla runs, and the time per step."""
    name, df = "E3_curation", t["E3_curation"]
    out: dict[str, Value] = {}
    if df is not None:
        _need(df, ["dataset", "policy", "final_test_acc", "time_per_step_s"], name)
    out["datasets"] = None if df is None else df["dataset"].nunique()
    for p in E3_POLICIES:
        out[f"acc {p}"] = _mean(df, "final_test_acc", name, {"policy": p}, by=("dataset",))
        out[f"acc sd {p}"] = _sd(df, "final_test_acc", name, {"policy": p}, by=("dataset",))
        out[f"step time {p}"] = _mean(df, "time_per_step_s", name, {"policy": p})
    out["spearman lai ghost"] = (None if df is None or "spearman_lai_ghost" not in df
                                 else _mean(df, "spearman_lai_ghost", name, {"policy": "vanilla"}))
    return out


E4_ESTIMATORS = ("diffin_paper", "diffin_paper_negated", "diffin", "tracin", "influence_function", "sgd_ie",
                 "acc_sgd_ie", "cg_score", "el2n", "random", "random_removal")


@experiment("E4", "metrics/E4_deletion.csv", "metrics/E4_coreset.csv")
def e4_deletion(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E4: Pearson of the predicted (sum of scores) and actual target-loss change over all deletions, per
    estimator; mean coreset test accuracy at kept fractions ≥ 0.5 and < 0.5, per estimator; CG-score minus
    random removal at kept fractions ≥ 0.5 (mean over settings and fractions)."""
    de, co = t["E4_deletion"], t["E4_coreset"]
    out: dict[str, Value] = {}
    if de is not None:
        _need(de, ["estimator", "predicted", "actual"], "E4_deletion")
    for est in E4_ESTIMATORS:
        sel = _sel(de, "E4_deletion", {"estimator": est})
        out[f"deletion pearson {est}"] = None if sel is None else _corr(sel["predicted"], sel["actual"])
        out[f"coreset acc {est}"] = _mean(co, "test_accuracy", "E4_coreset",
                                          {"estimator": est, "keep_fraction": ">=0.5"})
        out[f"coreset acc small {est}"] = _mean(co, "test_accuracy", "E4_coreset",
                                                {"estimator": est, "keep_fraction": "<0.5"})
    cg, rnd = out["coreset acc cg_score"], out["coreset acc random_removal"]
    out["cg minus random"] = None if cg is None or rnd is None else cg - rnd
    out["fractions"] = None if co is None else _list(sorted(co["keep_fraction"].unique()))
    return out


@experiment("E5", "metrics/E5_bounds.csv")
def e5_bounds(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E5: number of checks and of passing ones, the names of the failing ones, and per check (by its row
    ``name``) ``passes`` / ``fails``."""
    name, df = "E5_bounds", t["E5_bounds"]
    out: dict[str, Value] = {}
    if df is not None:
        _need(df, ["name", "passed"], name)
    passed = None if df is None else df["passed"].astype(str).str.lower().isin(["true", "1", "1.0"])
    out["checks"] = None if df is None else len(df)
    out["passed"] = None if df is None else int(passed.sum())
    out["failed names"] = None if df is None else (_names(df.loc[~passed, "name"]) or "none")
    if df is not None:
        for n, ok in zip(df["name"].astype(str), passed, strict=True):
            out[f"check {n}"] = "passes" if ok else "fails"
    # the sign of Diff-In's Eq. 9 (diffin_one_step_sign): error slopes in eta of the derived and the flipped sign
    sign = _sel(df, name, {"name": "diffin_one_step_sign"}) if df is not None and "measured" in df else None
    m = {} if sign is None else json.loads(str(sign["measured"].iloc[0]))
    for model in ("logreg", "mlp"):
        sl = (m.get(model) or {}).get("slopes", {})
        for form in ("derived", "negated"):
            v = sl.get(form)
            out[f"diffin sign slope {form} {model}"] = (None if df is None else float("nan") if v is None
                                                        else float(v))
    return out


@experiment("E6", "metrics/E6_cost.csv")
def e6_cost(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E6 (timings; they vary between runs): Diff-In (paper form) over TracIn wall time per setting (median,
    max, number of settings within 3×); trajectory-LOO time over ACC-SGD-IE's (median over settings)."""
    cost = t["E6_cost"]
    out: dict[str, Value] = {}
    keys = ["setting_dataset", "setting_model", "setting_epochs", "setting_seed"]
    if cost is not None:
        _need(cost, ["estimator", "wall_s", *keys], "E6_cost")

    def ratios(a: str, b: str) -> pd.Series | None:
        if cost is None:
            return None
        w = cost.groupby([*keys, "estimator"])["wall_s"].mean().unstack("estimator")
        if a not in w or b not in w:
            return None
        r = (w[a] / w[b]).dropna()
        return r if len(r) else None

    r = ratios("diffin_paper", "tracin")
    out["diffin over tracin median"] = None if r is None else float(r.median())
    out["diffin over tracin max"] = None if r is None else float(r.max())
    out["diffin within three"] = None if r is None else int((r <= 3).sum())
    out["settings"] = None if r is None else len(r)
    r = ratios("trajectory_loo", "acc_sgd_ie")
    out["loo over acc median"] = None if r is None else float(r.median())
    return out


TRANSFORMER_POLICIES = ("lai", "ghost", "ghost_flat", "lai_self", "ghost_self", "ghost_flat_self")


@experiment("E6 transformer", "metrics/transformer_cost.csv")
def e6_transformer_cost(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """One curated step on the transformers (timings): per model (``gpt``, ``encoder``) and policy, the median over
    the interleaved rounds (``rep``) of the step time over the same round's vanilla step, the median of LAI's time
    over each Ghost form's (validation batch: ``lai`` vs ``ghost`` / ``ghost_flat``; self-influence: ``lai_self``
    vs ``ghost_self`` / ``ghost_flat_self``), and the mean tensor footprint (MB)."""
    name, tc = "transformer_cost", t["transformer_cost"]
    out: dict[str, Value] = {}
    if tc is not None:
        _need(tc, ["model", "policy", "rep", "step_time_s", "footprint_mb"], name)

    def paired(model: str, a: str, b: str) -> float | None:
        if tc is None:
            return None
        w = tc[tc["model"].astype(str) == model].groupby(["rep", "policy"])["step_time_s"].mean().unstack("policy")
        if a not in w or b not in w:
            return None
        r = (w[a] / w[b]).dropna()
        return float(r.median()) if len(r) else None

    for m in ("gpt", "encoder"):
        for p in TRANSFORMER_POLICIES:
            out[f"{m} ratio {p}"] = paired(m, p, "vanilla")
            out[f"{m} footprint {p}"] = _mean(tc, "footprint_mb", name, {"model": m, "policy": p})
        for lai, ghost in (("lai", "ghost"), ("lai", "ghost_flat"), ("lai_self", "ghost_self"),
                           ("lai_self", "ghost_flat_self")):
            out[f"{m} {lai} over {ghost}"] = paired(m, lai, ghost)
    return out


def _peers(task: str, metric: str) -> Callable[[Mapping[str, pd.DataFrame | None]], dict[str, Value]]:
    """The numbers of one E7 task (table ``peers/task<task>.csv``) on ``metric``."""
    def fn(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
        name, df = f"task{task}", t[f"task{task}"]
        out: dict[str, Value] = {}
        if df is not None:
            _need(df, ["method", "library", "status"], name)
        ok = None if df is None else df[~df["status"].astype(str).str.startswith(("failed", "skipped"))]
        out["ours"] = None if ok is None else int((ok["library"] == "ours").sum())
        out["peers"] = None if ok is None else int((ok["library"] != "ours").sum())
        failed = None if df is None else df[df["status"].astype(str).str.startswith("failed")]
        out["failed"] = None if failed is None else len(failed)
        out["failed names"] = None if failed is None else (
            _names(f"{r.library} {r.method}" for r in failed.itertuples()) or "none")
        for side, mine in (("ours", True), ("peer", False)):
            g = None if ok is None or metric not in ok else ok[(ok["library"] == "ours") == mine].dropna(
                subset=[metric])
            if g is None or not len(g):
                out[f"best {side}"], out[f"best {side} value"] = None, None
                continue
            best = g.loc[pd.to_numeric(g[metric]).idxmax()]
            out[f"best {side}"] = f"{best['method']} ({best['library']})"
            out[f"best {side} value"] = float(best[metric])
        if task == "A":
            for est in ("influence_function", "tracin", "acc_sgd_ie", "sgd_ie"):
                for m in ("spearman_loo", "spearman_traj_loo"):
                    out[f"{est} {m}"] = (None if df is None or m not in df else
                                         _mean(df, m, name, {"library": "ours", "method": est}))
        return out

    fn.__name__ = f"e7_peers_task{task}"
    fn.__doc__ = (f"E7 Task {task} ({metric}): methods run (ours, peers), failed peers, the best of ours and of "
                  "the peers" + ("; our exact IF, TracIn, SGD-IE and ACC-SGD-IE vs LOO-to-optimum and trajectory "
                                 "LOO." if task == "A" else "."))
    return fn


e7_peers_task_a = experiment("E7 A", "peers/taskA.csv")(_peers("A", "spearman_loo"))
e7_peers_task_b = experiment("E7 B", "peers/taskB.csv")(_peers("B", "lds"))


E8_POLICIES = ("vanilla", "vanilla_clean", "lai_self", "lai_self_offdiag", "ghost_self", "ghost_flat_self",
               "small_loss", "lai")


@experiment("E8", "metrics/E8_lm.csv", "metrics/E8_shapley.csv")
def e8_lm(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E8 (TinyGPT): per policy the mean (sd) final clean validation loss and the fractions of injected and
    clean windows dropped; runs that learned; per-step Shapley: mean Pearson of LAI, exact and flattened
    Ghost, number of steps, mean first-order error of the utility."""
    lm, sh = t["E8_lm"], t["E8_shapley"]
    out: dict[str, Value] = {}
    if lm is not None:
        _need(lm, ["policy", "final_val_loss", "learned"], "E8_lm")
    for p in E8_POLICIES:
        out[f"loss {p}"] = _mean(lm, "final_val_loss", "E8_lm", {"policy": p})
        out[f"loss sd {p}"] = _sd(lm, "final_val_loss", "E8_lm", {"policy": p})
        out[f"noisy dropped {p}"] = _pct(_mean(lm, "noisy_dropped_fraction", "E8_lm", {"policy": p}))
        out[f"clean dropped {p}"] = _pct(_mean(lm, "clean_dropped_fraction", "E8_lm", {"policy": p}))
    out["unigram loss"] = _mean(lm, "unigram_val_loss", "E8_lm")
    out["runs"] = None if lm is None else len(lm)
    out["learned"] = None if lm is None else int(lm["learned"].astype(str).str.lower().isin(["true", "1"]).sum())
    if sh is not None:
        _need(sh, ["pearson_lai", "pearson_ghost", "pearson_ghost_flat"], "E8_shapley")
    for s in ("lai", "ghost", "ghost_flat"):
        out[f"pearson {s}"] = _mean(sh, f"pearson_{s}", "E8_shapley")
        out[f"spearman {s}"] = _mean(sh, f"spearman_{s}", "E8_shapley") if sh is None or f"spearman_{s}" in sh \
            else float("nan")
    out["lai vs ghost flat"] = _cmp(out["pearson lai"], out["pearson ghost_flat"])
    out["lai self vs vanilla"] = _cmp(out["loss lai_self"], out["loss vanilla"])
    # the LAI authors' game (U(S) = mean loss of S): Pearson of each score with its exact Shapley values
    game = sh is not None and "pearson_meanloss_lai_self" in sh
    for s in ("lai_self", "ghost_flat_self", "ghost_self", "lai", "ghost_flat", "loss", "outgrad"):
        out[f"meanloss pearson {s}"] = (_mean(sh, f"pearson_meanloss_{s}", "E8_shapley") if game
                                        else None if sh is None else float("nan"))
        out[f"drop le0 {s}"] = (_pct(_mean(sh, f"drop_le0_{s}", "E8_shapley"))
                                if sh is not None and f"drop_le0_{s}" in sh else None if sh is None else float("nan"))
    out["pearson lai_self"] = (_mean(sh, "pearson_lai_self", "E8_shapley") if sh is not None
                               and "pearson_lai_self" in sh else None if sh is None else float("nan"))
    out["pearson games"] = (_mean(sh, "pearson_games", "E8_shapley") if game
                            else None if sh is None else float("nan"))
    out["shapley steps"] = None if sh is None else len(sh)
    out["first order err"] = (None if sh is None else _mean(sh, "first_order_rel_err", "E8_shapley")
                              if "first_order_rel_err" in sh else float("nan"))
    return out


E9_POLICIES = ("vanilla", "lai", "ghost", "ghost_flat", "small_loss", "lai_self")


@experiment("E9", "metrics/E9_text.csv")
def e9_text(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E9 (transformer classifier, noisy labels): per policy the mean (sd) final clean test accuracy and the
    fractions of noisy and clean samples dropped; the clean-label vanilla reference; the majority rate;
    runs that learned."""
    name, df = "E9_text", t["E9_text"]
    out: dict[str, Value] = {}
    if df is not None:
        _need(df, ["policy", "noise_rate", "final_test_acc", "learned"], name)
    # rows of E9's own protocol (binary Rotten Tomatoes); the LAI authors' protocol rows (protocol "authors")
    # get the prefix "authors"
    own = {"protocol": "e9"} if df is not None and "protocol" in df else {}
    authors = {"protocol": "authors"} if df is not None and "protocol" in df else None
    noisy = {"noise_rate": ">0", **own}
    for p in ("vanilla", "lai", "ghost"):
        w = None if authors is None else {**authors, "noise_rate": ">0", "policy": p}
        out[f"authors acc {p}"] = None if w is None else _mean(df, "final_test_acc", name, w)
        out[f"authors learned {p}"] = None if w is None else _count(
            df, name, {**w, "learned": [True, "True", "true", 1, "1"]})
        out[f"authors noisy dropped {p}"] = None if w is None or "noisy_dropped_fraction" not in df else _pct(
            _mean(df, "noisy_dropped_fraction", name, w))
        out[f"authors clean dropped {p}"] = None if w is None or "clean_dropped_fraction" not in df else _pct(
            _mean(df, "clean_dropped_fraction", name, w))
    out["authors runs"] = None if authors is None else _count(df, name, {**authors, "noise_rate": ">0",
                                                                          "policy": "vanilla"})
    out["authors acc clean"] = None if authors is None else _mean(df, "final_test_acc", name,
                                                                  {**authors, "noise_rate": "<=0"})
    out["authors majority"] = None if authors is None or "majority_acc" not in df else _mean(
        df, "majority_acc", name, authors)
    out["authors classes"] = None if authors is None or "n_classes" not in df or _sel(df, name, authors) is None \
        else int(_sel(df, name, authors)["n_classes"].max())
    out["authors lai minus vanilla"] = None if authors is None else _paired_gain(
        df, name, "policy", "lai", "vanilla", "final_test_acc", {**authors, "noise_rate": ">0"}, ("seed", "dataset"))
    for p in E9_POLICIES:
        out[f"acc {p}"] = _mean(df, "final_test_acc", name, {**noisy, "policy": p})
        out[f"acc sd {p}"] = _sd(df, "final_test_acc", name, {**noisy, "policy": p})
        out[f"noisy dropped {p}"] = _pct(_mean(df, "noisy_dropped_fraction", name, {**noisy, "policy": p}))
        out[f"clean dropped {p}"] = _pct(_mean(df, "clean_dropped_fraction", name, {**noisy, "policy": p}))
    out["lai vs vanilla"] = _cmp(out["acc lai"], out["acc vanilla"])
    out["acc clean"] = _mean(df, "final_test_acc", name, {"noise_rate": "<=0", "policy": "vanilla", **own})
    out["majority"] = _mean(df, "majority_acc", name, own) if df is None or "majority_acc" in df else float("nan")
    out["runs"] = None if df is None else len(df)
    out["learned"] = None if df is None else int(df["learned"].astype(str).str.lower().isin(["true", "1"]).sum())
    return out


E10_METHODS = {"acc": "acc_sgd_ie", "sgd": "sgd_ie", "dvemb": "dvemb", "dattri": "dattri_dvemb",
               "published": "dvemb_published"}


def _e10_arch(df: pd.DataFrame | None, arch: str) -> pd.DataFrame | None:
    """The rows of one architecture of E10 (a table without ``arch``, written before the CNN joined, is all MLP);
    ``None`` when there are none."""
    if df is None:
        return None
    sel = df if "arch" not in df else df[df["arch"].fillna("mlp").astype(str) == arch]
    return sel if len(sel) else None


@experiment("E10", "metrics/E10_dvemb.csv", "metrics/E10_lds.csv")
def e10_dvemb(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E10 (DVEmb's protocol), MLP rows, at the smallest epoch count run: the per-target Spearman of ACC-SGD-IE,
    SGD-IE, our DVEmb, dattri's DVEmb and the published value, per removal mode (mean over seeds); the sizes of the
    run; the mean-target Spearman of TracIn and IF; trajectory-specific and multi-seed LDS of SGD-IE and our DVEmb.
    DVEmb's small CNN (keys ``cnn ...``): its sizes and epochs, the per-target Spearman of the same four methods at
    its smallest epoch count, and DVEmb's published CNN values (10 epochs, from
    :data:`replication.tasks.e10_dvemb.PUBLISHED`, whatever epoch count ran; not run where the CNN did not run)."""
    name, all_rows = "E10_dvemb", t["E10_dvemb"]
    lname, all_lds = "E10_lds", t["E10_lds"]
    out: dict[str, Value] = {}
    if all_rows is not None:
        _need(all_rows, ["epochs", "removal", "estimator", "form", "spearman_per_target", "spearman"], name)
    df, lds = _e10_arch(all_rows, "mlp"), _e10_arch(all_lds, "mlp")
    ep = None if df is None else int(pd.to_numeric(df["epochs"], errors="coerce").min())
    ours = None if df is None else df[df["estimator"] != "dvemb_published"]
    out["epochs"] = ep
    for col in ("n_train", "n_points", "n_target", "hidden", "target_accuracy"):
        vals = None if ours is None or col not in ours else ours[col].dropna()
        out[col.replace("_", " ")] = None if vals is None or not len(vals) else (
            vals.mean() if col == "target_accuracy" else str(vals.iloc[0]) if col == "hidden" else int(vals.iloc[0]))
    out["seeds"] = None if ours is None else int(ours["seed"].nunique())
    for removal in ("all_epoch", "single_epoch"):
        for key, est in E10_METHODS.items():
            out[f"{key} {removal}"] = None if df is None else _mean(
                df, "spearman_per_target", name, {"epochs": ep, "removal": removal, "estimator": est, "form": "points"})
        out[f"acc vs dattri {removal}"] = _cmp(out[f"acc {removal}"], out[f"dattri {removal}"])
        out[f"acc vs dvemb {removal}"] = _cmp(out[f"acc {removal}"], out[f"dvemb {removal}"])
    for key, est in (("tracin", "tracin"), ("if", "influence_function"), ("diffin paper", "diffin_paper")):
        out[f"mean {key}"] = None if df is None else _mean(
            df, "spearman", name, {"epochs": ep, "removal": "all_epoch", "estimator": est})
    if all_lds is not None:
        _need(all_lds, ["epochs", "estimator", "lds_trajectory", "lds_multi_seed"], lname)
    for key, est in (("sgd", "sgd_ie"), ("dvemb", "dvemb")):
        out[f"lds traj {key}"] = None if lds is None else _mean(
            lds, "lds_trajectory", lname, {"epochs": ep, "estimator": est})
        out[f"lds multi {key}"] = None if lds is None else _mean(
            lds, "lds_multi_seed", lname, {"epochs": ep, "estimator": est})
    out["lds sgd traj vs multi"] = _cmp(out["lds traj sgd"], out["lds multi sgd"])
    # DVEmb's small CNN
    from replication.tasks.e10_dvemb import published

    cnn = _e10_arch(all_rows, "cnn")
    cnn_ours = None if cnn is None else cnn[cnn["estimator"] != "dvemb_published"]
    cep = None if cnn_ours is None or not len(cnn_ours) else int(pd.to_numeric(cnn_ours["epochs"],
                                                                                errors="coerce").min())
    out["cnn epochs"] = cep
    for col in ("n_train", "n_points", "n_target", "target_accuracy"):
        vals = None if cep is None or col not in cnn_ours else cnn_ours[col].dropna()
        out[f"cnn {col.replace('_', ' ')}"] = None if vals is None or not len(vals) else (
            vals.mean() if col == "target_accuracy" else int(vals.iloc[0]))
    out["cnn seeds"] = None if cep is None else int(cnn_ours["seed"].nunique())
    pub = {p["removal"]: p for p in published("cnn")}  # shown beside ours where the CNN ran, whatever its epochs
    out["cnn published epochs"] = None if cep is None else next(iter(pub.values()))["epochs"]
    for removal in ("all_epoch", "single_epoch"):
        for key, est in E10_METHODS.items():
            if key == "published":
                out[f"cnn published {removal}"] = None if cep is None else pub[removal]["spearman"]
                continue
            out[f"cnn {key} {removal}"] = None if cep is None else _mean(
                cnn_ours, "spearman_per_target", name,
                {"epochs": cep, "removal": removal, "estimator": est, "form": "points"})
        out[f"cnn acc vs dattri {removal}"] = _cmp(out[f"cnn acc {removal}"], out[f"cnn dattri {removal}"])
        out[f"cnn acc vs dvemb {removal}"] = _cmp(out[f"cnn acc {removal}"], out[f"cnn dvemb {removal}"])
    return out


E11_MODELS = ("dnn", "logreg", "dnn_learns")


@experiment("E11", "metrics/E11_sec71.csv")
def e11_sec71(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E11 (the ACC-SGD-IE authors' Sec. 7.1 protocol): per model and epoch count (smallest and largest run) the
    mean test accuracy, the majority rate, the runs that learned and those predicting one class only; per model at
    the largest epoch count the mean Kendall τ of SGD-IE and of ACC-SGD-IE (their step) with the run's LOO and the
    mean paired gains of ACC over SGD-IE in Kendall and Jaccard@10; the largest |ACC (theirs) − ACC (ours)|."""
    name, df = "E11_sec71", t["E11_sec71"]
    out: dict[str, Value] = {}
    if df is not None:
        _need(df, ["model", "epochs", "estimator", "kendall", "jaccard10", "test_accuracy", "majority_rate",
                   "learned", "predicted_positive"], name)
    eps = [] if df is None else sorted(pd.to_numeric(df["epochs"]).unique())
    out["epochs"] = None if df is None else _list(int(e) for e in eps)
    out["seeds"] = None if df is None else int(df["seed"].nunique())
    for m in E11_MODELS:
        for tag, e in (("first", eps[0] if eps else None), ("last", eps[-1] if eps else None)):
            w = {"model": m, "epochs": e, "estimator": "sgd_ie"}
            sel = None if e is None else _sel(df, name, w)
            out[f"{m} {tag} acc"] = None if sel is None else float(sel["test_accuracy"].mean())
            out[f"{m} {tag} majority"] = None if sel is None else float(sel["majority_rate"].mean())
            out[f"{m} {tag} learned"] = None if sel is None else int(
                sel["learned"].astype(str).str.lower().isin(["true", "1"]).sum())
            out[f"{m} {tag} runs"] = None if sel is None else len(sel)
            one = None if sel is None else pd.to_numeric(sel["predicted_positive"], errors="coerce")
            out[f"{m} {tag} one class"] = None if one is None else int(((one == 0) | (one == 1)).sum())
        w = {"model": m, "epochs": eps[-1] if eps else None}
        for est, key in (("sgd_ie", "sgd"), ("acc_sgd_ie_authors", "acc")):
            out[f"{m} kendall {key}"] = None if not eps else _mean(df, "kendall", name, {**w, "estimator": est})
        for metric in ("kendall", "jaccard10"):
            out[f"{m} {metric} gain"] = None if not eps else _paired_gain(
                df, name, "estimator", "acc_sgd_ie_authors", "sgd_ie", metric, w)
    if df is None or not {"acc_sgd_ie", "acc_sgd_ie_authors"} <= set(df["estimator"]):
        out["acc forms gap"] = None if df is None else float("nan")
    else:
        gap = _paired_gain(df, name, "estimator", "acc_sgd_ie_authors", "acc_sgd_ie", "kendall",
                           {"model": "logreg"})
        out["acc forms gap"] = None if gap is None else abs(gap)
    return out


@experiment("E12", "metrics/E12_cg_pruning.csv")
def e12_cg_pruning(t: Mapping[str, pd.DataFrame | None]) -> dict[str, Value]:
    """E12 (the CG-score authors' pruning protocol): the full-data test accuracy, the majority rate; per kept
    fraction the mean test accuracy of class-wise CG pruning (low CG pruned first: ``cg``; high first: ``cg
    high``) and class-wise random pruning, and the paired gains of CG over random (class-wise and, for our
    global-ranking protocol, global)."""
    name, df = "E12_cg_pruning", t["E12_cg_pruning"]
    out: dict[str, Value] = {}
    if df is not None:
        _need(df, ["method", "keep_fraction", "seed", "test_accuracy"], name)
    out["full acc"] = _mean(df, "test_accuracy", name, {"method": "full"})
    out["majority"] = _mean(df, "majority_rate", name) if df is None or "majority_rate" in df else float("nan")
    out["seeds"] = None if df is None else int(df["seed"].nunique())
    fracs = [] if df is None else sorted(f for f in pd.to_numeric(df["keep_fraction"]).unique() if f < 1)
    out["fractions"] = None if df is None else _list(f"{f:g}" for f in fracs)
    for pct in (30, 50, 70, 90):
        f = pct / 100
        w = {"keep_fraction": f}
        out[f"cg acc {pct}"] = _mean(df, "test_accuracy", name, {**w, "method": "cg_classwise_prune_low"})
        out[f"cg high acc {pct}"] = _mean(df, "test_accuracy", name, {**w, "method": "cg_classwise_prune_high"})
        out[f"random acc {pct}"] = _mean(df, "test_accuracy", name, {**w, "method": "random_classwise"})
        out[f"gain {pct}"] = _paired_gain(df, name, "method", "cg_classwise_prune_low", "random_classwise",
                                          "test_accuracy", w, ("seed", "keep_fraction"))
        out[f"global gain {pct}"] = _paired_gain(df, name, "method", "cg_global_prune_low", "random_global",
                                                 "test_accuracy", w, ("seed", "keep_fraction"))
    return out


# --------------------------------------------------------------------------------------------- all
def numbers(results: str | os.PathLike, config: Mapping[str, Any] | None = None,
            claim_ids: Iterable[str] = ()) -> dict[str, str]:
    """Every macro (name → LaTeX value) from the results folder: the claims (``report/claims.csv``), the
    setup (``config``) and each registered experiment (its tables, and ``ran<prefix>``)."""
    results = Path(results)
    out: dict[str, str] = {}

    def add(items: Mapping[str, str], source: str) -> None:
        for k, v in items.items():
            if k in out:
                raise ReportError(f"macro \\{k} defined twice (again by {source})")
            out[k] = v

    add(claim_numbers(_read(results / "report" / "claims.csv"), claim_ids), "the claims")
    add(setup_numbers(config), "the setup")
    for e in EXPERIMENTS:
        tables = read_tables(results, e.tables)
        values = e.fn(tables)
        add({macro_name(e.prefix, k): fmt(v) for k, v in values.items()}, e.fn.__name__)
        add({macro_name("ran", e.prefix): "1" if all(v is not None for v in tables.values()) else "0"},
            e.fn.__name__)
    return out


def to_tex(macros: Mapping[str, str], header: str = "") -> str:
    """``\\newcommand{\\name}{value}`` lines, sorted by name (so the file is the same for the same numbers)."""
    bad = [k for k in macros if not re.fullmatch(r"[A-Za-z]+", k)]
    if bad:
        raise ReportError(f"macro names must be letters only: {bad}")
    lines = [f"% {line}" for line in header.splitlines()]
    lines += [f"\\newcommand{{\\{k}}}{{{v}}}" for k, v in sorted(macros.items())]
    return "\n".join(lines) + "\n"


def write_numbers(results: str | os.PathLike, out: str | os.PathLike, config: Mapping[str, Any] | None = None,
                  claim_ids: Iterable[str] = ()) -> dict[str, str]:
    """Write :func:`numbers` as :func:`to_tex` to ``out`` (atomically) and return the macros."""
    from influence.io import save_text

    macros = numbers(results, config, claim_ids)
    save_text(out, to_tex(macros, "Generated by replication.report.write_numbers (the workflow's `numbers` rule); "
                                  "do not edit.\nThe report reads each macro as \\val{name}."))
    log.info("wrote %d macros to %s", len(macros), out)
    return macros


class LatexError(RuntimeError):
    """latexmk failed; the message quotes LaTeX's first errors."""


def build_pdf(source: str | os.PathLike, results: str | os.PathLike, out: str | os.PathLike, *,
              config_name: str = "default", log_path: str | os.PathLike | None = None,
              latexmk: str | None = None) -> list[str]:
    """Build the report ``source`` (a .tex file) against the results folder ``results`` into ``out`` (a PDF).

    The source is copied to ``<out's folder>/build/report.tex`` (with the ``.bib`` files beside it, which latexmk's
    BibTeX run reads) beside ``paths.tex``, which defines
    ``\\resultsdir`` (``results`` relative to that folder, so both files are the same wherever the results lie)
    and ``\\configname``; latexmk runs there with its output folder (aux, log with its timestamps, fls, PDF) in
    a temporary directory, so the results folder receives only the PDF. latexmk's output (BibTeX's included) and
    the LaTeX log go to ``log_path`` (appended) when given.

    Returns the lines of the LaTeX log that report a value the report cites but ``numbers.tex`` lacks (empty
    when every ``\\val`` resolved). Raises :class:`LatexError` with LaTeX's first error lines when the build
    fails, ``FileNotFoundError`` when latexmk is not installed.
    """
    import shutil
    import subprocess
    import tempfile

    from influence.io import atomic_write, save_text

    latexmk = latexmk or shutil.which("latexmk")
    if latexmk is None:
        raise FileNotFoundError("latexmk is not installed: apt-get install texlive-latex-base "
                                "texlive-latex-recommended texlive-fonts-recommended latexmk lmodern")
    out = Path(out)
    build = out.parent / "build"
    atomic_write(build / "report.tex", Path(source).read_bytes())
    for bib in sorted(Path(source).parent.glob("*.bib")):  # the bibliography, for latexmk's BibTeX run
        atomic_write(build / bib.name, bib.read_bytes())
    resultsdir = Path(os.path.relpath(Path(results).resolve(), build.resolve())).as_posix()
    save_text(build / "paths.tex",
              f"\\newcommand{{\\resultsdir}}{{{resultsdir}}}\n\\newcommand{{\\configname}}{{{escape(config_name)}}}\n")
    with tempfile.TemporaryDirectory(prefix="influence-paper-") as tmp:
        cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", f"-outdir={tmp}", "report.tex"]
        proc = subprocess.run(cmd, cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tex_log = Path(tmp, "report.log")
        text = tex_log.read_text(errors="replace") if tex_log.exists() else ""
        if log_path is not None:
            with open(log_path, "a") as fh:
                fh.write(proc.stdout)
                fh.write("\n------------------------------------------------------------------ report.log\n")
                fh.write(text)
        if proc.returncode != 0 or not Path(tmp, "report.pdf").exists():
            errors = [line for line in text.splitlines() if line.startswith("!")][:3]
            raise LatexError(f"latexmk failed (exit {proc.returncode}): {' | '.join(errors) or proc.stdout[-500:]}"
                             + (f"; full LaTeX log in {log_path}" if log_path else ""))
        atomic_write(out, Path(tmp, "report.pdf").read_bytes())
    missing = [line.strip() for line in text.splitlines() if "no value for" in line]
    if missing:
        log.warning("the report cites %d value(s) that numbers.tex lacks: %s", len(missing), missing[:5])
    return missing


# ---------------------------------------------------------------------------------- the claims table
#: The verdicts the claims engine gives (:data:`replication.claims.VERDICTS`), in the order they are counted, each
#: with its meaning in one line (the legend of the Markdown table and the notebooks).
VERDICT_MEANING = {
    "reproduced": "the 95 % interval of the paired effect over seeds lies entirely on the claimed side, past the "
                  "margin",
    "refuted": "the interval lies entirely on the other side",
    "inconclusive": "the interval spans the margin (the diagnosis gives the smallest effect the design could detect)",
    "partly": "some of the claim's named parts are reproduced, not all",
    "not run": "this configuration has no data for it",
    "invalid run": "its evidence includes a run that did not learn",
}

#: Columns of the claims table (:func:`replication.claims.evaluate_claims`) the renderers read; a missing one reads "".
CLAIM_COLUMNS = ("id", "paper", "claim", "experiment", "metric", "criterion", "paper_value", "effect", "ours",
                 "verdict", "diagnosis", "settings", "measured", "protocol", "counterpart", "difference")
EMPTY = "—"  # an empty cell (no published number, no interval)


def verdicts() -> tuple[str, ...]:
    """The verdicts to count: those of :data:`VERDICT_MEANING`, then any other the claims engine defines."""
    from replication.claims import VERDICTS

    return tuple(dict.fromkeys([*VERDICT_MEANING, *VERDICTS]))


def _text(r: Mapping[str, Any], col: str) -> str:
    """A cell of a claims-table row as text: "" for a missing column or a missing value (NaN, None)."""
    v = r.get(col) if hasattr(r, "get") else None
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return " ".join(str(v).split())


def short_claim(text: str, limit: int = 100) -> str:
    """The claim's first sentence (up to ``. `` or `` -- ``), cut at a word before ``limit`` characters with ``…``."""
    text = " ".join(str(text).split())
    first = re.split(r"(?<=\.)\s+(?=[A-Z])| -- | — ", text, maxsplit=1)[0]
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def claims_summary(table: pd.DataFrame) -> str:
    """The verdict counts in words, in the order of :func:`verdicts` (``3 reproduced, 1 refuted, 2 not run``)."""
    counts = table["verdict"].astype(str).value_counts().to_dict() if len(table) else {}
    order = [*verdicts(), *sorted(set(counts) - set(verdicts()))]
    return ", ".join(f"{counts[v]} {v}" for v in order if counts.get(v))


def claims_legend() -> str:
    """The verdicts' meanings as one Markdown paragraph."""
    return "Verdicts: " + "; ".join(f"*{v}*: {m}" for v, m in VERDICT_MEANING.items()) + "."


def _md(s: str) -> str:
    return s.replace("|", "\\|") or EMPTY


#: The one-minute table: (column, header). The detailed table: the claim's criterion and measured values.
GLANCE = (("id", "id"), ("protocol", "protocol"), ("claim", "claim"), ("paper_value", "paper's number"),
          ("ours", "ours (95 % CI)"), ("verdict", "verdict"), ("diagnosis", "diagnosis"))
DETAIL = (("id", "id"), ("effect", "what ours measures"), ("criterion", "criterion"), ("settings", "per setting"),
          ("measured", "measured"))
#: In claims.md, the line between the one-minute table and the details (the README snapshot stops there).
DETAILS_MARK = "<!-- claims: details -->"


def _md_rows(table: pd.DataFrame, cols: tuple[tuple[str, str], ...]) -> list[str]:
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        cells = []
        for c, _ in cols:
            v = _text(r, c)
            v = short_claim(v) if c == "claim" else v
            cells.append(f"**{_md(v)}**" if c == "verdict" else _md(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def claims_markdown(table: pd.DataFrame, *, details: bool = True, legend: bool = True) -> str:
    """The claims table as Markdown: the one-minute table (id · claim · the paper's number · ours with its 95 %
    interval · verdict · one-line diagnosis), the verdicts' legend, and with ``details`` (after
    :data:`DETAILS_MARK`) a second table per claim: what *ours* measures, the criterion, the verdicts per setting
    and the measured values in full."""
    out = _md_rows(table, GLANCE)
    if legend:
        out += ["", claims_legend()]
    if details:
        out += ["", DETAILS_MARK, "", "### Claims in detail", "", *_md_rows(table, DETAIL)]
    return "\n".join(out) + "\n"


def _longtable(table: pd.DataFrame, cols: tuple[tuple[str, str], ...], widths: tuple[float, ...]) -> str:
    spec = "".join(f"p{{{w}\\linewidth}}" for w in widths)
    head = " & ".join(rf"\textbf{{{escape(h)}}}" for _, h in cols)
    out = [rf"\begin{{longtable}}{{@{{}}{spec}@{{}}}}", rf"\toprule {head} \\ \midrule \endhead",
           r"\bottomrule \endfoot"]
    for _, r in table.iterrows():
        cells = []
        for c, _ in cols:
            v = _text(r, c)
            v = short_claim(v) if c == "claim" else v
            tex = escape(v) if v else escape(EMPTY)
            cells.append(rf"\textbf{{{tex}}}" if c in ("id", "verdict") else tex)
        out.append(" & ".join(cells) + r" \\ \addlinespace[2pt]")
    out.append(r"\end{longtable}")
    return "\n".join(out) + "\n"


def claims_latex(table: pd.DataFrame) -> str:
    """The one-minute claims table as a longtable (needs ``longtable`` and ``booktabs``): id, claim (its first
    sentence), the paper's number, ours with its 95 % interval, verdict and the one-line diagnosis. Every
    character is TeX that renders (:func:`escape`)."""
    return _longtable(table, GLANCE, (0.08, 0.07, 0.18, 0.11, 0.14, 0.11, 0.25))


#: The side-by-side table of a claim judged in both protocols: (column, header).
SIDE_BY_SIDE = (("paper", "paper"), ("claim", "claim"), ("authors", "in the authors' protocol"),
                ("ours", "against ground truth (ours)"), ("difference", "what explains the difference"))


def protocol_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """The claims judged in both protocols, one row per pair (:data:`SIDE_BY_SIDE`): the authors'-protocol row
    (``protocol`` ``authors``) and its ``counterpart`` (ours), each as "id: verdict; ours (95 % CI)", the claim's
    first sentence as the main row (the one whose id the other extends) states it, and the pair's ``difference``
    (either row's; "same verdict" is added when the verdicts agree). A pair is found from either side; a
    counterpart missing from the table reads "not in this table"."""
    rows = {_text(r, "id"): r for _, r in table.iterrows()} if len(table) else {}
    seen, out = set(), []

    def cell(cid: str) -> str:
        r = rows.get(cid)
        if r is None:
            return f"{cid}: not in this table"
        ours = _text(r, "ours")
        return f"{cid}: {_text(r, 'verdict')}" + (f"; {ours}" if ours else "")

    for cid, r in rows.items():
        other = _text(r, "counterpart")
        if not other:
            continue
        authors, ground = (cid, other) if _text(r, "protocol") == "authors" else (other, cid)
        if (authors, ground) in seen:
            continue
        seen.add((authors, ground))
        a, g = rows.get(authors), rows.get(ground)
        diff = next((_text(x, "difference") for x in (a, g) if x is not None and _text(x, "difference")), "")
        if a is not None and g is not None and _text(a, "verdict") == _text(g, "verdict"):
            diff = "same verdict" + (f". {diff}" if diff else "")
        # the claim as the main row states it: the row whose id the other extends (ACC-2 for ACC-2-authors,
        # CG-2 for CG-2-global), else the ground-truth row
        main = a if a is not None and ground.startswith(authors) else g if g is not None else a
        out.append({"paper": _text(main, "paper"),
                    "claim": short_claim(_text(main, "claim"), 80),
                    "authors": cell(authors), "ours": cell(ground), "difference": diff})
    return pd.DataFrame(out, columns=[c for c, _ in SIDE_BY_SIDE])


def protocols_markdown(table: pd.DataFrame) -> str:
    """:func:`protocol_pairs` as a Markdown table ("" when no claim is judged in both protocols)."""
    pairs = protocol_pairs(table)
    return "\n".join(_md_rows(pairs, SIDE_BY_SIDE)) + "\n" if len(pairs) else ""


def protocols_latex(table: pd.DataFrame) -> str:
    """:func:`protocol_pairs` as a longtable (a one-line note when no claim is judged in both protocols)."""
    pairs = protocol_pairs(table)
    if not len(pairs):
        return "No claim is judged in both protocols in this configuration.\n"
    return _longtable(pairs, SIDE_BY_SIDE, (0.09, 0.18, 0.2, 0.2, 0.27))


def claims_detail_latex(table: pd.DataFrame) -> str:
    """The detailed claims table (the report's appendix): id, what *ours* measures, the criterion, the verdicts
    per setting and the measured values in full."""
    return _longtable(table, DETAIL, (0.09, 0.2, 0.23, 0.12, 0.3))


# ------------------------------------------------------------------------------- the notebooks' claims
def _reads(test: Mapping[str, Any]) -> set[str]:
    """The tables a claim's test reads (kind ``all``: every part's; ``checks``: ``E5_bounds`` unless named)."""
    if test.get("kind") == "all":
        return set().union(*(_reads(t) for t in test.get("tests", [])))
    if test.get("kind") == "checks":
        return {test.get("table", "E5_bounds")}
    return {test["table"]} if "table" in test else set()


def notebook_claims(ids: Iterable[str], claims: str | os.PathLike | Iterable[Mapping[str, Any]],
                    tables: Mapping[str, pd.DataFrame | None]) -> str:
    """The closing claims section of a notebook (Markdown): the claims ``ids`` measured by
    :func:`replication.claims.evaluate_claims` on the notebook's ``tables``, as the one-minute table of the claims
    table (:func:`claims_markdown`), then what *ours* measures per claim. A claim whose parts read other
    notebooks' tables too is judged here on its parts on these tables (and says so); one that reads none of them
    is listed as measured elsewhere."""
    from replication.claims import evaluate_claims, load_claims

    if isinstance(claims, (str, os.PathLike)):
        claims = load_claims(claims)
    by_id = {c["id"]: c for c in claims}
    ids = list(ids)
    if not ids:
        return "No claim in `paper/claims.yaml` reads this notebook's tables."
    present = set(tables)
    here, notes, elsewhere = [], [], []
    for cid in ids:
        c = by_id[cid]
        test = c["test"]
        others = sorted(_reads(test) - present)
        if test.get("kind") == "all" and others:
            test = {**test, "tests": [s for s in test["tests"] if _reads(s) <= present]}
        ok = bool(test["tests"]) if test.get("kind") == "all" else not _reads(test) or bool(_reads(test) & present)
        if ok:
            here.append({**c, "test": test})
            if others:
                notes.append(f"{cid}: judged here on its parts on this notebook's tables; the part on "
                             f"{', '.join(others)} is judged in the notebook that reads it.")
        else:
            elsewhere.append(cid)
    lines = ["**Claims tested here**, measured by `replication.claims` on this notebook's tables (the claims table "
             "`results/report/claims.md` is the final word: it joins the parts of a claim that other notebooks' "
             "tables carry and marks a claim resting on a run that did not learn as *invalid run*):", ""]
    if here:
        table = evaluate_claims(here, tables=dict(tables))
        lines.append(claims_markdown(table, details=False))
        effects = [f"- **{_text(r, 'id')}**: {_text(r, 'effect')}" for _, r in table.iterrows() if _text(r, "effect")]
        if effects:
            lines += ["What *ours* measures:", *effects, ""]
    lines += [f"- {n}" for n in notes]
    if elsewhere:
        lines.append(f"- Measured elsewhere (no table of this notebook carries them): {', '.join(elsewhere)}.")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------- the README snapshot
#: The README's claims snapshot lies between these two lines (``make readme-claims`` rewrites it).
README_START = "<!-- claims snapshot: generated by `make readme-claims` from results/report/claims.md; do not edit -->"
README_END = "<!-- end of claims snapshot -->"
