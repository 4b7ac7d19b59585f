"""experiments/benchmarks/summary.py: the one benchmark table, from each script's machine-readable output."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "summary.py"
_spec = importlib.util.spec_from_file_location("bench_summary", _PATH)
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)


def _write_outputs(d: Path) -> None:
    pd.DataFrame([
        {"case": "tracin_B_ours64", "wall_s": 0.5, "peak_delta_mb": 150.0, "status": "ok", "repeat": 0, "threads": 2},
        {"case": "tracin_B_ours64", "wall_s": 0.7, "peak_delta_mb": 170.0, "status": "ok", "repeat": 1, "threads": 2},
        {"case": "tracin_B_ours64_vmap", "wall_s": 20.0, "peak_delta_mb": 400.0, "status": "ok", "repeat": 0,
         "threads": 2},
        {"case": "tracin_B_captum", "wall_s": 18.0, "peak_delta_mb": 335.0, "status": "ok", "repeat": 0, "threads": 2},
        {"case": "if_A_ours", "wall_s": 0.02, "peak_delta_mb": 1.0, "status": "ok", "repeat": 0, "threads": 2},
        {"case": "if_A_dattri", "wall_s": 1.8, "peak_delta_mb": 180.0, "status": "ok", "repeat": 0, "threads": 2},
        {"case": "lds_B_dattri", "status": "failed: ImportError", "repeat": 0, "threads": 2},
    ]).to_csv(d / "peers.csv", index=False)
    pd.DataFrame([
        {"case": "mnist5k-logreg10", "vectorised_s": 10.0, "vectorised_cpu_s": 10.0, "vectorised_peak_delta_mb": 50.0,
         "loop_s_all_n (extrapolated)": 120.0, "loop_cpu_s_all_n (extrapolated)": 90.0, "loop_peak_delta_mb": 1.0,
         "threads": 1, "load_avg_1m": 3.0},
        {"case": "mnist17-logreg", "vectorised_s": 1.0, "vectorised_cpu_s": 1.0, "loop_s_all_n (extrapolated)": 30.0,
         "loop_cpu_s_all_n (extrapolated)": 30.0, "threads": 1},
    ]).to_csv(d / "loo.csv", index=False)
    online = [{"model": m, "method": meth, "step_ms_median": t, "step_cpu_ms_median": t, "extra_peak_mb": mb,
               "batch": 32, "target": 32, "threads": 1}
              for m in ("mlp-784-128-10", "cnn-small")
              for meth, t, mb in (("plain", 1.0, 0.0), ("lai", 1.15, 2.0), ("ghost", 1.5, 3.0))]
    (d / "online.json").write_text(json.dumps(online))
    pd.DataFrame([
        {"kind": "timing", "case": "mnist5k-mlp128-n4000", "estimator": "tracin", "wall_s": 0.2, "cpu_s": 0.2,
         "peak_delta_mb": 20.0, "status": "ok", "threads": 1},
        {"kind": "timing", "case": "mnist5k-mlp128-n4000", "estimator": "diffin_self", "wall_s": 30.0, "cpu_s": 8.0,
         "peak_delta_mb": 5.0, "status": "ok", "threads": 1},
        {"kind": "timing", "case": "mnist5k-mlp128-n4000", "estimator": "loss", "wall_s": 0.1, "cpu_s": 0.1,
         "peak_delta_mb": 1.0, "status": "ok", "threads": 1},
        {"kind": "agreement", "case": "mnist17-logreg-n400-K2", "estimator": "tracin", "kendall": 0.5, "status": "ok"},
    ]).to_csv(d / "estimators.csv", index=False)


def _one(df: pd.DataFrame, **where) -> pd.Series:
    sel = df
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, where
    return sel.iloc[0]


def test_summary_pairs_ours_with_each_reference_and_judges_the_goals(tmp_path):
    _write_outputs(tmp_path)
    df, sources = summary.collect(tmp_path)
    # peers: medians over repeats, each ours variant vs each peer of its task, failed cases left out
    t = _one(df, group="peers", case="tracin_B", ours="ours64", reference="captum")
    assert t["ours_time"] == pytest.approx(0.6) and t["ref_over_ours"] == pytest.approx(30.0)
    assert t["ours_peak_mb"] == pytest.approx(160.0) and t["met"] == "yes" and "20×" in t["goal"]
    assert _one(df, group="peers", ours="ours64_vmap", reference="captum")["goal"] == ""  # a reference path
    assert _one(df, group="peers", case="if_A", ours="ours")["met"] == "yes"
    assert "lds_B" not in set(df["case"])
    # LOO: judged on CPU times (single-threaded): 9x on CPU although 12x on the wall clock
    lo = _one(df, group="loo", case="mnist5k-logreg10")
    assert lo["ref_over_ours"] == pytest.approx(12.0) and lo["cpu_ref_over_ours"] == pytest.approx(9.0)
    assert lo["basis"] == "cpu" and lo["met"] == "no"
    assert _one(df, group="loo", case="mnist17-logreg")["goal"] == ""
    # online: ratios against the plain step; goals only on the models the issue names
    assert _one(df, group="online", case="cnn-small", ours="lai")["met"] == "yes"
    assert _one(df, group="online", case="cnn-small", ours="ghost")["met"] == "no"
    assert _one(df, group="online", case="mlp-784-128-10", ours="lai")["goal"] == ""
    # estimators: vs TracIn of the same case; the diffin_self goal on its CPU time
    ds = _one(df, group="estimators", ours="diffin_self")
    assert ds["reference"] == "tracin" and ds["cpu_ref_over_ours"] == pytest.approx(0.2 / 8.0)
    assert ds["met"] == "yes" and ds["basis"] == "cpu"
    assert set(sources) == set(summary.BENCHMARKS) and all("comparisons" in v for v in sources.values())
    md = summary.markdown(df, sources)
    assert "| estimators | mnist5k-mlp128-n4000 | diffin_self |" in md
    assert "| loss |" not in md and "| loss |" in summary.markdown(df, sources, all_estimators=True)
    assert "Goals met: 4, not met: 2." in md


def test_summary_reports_missing_outputs_and_writes_both_files(tmp_path):
    _write_outputs(tmp_path)
    (tmp_path / "online.json").unlink()
    assert summary.main(["--dir", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "summary.csv")
    assert "online" not in set(df["group"]) and {"peers", "loo", "estimators"} <= set(df["group"])
    md = (tmp_path / "summary.md").read_text()
    assert "online: online.json: missing (run bench_online.py)" in md
    assert math.isclose(float(df[df["case"] == "mnist17-logreg"]["ref_over_ours"].iloc[0]), 30.0)


def test_notebook_helpers_show_the_groups_asked_for_and_state_every_goal(tmp_path):
    from replication.plotting import bench_rows, bench_words

    _write_outputs(tmp_path)
    summary.main(["--dir", str(tmp_path)])
    df = pd.read_csv(tmp_path / "summary.csv")  # as the notebooks read it (the goal column is NaN where empty)
    t = bench_rows(df, ["loo", "online"])
    assert set(t["group"]) == {"loo", "online"} and "source" not in t
    words = "\n".join(bench_words(t, "Benchmarks"))
    goals = t[t["goal"].notna()]
    assert f"goals met: {int((goals['met'] == 'yes').sum())} of {len(goals)}" in words
    assert "`mnist5k-logreg10`: ours" in words and "(CPU time); goal" in words and "**not met**" in words
    assert "mnist17-logreg" not in words  # no goal, no line
    assert bench_rows(pd.DataFrame(), ["loo"]).empty
    assert "not run" in bench_words(pd.DataFrame(), "Benchmarks")[0]


def test_lds_retraining_is_judged_against_dattri_in_float32_and_float64(tmp_path):
    """Issue 26 item 2: ≥ 3× dattri's float32 loop with our float32 path, ≥ 1.5× with float64 ground truth."""
    pd.DataFrame([
        {"case": "lds_B_ours", "wall_s": 4.0, "status": "ok", "repeat": 0, "threads": 2},
        {"case": "lds_B_ours32", "wall_s": 1.4, "status": "ok", "repeat": 0, "threads": 2},
        {"case": "lds_B_dattri", "wall_s": 4.5, "status": "ok", "repeat": 0, "threads": 2},
    ]).to_csv(tmp_path / "peers.csv", index=False)
    df = pd.DataFrame(summary.collect_peers(tmp_path / "peers.csv"))
    f32 = _one(df, case="lds_B", ours="ours32", reference="dattri")
    f64 = _one(df, case="lds_B", ours="ours", reference="dattri")
    assert "3×" in f32["goal"] and f32["met"] == "yes"  # 4.5 / 1.4 = 3.2
    assert "1.5×" in f64["goal"] and f64["met"] == "no"  # 4.5 / 4.0 = 1.1
