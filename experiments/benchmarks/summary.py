"""One side-by-side table of every benchmark: ours vs each reference measured in the same run (issue 15).

Reads the machine-readable output of each script in ``experiments/benchmarks/`` (``--run`` runs them first,
writing into ``--dir``) and writes ``summary.csv`` and ``summary.md`` there:

=============  ==========================  =============================================================
group          source                      ours vs reference (both measured by that script, same process
                                           or same script run, same data)
=============  ==========================  =============================================================
``peers``      ``bench_peers.py``          each of our cases (``*_ours*``) vs each peer library of the same
               → ``peers.csv``             task (``if_A``, ``tracin_B``, ``loo_A``, ``lds_B``)
``loo``        ``bench_loo.py``            the vectorised trajectory LOO vs a loop of single replays
               → ``loo.csv``
``online``     ``bench_online.py``         every online scoring step vs a plain SGD step of the same model
               → ``online.json``
``estimators`` ``bench_estimators.py``     every estimator vs TracIn on the same run (cost in TracIn units)
               → ``estimators.csv``
``flops``      ``loo.csv``,                each replay engine (LOO, LDS retraining) and SGD-IE / ACC-SGD-IE
               ``estimators.csv``,         adjoint vs the machine's measured GEMM peak at the same dtype and
               ``flops.py`` → ``flops.csv`` thread count (issue 26 item 3): FLOPs counted from the algorithm
                                           (``flops.py``) / measured time
=============  ==========================  =============================================================

Columns: ``ours_time`` / ``ref_time`` (``unit``: s, or ms per training step for ``online``), the same as
process CPU time where the script records it (``*_cpu``), peak memory above the process before the call
(``*_peak_mb``; ``online``: the rise over a plain step), ``ref_over_ours`` = reference time / our time
(> 1: ours is faster), ``cpu_ref_over_ours`` the same from CPU times, ``mem_ref_over_ours``, and the issue's
``goal`` with ``met``. A goal is judged on CPU times when the script ran single-threaded and recorded them
(a shared machine inflates wall times; ``basis`` says which), else on wall times.

``flops`` rows: ``gflop`` counted FLOPs (1e9), ``ref_time`` the time they take at the GEMM peak, so
``ref_over_ours`` is the fraction of the peak reached (``frac_peak``; ``gflops`` the achieved rate,
``peak_gflops`` the peak). Goal for the closed-form (logistic-regression) engines: ≥ 50 % of the peak.
``summary.md`` also lists the peak table and where the rest of the time goes (``flops.csv``).

    python experiments/benchmarks/summary.py [--run] [--dir results/benchmarks] [--threads N] [--quick]
        [--only loo estimators flops online peers] [--all-estimators]

``make bench`` is ``summary.py --run``. ``--quick`` runs each script on a small setting (a smoke test of the
pipeline, not a measurement).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("bench_summary")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: benchmark name → (script, output file, extra arguments of a ``--quick`` run)
BENCHMARKS: dict[str, tuple[str, str, list[str]]] = {
    "loo": ("bench_loo.py", "loo.csv", ["--cases", "mnist17-logreg", "--loop-samples", "5", "--peak-size", "768"]),
    "estimators": ("bench_estimators.py", "estimators.csv",
                   ["--estimators", "tracin", "diffin_self", "sgd_ie", "--no-agreement", "--large-epochs", "1",
                    "--peak-size", "768"]),
    "flops": ("flops.py", "flops.csv", ["--quick"]),
    "online": ("bench_online.py", "online.json",
               ["--models", "mlp-784-128-10", "--methods", "plain", "lai", "ghost", "--steps", "5", "--warmup", "1",
                "--no-memory"]),
    "peers": ("bench_peers.py", "peers.csv", ["--cases", "if_A_ours,if_A_dattri"]),
}

ONLINE_GOAL_MODELS = ("mlp-784-512-512-10", "cnn-small", "gpt", "encoder")
#: Online goals (batch 32 + target 32): method → (limit, reference method of the same model, models, source):
#: ours ≤ limit × the reference row's time. Issue 26 item 4 restated LAI against ``plain_fwd`` (a plain step plus
#: the target batch's forward, the floor of any method scoring against a target batch) and Ghost on the transformers.
ONLINE_GOALS = {"lai": (1.2, "plain_fwd", ONLINE_GOAL_MODELS, "issue 26 item 4"),
                "ghost": (1.6, "plain", ("gpt", "encoder"), "issue 26 item 4"),
                "lai_self": (1.1, "plain", ONLINE_GOAL_MODELS, "issue 15 item 3")}
#: Estimators shown in the Markdown table (all are in the CSV): the Diff-In family in TracIn units
#: (Tan et al. 2025 claim ≤ 3× TracIn's cost) and the one with a goal.
MD_ESTIMATORS = ("diffin", "diffin_paper", "diffin_self")
#: Issue 26 item 3: the closed-form replay engines reach this fraction of the machine's GEMM peak.
FLOPS_GOAL = 0.5
COLUMNS = ["group", "case", "ours", "reference", "unit", "ours_time", "ref_time", "ref_over_ours", "ours_cpu",
           "ref_cpu", "cpu_ref_over_ours", "ours_peak_mb", "ref_peak_mb", "mem_ref_over_ours", "gflop", "gflops",
           "peak_gflops", "frac_peak", "goal", "met", "basis", "threads", "load_avg", "source"]


def _num(v: Any) -> float:
    """A float, NaN for missing / non-numeric values."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _ratio(ref: float, ours: float) -> float:
    return ref / ours if ours > 0 and math.isfinite(ref) and math.isfinite(ours) else math.nan


def _row(group: str, case: str, ours: str, reference: str, unit: str, ours_time: float, ref_time: float, *,
         ours_cpu: float = math.nan, ref_cpu: float = math.nan, ours_peak: float = math.nan,
         ref_peak: float = math.nan, threads: Any = None, load_avg: float = math.nan, source: str = "") -> dict:
    """One comparison; ``basis`` is CPU when both CPU times exist and the run was single-threaded."""
    cpu_ok = math.isfinite(ours_cpu) and math.isfinite(ref_cpu) and _num(threads) == 1
    return {"group": group, "case": case, "ours": ours, "reference": reference, "unit": unit,
            "ours_time": ours_time, "ref_time": ref_time, "ref_over_ours": _ratio(ref_time, ours_time),
            "ours_cpu": ours_cpu, "ref_cpu": ref_cpu, "cpu_ref_over_ours": _ratio(ref_cpu, ours_cpu),
            "ours_peak_mb": ours_peak, "ref_peak_mb": ref_peak,
            "mem_ref_over_ours": _ratio(ref_peak, ours_peak) if ref_peak > 0 else math.nan,
            "gflop": math.nan, "gflops": math.nan, "peak_gflops": math.nan, "frac_peak": math.nan,
            "goal": "", "met": "", "basis": "cpu" if cpu_ok else "wall", "threads": threads, "load_avg": load_avg,
            "source": source}


def _judged(row: dict) -> tuple[float, float]:
    """(our time, reference time) on the row's basis."""
    return (row["ours_cpu"], row["ref_cpu"]) if row["basis"] == "cpu" else (row["ours_time"], row["ref_time"])


def _set_goal(row: dict, goal: str, test: Callable[[float, float], bool]) -> None:
    """Attach ``goal``; ``met`` = test(our time, reference time) on the row's basis ('' if not measurable)."""
    ours, ref = _judged(row)
    row["goal"] = goal
    row["met"] = "" if not math.isfinite(ours) else ("yes" if test(ours, ref) else "no")


def _flag(v: Any) -> bool:
    """A CSV boolean (True / 'True' / 1) as a bool."""
    return str(v).strip().lower() in ("true", "1", "1.0", "yes")


def flops_row(case: str, ours: str, gflop: float, wall: float, cpu: float, peak: float, *, dtype: str = "float64",
              threads: Any = None, closed_form: bool = False, load_avg: float = math.nan, source: str = "") -> dict:
    """One engine against the machine's GEMM peak (issue 26 item 3).

    ``ref_time`` = gflop / peak, the time the counted FLOPs take at the peak, so ``ref_over_ours`` (on the row's
    basis: CPU time when single-threaded, else wall) is the fraction of the peak reached, ``frac_peak``; ``gflops``
    = gflop / our time. Closed-form engines get the goal ≥ 50 % of the peak (no peak measured: the goal stays
    unjudged)."""
    ref = gflop / peak if peak > 0 and math.isfinite(gflop) else math.nan
    nt = _num(threads)
    row = _row("flops", case, ours, f"GEMM peak ({dtype}, {_fmt(nt)} thread{'' if nt == 1 else 's'})", "s", wall, ref,
               ours_cpu=cpu, ref_cpu=ref, threads=threads, load_avg=load_avg, source=source)
    t, _ = _judged(row)
    row.update(gflop=gflop, peak_gflops=peak, gflops=gflop / t if t > 0 else math.nan,
               frac_peak=ref / t if t > 0 else math.nan)
    if closed_form:
        goal = f"≥ {FLOPS_GOAL * 100:g} % of GEMM peak (issue 26 item 3)"
        if math.isfinite(ref):
            _set_goal(row, goal, lambda t, r: r / t >= FLOPS_GOAL)
        else:
            row["goal"] = goal
    return row


# ----------------------------------------------------------------------------------------------- collectors
def collect_peers(path: Path) -> list[dict]:
    """``peers.csv``: cases ``<method>_<task>_<who>``; ours = who starting with ``ours``; medians over repeats."""
    df = pd.read_csv(path)
    if "status" in df:
        df = df[df["status"] == "ok"]
    if df.empty:
        return []
    agg = {c: "median" for c in ("wall_s", "peak_delta_mb", "load_avg_1m", "threads") if c in df}
    stats = df.groupby("case").agg(agg)
    tasks: dict[str, dict[str, Any]] = {}
    for case, r in stats.iterrows():
        parts = str(case).split("_")
        if len(parts) < 3:
            continue
        tasks.setdefault("_".join(parts[:2]), {})["_".join(parts[2:])] = r
    rows = []
    for task, who in sorted(tasks.items()):
        ours = [w for w in who if w.startswith("ours")]
        for o in ours:
            for peer in (w for w in who if w not in ours):
                a, b = who[o], who[peer]
                row = _row("peers", task, o, peer, "s", _num(a.get("wall_s")), _num(b.get("wall_s")),
                           ours_peak=_num(a.get("peak_delta_mb")), ref_peak=_num(b.get("peak_delta_mb")),
                           threads=a.get("threads"), load_avg=_num(a.get("load_avg_1m")), source=path.name)
                if task == "tracin_B" and peer == "captum" and o in ("ours64", "ours32"):
                    peak = row["ours_peak_mb"]
                    _set_goal(row, "≤ 1 s, ≤ 200 MB above the process, ≥ 20× Captum (issue 15 item 1)",
                              lambda t, r, peak=peak: t <= 1.0 and peak <= 200.0 and r / t >= 20.0)
                elif task == "lds_B" and peer == "dattri" and o in ("ours", "ours32"):
                    need = 3.0 if o == "ours32" else 1.5  # float32 like for like; float64 ground truth
                    _set_goal(row, f"≥ {need:g}× dattri's float32 loop (issue 26 item 2)",
                              lambda t, r, need=need: r / t >= need)
                elif not o.endswith(("_vmap", "_ref")):
                    _set_goal(row, "ours faster than the peer", lambda t, r: r > t)
                rows.append(row)
    return rows


def collect_loo(path: Path) -> list[dict]:
    """``loo.csv``: vectorised trajectory LOO vs the loop (extrapolated to all n)."""
    rows = []
    for _, r in pd.read_csv(path).iterrows():
        row = _row("loo", str(r["case"]), "vectorised", "loop of single replays (extrapolated)", "s",
                   _num(r.get("vectorised_s")), _num(r.get("loop_s_all_n (extrapolated)")),
                   ours_cpu=_num(r.get("vectorised_cpu_s")), ref_cpu=_num(r.get("loop_cpu_s_all_n (extrapolated)")),
                   ours_peak=_num(r.get("vectorised_peak_delta_mb", r.get("vectorised_peak_mb"))),
                   ref_peak=_num(r.get("loop_peak_delta_mb", r.get("loop_peak_mb"))), threads=r.get("threads"),
                   load_avg=_num(r.get("load_avg_1m")), source=path.name)
        if row["case"] == "mnist5k-logreg10":
            _set_goal(row, "≥ 10× the loop (issue 15 item 4)", lambda t, ref: ref / t >= 10.0)
        rows.append(row)
        if math.isfinite(_num(r.get("gflop"))):
            rows.append(flops_row(row["case"], f"LOO replay ({str(r.get('engine', '')).split(' ')[0]})",
                                  _num(r.get("gflop")), row["ours_time"], row["ours_cpu"],
                                  _num(r.get("gemm_peak_gflops")), threads=r.get("threads"),
                                  closed_form=_flag(r.get("closed_form")), load_avg=row["load_avg"],
                                  source=path.name))
    return rows


def collect_online(path: Path) -> list[dict]:
    """``online.json``: every method's step vs the plain step of the same model (medians, ms per step)."""
    df = pd.DataFrame(json.loads(path.read_text()))
    rows = []
    for model, sub in df.groupby("model", sort=False):
        plain = sub[sub["method"] == "plain"]
        if plain.empty:
            continue
        p = plain.iloc[0]
        for _, r in sub[sub["method"] != "plain"].iterrows():
            row = _row("online", str(model), str(r["method"]), "plain step", "ms/step", _num(r["step_ms_median"]),
                       _num(p["step_ms_median"]), ours_cpu=_num(r.get("step_cpu_ms_median")),
                       ref_cpu=_num(p.get("step_cpu_ms_median")), ours_peak=_num(r.get("extra_peak_mb")),
                       ref_peak=_num(p.get("extra_peak_mb")), threads=r.get("threads"),
                       load_avg=_num(r.get("loadavg_start")), source=path.name)
            goal = ONLINE_GOALS.get(str(r["method"]))
            if (goal is not None and model in goal[2] and _num(r.get("batch")) == 32
                    and _num(r.get("target")) == 32):
                limit, ref_method, _, source = goal
                q = sub[sub["method"] == ref_method]  # the reference row's time on this row's basis
                ref_t = _num(q.iloc[0].get("step_cpu_ms_median" if row["basis"] == "cpu" else "step_ms_median")
                             ) if len(q) else math.nan
                what = "a plain step" if ref_method == "plain" else f"the {ref_method} step"
                _set_goal(row, f"≤ {limit}× {what} ({source})", lambda t, _ref, c=limit * ref_t: t <= c)
                if not math.isfinite(ref_t):
                    row["met"] = ""
            rows.append(row)
    return rows


def collect_estimators(path: Path) -> list[dict]:
    """``estimators.csv`` (timing rows): every estimator vs TracIn on the same case."""
    df = pd.read_csv(path)
    df = df[(df["kind"] == "timing") & (df["status"] == "ok")] if "kind" in df else df.iloc[0:0]
    rows = []
    for case, sub in df.groupby("case", sort=False):
        ref = sub[sub["estimator"] == "tracin"]
        t = ref.iloc[0] if len(ref) else None
        for _, r in sub[sub["estimator"] != "tracin"].iterrows():
            row = _row("estimators", str(case), str(r["estimator"]), "tracin" if t is not None else "", "s",
                       _num(r.get("wall_s")), _num(t.get("wall_s")) if t is not None else math.nan,
                       ours_cpu=_num(r.get("cpu_s")), ref_cpu=_num(t.get("cpu_s")) if t is not None else math.nan,
                       ours_peak=_num(r.get("peak_delta_mb")),
                       ref_peak=_num(t.get("peak_delta_mb")) if t is not None else math.nan,
                       threads=r.get("threads"), load_avg=_num(r.get("load_avg_1m")), source=path.name)
            if row["ours"] == "diffin_self" and row["case"] == "mnist5k-mlp128-n4000":
                cpu = _num(r.get("cpu_s"))
                row["basis"] = "cpu" if math.isfinite(cpu) and _num(r.get("threads")) == 1 else "wall"
                _set_goal(row, "≤ 20 s (issue 15 item 2)", lambda t, _ref: t <= 20.0)
            rows.append(row)
    if "gflop" in df:
        for _, r in df[df["gflop"].map(_num).map(math.isfinite)].iterrows():
            rows.append(flops_row(str(r["case"]), f"{r['estimator']} ({r.get('engine', '')})", _num(r["gflop"]),
                                  _num(r.get("wall_s")), _num(r.get("cpu_s")), _num(r.get("gemm_peak_gflops")),
                                  threads=r.get("threads"), closed_form=_flag(r.get("closed_form")),
                                  load_avg=_num(r.get("load_avg_1m")), source=path.name))
    return rows


def collect_flops(path: Path) -> list[dict]:
    """``flops.csv`` (``kind == 'engine'``): the LDS retraining and one-thread adjoint rows of ``flops.py`` vs the
    GEMM peak."""
    df = pd.read_csv(path)
    rows = []
    for _, r in (df[df["kind"] == "engine"] if "kind" in df else df.iloc[0:0]).iterrows():
        rows.append(flops_row(str(r["case"]), f"{r['what']} ({r['engine']}, {r['dtype']})", _num(r["gflop"]),
                              _num(r.get("wall_s")), _num(r.get("cpu_s")), _num(r.get("peak_gflops")),
                              dtype=str(r["dtype"]), threads=r.get("threads"), closed_form=_flag(r.get("closed_form")),
                              load_avg=_num(r.get("load_avg_1m")), source=path.name))
    return rows


def flops_notes(directory: Path) -> list[str]:
    """Markdown lines from ``flops.csv``: the measured GEMM peak per dtype and thread count, and where the time of
    the engines goes (torch.profiler split: GEMM, matrix-vector, other ATen ops, Python / dispatch)."""
    path = directory / BENCHMARKS["flops"][1]
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return []
    if "kind" not in df:
        return []
    lines = []
    peaks = df[df["kind"] == "peak"]
    if len(peaks):
        p0 = peaks.iloc[0]
        def peak(r: pd.Series) -> str:
            basis = f" ({r['basis']} time)" if isinstance(r.get("basis"), str) else ""
            return (f"{r['dtype']}, {int(r['threads'])} thread{'s' if int(r['threads']) > 1 else ''}: "
                    f"{_num(r['gflops']):.1f} GFLOP/s{basis}")

        vals = "; ".join(peak(r) for _, r in peaks.iterrows())
        lines.append(f"- GEMM peak (best of {int(p0['repeats'])} square `torch.mm`, n = {int(p0['n'])}, threads set "
                     f"by `torch.set_num_threads`; load average {_num(p0.get('load_avg_1m')):.2g}): {vals}. "
                     f"({p0.get('what', '')})")
    def pct(v: Any) -> str:
        return "?" if not math.isfinite(_num(v)) else f"{_num(v):.0%}"

    for _, r in df[df["kind"] == "profile"].iterrows():
        lines.append(f"- Where the time goes, {r['what']} ({r['case']}, {int(r['threads'])} thread(s); "
                     f"{pct(r.get('frac_peak'))} of the peak overall): GEMM {pct(r['gemm_share'])} of the time (the "
                     f"GEMMs themselves at {pct(r.get('gemm_frac_peak'))} of the peak), matrix-vector/dot "
                     f"{pct(r['gemv_share'])}, other ATen ops {pct(r['other_share'])} ({r.get('top_other', '')}), "
                     f"Python/dispatch/profiler {pct(r['python_share'])} ({_num(r['profiled_wall_s']):.3g} s under "
                     f"the profiler, {_num(r['wall_s']):.3g} s without)")
    return lines


COLLECTORS: dict[str, Callable[[Path], list[dict]]] = {
    "peers": collect_peers, "loo": collect_loo, "online": collect_online, "estimators": collect_estimators,
    "flops": collect_flops}


def collect(directory: Path, only: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """All comparison rows from the outputs in ``directory`` and, per benchmark, where they came from (or why
    they are missing)."""
    rows: list[dict] = []
    sources: dict[str, str] = {}
    for name in only or list(BENCHMARKS):
        path = directory / BENCHMARKS[name][1]
        if not path.exists():
            sources[name] = f"{path.name}: missing (run {BENCHMARKS[name][0]})"
            log.warning("%s", sources[name])
            continue
        try:
            got = COLLECTORS[name](path)
        except (KeyError, ValueError, json.JSONDecodeError, pd.errors.ParserError) as exc:
            sources[name] = f"{path.name}: unreadable ({type(exc).__name__}: {exc})"
            log.warning("%s", sources[name])
            continue
        mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
        sources[name] = f"{path.name}: {len(got)} comparisons, written {mtime}"
        rows += got
    return pd.DataFrame(rows, columns=COLUMNS), sources


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3g}"
    return "" if v is None else str(v)


def markdown(df: pd.DataFrame, sources: dict[str, str], *, all_estimators: bool = False, note: str = "",
             notes: list[str] | None = None) -> str:
    """The summary as one Markdown table (estimators: :data:`MD_ESTIMATORS` unless ``all_estimators``), the
    ``flops`` rows (engines vs the GEMM peak) as a second one, followed by ``notes`` (:func:`flops_notes`)."""
    show = df if all_estimators else df[(df["group"] != "estimators") | df["ours"].isin(MD_ESTIMATORS)]
    fl = df[df["group"] == "flops"]
    show = show[show["group"] != "flops"]
    cols = ["group", "case", "ours", "reference", "unit", "ours_time", "ref_time", "ref_over_ours",
            "cpu_ref_over_ours", "ours_peak_mb", "ref_peak_mb", "goal", "met", "basis"]
    met = df["met"].value_counts().to_dict()
    lines = ["# Benchmark summary", "",
             f"{note}ref_over_ours = reference time / our time (> 1: ours is faster); cpu_ref_over_ours the same "
             "from process CPU times; peaks in MB above the process before the call (online: over a plain step). "
             f"Goals met: {met.get('yes', 0)}, not met: {met.get('no', 0)}.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for _, r in show.iterrows()]
    if len(fl) or notes:
        fcols = ["case", "ours", "reference", "gflop", "ours_time", "ours_cpu", "basis", "gflops", "peak_gflops",
                 "frac_peak", "goal", "met", "threads"]
        lines += ["", "## Replay engines vs the machine's GEMM peak (issue 26 item 3)", "",
                  "gflop: FLOPs of the engine's dense products counted from the algorithm "
                  "(`experiments/benchmarks/flops.py`, checked against `torch.utils.flop_counter` in the tests); "
                  "gflops = gflop / our time on the row's basis; frac_peak = gflops / the GEMM peak measured at the "
                  "same dtype and thread count. Closed-form engines: the logistic-regression LOO / LDS replays "
                  "(primal: two GEMMs per step, dual: one against the Gram matrix) and the logistic-regression "
                  "SGD-IE / ACC-SGD-IE adjoints; the MLP paths are shown without the goal.", ""]
        if len(fl):
            lines += ["| " + " | ".join(fcols) + " |", "|" + "---|" * len(fcols)]
            lines += ["| " + " | ".join(_fmt(r[c]) for c in fcols) + " |" for _, r in fl.iterrows()]
        if notes:
            lines += [""] + list(notes)
    lines += ["", "Sources:", ""] + [f"- {k}: {v}" for k, v in sources.items()]
    return "\n".join(lines) + "\n"


def run_benchmarks(directory: Path, names: list[str], *, threads: int | None, quick: bool) -> dict[str, int]:
    """Run each benchmark script (from the repository root) writing into ``directory``; return codes by name."""
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    codes = {}
    for name in names:
        script, out, quick_args = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / script), "--out", str(directory / out)]
        if threads:
            cmd += ["--threads", str(threads)]
        if quick:
            cmd += quick_args
        log.info("running %s", " ".join(cmd))
        codes[name] = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        if codes[name]:
            log.error("%s exited with %d", script, codes[name])
    return codes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("results/benchmarks"), help="where the outputs are / go")
    ap.add_argument("--run", action="store_true", help="run the benchmark scripts first")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None)
    ap.add_argument("--threads", type=int, default=None, help="passed to every script (default: each one's own)")
    ap.add_argument("--quick", action="store_true", help="small settings: a smoke test of the pipeline")
    ap.add_argument("--all-estimators", action="store_true", help="every estimator in the Markdown table too")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = args.only or list(BENCHMARKS)
    codes = run_benchmarks(args.dir, names, threads=args.threads, quick=args.quick) if args.run else {}
    df, sources = collect(args.dir, names)
    for name, code in codes.items():
        if code:
            sources[name] += f" (the last run exited with {code})"
    from influence.io import save_csv, save_text

    save_csv(args.dir / "summary.csv", df, float_format="%.6g")
    note = "Quick settings (smoke test, not a measurement). " if args.quick else ""
    md = markdown(df, sources, all_estimators=args.all_estimators, note=note, notes=flops_notes(args.dir))
    save_text(args.dir / "summary.md", md)
    log.info("wrote %s and %s\n%s", args.dir / "summary.csv", args.dir / "summary.md", md)
    return 1 if any(codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
