"""The claims table: each claim of the four papers, its criterion, our effect with its interval and the verdict.

Claims live in a data file (``paper/claims.yaml``): id, paper, claim, experiment, metric, criterion (prose),
``paper_value`` (the paper's published number, where there is one), ``protocol`` (:data:`PROTOCOLS`: whose
design the test follows), ``counterpart`` (the id of the same claim judged in the other protocol) with
``difference`` (prose: what explains a difference of verdicts) and ``test``, the machine-readable form of the
criterion. :func:`evaluate_claims` reads the experiment tables written by the workflow
(``<results>/metrics/<table>.csv``), applies each test and returns one row per claim (:data:`COLUMNS`) with the
effect, its 95 % interval, a one-line diagnosis and a verdict out of :data:`VERDICTS`, computed, never typed.

**Verdicts are three-way, with an interval.** A comparison is an *effect paired by seed* (or by round, for
timings measured in interleaved rounds; by row, for a wide table): per seed, the estimator's metric minus the
baseline's (``A − factor·B``), or the log ratio ``log(A/B) − log factor`` for costs and errors judged relative
(``ratio``). Its mean gets a Student-t interval over the pairs (:func:`interval`; with 5 seeds the percentile
bootstrap under-covers, the t interval does not rely on a resampling of 5 values). Signed in the claim's favour
(positive = the claimed side), with the claim's ``margin`` (the smallest effect the claim counts as real, set
per metric before looking at results):

* *reproduced*: the interval lies entirely past the margin;
* *refuted*: it lies entirely short of the margin (the claimed effect is excluded);
* *inconclusive*: it contains the margin; the diagnosis gives the smallest effect the design could detect
  (:func:`detectable`: a two-sided paired t test at 5 % with 80 % power). One seed is always inconclusive.

Test kinds (keys besides ``kind`` in brackets):

``compare`` [table, estimator, baselines, metrics {name: higher|lower}, where, group_by, key, margin (a number or
    {metric: number}), factor, ratio (true or a list of metrics), min_value, control, paired_by / pair_by,
    report_metrics, rule, columns]
    Per group (setting) and metric, one paired effect against each baseline; the (group, metric) unit is
    reproduced if it is against every baseline (and, with ``min_value``, the estimator's own value lies above
    it), refuted if it is refuted against any, inconclusive otherwise; ``measured`` shows the closest
    baseline. An undefined estimator value (NaN: the rank correlation of a constant estimator) refutes; an
    undefined baseline is left out. A baseline row without a pair value (e.g. a published number) is a constant.
    ``control: {estimator, metric, direction, margin}``: per group the estimator must also beat the chance
    control (e.g. ``random`` in the same table) on ``metric`` by more than ``margin``, judged the same way;
    where it is refuted, every unit of the group is refuted (an estimate no better than chance supports no
    claim of fidelity or detection, e.g. an RMSE "won" by predicting ≈ 0); where it is inconclusive, no unit
    of the group is reproduced. A table without the control gives ``not run``.
    ``report_metrics``: cost metrics whose ratios are shown in ``measured`` but not judged.
    ``rule: all`` → reproduced if every unit is, refuted if any is; ``rule: most`` → reproduced if more than
    half are, refuted if no more than half could be even were every inconclusive unit reproduced.
    ``columns: {estimator: column}`` reads a wide table (one column per estimator, one metric), paired by row.
``equal`` [table, estimators (two), metrics, where, tol, control]
    An identity: the two estimators' metrics agree within ``tol`` on every row (reproduced) or not (refuted);
    an undefined metric is no agreement; ``control``: each of the two must beat the control on every run.
``threshold`` [table, metric, where, op, value]
    The interval of the mean of ``metric`` over the rows against ``op value``; an undefined row refutes.
``growth`` [table, estimator, metric, x, where, group_by, rule, min_metric, control]
    Per group, log(metric) vs log(x) (power law) fits at least as well (R²) as log(metric) vs x (exponential),
    counted only where the estimate is non-trivial; reproduced if the rule holds, refuted otherwise.
``checks`` [table]
    The E5 theory checks tagged with the claim id, each a named part: reproduced if all pass, partly if some,
    refuted if none.
``coverage`` [table, min_estimators, metric, require]
    At least ``min_estimators`` estimators appear on every run of the table (with ``metric`` defined when
    given), besides the ``require``-d controls, which must appear too.
``all`` [tests]
    Named parts: reproduced if all are, partly if some are reproduced and some refuted, refuted if none is
    reproduced and one is refuted, inconclusive otherwise; not run if none ran.
``none`` [reason]
    Not run by this workflow.
A missing table, or one without the rows the test selects, gives ``not run``.

**Invalid runs.** A recorded run that diverged never reaches a table (training stops with an error).
One that did not learn (:func:`replication.tasks.common.run_health`: test accuracy not above the
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

__all__ = ["VERDICTS", "PROTOCOLS", "COLUMNS", "LEVEL", "load_claims", "protocol_of", "evaluate_claim",
           "evaluate_claims", "interval", "detectable", "three_way"]

log = logging.getLogger(__name__)

VERDICTS = ("reproduced", "refuted", "inconclusive", "partly", "not run", "invalid run")
#: whose design a claim's test follows: the authors' protocol as their public code runs it (their setting, recipe
#: and metrics), ours (a stronger test: exact ground truth -- trajectory LOO, retraining -- or our own design), or a
#: numerical check of a theoretical statement or identity. Default: ``check`` for ``kind: checks``, else ``ours``.
PROTOCOLS = {"authors": "the authors' protocol, from their public code",
             "ours": "our test against ground truth (or our own design)",
             "check": "a numerical check of a stated identity or bound"}
#: the columns of the claims table, in order
COLUMNS = ("id", "paper", "claim", "experiment", "metric", "criterion", "paper_value", "effect", "ours", "verdict",
           "diagnosis", "settings", "measured", "protocol", "counterpart", "difference")
LEVEL = 0.95  # the confidence level of every interval
POWER = 0.80  # the power at which the smallest detectable effect is stated
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
        if protocol_of(c) not in PROTOCOLS:
            raise ValueError(f"{path}: claim {c['id']!r}: protocol {c['protocol']!r} is not one of "
                             f"{', '.join(PROTOCOLS)}")
    for c in claims:
        other = c.get("counterpart")
        if other is not None and other not in seen:
            raise ValueError(f"{path}: claim {c['id']!r}: counterpart {other!r} is not a claim id")
    return claims


def protocol_of(claim: Mapping[str, Any]) -> str:
    """The claim's ``protocol`` (:data:`PROTOCOLS`); by default ``check`` for a ``checks`` test, else ``ours``."""
    return claim.get("protocol") or ("check" if claim.get("test", {}).get("kind") == "checks" else "ours")


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


def _fmt(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, float) and math.isinf(x):
        return ("+" if x > 0 else "−") + "∞"
    s = f"{x:+.3g}" if signed else f"{x:.3g}"
    return s.replace("-", "−")


def _names(x: str | Sequence[str] | None) -> list[str]:
    return [] if x is None else ([x] if isinstance(x, str) else [str(n) for n in x])


# ----------------------------------------------------------------------------------------- statistics
def interval(x: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[float, float, float, float, int]:
    """Mean of ``x`` with its two-sided Student-t interval: ``(mean, lo, hi, se, n)``.

    ``lo, hi = mean ∓ t_{(1+level)/2, n−1} · s/√n`` over the finite values. With fewer than two values the
    interval is unbounded (``−∞, +∞``): one seed says nothing about the spread over seeds.
    """
    from scipy import stats

    v = np.asarray(x, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, -math.inf, math.inf, math.inf, 0
    mean = float(v.mean())
    if n < 2:
        return mean, -math.inf, math.inf, math.inf, n
    se = float(v.std(ddof=1) / math.sqrt(n))
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    return mean, mean - t * se, mean + t * se, se, n


def detectable(se: float, n: int, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest effect this design detects: ``(t_{(1+level)/2, n−1} + t_{power, n−1}) · se`` (a paired
    two-sided t test at ``1 − level`` with the given power; unbounded with fewer than two pairs)."""
    from scipy import stats

    if n < 2 or not math.isfinite(se):
        return math.inf
    return float((stats.t.ppf(0.5 + level / 2, n - 1) + stats.t.ppf(power, n - 1)) * se)


def three_way(lo: float, hi: float, margin: float = 0.0) -> str:
    """Verdict of one interval of an effect signed in the claim's favour (positive = the claimed side):
    ``reproduced`` if it lies entirely past ``margin``, ``refuted`` if entirely short of it, else
    ``inconclusive``."""
    if lo > margin:
        return "reproduced"
    if hi < margin or lo == hi == margin:  # an exact tie (no spread at all) excludes a strict improvement
        return "refuted"
    return "inconclusive"


def _combine(verdicts: Sequence[str]) -> str:
    """Sub-verdicts that must *all* hold (every baseline of one comparison; a gate and a comparison)."""
    if any(v == "refuted" for v in verdicts):
        return "refuted"
    return "reproduced" if verdicts and all(v == "reproduced" for v in verdicts) else "inconclusive"


def _over_units(verdicts: Sequence[str], rule: str) -> str:
    """A claim over several (setting, metric) units. ``all``: reproduced if every unit is, refuted if any
    is. ``most``: reproduced if more than half are; refuted if even counting every inconclusive unit as
    reproduced no more than half could be; inconclusive otherwise."""
    n = len(verdicts)
    if n == 0:
        return "not run"
    rep, ref = verdicts.count("reproduced"), verdicts.count("refuted")
    if rule == "all":
        return "reproduced" if rep == n else ("refuted" if ref else "inconclusive")
    if rule == "most":
        return "reproduced" if rep > n / 2 else ("refuted" if n - ref <= n / 2 else "inconclusive")
    raise ValueError(f"rule must be 'most' or 'all', got {rule!r}")


def _counts(verdicts: Sequence[str]) -> str:
    order = ("reproduced", "inconclusive", "refuted")
    parts = [f"{verdicts.count(v)} {v}" for v in order if verdicts.count(v)]
    return ", ".join(parts) + f" of {len(verdicts)}" if len(verdicts) > 1 else ""


# ------------------------------------------------------------------------------------------ the units
class _Unit(dict):
    """One judged effect: ``label``, ``metric``, ``natural`` (the estimate A − B, or A / B for ratios) with
    its interval ``lo``/``hi``, ``favour`` interval (signed in the claim's favour, margin included),
    ``n`` pairs, ``mde`` (smallest detectable effect), ``verdict``, ``pairs`` (the natural effect by pair: the
    difference, or the log ratio)."""


def _effect_unit(label: str, metric: str, a: pd.Series, b: pd.Series | float, direction: str, *, ratio: bool,
                 factor: float, margin: float) -> _Unit:
    """The paired effect of ``a`` against ``b`` (a series on the same pair index, or one number: a published
    value), in the claim's favour: higher ``A − factor·B`` (ratio: ``log(A/B) − log factor``), lower the
    negative. An undefined ``A`` on any pair (a constant's correlation) refutes: it is no evidence."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"metric direction must be 'higher' or 'lower', got {direction!r}")
    sign = 1.0 if direction == "higher" else -1.0
    if isinstance(b, pd.Series):
        both = a.index.intersection(b.index)
        a, b = a.loc[both], b.loc[both]
    a_v, b_v = a.to_numpy(float), (b.to_numpy(float) if isinstance(b, pd.Series) else np.full(len(a), float(b)))
    undefined = int((~np.isfinite(a_v)).sum())
    if ratio:
        with np.errstate(divide="ignore", invalid="ignore"):
            nat = np.log(a_v / b_v)
        fav = sign * (nat - math.log(factor))
    else:
        nat = a_v - b_v
        fav = sign * (a_v - factor * b_v)
    mean, lo, hi, se, n = interval(nat)
    fmean, flo, fhi, fse, _ = interval(fav)
    if undefined or n == 0:
        verdict = "refuted"
    else:
        verdict = three_way(flo, fhi, margin)
    if ratio:
        mean, lo, hi = math.exp(mean), math.exp(lo), math.exp(hi)
    return _Unit(label=label, metric=metric, natural=mean, lo=lo, hi=hi, ratio=ratio, n=n, undefined=undefined,
                 favour=(fmean, flo, fhi), margin=margin, mde=detectable(fse, n), verdict=verdict,
                 pairs=pd.Series(nat, index=a.index), a_mean=_nanmean(a_v), b_mean=_nanmean(b_v))


def _nanmean(v: np.ndarray) -> float:
    """Mean of the finite values (NaN when there is none, without numpy's empty-slice warning)."""
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


def _show(u: Mapping[str, Any]) -> str:
    """``+0.012 [−0.004, +0.028]`` (a difference) or ``0.83× [0.80×, 0.86×]`` (a ratio)."""
    if u["ratio"]:
        return f"{_fmt(u['natural'])}× [{_fmt(u['lo'])}×, {_fmt(u['hi'])}×]"
    return f"{_fmt(u['natural'], True)} [{_fmt(u['lo'], True)}, {_fmt(u['hi'], True)}]"


def _control_spec(test: Mapping[str, Any], metrics: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``control`` of a test: ``{estimator: name(s), metric, direction, margin}`` (metric defaults to the
    test's first metric, direction to that metric's, margin to 0)."""
    c = test.get("control")
    if c is None:
        return None
    c = {"estimator": c} if isinstance(c, (str, list)) else dict(c)
    unknown = set(c) - {"estimator", "metric", "direction", "margin"}
    if unknown or "estimator" not in c:
        raise ValueError(f"control must be {{estimator, metric, direction, margin}}, got {sorted(c)}")
    metric = c.get("metric") or next(iter(metrics))
    return {"names": _names(c["estimator"]), "metric": metric,
            "direction": c.get("direction") or metrics.get(metric, "higher"), "margin": float(c.get("margin", 0.0))}


def _series(g: pd.DataFrame, key: str, name: str, metric: str, pair: str | None) -> pd.Series:
    """``name``'s ``metric`` in a group, indexed by the pairing column (mean over rows sharing a pair value)."""
    rows = g[g[key].astype(str) == name]
    if pair is None:
        return pd.Series([float(pd.to_numeric(rows[metric], errors="coerce").mean())], index=[0])
    vals = pd.to_numeric(rows[metric], errors="coerce")
    return vals.groupby(rows[pair].astype(str)).mean()


def _against(g: pd.DataFrame, key: str, est: str, base: str, metric: str, pair: str | None) -> tuple[pd.Series,
                                                                                                  Any]:
    """The estimator's series and the baseline's: a series on the same pairs, or one number when the
    baseline has a single row without a pair value (a published constant, e.g. ``dvemb_published``)."""
    a = _series(g, key, est, metric, pair)
    rows = g[g[key].astype(str) == base]
    if pair is not None and len(rows) and rows[pair].isna().all():
        return a, float(pd.to_numeric(rows[metric], errors="coerce").mean())
    return a, _series(g, key, base, metric, pair)


def _label(gkey: Any, groups: Sequence[str]) -> str:
    return "/".join(map(str, np.atleast_1d(gkey))) if groups else "all"


def _regime(df: pd.DataFrame) -> str:
    """The training regime of the runs behind a claim (E1: reached test accuracy against the majority rate)."""
    for acc, maj in (("test_accuracy", "majority_rate"), ("final_test_acc", "majority_acc"),
                     ("target_accuracy", "majority_acc")):
        if acc in df and df[acc].notna().any():
            a = pd.to_numeric(df[acc], errors="coerce").dropna()
            s = f"regime: test accuracy {_fmt(float(a.min()))}–{_fmt(float(a.max()))}"
            if maj in df and df[maj].notna().any():
                s += f" (majority {_fmt(float(pd.to_numeric(df[maj], errors='coerce').max()))})"
            return s
    return ""


def _compare(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> dict[str, Any]:
    df = _where(_table(tables, test["table"]), test.get("where"))
    key = test.get("key", "estimator")
    est, bases = test["estimator"], list(test["baselines"])
    metrics = dict(test["metrics"])
    pair = test.get("paired_by") or test.get("pair_by")
    if "columns" in test:  # a wide table, one column per estimator: melt it into (key, metric) rows, paired by row
        cols = dict(test["columns"])
        missing = [c for c in cols.values() if c not in df]
        if missing:
            raise _NotRun(f"columns {missing} not in {test['table']}")
        (metric,) = metrics
        df = df.assign(_row=np.arange(len(df)))
        df = df.melt(id_vars=[c for c in df if c not in cols.values()], value_vars=list(cols.values()),
                     var_name=key, value_name=metric)
        df[key] = df[key].map({v: k for k, v in cols.items()})
        pair = pair or "_row"
    pair = pair or ("seed" if "seed" in df else None)
    if pair is not None and pair not in df:
        raise _NotRun(f"column {pair!r} (what pairs the measurements) not in {test['table']}")
    groups = list(test.get("group_by", []))
    factor = float(test.get("factor", 1.0))
    ratio_spec = test.get("ratio", bool(test.get("paired_by")))  # true, false, or the metrics judged as ratios
    ratio_of = {m: (m in ratio_spec if isinstance(ratio_spec, list) else bool(ratio_spec)) for m in metrics}
    ratio = ratio_of[next(iter(metrics))]
    margins = test.get("margin", 0.0)
    min_value = test.get("min_value")
    shown = list(test.get("report_metrics", []))  # ratios shown in `measured` but not judged
    ctrl = _control_spec(test, metrics)
    absent = [m for m in [*metrics, *([ctrl["metric"]] if ctrl else []), *shown] if m not in df]
    if absent:
        raise _NotRun(f"column(s) {', '.join(dict.fromkeys(absent))} not in {test['table']}")
    names = [est, *bases, *(ctrl["names"] if ctrl else [])]
    df = df[df[key].astype(str).isin(names)]
    present = set(df[key].astype(str))
    if est not in present or not set(bases) & present:
        raise _NotRun(f"{est} or all of {bases} absent from {test['table']}")
    if ctrl and not set(ctrl["names"]) & present:
        raise _NotRun(f"the control {'/'.join(ctrl['names'])} is absent from {test['table']}: add it to the "
                      "experiment's estimators")
    units: list[_Unit] = []  # one per (group, metric): the worst baseline's unit, with the combined verdict
    headline: list[_Unit] = []
    no_ctrl, ctrl_fail, reported = 0, [], []
    for gkey, g in (df.groupby(groups, dropna=False) if groups else [((), df)]):
        here = set(g[key].astype(str))
        if est not in here or not set(bases) & here:
            continue
        label = _label(gkey, groups)
        gate = "reproduced"
        if ctrl:
            present_c = [c for c in ctrl["names"] if c in here]
            if not present_c:
                no_ctrl += 1
                continue
            gates = [_effect_unit(label, ctrl["metric"], *_against(g, key, est, c, ctrl["metric"], pair),
                                  ctrl["direction"], ratio=False, factor=1.0, margin=ctrl["margin"])
                     for c in present_c]
            gate = _combine([u["verdict"] for u in gates])
            if gate != "reproduced":
                ctrl_fail.append(f"{label}: {ctrl['metric']} {est} − {present_c[0]} {_show(gates[0])} ({gate})")
        for m, direction in metrics.items():
            if m not in g:
                raise _NotRun(f"metric {m!r} not in {test['table']}")
            mg = float(margins.get(m, 0.0)) if isinstance(margins, Mapping) else float(margins)
            subs = []
            for b in bases:
                if b not in here:
                    continue
                a_s, b_s = _against(g, key, est, b, m, pair)
                if isinstance(b_s, pd.Series) and not np.isfinite(b_s.to_numpy(float)).any():
                    continue  # an undefined baseline is left out
                u = _effect_unit(label, m, a_s, b_s, direction, ratio=ratio_of[m], factor=factor, margin=mg)
                u["baseline"] = b
                subs.append(u)
            if not subs:
                continue
            worst = min(subs, key=lambda u: u["favour"][0] if math.isfinite(u["favour"][0]) else -math.inf)
            parts = [u["verdict"] for u in subs]
            if min_value is not None:
                v = _effect_unit(label, m, _series(g, key, est, m, pair), float(min_value), direction, ratio=False,
                                 factor=1.0, margin=0.0)
                parts.append(v["verdict"])
            verdict = _combine(parts)
            if gate == "refuted":
                verdict = "refuted"
            elif gate == "inconclusive" and verdict == "reproduced":
                verdict = "inconclusive"
            units.append(_Unit(worst, verdict=verdict, group=label, all=subs))
            if m == next(iter(metrics)):
                headline.append(worst)
        for m in shown:
            if m in g:
                rs = [_effect_unit(label, m, *_against(g, key, est, b, m, pair), "lower", ratio=True, factor=1.0,
                                   margin=0.0) for b in bases if b in here]
                if rs:
                    reported.append(max(rs, key=lambda u: u["natural"]))
    if not units:
        raise _NotRun("no group has the estimator, a baseline" + (" and the control" if ctrl else ""))
    verdicts = [u["verdict"] for u in units]
    verdict = _over_units(verdicts, test.get("rule", "most"))
    ours, effect = _headline(headline, est, ratio, pair)
    diag = []
    if len(units) > 1:
        diag.append(f"holds in {verdicts.count('reproduced')}/{len(units)} (setting, metric) pairs")
    else:  # one setting: the two means the effect compares
        u = units[0]
        diag.append(f"{u['metric']} {est} {_fmt(u['a_mean'])} vs {u.get('baseline', '?')} {_fmt(u['b_mean'])} "
                    f"(mean of {u['n']} {_PAIR_NAMES.get(pair, pair or 'pair')}s)")
    if ctrl_fail:
        diag.append(f"not above the chance control {'/'.join(ctrl['names'])} in {len(ctrl_fail)} setting(s)")
    inc = [u for u in units if u["verdict"] == "inconclusive"]
    if inc and verdict != "reproduced":
        w = max(inc, key=lambda u: u["mde"])
        what = f"{_fmt(math.exp(w['mde']))}× in ratio" if w["ratio"] else _fmt(w["mde"])
        unit = _PAIR_NAMES.get(pair, pair or "pair")
        diag.append(f"smallest detectable effect {what} ({w['metric']}, {w['n']} {unit}s)")
    regime = _regime(df[df[key].astype(str) == est])
    if regime:
        diag.append(regime)
    n_pairs = sorted({u["n"] for u in units})
    detail = "; ".join(f"{u['group']} {u['metric']} vs {u.get('baseline', '?')}: {_show(u)} → {u['verdict']}"
                       for u in units)
    measured = f"{est}: {detail}"
    if reported:
        w = max(reported, key=lambda u: u["natural"])
        measured += f"; not judged, {w['metric']} ratio (worst): {_show(w)} ({w['label']})"
    if ctrl_fail:
        measured += "; control: " + "; ".join(ctrl_fail)
    if no_ctrl:
        measured += f"; {no_ctrl} group(s) without the control skipped"
    return {"verdict": verdict, "measured": measured, "ours": ours, "effect": effect, "diagnosis": "; ".join(diag),
            "settings": _counts(verdicts), "pairs": n_pairs}


_PAIR_NAMES = {"_row": "row", "rep": "round"}


def _headline(units: Sequence[_Unit], est: str, ratio: bool, pair: str | None) -> tuple[str, str]:
    """The claim's effect in one interval: the first metric against the closest baseline, averaged over the
    settings pair by pair (the pairs every setting has), or the single setting's."""
    if not units:
        return "", ""
    m = units[0]["metric"]
    names = sorted({u.get("baseline", "?") for u in units})
    what = (f"{m}({est}) / {m}({'|'.join(names)})" if ratio else f"{m}({est}) − {m}({'|'.join(names)})")
    by = f", paired by {_PAIR_NAMES.get(pair, pair)}" if pair else ""
    if len(units) == 1:
        return _show(units[0]), what + by + f", {units[0]['n']} pairs"
    frame = pd.concat([u["pairs"] for u in units], axis=1, join="inner")
    if len(frame) < 2:
        worst = min(units, key=lambda u: u["favour"][0])
        return _show(worst) + f" (worst of {len(units)} settings)", what + by
    mean, lo, hi, _, n = interval(frame.mean(axis=1).to_numpy())
    if ratio:
        mean, lo, hi = math.exp(mean), math.exp(lo), math.exp(hi)
    u = _Unit(natural=mean, lo=lo, hi=hi, ratio=ratio)
    return _show(u) + f" (mean of {len(units)} settings)", what + by + f", {n} pairs"


def _equal(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> dict[str, Any]:
    df = _where(_table(tables, test["table"]), test.get("where"))
    a, b = test["estimators"]
    key = test.get("key", "estimator")
    idx = [c for c in SETTING_KEYS if c in df]
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
    verdict = "reproduced" if worst <= tol else "refuted"
    measured = f"max |Δ| = {_fmt(worst)} over {n} runs"
    diag = f"identity to {_fmt(tol)} on {n} runs"
    ctrl = _control_spec(test, {m: "higher" for m in test["metrics"]})
    if ctrl:  # two equal trivial estimators are no evidence: each must beat the control on every run
        if not set(ctrl["names"]) & set(df[key].astype(str)):
            raise _NotRun(f"the control {'/'.join(ctrl['names'])} is absent from {test['table']}: add it to the "
                          "experiment's estimators")
        ok = tot = 0
        for _, g in (df.groupby(idx, dropna=False) if idx else [((), df)]):
            for e in (a, b):
                vals = {c: pd.to_numeric(g.loc[g[key].astype(str) == c, ctrl["metric"]], errors="coerce").mean()
                        for c in [e, *ctrl["names"]] if (g[key].astype(str) == c).any()}
                if e not in vals or len(vals) < 2:
                    continue
                best = max(v for c, v in vals.items() if c != e)
                ok, tot = ok + int(vals[e] > best + ctrl["margin"]), tot + 1
        if tot == 0:
            raise _NotRun(f"no run has both the estimators and the control {'/'.join(ctrl['names'])}")
        if ok < tot:
            verdict = "refuted"
            diag += f"; not above the chance control in {tot - ok}/{tot} (estimator, run)"
        measured += f"; beat the control {'/'.join(ctrl['names'])} on {ctrl['metric']} in {ok}/{tot} (estimator, run)"
    return {"verdict": verdict, "measured": measured, "ours": f"max |Δ| = {_fmt(worst)}", "diagnosis": diag,
            "effect": f"largest |{'/'.join(test['metrics'])}({a}) − ({b})| over runs"}


def _threshold(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> dict[str, Any]:
    df = _where(_table(tables, test["table"]), test.get("where"))
    m = test["metric"]
    if m not in df:
        raise _NotRun(f"metric {m!r} not in {test['table']}")
    vals = pd.to_numeric(df[m], errors="coerce").to_numpy(float)
    if len(vals) == 0:
        raise _NotRun(f"no values of {m}")
    n_bad = int((~np.isfinite(vals)).sum())
    op, value = test.get("op", ">="), float(test["value"])
    mean, lo, hi, se, n = interval(vals)
    effect = f"mean {m} over {n} runs, against {op} {_fmt(value)}"
    if n == 0:  # every row undefined (e.g. a constant estimator's correlation): no evidence, a failure
        return {"verdict": "refuted", "measured": f"{m} undefined on all {n_bad} rows", "ours": "undefined",
                "effect": effect, "diagnosis": f"{m} undefined on every run"}
    sign = 1.0 if op in (">=", ">") else -1.0
    flo, fhi = sorted((sign * (lo - value), sign * (hi - value)))
    verdict = "refuted" if n_bad else three_way(flo, fhi, 0.0)
    diag = [f"undefined on {n_bad} rows"] if n_bad else [f"mean of {n} runs"]
    if verdict == "inconclusive":
        diag.append(f"smallest detectable distance from {_fmt(value)}: {_fmt(detectable(se, n))} ({n} runs)")
    ours = f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}]"
    return {"verdict": verdict, "measured": f"{m} = {ours} (n = {n})" + (f"; undefined on {n_bad} rows" if n_bad
                                                                        else ""),
            "ours": ours, "effect": effect, "diagnosis": "; ".join(diag)}


def _growth(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> dict[str, Any]:
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
    wins, total, gated = 0, 0, 0
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
                vals = pt.groupby(pt[key].astype(str))[ctrl["metric"]].mean()
                cs = [vals[c] for c in ctrl["names"] if c in vals]
                if test["estimator"] in vals and cs:
                    better = (vals[test["estimator"]] < min(cs) - ctrl["margin"] if ctrl["direction"] == "lower"
                              else vals[test["estimator"]] > max(cs) + ctrl["margin"])
                    ok = ok and bool(better)
        gated += int(ok)
        wins += int(won and ok)
        total += 1
    if total == 0:
        raise _NotRun("no group with at least 3 values of " + x)
    rule = test.get("rule", "most")
    held = wins == total if rule == "all" else wins > total / 2
    measured = f"power law fits better in {wins}/{total} curves"
    if gate_min or ctrl:
        measured += f" (non-trivial estimate in {gated}/{total})"
    return {"verdict": "reproduced" if held else "refuted", "measured": measured, "ours": f"{wins}/{total} curves",
            "effect": "curves whose log error is fitted better by log T than by T", "diagnosis": measured}


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    A = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    res = y - A @ coef
    tot = ((y - y.mean()) ** 2).sum()
    return float(1 - (res**2).sum() / tot) if tot > 0 else 1.0


def _checks(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None], cid: str) -> dict[str, Any]:
    df = _table(tables, test.get("table", "E5_bounds"))
    tagged = df[df["claims"].fillna("").astype(str).str.split(";").apply(lambda ids: cid in ids)]
    if len(tagged) == 0:
        raise _NotRun(f"no theory check tagged {cid}")
    passed = tagged["passed"].astype(str).str.lower().isin(["true", "1"])
    k, n = int(passed.sum()), len(tagged)
    # each check is a named part of the statement: some passing is "partly"
    verdict = "reproduced" if k == n else ("partly" if k else "refuted")
    failing = ", ".join(tagged.loc[~passed, "name"].astype(str))
    return {"verdict": verdict, "measured": f"{k}/{n} checks pass ({', '.join(tagged['name'].astype(str))})",
            "ours": f"{k}/{n} checks pass", "effect": "numerical checks of the statement (E5)",
            "diagnosis": f"fails: {failing}" if failing else "every check passes"}


def _coverage(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> dict[str, Any]:
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
    return {"verdict": "reproduced" if ok else "refuted", "measured": measured,
            "ours": f"{n_est} estimators on {n_runs} runs", "effect": "estimators compared with LOO on every run",
            "diagnosis": "" if ok else measured}


_KINDS = {"compare": _compare, "equal": _equal, "threshold": _threshold, "growth": _growth, "coverage": _coverage}


def _run_test(test: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None], cid: str) -> dict[str, Any]:
    """One test's judgement: ``verdict``, ``measured`` and the short fields ``ours``, ``effect``,
    ``diagnosis``, ``settings`` ("" where they do not apply)."""
    test = dict(test)
    kind = test.pop("kind")
    blank = {"ours": "", "effect": "", "diagnosis": "", "settings": ""}
    try:
        if kind == "all":
            parts = [_run_test(t, tables, cid) for t in test["tests"]]
            ran = [p for p in parts if p["verdict"] != "not run"]
            measured = "; ".join(dict.fromkeys(p["measured"] for p in parts))  # each distinct message once
            out = {**blank, "measured": measured}
            if not ran:
                return {**out, "verdict": "not run"}
            vs = [p["verdict"] for p in ran]
            if all(v == "reproduced" for v in vs):
                verdict = "reproduced"
            elif "reproduced" not in vs and "refuted" in vs:
                verdict = "refuted"
            elif "reproduced" in vs and "refuted" in vs:
                verdict = "partly"  # named parts, some shown and some refuted
            else:
                verdict = "inconclusive"
            first = next((p for p in ran if p.get("ours")), ran[0])
            diag = [f"parts: {_counts(vs) or vs[0]}"] + [p["diagnosis"] for p in ran if p.get("diagnosis")]
            return {**out, "verdict": verdict, "ours": first.get("ours", ""), "effect": first.get("effect", ""),
                    "diagnosis": "; ".join(dict.fromkeys(diag)),
                    "settings": "; ".join(p["settings"] for p in ran if p.get("settings"))}
        if kind == "checks":
            res = _checks(test, tables, cid)
        elif kind == "none":
            raise _NotRun(test.get("reason", "not part of this workflow"))
        elif kind in _KINDS:
            res = _KINDS[kind](test, tables)
        else:
            raise ValueError(f"claim {cid}: unknown test kind {kind!r}")
    except _NotRun as e:
        return {**blank, "verdict": "not run", "measured": str(e), "diagnosis": str(e)}
    return {**blank, **{k: v for k, v in res.items() if k in ("verdict", "measured", *blank)}}


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
    """One row of the claims table (:data:`COLUMNS`): ``not run`` when its data are absent, ``invalid run``
    when its evidence includes a run in ``invalid`` (dicts with ``setting`` and ``reason``)."""
    row = {k: claim[k] for k in ("id", "paper", "claim", "experiment", "metric", "criterion")}
    row["paper_value"] = str(claim.get("paper_value", "") or "")
    row["protocol"] = protocol_of(claim)
    row["counterpart"] = str(claim.get("counterpart", "") or "")
    row["difference"] = " ".join(str(claim.get("difference", "") or "").split())
    res = _run_test(claim["test"], tables, claim["id"])
    if res["verdict"] != "not run" and claim.get("needs_learned_runs", True):
        reasons = _invalid_evidence(claim["test"], tables, claim["id"], invalid, check_runs or {})
        if reasons:
            res = {**res, "verdict": "invalid run",
                   "diagnosis": f"{len(reasons)} run(s) did not learn, e.g. " + reasons[0].removeprefix("run "),
                   "measured": _invalid_summary(reasons) + f" [measured on them: {res['measured']}]"}
    row.update({k: res[k] for k in ("effect", "ours", "verdict", "diagnosis", "settings", "measured")})
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
    return pd.DataFrame([evaluate_claim(c, tables, invalid, check_runs) for c in claims], columns=list(COLUMNS))
