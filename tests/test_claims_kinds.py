"""The claim test kinds: paired effects with 95 % intervals (checked against scipy's paired t test), three-way
verdicts, undefined values refute, exact ties are no improvement, chance controls gate every comparison, timings
are judged on the geometric-mean ratio over paired rounds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from replication.claims import VERDICTS, detectable, evaluate_claim, interval, three_way


def _claim(test, cid="T-1", **extra):
    return {"id": cid, "paper": "p", "claim": "c", "experiment": "E", "metric": "m", "criterion": "k", "test": test,
            **extra}


def _fid(rows):
    return pd.DataFrame(rows, columns=["dataset", "epochs", "seed", "estimator", "spearman", "rmse"])


def _seeded(effects, base=0.6, est="acc", other="sgd", dataset="a", rmse=0.1):
    """One row per (seed, estimator): the estimator's Spearman is the baseline's plus the given effect."""
    rows = []
    for s, e in enumerate(effects):
        b = base + 0.05 * math.sin(s)  # the seeds differ; the pairing removes it
        rows += [[dataset, 2, s, other, b, rmse], [dataset, 2, s, est, b + e, rmse]]
    return rows


BASE = {"kind": "compare", "table": "E1_fidelity", "estimator": "acc", "baselines": ["sgd"],
        "metrics": {"spearman": "higher"}, "group_by": ["dataset", "epochs"], "rule": "most"}


def test_interval_is_the_paired_t_interval_of_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.7, 0.05, 6), rng.normal(0.65, 0.05, 6)
    mean, lo, hi, se, n = interval(a - b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert n == 6 and mean == pytest.approx(float(np.mean(a - b)), abs=1e-15)
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-12)
    # one value: no spread, no interval
    assert interval([0.3])[1:3] == (-math.inf, math.inf)


def test_smallest_detectable_effect_has_the_stated_power():
    # simulate the paired design at the detectable effect: a one-sided t test rejects in about 80 % of draws
    n, sd = 5, 0.02
    mde = detectable(sd / math.sqrt(n), n)
    rng = np.random.default_rng(1)
    x = rng.normal(mde, sd, size=(20000, n))
    lo = x.mean(1) - stats.t.ppf(0.975, n - 1) * x.std(1, ddof=1) / math.sqrt(n)
    assert np.mean(lo > 0) == pytest.approx(0.80, abs=0.02)


def test_three_way_verdict_against_the_margin():
    assert three_way(0.01, 0.03, 0.0) == "reproduced"
    assert three_way(-0.03, -0.01, 0.0) == "refuted"
    assert three_way(-0.01, 0.03, 0.0) == "inconclusive"
    assert three_way(0.001, 0.004, 0.005) == "refuted"  # real but below the claim's margin
    assert three_way(0.0, 0.0, 0.0) == "refuted"  # an exact tie excludes a strict improvement


def test_compare_verdicts_are_three_way_with_the_interval_in_ours():
    clear = _fid(_seeded([0.05, 0.06, 0.04, 0.055, 0.05]))
    r = evaluate_claim(_claim(BASE), {"E1_fidelity": clear})
    assert r["verdict"] == "reproduced"
    ci = stats.ttest_1samp([0.05, 0.06, 0.04, 0.055, 0.05], 0).confidence_interval(0.95)
    assert r["ours"] == f"+{0.051:.3g} [+{ci.low:.3g}, +{ci.high:.3g}]".replace("-", "−")
    assert "paired by seed, 5 pairs" in r["effect"]
    worse = _fid(_seeded([-0.05, -0.06, -0.04, -0.055, -0.05]))
    assert evaluate_claim(_claim(BASE), {"E1_fidelity": worse})["verdict"] == "refuted"
    noisy = _fid(_seeded([0.05, -0.06, 0.04, -0.055, 0.02]))
    r = evaluate_claim(_claim(BASE), {"E1_fidelity": noisy})
    assert r["verdict"] == "inconclusive" and "smallest detectable effect" in r["diagnosis"]
    one_seed = _fid(_seeded([0.05]))
    assert evaluate_claim(_claim(BASE), {"E1_fidelity": one_seed})["verdict"] == "inconclusive"
    assert set(VERDICTS) >= {"reproduced", "refuted", "inconclusive", "partly", "not run", "invalid run"}


def test_a_margin_turns_a_negligible_improvement_into_a_refutation():
    small = _fid(_seeded([0.002, 0.0021, 0.0019, 0.002, 0.0022]))
    assert evaluate_claim(_claim(BASE), {"E1_fidelity": small})["verdict"] == "reproduced"
    assert evaluate_claim(_claim({**BASE, "margin": 0.01}), {"E1_fidelity": small})["verdict"] == "refuted"
    # a margin per metric
    per = {**BASE, "metrics": {"spearman": "higher", "rmse": "lower"}, "margin": {"spearman": 0.01, "rmse": 0.0}}
    assert "spearman vs sgd" in evaluate_claim(_claim(per), {"E1_fidelity": small})["measured"]


def test_an_undefined_estimator_value_refutes_instead_of_being_skipped():
    # a constant estimator: Spearman undefined on a seed
    rows = _seeded([0.05] * 5)
    rows[1][4] = np.nan
    r = evaluate_claim(_claim(BASE), {"E1_fidelity": _fid(rows)})
    assert r["verdict"] == "refuted"


def test_settings_are_counted_and_the_rule_decides():
    rows = (_seeded([0.05, 0.06, 0.04, 0.055, 0.05], dataset="a") + _seeded([0.05, 0.06, 0.04, 0.055, 0.05],
            dataset="b") + _seeded([0.05, -0.06, 0.04, -0.055, 0.02], dataset="c"))
    r = evaluate_claim(_claim(BASE), {"E1_fidelity": _fid(rows)})
    assert r["verdict"] == "reproduced" and r["settings"] == "2 reproduced, 1 inconclusive of 3"
    assert "mean of 3 settings" in r["ours"]
    r = evaluate_claim(_claim({**BASE, "rule": "all"}), {"E1_fidelity": _fid(rows)})
    assert r["verdict"] == "inconclusive"
    rows2 = rows + _seeded([-0.05, -0.06, -0.04, -0.055, -0.05], dataset="d")
    assert evaluate_claim(_claim({**BASE, "rule": "all"}), {"E1_fidelity": _fid(rows2)})["verdict"] == "refuted"
    # most: 2 of 4 reproduced is not most; with one inconclusive it could still be 3 of 4: inconclusive
    assert evaluate_claim(_claim(BASE), {"E1_fidelity": _fid(rows2)})["verdict"] == "inconclusive"
    rows3 = rows2 + _seeded([-0.05, -0.06, -0.04, -0.055, -0.05], dataset="e")
    # 2 reproduced, 1 inconclusive, 2 refuted of 5: at most 3 of 5 -- still possible: inconclusive
    assert evaluate_claim(_claim(BASE), {"E1_fidelity": _fid(rows3)})["verdict"] == "inconclusive"
    rows4 = rows3 + _seeded([-0.05, -0.06, -0.04, -0.055, -0.05], dataset="f")
    # 2 reproduced, 1 inconclusive, 3 refuted of 6: at most 3 of 6, not more than half: refuted
    assert evaluate_claim(_claim(BASE), {"E1_fidelity": _fid(rows4)})["verdict"] == "refuted"


def test_the_chance_control_gates_every_comparison_of_its_group():
    test = {**BASE, "control": {"estimator": "random", "metric": "spearman", "margin": 0.2}}
    rows = _seeded([0.05, 0.06, 0.04, 0.055, 0.05], dataset="a", base=0.6)
    rows += _seeded([0.05, 0.06, 0.04, 0.055, 0.05], dataset="b", base=0.0)  # acc beats sgd, but near chance
    for d in ("a", "b"):
        rows += [[d, 2, s, "random", 0.02 * (-1) ** s, 0.5] for s in range(5)]
    r = evaluate_claim(_claim(test), {"E1_fidelity": _fid(rows)})
    assert r["settings"] == "1 reproduced, 1 refuted of 2" and "chance control random in 1 setting" in r["diagnosis"]
    # without a control row in the table the claim cannot be judged (no silent pass)
    no_ctrl = _fid([x for x in rows if x[3] != "random"])
    r = evaluate_claim(_claim(test), {"E1_fidelity": no_ctrl})
    assert r["verdict"] == "not run" and "control random is absent" in r["measured"]
    # a group lacking the control is skipped, and said so
    part = _fid([x for x in rows if not (x[0] == "b" and x[3] == "random")])
    r = evaluate_claim(_claim(test), {"E1_fidelity": part})
    assert r["verdict"] == "reproduced" and "1 group(s) without the control skipped" in r["measured"]


def test_a_metric_or_control_metric_the_table_lacks_is_not_run():
    rows = _fid(_seeded([0.05] * 5) + [["a", 2, s, "random", 0.0, 0.5] for s in range(5)])
    for test in ({**BASE, "metrics": {"spearman_top30": "higher"}},
                 {**BASE, "control": {"estimator": "random", "metric": "spearman_top30", "margin": 0.2}}):
        r = evaluate_claim(_claim(test), {"E1_fidelity": rows})
        assert r["verdict"] == "not run" and "spearman_top30 not in E1_fidelity" in r["measured"]


def test_claims_name_their_protocol_and_counterpart(tmp_path):
    from replication.claims import load_claims

    r = evaluate_claim(_claim({"kind": "checks"}), {})
    assert r["protocol"] == "check" and r["counterpart"] == "" and r["difference"] == ""
    r = evaluate_claim(_claim(BASE, protocol="authors", counterpart="T-2", difference="a  b"), {})
    assert (r["protocol"], r["counterpart"], r["difference"]) == ("authors", "T-2", "a b")
    assert evaluate_claim(_claim(BASE), {})["protocol"] == "ours"
    bad = tmp_path / "c.yaml"
    for extra, msg in (("  protocol: theirs\n", "protocol 'theirs'"), ("  counterpart: T-9\n", "counterpart 'T-9'")):
        bad.write_text("- id: T-1\n  paper: p\n  claim: c\n  experiment: E\n  metric: m\n  criterion: k\n"
                       "  test: {kind: none, reason: r}\n" + extra)
        with pytest.raises(ValueError, match=msg):
            load_claims(bad)


def test_min_value_and_a_published_constant_baseline():
    rows = [{"epochs": 3, "seed": s, "estimator": "acc", "rho": 0.75 + 0.01 * s} for s in range(5)]
    rows += [{"epochs": 3, "seed": s, "estimator": "dattri", "rho": 0.7 + 0.01 * s} for s in range(5)]
    rows += [{"epochs": 3, "seed": np.nan, "estimator": "published", "rho": 0.736}]
    test = {"kind": "compare", "table": "T", "estimator": "acc", "baselines": ["dattri", "published"],
            "metrics": {"rho": "higher"}, "group_by": ["epochs"], "min_value": 0.5, "rule": "all"}
    r = evaluate_claim(_claim(test), {"T": pd.DataFrame(rows)})
    # against the published 0.736 the mean 0.77 has an interval of +-0.012: above
    assert r["verdict"] == "reproduced" and "vs published" in r["measured"]
    assert evaluate_claim(_claim({**test, "min_value": 0.9}), {"T": pd.DataFrame(rows)})["verdict"] == "refuted"


def _rounds(ratios, base=1.0, model="m"):
    rows = []
    for k, r in enumerate(ratios):
        load = 1.0 + 0.5 * (k % 3)  # a load shared by the round cancels in the ratio
        rows += [{"model": model, "policy": "ghost", "rep": k, "t": base * load},
                 {"model": model, "policy": "lai", "rep": k, "t": base * load * r}]
    return rows


PAIRED = {"kind": "compare", "table": "T", "key": "policy", "estimator": "lai", "baselines": ["ghost"],
          "metrics": {"t": "lower"}, "group_by": ["model"], "paired_by": "rep", "factor": 0.9, "rule": "all"}


def test_paired_rounds_give_the_geometric_mean_ratio_with_its_interval():
    ratios = [0.5, 0.62, 0.55, 0.7, 0.58, 0.95, 0.61]
    r = evaluate_claim(_claim(PAIRED), {"T": pd.DataFrame(_rounds(ratios))})
    mean, lo, hi, _, _ = interval(np.log(ratios))
    assert r["verdict"] == "reproduced"
    assert r["ours"] == f"{math.exp(mean):.3g}× [{math.exp(lo):.3g}×, {math.exp(hi):.3g}×]"
    # just above the factor: refuted; around it: inconclusive; one model of two refuted: refuted (rule all)
    assert evaluate_claim(_claim(PAIRED), {"T": pd.DataFrame(_rounds([0.92, 0.93] * 3))})["verdict"] == "refuted"
    around = pd.DataFrame(_rounds([0.85, 0.95, 0.8, 1.0, 0.9, 0.88]))
    assert evaluate_claim(_claim(PAIRED), {"T": around})["verdict"] == "inconclusive"
    two = pd.DataFrame(_rounds(ratios) + _rounds([1.0] * 7, model="m2"))
    assert evaluate_claim(_claim(PAIRED), {"T": two})["verdict"] == "refuted"


def test_reported_metrics_are_shown_not_judged():
    rows = pd.DataFrame(_rounds([0.5] * 6)).assign(wall=lambda d: d["t"] * np.where(d["policy"] == "lai", 3, 1))
    r = evaluate_claim(_claim({**PAIRED, "report_metrics": ["wall"]}), {"T": rows})
    assert r["verdict"] == "reproduced" and "not judged, wall ratio (worst): 1.5×" in r["measured"]


def test_equal_needs_defined_metrics_and_non_trivial_estimators():
    eq = {"kind": "equal", "table": "E1_fidelity", "estimators": ["acc", "sgd"], "metrics": ["spearman"],
          "where": {"epochs": 1}, "tol": 1e-8}
    nan = _fid([["a", 1, 0, "acc", np.nan, 0.1], ["a", 1, 0, "sgd", np.nan, 0.1]])
    assert evaluate_claim(_claim(eq), {"E1_fidelity": nan})["verdict"] == "refuted"
    ctrl = {**eq, "control": {"estimator": "random", "metric": "spearman", "margin": 0.2}}
    chance = _fid([["a", 1, 0, "acc", 0.1, 0.1], ["a", 1, 0, "sgd", 0.1, 0.1], ["a", 1, 0, "random", 0.05, 0.5]])
    assert evaluate_claim(_claim(eq), {"E1_fidelity": chance})["verdict"] == "reproduced"
    r = evaluate_claim(_claim(ctrl), {"E1_fidelity": chance})
    assert r["verdict"] == "refuted" and "0/2" in r["measured"]
    good = chance.assign(spearman=[0.9, 0.9, 0.05])
    assert evaluate_claim(_claim(ctrl), {"E1_fidelity": good})["verdict"] == "reproduced"


def test_threshold_is_judged_on_the_interval_and_undefined_rows_refute():
    thr = {"kind": "threshold", "table": "E3", "metric": "rho", "op": ">=", "value": 0.8}
    high = pd.DataFrame({"rho": [0.9, 0.91, 0.89, 0.9, 0.92]})
    assert evaluate_claim(_claim(thr), {"E3": high})["verdict"] == "reproduced"
    assert evaluate_claim(_claim(thr), {"E3": high - 0.2})["verdict"] == "refuted"
    assert evaluate_claim(_claim(thr), {"E3": pd.DataFrame({"rho": [0.7, 0.9, 0.85]})})["verdict"] == "inconclusive"
    assert evaluate_claim(_claim(thr), {"E3": pd.DataFrame({"rho": [0.9, np.nan]})})["verdict"] == "refuted"
    r = evaluate_claim(_claim(thr), {"E3": pd.DataFrame({"rho": [np.nan, np.nan]})})
    assert r["verdict"] == "refuted" and "undefined on all 2 rows" in r["measured"]


def test_growth_counts_only_non_trivial_curves():
    k = np.array([1, 2, 4, 8, 16])
    grow = {"kind": "growth", "table": "E1", "estimator": "d", "metric": "err", "x": "epochs",
            "min_metric": {"spearman": 0.5}}
    good = pd.DataFrame({"estimator": "d", "epochs": k, "err": 0.1 * k**1.2, "spearman": 0.9})
    assert evaluate_claim(_claim(grow), {"E1": good})["verdict"] == "reproduced"
    trivial = good.assign(spearman=[0.9, 0.9, -0.5, 0.9, 0.9])  # anti-correlated at one length
    r = evaluate_claim(_claim(grow), {"E1": trivial})
    assert r["verdict"] == "refuted" and "non-trivial estimate in 0/1" in r["measured"]


def test_checks_and_parts():
    bounds = pd.DataFrame({"name": ["a", "b", "c"], "passed": [True, False, True], "claims": ["T-1", "T-1", "T-2"]})
    assert evaluate_claim(_claim({"kind": "checks"}, "T-1"), {"E5_bounds": bounds})["verdict"] == "partly"
    assert evaluate_claim(_claim({"kind": "checks"}, "T-2"), {"E5_bounds": bounds})["verdict"] == "reproduced"
    assert evaluate_claim(_claim({"kind": "checks"}, "T-3"), {"E5_bounds": bounds})["verdict"] == "not run"
    thr = {"kind": "threshold", "table": "E3", "metric": "rho", "op": ">=", "value": 0.8}
    both = {"kind": "all", "tests": [{"kind": "checks"}, thr]}
    low = pd.DataFrame({"rho": [0.1, 0.12, 0.11]})
    assert evaluate_claim(_claim(both, "T-2"), {"E5_bounds": bounds, "E3": low})["verdict"] == "partly"
    vague = pd.DataFrame({"rho": [0.7, 0.9, 0.85]})
    assert evaluate_claim(_claim(both, "T-2"), {"E5_bounds": bounds, "E3": vague})["verdict"] == "inconclusive"


def test_coverage_counts_estimators_defined_on_every_run_and_requires_the_control():
    rows = [[d, 2, 0, e, np.nan if e == "zero" else 0.5, 0.1] for d in ("a", "b")
            for e in ("e1", "e2", "e3", "zero", "random")]
    rows = [r for r in rows if not (r[0] == "b" and r[3] == "e3")]  # e3 missing on run b
    cov = {"kind": "coverage", "table": "E1_fidelity", "min_estimators": 2, "metric": "spearman", "require": "random"}
    r = evaluate_claim(_claim(cov), {"E1_fidelity": _fid(rows)})
    assert r["verdict"] == "reproduced" and "2 estimators vs LOO on all 2 runs" in r["measured"]
    assert evaluate_claim(_claim({**cov, "min_estimators": 3}), {"E1_fidelity": _fid(rows)})["verdict"] == "refuted"
    no_random = _fid([r for r in rows if r[3] != "random"])
    assert evaluate_claim(_claim(cov), {"E1_fidelity": no_random})["verdict"] == "refuted"
