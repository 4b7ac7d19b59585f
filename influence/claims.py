"""The claims table: each claim of the four papers, its criterion, the measured value and the verdict.

Claims live in a data file (``paper/claims.yaml``): id, paper, claim, experiment, metric, criterion (prose)
and ``test``, the machine-readable form of the criterion. :func:`evaluate_claims` reads the experiment
tables written by the workflow (``<results>/metrics/<table>.csv``), applies each test and returns one row
per claim with the measured value and a verdict out of :data:`VERDICTS`, computed, never typed.

Test kinds (keys besides ``kind`` in brackets):

``compare`` [table, estimator, baselines, metrics {name: higher|lower}, where, group_by, key, margin,
    min_margin, factor, strict, min_value, control, paired_by, min_rounds, report_metrics, rule, columns]
    Per group (mean over the remaining rows, e.g. seeds) and metric, the estimator *wins* if it is at
    least as good as the best baseline: higher-is-better ``A ≥ factor·B + margin`` (lower-is-better
    ``A ≤ factor·B − margin``; ``strict: true``: ``>`` / ``<``, a tie is a loss); ``margin: sd`` requires
    beating the best baseline by more than the larger standard deviation over seeds (strictly), at least
    ``min_margin`` (for tables with one seed, whose sd is unknown); ``min_value`` additionally requires
    ``A ≥ min_value``. An undefined ``A`` (NaN: e.g. the rank correlation of a constant estimator) is a
    loss, never a skipped comparison; NaN baselines are left out.
    ``control: {estimator, metric, direction, margin, min_margin}``: per group the estimator must also beat
    the best control estimator (e.g. ``random``, the chance baseline in the same table) on ``metric`` by
    more than ``margin`` (a number or ``sd``); where it does not, every comparison of the group is lost
    (an estimate no better than chance wins nothing, e.g. an RMSE "won" by predicting ≈ 0). A table without
    the control gives ``not run``; groups without it are skipped and counted in ``measured``.
    ``paired_by: rep`` (timings measured in interleaved rounds): per group, metric and baseline, the
    per-round ratios ``A_k / B_k`` (rounds matched on that column); the estimator wins if the median ratio
    is ``≤ factor`` (lower) or ``≥ factor`` (higher) against every baseline, with at least ``min_rounds``
    (default 5) rounds; ``measured`` gives the worst median with its interquartile range.
    ``report_metrics`` (paired only): metrics whose ratios are shown in ``measured`` but not judged.
    ``rule: most`` → reproduced if more than half of the comparisons are won, partly if at least
    ``partly`` (default 0.25) of them; ``rule: all`` → reproduced if all, partly if any.
    ``columns: {estimator: column}`` reads a wide table (one column per estimator, one metric) instead.
``equal`` [table, estimators (two), metrics, where, tol, control]
    The two estimators' metrics agree within ``tol`` on every row (same setting and seed); an undefined
    metric is no agreement. ``control`` (as above): each of the two must beat the control on every row —
    two equal trivial estimators are no evidence of an identity.
``threshold`` [table, metric, where, op, value, aggregate]
    The aggregated metric satisfies ``op value``, and no row's metric is undefined (NaN is a failure).
``growth`` [table, estimator, metric, x, where, group_by, rule, min_metric, control]
    Per group, log(metric) vs log(x) (power law) fits at least as well (R²) as log(metric) vs x
    (exponential); a curve counts only where the estimate is non-trivial: ``min_metric: {name: value}`` at
    every point, and beating the ``control`` at every x.
``checks`` [table]
    The E5 theory checks tagged with the claim id: reproduced if all pass, partly if some, not
    reproduced if none.
``coverage`` [table, min_estimators, metric, require]
    At least ``min_estimators`` estimators appear on every run of the table (with ``metric`` defined when
    given), besides the ``require``-d controls, which must appear too.
``all`` [tests]
    Several of the above (without ids): not run if none ran; among those that ran, reproduced if all
    reproduced, not reproduced if none did, partly otherwise.
``none`` [reason]
    Not run by this workflow.
A missing table, or one without the rows the test selects, gives ``not run``.

**Invalid runs.** A recorded run that diverged never reaches a table (training stops with an error).
One that did not learn (:func:`influence.tasks.common.run_health`: test accuracy not above the
majority-class rate, or the training loss not below its start) is passed in ``runs``; tables of runs
made inside one job (E8, E9) carry their own ``learned`` column instead, and a row the test reads
with ``learned`` false counts the same way; a claim whose
evidence includes a row of such a run (matched on dataset, noise, model, epochs and seed; E5 checks
through ``check_runs``) gets the verdict ``invalid run``, with the reason in ``measured``. A claim whose
evidence does not depend on what the model learned (a timing, an algebraic identity) says so with
``needs_learned_runs: false`` and the reason in a comment.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["VERDICTS", "load_claims", "evaluate_claim", "evaluate_claims", "to_markdown", "to_latex"]

log = logging.getLogger(__name__)

VERDICTS = ("reproduced", "partly", "not reproduced", "not run", "invalid run")
SETTING_KEYS = ("dataset", "noise", "model", "epochs", "seed")
REQUIRED = ("id", "paper", "claim", "experiment", "metric", "criterion", "test")
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


def load_claims(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and check the claims file (a YAML list of claims with the keys in :data:`REQUIRED`)."""
    import yaml

    claims = yaml.safe_load(Path(path).read_text())
    if not isinstance(claims, list):
        raise ValueError(f"{path}: expected a list of claims")
    seen = set()
    for c in claims:
        missing = [k for k in REQUIRED if k not in c]
        if missing:
            raise ValueError(f"{path}: claim {c.get('id', '?')!r} lacks {', '.join(missing)}")
        if c["id"] in seen:
            raise ValueError(f"{path}: claim id {c['id']!r} appears twice")
        seen.add(c["id"])
    return claims


# ------------------------------------------------------------------------------------------- helpers
class _NotRun(Exception):
    pass


def _table(tables: Mapping[str, pd.DataFrame | None], name: str) -> pd.DataFrame:
    t = tables.get(name)
    if t is None or len(t) == 0:
        raise _NotRun(f"table {name} is missing or empty")
    return t


def _where(df: pd.DataFrame, where: Mapping[str, Any] | None) -> pd.DataFrame:
    for col, cond in (where or {}).items():
        if col not in df:
            raise _NotRun(f"column {col!r} not in the table")
        if isinstance(cond, (list, tuple)):
            df = df[df[col].astype(str).isin([str(c) for c in cond])]
        elif isinstance(cond, str) and (m := re.fullmatch(r"\s*(>=|<=|==|>|<)\s*(-?[\d.eE+-]+)\s*", cond)):
            df = df[_OPS[m.group(1)](pd.to_numeric(df[col], errors="coerce"), float(m.group(2)))]
        else:
            df = df[df[col].astype(str) == str(cond)]
    return df


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "nan"
    return f"{x:.3g}"


def _verdict_from_fraction(wins: int, total: int, rule: str, partly: float) -> str:
    if total == 0:
        return "not run"
    f = wins / total
    if rule == "all":
        return "reproduced" if wins == total else ("partly" if wins > 0 else "not reproduced")
    if rule == "most":
        return "reproduced" if f > 0.5 else ("partly" if f >= partly else "not reproduced")
    raise ValueError(f"rule must be 'most' or 'all', got {rule!r}")


# --------------------------------------------------------------------------------------------- kinds
def _names(x: str | Sequence[str] | None) -> list[str]:
    return [] if x is None else ([x] if isinstance(x, str) else [str(n) for n in x])


def _margin(spec: Any, sds: Sequence[float], floor: float | None) -> float:
    """A margin: a number, or ``"sd"`` (the larger of ``sds``, the standard deviations over seeds / rounds);
    ``floor`` (``min_margin``) is the least margin, for tables with one seed, whose sd is unknown."""
    mg = max([float(np.nan_to_num(s)) for s in sds] or [0.0]) if spec == "sd" else float(spec)
    return max(mg, float(floor)) if floor is not None else mg


def _beats(a: float, b: float, direction: str, margin: float, factor: float = 1.0, strict: bool = False) -> bool:
    """``a`` better than ``b``: higher ``a ≥ factor·b + margin`` (lower ``a ≤ factor·b − margin``); strict
    inequalities when ``strict`` (a tie is then a loss). Undefined (NaN) ``a`` never wins."""
    if not math.isfinite(a):
        return False
    if direction == "higher":
        return a > factor * b + margin if strict else a >= factor * b + margin
    if direction == "lower":
        return a < factor * b - margin if strict else a <= factor * b - margin
    raise ValueError(f"metric direction must be 'higher' or 'lower', got {direction!r}")


def _control_spec(test: Mapping[str, Any], metrics: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``control`` of a test: ``{estimator: name(s), metric, direction, margin, min_margin}`` (metric
    defaults to the test's first metric, direction to that metric's, margin to 0)."""
    c = test.get("control")
    if c is None:
        return None
    c = {"estimator": c} if isinstance(c, (str, list)) else dict(c)
    unknown = set(c) - {"estimator", "metric", "direction", "margin", "min_margin"}
    if unknown or "estimator" not in c:
        raise ValueError(f"control must be {{estimator, metric, direction, margin, min_margin}}, got {sorted(c)}")
    metric = c.get("metric") or next(iter(metrics))
    return {"names": _names(c["estimator"]), "metric": metric,
            "direction": c.get("direction") or metrics.get(metric, "higher"), "margin": c.get("margin", 0.0),
            "min_margin": c.get("min_margin")}


def _control_gate(rows: pd.DataFrame, key: str, est: str, ctrl: Mapping[str, Any]) -> tuple[bool | None, str]:
    """Whether ``est`` beats the best control on the control metric, in one group (mean over its rows, a
    strict inequality: a tie with chance is no evidence). ``None`` when the group has no control row."""
    m, d = ctrl["metric"], ctrl["direction"]
    if m not in rows:
        raise _NotRun(f"control metric {m!r} not in the table")
    vals = rows.groupby(rows[key].astype(str))[m].agg(["mean", "std"])
    present = [c for c in ctrl["names"] if c in vals.index and math.isfinite(vals.loc[c, "mean"])]
    if not present or est not in vals.index:
        return None, ""
    best = max(present, key=lambda c: vals.loc[c, "mean"] * (1 if d == "higher" else -1))
    a, c = float(vals.loc[est, "mean"]), float(vals.loc[best, "mean"])
    mg = _margin(ctrl["margin"], [vals.loc[est, "std"], vals.loc[best, "std"]], ctrl["min_margin"])
    return _beats(a, c, d, mg, strict=True), f"{m} {_fmt(a)} vs {best} {_fmt(c)}"


def _paired_ratio(rows: pd.DataFrame, key: str, est: str, base: str, metric: str, by: str) -> np.ndarray:
    """Per-round ratios ``est / base`` of ``metric``, rounds matched on column ``by`` (e.g. ``rep``)."""
    if by not in rows:
        raise _NotRun(f"column {by!r} (the round of a paired measurement) not in the table")
    a = rows[rows[key].astype(str) == est].groupby(by)[metric].mean()
    b = rows[rows[key].astype(str) == base].groupby(by)[metric].mean()
    both = a.index.intersection(b.index)
    r = (a.loc[both] / b.loc[both]).to_numpy(float)
    return r[np.isfinite(r)]


def _compare(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> tuple[str, str, dict]:
    df = _where(_table(tables, test["table"]), test.get("where"))
    key = test.get("key", "estimator")
    est, bases = test["estimator"], list(test["baselines"])
    metrics = dict(test["metrics"])
    if "columns" in test:  # a wide table, one column per estimator: melt it into (key, metric) rows
        cols = dict(test["columns"])
        missing = [c for c in cols.values() if c not in df]
        if missing:
            raise _NotRun(f"columns {missing} not in {test['table']}")
        (metric,) = metrics
        df = df.melt(id_vars=[c for c in df if c not in cols.values()], value_vars=list(cols.values()),
                     var_name=key, value_name=metric)
        df[key] = df[key].map({v: k for k, v in cols.items()})
    groups = list(test.get("group_by", []))
    margin, factor = test.get("margin", 0.0), float(test.get("factor", 1.0))
    min_value, min_margin, strict = test.get("min_value"), test.get("min_margin"), bool(test.get("strict", False))
    paired_by, min_rounds = test.get("paired_by"), int(test.get("min_rounds", 5))
    shown = list(test.get("report_metrics", []))  # paired metrics shown in `measured` but not judged
    if paired_by and margin != 0.0:
        raise ValueError("a paired comparison (paired_by) takes its margin in `factor` (a ratio), not `margin`")
    ctrl = _control_spec(test, metrics)
    names = [est, *bases, *(ctrl["names"] if ctrl else [])]
    df = df[df[key].astype(str).isin(names)]
    present = set(df[key].astype(str))
    if est not in present or not set(bases) & present:
        raise _NotRun(f"{est} or all of {bases} absent from {test['table']}")
    if ctrl and not set(ctrl["names"]) & present:
        raise _NotRun(f"the control {'/'.join(ctrl['names'])} is absent from {test['table']}: add it to the "
                      "experiment's estimators")
    wins, total, details, gated, no_ctrl, reported = 0, 0, [], [0, 0], 0, []
    for gkey, g in (df.groupby(groups, dropna=False) if groups else [((), df)]):
        here = set(g[key].astype(str))
        if est not in here or not set(bases) & here:
            continue
        gate, gate_note = (True, "")
        if ctrl:
            gate, gate_note = _control_gate(g, key, est, ctrl)
            if gate is None:  # no control in this group: it cannot be judged
                no_ctrl += 1
                continue
            gated[0] += int(gate)
            gated[1] += 1
        for m, direction in metrics.items():
            if m not in g:
                raise _NotRun(f"metric {m!r} not in {test['table']}")
            if paired_by:
                won, rec = _paired_group(g, key, est, [b for b in bases if b in here], m, direction, paired_by,
                                         factor, min_rounds)
                if won is None:
                    continue
            else:
                won, rec = _unpaired_group(g, key, est, [b for b in bases if b in here], m, direction, margin,
                                           min_margin, factor, strict, min_value)
                if won is None:
                    continue
            won = won and bool(gate)
            wins += int(won)
            total += 1
            details.append({"group": gkey, "metric": m, **rec, "control": gate_note, "won": bool(won)})
        for m in shown if paired_by else []:
            _, rec = _paired_group(g, key, est, [b for b in bases if b in here], m, next(iter(metrics.values())),
                                   paired_by, factor, min_rounds)
            if rec:
                reported.append({"group": gkey, "metric": m, **rec})
    if total == 0:
        raise _NotRun("no group has the estimator, a baseline" + (" and the control" if ctrl else "")
                      + (f" and {min_rounds} paired rounds" if paired_by else ""))
    verdict = _verdict_from_fraction(wins, total, test.get("rule", "most"), float(test.get("partly", 0.25)))
    measured = f"{est} won {wins}/{total} comparisons ({100 * wins / total:.0f} %)"
    if paired_by:
        measured += "; " + _worst_ratio(details, groups)
        if reported:
            measured += f"; not judged, {'/'.join(shown)}: " + _worst_ratio(reported, groups)
    if ctrl:
        measured += (f"; beat the control {'/'.join(ctrl['names'])} on {ctrl['metric']} in {gated[0]}/{gated[1]} "
                     "groups" + (f" ({no_ctrl} without the control skipped)" if no_ctrl else ""))
    return verdict, measured, {"comparisons": details}


def _worst_ratio(recs: list[dict], groups: list[str]) -> str:
    """The worst median paired ratio of ``recs`` with its interquartile range, baseline, metric and group."""
    w = max(recs, key=lambda r: r["ratio"] * (1 if r["direction"] == "lower" else -1))
    where = f", {'/'.join(map(str, np.atleast_1d(w['group'])))}" if groups else ""
    return (f"worst median paired ratio {_fmt(w['ratio'])} (IQR {_fmt(w['q25'])}–{_fmt(w['q75'])}, {w['rounds']} "
            f"rounds; vs {w['baseline']}, {w['metric']}{where})")


def _unpaired_group(g: pd.DataFrame, key: str, est: str, bases: list[str], m: str, direction: str, margin: Any,
                    min_margin: float | None, factor: float, strict: bool,
                    min_value: float | None) -> tuple[bool | None, dict]:
    """One (group, metric) comparison of means over the group's rows (seeds). ``None``: no finite baseline."""
    agg = g.groupby(g[key].astype(str))[m].agg(["mean", "std"])
    b_rows = agg.loc[[b for b in bases if math.isfinite(agg.loc[b, "mean"])]]
    if len(b_rows) == 0:
        return None, {}
    a = float(agg.loc[est, "mean"])
    best_name = str(b_rows["mean"].idxmax() if direction == "higher" else b_rows["mean"].idxmin())
    best = float(b_rows.loc[best_name, "mean"])
    mg = _margin(margin, [agg.loc[est, "std"], b_rows.loc[best_name, "std"]], min_margin)
    won = _beats(a, best, direction, mg, factor, strict=strict or margin == "sd")  # "sd": strictly more
    if min_value is not None:
        won = won and a >= float(min_value)
    return won, {est: a, "baseline": best_name, best_name: best, "margin": mg, "direction": direction}


def _paired_group(g: pd.DataFrame, key: str, est: str, bases: list[str], m: str, direction: str, by: str,
                  factor: float, min_rounds: int) -> tuple[bool | None, dict]:
    """One (group, metric) comparison of paired rounds: the median over rounds of ``est / baseline``
    against ``factor`` (lower: ``median ≤ factor``; higher: ``median ≥ factor``), for the worst baseline.
    ``None``: fewer than ``min_rounds`` rounds with every baseline."""
    recs = []
    for b in bases:
        r = _paired_ratio(g, key, est, b, m, by)
        if len(r) < min_rounds:
            return None, {}
        q25, med, q75 = np.quantile(r, [0.25, 0.5, 0.75])
        recs.append({"baseline": b, "ratio": float(med), "q25": float(q25), "q75": float(q75), "rounds": len(r)})
    if not recs:
        return None, {}
    worst = max(recs, key=lambda r: r["ratio"] * (1 if direction == "lower" else -1))
    won = worst["ratio"] <= factor if direction == "lower" else worst["ratio"] >= factor
    return bool(won), {**worst, "factor": factor, "direction": direction, "all": recs}


def _equal(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> tuple[str, str, dict]:
    df = _where(_table(tables, test["table"]), test.get("where"))
    a, b = test["estimators"]
    key = test.get("key", "estimator")
    idx = [c for c in ("dataset", "noise", "model", "epochs", "seed") if c in df]
    worst = 0.0
    n = 0
    for m in test["metrics"]:
        pa = df[df[key] == a].set_index(idx)[m]
        pb = df[df[key] == b].set_index(idx)[m]
        both = pa.index.intersection(pb.index)
        if len(both) == 0:
            continue
        diff = np.abs(pa.loc[both].to_numpy(float) - pb.loc[both].to_numpy(float))
        # an undefined metric (a constant estimator's correlation) is no evidence of equality
        worst = max(worst, float(np.max(diff)) if np.isfinite(diff).all() else math.inf)
        n = max(n, len(both))
    if n == 0:
        raise _NotRun(f"no setting has both {a} and {b}")
    tol = float(test.get("tol", 1e-8))
    verdict = "reproduced" if worst <= tol else "not reproduced"
    measured = f"max |Δ| = {_fmt(worst)} over {n} runs"
    ctrl = _control_spec(test, {m: "higher" for m in test["metrics"]})
    if ctrl:  # two equal trivial estimators are no evidence: each must beat the control on every run
        if not set(ctrl["names"]) & set(df[key].astype(str)):
            raise _NotRun(f"the control {'/'.join(ctrl['names'])} is absent from {test['table']}: add it to the "
                          "experiment's estimators")
        ok = tot = 0
        for _, g in (df.groupby(idx, dropna=False) if idx else [((), df)]):
            for e in (a, b):
                gate, _ = _control_gate(g, key, e, ctrl)
                if gate is not None:
                    ok, tot = ok + int(gate), tot + 1
        if tot == 0:
            raise _NotRun(f"no run has both the estimators and the control {'/'.join(ctrl['names'])}")
        if ok < tot:
            verdict = "not reproduced"
        measured += f"; beat the control {'/'.join(ctrl['names'])} on {ctrl['metric']} in {ok}/{tot} (estimator, run)"
    return verdict, measured, {}


def _threshold(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> tuple[str, str, dict]:
    df = _where(_table(tables, test["table"]), test.get("where"))
    m = test["metric"]
    if m not in df:
        raise _NotRun(f"metric {m!r} not in {test['table']}")
    vals = pd.to_numeric(df[m], errors="coerce")
    if len(vals) == 0:
        raise _NotRun(f"no values of {m}")
    n_bad = int((~np.isfinite(vals.to_numpy(float))).sum())
    vals = vals[np.isfinite(vals.to_numpy(float))]
    if len(vals) == 0:  # every row undefined (e.g. a constant estimator's correlation): no evidence, a failure
        return "not reproduced", f"{m} undefined on all {n_bad} rows", {}
    x = float(getattr(vals, test.get("aggregate", "mean"))())
    ok = _OPS[test.get("op", ">=")](x, float(test["value"])) and n_bad == 0
    return (("reproduced" if ok else "not reproduced"),
            f"{m} = {_fmt(x)} (n = {len(vals)})" + (f"; undefined on {n_bad} rows" if n_bad else ""), {})


def _growth(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> tuple[str, str, dict]:
    df = _where(_table(tables, test["table"]), test.get("where"))
    key = test.get("key", "estimator")
    ctrl = _control_spec(test, {test["metric"]: "lower"})
    if ctrl and not set(ctrl["names"]) & set(df[key].astype(str)):
        raise _NotRun(f"the control {'/'.join(ctrl['names'])} is absent from {test['table']}: add it to the "
                      "experiment's estimators")
    full = df
    df = df[df[key] == test["estimator"]]
    x, m = test.get("x", "epochs"), test["metric"]
    groups = list(test.get("group_by", []))
    gate_min = dict(test.get("min_metric", {}))  # {metric: least value at every point of the curve}
    wins, total, details, gated = 0, 0, [], 0
    for gkey, g in (df.groupby(groups) if groups else [((), df)]):
        curve = g.groupby(x)[m].mean()
        curve = curve[(curve > 0) & np.isfinite(curve)]
        if len(curve) < 3:
            continue
        xs, ys = curve.index.to_numpy(float), np.log(curve.to_numpy(float))
        r2 = {name: _r2(feat, ys) for name, feat in (("power", np.log(xs)), ("exponential", xs))}
        won = r2["power"] >= r2["exponential"]
        # the growth of an estimate's error says nothing when the estimate is trivial: gate every point
        ok = all((pd.to_numeric(g[gm], errors="coerce") >= float(v)).all() for gm, v in gate_min.items())
        if ctrl:
            sel = full
            for col, val in zip(groups, np.atleast_1d(gkey), strict=True):
                sel = sel[sel[col].astype(str) == str(val)]
            for _, pt in sel.groupby(x):
                gate, _ = _control_gate(pt, key, test["estimator"], ctrl)
                ok = ok and bool(gate)
        gated += int(ok)
        won = won and ok
        wins += int(won)
        total += 1
        details.append({"group": gkey, **r2, "nontrivial": ok})
    if total == 0:
        raise _NotRun("no group with at least 3 values of " + x)
    verdict = _verdict_from_fraction(wins, total, test.get("rule", "most"), float(test.get("partly", 0.25)))
    measured = f"power law fits better in {wins}/{total} curves"
    if gate_min or ctrl:
        measured += f" (non-trivial estimate in {gated}/{total})"
    return verdict, measured, {"fits": details}


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    A = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    res = y - A @ coef
    tot = ((y - y.mean()) ** 2).sum()
    return float(1 - (res**2).sum() / tot) if tot > 0 else 1.0


def _checks(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None], cid: str) -> tuple[str, str, dict]:
    df = _table(tables, test.get("table", "E5_bounds"))
    tagged = df[df["claims"].fillna("").astype(str).str.split(";").apply(lambda ids: cid in ids)]
    if len(tagged) == 0:
        raise _NotRun(f"no theory check tagged {cid}")
    passed = tagged["passed"].astype(str).str.lower().isin(["true", "1"])
    k, n = int(passed.sum()), len(tagged)
    verdict = "reproduced" if k == n else ("partly" if k else "not reproduced")
    return verdict, f"{k}/{n} checks pass ({', '.join(tagged['name'].astype(str))})", {}


def _coverage(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> tuple[str, str, dict]:
    df = _table(tables, test["table"])
    key, metric = test.get("key", "estimator"), test.get("metric")
    runs = [c for c in SETTING_KEYS if c in df]
    n_runs = len(df.groupby(runs)) if runs else 1
    if metric is not None:  # an estimator counts where its metric is defined (not a constant's NaN correlation)
        if metric not in df:
            raise _NotRun(f"metric {metric!r} not in {test['table']}")
        df = df[np.isfinite(pd.to_numeric(df[metric], errors="coerce").to_numpy(float))]
    per_est = df.assign(**{key: df[key].astype(str)})[[key, *runs]].drop_duplicates().groupby(key).size()
    on_all = sorted(per_est[per_est == n_runs].index)
    need = _names(test.get("require"))
    missing = [c for c in need if c not in on_all]
    n_est = len([e for e in on_all if e not in need])
    ok = n_est >= int(test.get("min_estimators", 2)) and not missing
    measured = (f"{n_est} estimators vs LOO on all {n_runs} runs" + (f" ({metric} defined)" if metric else "")
                + (f"; control {'/'.join(need)} " + ("present" if not missing else "missing") if need else ""))
    return ("reproduced" if ok else "partly"), measured, {}


def _run_test(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None], cid: str) -> tuple[str, str]:
    test = dict(test)
    kind = test.pop("kind")
    try:
        if kind == "all":
            parts = [_run_test(t, tables, cid) for t in test["tests"]]
            ran = [v for v, _ in parts if v != "not run"]
            measured = "; ".join(dict.fromkeys(m for _, m in parts))  # each distinct message once
            if not ran:
                return "not run", measured
            if all(v == "reproduced" for v in ran):
                return "reproduced", measured
            if all(v == "not reproduced" for v in ran):
                return "not reproduced", measured
            return "partly", measured
        if kind == "compare":
            verdict, measured, _ = _compare(test, tables)
        elif kind == "equal":
            verdict, measured, _ = _equal(test, tables)
        elif kind == "threshold":
            verdict, measured, _ = _threshold(test, tables)
        elif kind == "growth":
            verdict, measured, _ = _growth(test, tables)
        elif kind == "checks":
            verdict, measured, _ = _checks(test, tables, cid)
        elif kind == "coverage":
            verdict, measured, _ = _coverage(test, tables)
        elif kind == "none":
            raise _NotRun(test.get("reason", "not part of this workflow"))
        else:
            raise ValueError(f"claim {cid}: unknown test kind {kind!r}")
    except _NotRun as e:
        verdict, measured = "not run", str(e)
    return verdict, measured


def _evidence(test: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any] | None, bool, Mapping[str, Any]]]:
    """(table, where, is_checks, test) of every table a test reads."""
    kind = test.get("kind")
    if kind == "all":
        return [e for t in test["tests"] for e in _evidence(t)]
    if kind == "checks":
        return [(test.get("table", "E5_bounds"), None, True, test)]
    if kind == "none" or "table" not in test:
        return []
    return [(test["table"], test.get("where"), False, test)]


def _unlearned_rows(df: pd.DataFrame, test: Mapping[str, Any], table: str) -> dict[str, str]:
    """Rows of a table that carries its own ``learned`` flag (E8, E9: runs that are not in the run summaries)
    and that the test reads, whose flag is false."""
    if "learned" not in df:
        return {}
    key = test.get("key", "estimator")
    ctrl = test.get("control")
    ctrl = ctrl.get("estimator") if isinstance(ctrl, Mapping) else ctrl
    names = [n for n in [test.get("estimator"), *test.get("baselines", []), *test.get("estimators", []),
                         *_names(ctrl)] if n]
    if names and key in df:
        df = df[df[key].astype(str).isin(names)]
    bad = df[~df["learned"].astype(str).str.lower().isin(["true", "1", "1.0"])]
    cols = [c for c in ("dataset", "model", key, "seed") if c in bad]
    return {f"{table}: " + "/".join(f"{c}={r[c]}" for c in cols): "its learned flag is false"
            for _, r in bad.iterrows()}


def _invalid_evidence(
    test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None], cid: str,
    invalid: Sequence[Mapping[str, Any]], check_runs: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Reasons for every run that did not learn and contributes rows to the claim's evidence."""
    found: dict[str, str] = {}
    for name, where, is_checks, sub in _evidence(test):
        df = tables.get(name)
        if df is None or len(df) == 0:
            continue
        try:
            df = _where(df, where)
        except _NotRun:
            continue
        if not is_checks:
            found.update(_unlearned_rows(df, sub, name))
        if is_checks:
            tagged = df[df["claims"].fillna("").astype(str).str.split(";").apply(lambda ids: cid in ids)]
            settings = [check_runs[c] for c in tagged.get("check", pd.Series(dtype=str)).astype(str)
                        if c in check_runs]
        else:
            settings = None
        for run in invalid:
            s = run["setting"]
            key = "/".join(f"{k}={s[k]}" for k in SETTING_KEYS if k in s)
            if settings is not None:
                hit = any(all(str(c.get(k)) == str(s.get(k)) for k in SETTING_KEYS) for c in settings)
            else:
                cols = {k: k if k in df else f"setting_{k}" for k in SETTING_KEYS}
                cols = {k: c for k, c in cols.items() if c in df}
                if not cols:
                    continue
                mask = np.ones(len(df), dtype=bool)
                for k, c in cols.items():
                    mask &= (df[c].astype(str) == str(s.get(k))).to_numpy()
                hit = bool(mask.any())
            if hit:
                found[key] = run["reason"]
    return [f"run {k} did not learn ({r})" for k, r in sorted(found.items())]


def _invalid_summary(reasons: list[str], shown: int = 2) -> str:
    """The first ``shown`` reasons and how many more there are."""
    more = len(reasons) - shown
    head = "; ".join(reasons[:shown])
    return f"{len(reasons)} run(s) behind this claim did not learn: {head}" + (f"; +{more} more" if more > 0 else "")


def evaluate_claim(
    claim: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None],
    invalid: Sequence[Mapping[str, Any]] = (), check_runs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Verdict and measured value of one claim (``not run`` when its data are absent, ``invalid run``
    when its evidence includes a run in ``invalid`` — dicts with ``setting`` and ``reason``)."""
    row = {k: claim[k] for k in ("id", "paper", "claim", "experiment", "metric", "criterion")}
    verdict, measured = _run_test(claim["test"], tables, claim["id"])
    if verdict != "not run" and claim.get("needs_learned_runs", True):
        reasons = _invalid_evidence(claim["test"], tables, claim["id"], invalid, check_runs or {})
        if reasons:
            verdict, measured = "invalid run", _invalid_summary(reasons) + f" [measured on them: {measured}]"
    row.update(measured=measured, verdict=verdict)
    return row


def _read(path: Path) -> pd.DataFrame | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None


def evaluate_claims(
    claims: Sequence[Mapping[str, Any]] | str | os.PathLike,
    metrics_dir: str | os.PathLike | None = None,
    tables: Mapping[str, pd.DataFrame | None] | None = None,
    runs: Sequence[Mapping[str, Any]] = (),
    check_runs: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """The claims table: one row per claim with ``measured`` and ``verdict``.

    ``tables`` maps table names (``E1_fidelity`` …) to data frames; by default every ``*.csv`` of
    ``metrics_dir`` is read. ``runs``: the run summaries (``runs/.../summary.json``: ``setting`` and
    ``health``); those that did not learn invalidate the claims resting on them. ``check_runs`` maps
    an E5 check name to the setting of the run it reads.
    """
    invalid = [{"setting": r["setting"], "reason": r["health"]["reason"]} for r in runs
               if not r.get("health", {}).get("learned", True)]
    if not isinstance(claims, Sequence) or isinstance(claims, str):
        claims = load_claims(claims)
    if tables is None:
        if metrics_dir is None:
            raise ValueError("give metrics_dir or tables")
        tables = {p.stem: _read(p) for p in sorted(Path(metrics_dir).glob("*.csv"))}
    return pd.DataFrame([evaluate_claim(c, tables, invalid, check_runs) for c in claims])


def to_markdown(table: pd.DataFrame) -> str:
    cols = ["id", "paper", "claim", "experiment", "criterion", "measured", "verdict"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|").replace("\n", " ") for c in cols) + " |")
    return "\n".join(lines) + "\n"


_UNICODE_TEX = {"±": r"$\pm$", "≤": r"$\le$", "≥": r"$\ge$", "‖": r"$\|$", "θ": r"$\theta$", "η": r"$\eta$",
                "Δ": r"$\Delta$", "τ": r"$\tau$", "ε": r"$\epsilon$", "∇": r"$\nabla$", "α": r"$\alpha$",
                "−": "-", "×": r"$\times$", "·": r"$\cdot$", "²": r"$^2$", "…": "..."}


def _tex(s: Any) -> str:
    """Escape LaTeX specials; common math symbols become math, other non-ASCII is transliterated."""
    import unicodedata

    out = []
    for ch in str(s):
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\^{}")
        elif ch in _UNICODE_TEX:
            out.append(_UNICODE_TEX[ch])
        elif ord(ch) > 127:
            out.append(unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode())
        else:
            out.append(ch)
    return "".join(out)


def to_latex(table: pd.DataFrame) -> str:
    """A longtable (needs ``\\usepackage{longtable}``) with id, paper, claim, criterion, measured, verdict."""
    out = [r"\begin{longtable}{@{}p{0.07\linewidth}p{0.1\linewidth}p{0.3\linewidth}p{0.2\linewidth}"
           r"p{0.18\linewidth}p{0.1\linewidth}@{}}",
           r"\toprule id & paper & claim & criterion & measured & verdict \\ \midrule \endhead"]
    for _, r in table.iterrows():
        out.append(" & ".join(_tex(r[c]) for c in ("id", "paper", "claim", "criterion", "measured", "verdict"))
                   + r" \\")
    out.append(r"\bottomrule \end{longtable}")
    return "\n".join(out) + "\n"
