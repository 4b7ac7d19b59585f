"""The report's numbers (influence.report): macro names, formatting, per-experiment values checked against an
independent computation, "not run" for what did not run, clear errors for a table without a needed column."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_paper import DEFAULT, REPO, merge

from influence import report
from influence.report import NOT_RUN, ReportError, TeX, escape, fmt, macro_name, numbers, to_tex, write_numbers

SMOKE = merge(DEFAULT, yaml.safe_load((REPO / "experiments" / "config" / "smoke.yaml").read_text()))


def e1_table(seed: int = 0) -> pd.DataFrame:
    """An E1-like table: 2 models × epochs 1, 3, 10 × 4 estimators, seeded random metrics."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in ("logreg", "mlp8"):
        for epochs in (1, 3, 10):
            for est in ("sgd_ie", "acc_sgd_ie", "diffin_paper", "tracin"):
                rows.append({"dataset": "adult", "noise": "clean", "model": model, "epochs": epochs, "seed": 0,
                             "estimator": est, "kendall": rng.uniform(-1, 1), "spearman": rng.uniform(-1, 1),
                             "rmse": rng.uniform(0, 1)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ names
def test_macro_names_spell_numbers_as_roman_numerals():
    assert macro_name("verdict", "LAI-2") == "verdictLAIii"
    assert macro_name("ok", "LAI-2-mlp") == "okLAIiiMlp"
    assert macro_name("E8", "pearson", "ghost_flat") == "EviiiPearsonGhostFlat"
    assert macro_name("E2", "auroc", "el2n") == "EiiAurocEliin"
    assert macro_name("ran", "E10") == "ranEx"
    assert macro_name("E1", "x", "1999") == "EiXmcmxcix"
    with pytest.raises(ReportError, match="no letters or digits"):
        macro_name("--", "_")


@given(st.lists(st.text(alphabet="abcXYZ019_- ./", min_size=1, max_size=8), min_size=1, max_size=4))
def test_macro_names_are_letters_only(parts):
    if not re.search(r"[A-Za-z0-9]", "".join(parts)):
        with pytest.raises(ReportError):
            macro_name(*parts)
    else:
        assert re.fullmatch(r"[A-Za-z]+", macro_name(*parts))


# ----------------------------------------------------------------------------------------------- format
def test_fmt_writes_numbers_and_text_as_latex():
    assert fmt(None) == NOT_RUN
    assert fmt(float("nan")) == "n/a"
    assert fmt(0.86712) == "0.867"
    assert fmt(-0.55) == r"\ensuremath{-}0.55"
    assert fmt(-3) == r"\ensuremath{-}3"
    assert fmt(12) == "12" and fmt(np.int64(4)) == "4"
    assert fmt(1.234e-5) == r"\ensuremath{1.23\times10^{-5}}"
    assert fmt(2.5e7) == r"\ensuremath{2.50\times10^{7}}"
    assert fmt(True) == "yes" and fmt(np.bool_(False)) == "no"
    assert fmt("acc_sgd_ie & 50%") == r"acc\_sgd\_ie \& 50\%"
    assert fmt(TeX(r"\emph{x}")) == r"\emph{x}"
    assert escape("a ≤ b") == r"a $\le$ b"


def test_to_tex_writes_sorted_newcommands_and_refuses_bad_names():
    tex = to_tex({"zeta": "1", "alpha": "not run"}, "header line")
    assert tex.splitlines() == ["% header line", r"\newcommand{\alpha}{not run}", r"\newcommand{\zeta}{1}"]
    with pytest.raises(ReportError, match="letters only"):
        to_tex({"bad1": "x"})


# ----------------------------------------------------------------------------------------- experiments
def test_e1_numbers_match_an_independent_computation():
    df = e1_table()
    out = report.e1_fidelity({"E1_fidelity": df})
    for est in ("sgd_ie", "acc_sgd_ie", "diffin_paper", "tracin"):
        rows = [r for _, r in df.iterrows() if r["estimator"] == est and r["epochs"] >= 2]
        assert out[f"spearman {est}"] == pytest.approx(sum(r["spearman"] for r in rows) / len(rows))
        assert out[f"runs {est}"] == len(rows) == 4
        assert out[f"negative {est}"] == sum(r["spearman"] < 0 for r in rows)
        assert out[f"min spearman {est}"] == min(r["spearman"] for r in rows)
    assert out["runs"] == 6 and out["runs multi"] == 4
    # ACC vs SGD-IE run by run
    a = df[(df.estimator == "acc_sgd_ie") & (df.epochs >= 2)].sort_values(["model", "epochs"])
    s = df[(df.estimator == "sgd_ie") & (df.epochs >= 2)].sort_values(["model", "epochs"])
    assert out["acc kendall wins"] == int((a.kendall.to_numpy() > s.kendall.to_numpy()).sum())
    assert out["acc rmse wins"] == int((a.rmse.to_numpy() < s.rmse.to_numpy()).sum())
    one_a = df[(df.estimator == "acc_sgd_ie") & (df.epochs == 1)].sort_values("model")
    one_s = df[(df.estimator == "sgd_ie") & (df.epochs == 1)].sort_values("model")
    gap = max(np.abs(one_a[c].to_numpy() - one_s[c].to_numpy()).max() for c in ("kendall", "spearman", "rmse"))
    assert out["one epoch max gap"] == pytest.approx(gap)
    assert out["paper anti"] == int(out["spearman diffin_paper"] < 0)
    # an estimator the table does not have was not run
    assert out["spearman diffin"] is None and fmt(out["spearman diffin"]) == NOT_RUN


def test_a_table_without_a_needed_column_is_a_clear_error():
    with pytest.raises(ReportError, match=r"E1_fidelity: no column 'spearman'"):
        report.e1_fidelity({"E1_fidelity": e1_table().drop(columns="spearman")})
    with pytest.raises(ReportError, match=r"E9_text: no column 'learned'"):
        report.e9_text({"E9_text": pd.DataFrame({"policy": ["lai"], "noise_rate": [0.4], "final_test_acc": [0.6]})})


def test_transformer_step_ratios_are_paired_by_round():
    rows = [{"model": "gpt", "policy": p, "rep": r, "step_time_s": t, "footprint_mb": 1.0}
            for r, times in enumerate(((1.0, 2.0, 4.0), (3.0, 3.0, 6.0), (1.0, 1.5, 1.0)))
            for p, t in zip(("vanilla", "lai", "ghost"), times, strict=True)]
    out = report.e6_transformer_cost({"transformer_cost": pd.DataFrame(rows)})
    assert out["gpt ratio lai"] == pytest.approx(np.median([2.0, 1.0, 1.5]))
    assert out["gpt lai over ghost"] == pytest.approx(np.median([0.5, 0.5, 1.5]))
    assert out["encoder ratio lai"] is None and out["gpt lai over ghost_flat"] is None


def test_claim_flags_and_counts_follow_the_verdicts():
    claims = pd.DataFrame({"id": ["A-1", "A-2", "B-1", "B-2"], "paper": "p", "claim": "c", "experiment": "E1",
                           "metric": "m", "criterion": "k", "measured": "run a/b=c",
                           "verdict": ["reproduced", "not reproduced", "partly", "not run"]})
    out = report.claim_numbers(claims, ids=["A-1", "C-9"])
    assert (out["okAi"], out["failedAi"], out["judgedAi"]) == ("1", "0", "1")
    assert (out["okAii"], out["failedAii"], out["judgedAii"]) == ("0", "1", "1")
    assert (out["okBi"], out["judgedBi"], out["judgedBii"]) == ("0", "1", "0")
    assert out["verdictCix"] == NOT_RUN and out["okCix"] == "0"  # in claims.yaml, not in the table
    assert out["claimsN"] == "4" and out["claimsReproduced"] == "1" and out["claimsInvalidRun"] == "0"
    assert out["measuredAi"] == r"run a/\allowbreak{}b=\allowbreak{}c"


# -------------------------------------------------------------------------------------------- the file
def test_every_macro_is_defined_whether_or_not_the_experiments_ran(tmp_path):
    empty = numbers(tmp_path / "none", SMOKE)
    res = tmp_path / "some" / "metrics"
    res.mkdir(parents=True)
    e1_table().to_csv(res / "E1_fidelity.csv", index=False)
    some = numbers(tmp_path / "some", SMOKE)
    assert set(empty) == set(some)
    assert empty["ranEi"] == "0" and some["ranEi"] == "1"
    assert empty["EiSpearmanSgdIe"] == NOT_RUN and some["EiSpearmanSgdIe"] != NOT_RUN
    for e in report.EXPERIMENTS:
        assert empty[macro_name("ran", e.prefix)] == "0"
    flags = {"EiPaperAnti", *(k for k in empty if k.startswith("EiHas"))}  # 0 / 1, read by \ifflag: 0 when not run
    assert all(v == NOT_RUN for k, v in empty.items() if k.startswith(("Ei", "Ev", "Ex")) and k not in flags)
    assert all(empty[k] == "0" for k in flags)


def test_a_registered_experiment_adds_its_macros(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "EXPERIMENTS", list(report.EXPERIMENTS))

    @report.experiment("E11", "metrics/E11_new.csv")
    def e11(t):
        return {"spearman acc": report._mean(t["E11_new"], "spearman", "E11_new", {"estimator": "acc"})}

    (tmp_path / "metrics").mkdir()
    pd.DataFrame({"estimator": ["acc", "acc"], "spearman": [0.5, 0.7]}).to_csv(tmp_path / "metrics" /
                                                                              "E11_new.csv", index=False)
    out = numbers(tmp_path, SMOKE)
    assert out["ExiSpearmanAcc"] == "0.6" and out["ranExi"] == "1"
    with pytest.raises(ReportError, match="registered twice"):
        report.experiment("E11", "metrics/other.csv")(e11)


def test_e10_numbers_are_the_per_target_means_at_the_smallest_epoch_count():
    rows = []
    for ep in (3, 10):
        for seed in (0, 1):
            for est, v in (("acc_sgd_ie", 0.7), ("dattri_dvemb", 0.6), ("dvemb", 0.75)):
                rows.append({"epochs": ep, "seed": seed, "removal": "all_epoch", "estimator": est, "form": "points",
                             "spearman_per_target": v + 0.01 * seed + ep / 100, "spearman": 0.9, "n_train": 50,
                             "n_points": 10, "n_target": 5, "hidden": "8", "target_accuracy": 0.5})
    rows.append({"epochs": 3, "removal": "all_epoch", "estimator": "dvemb_published", "form": "points",
                 "spearman_per_target": 0.736})
    df = pd.DataFrame(rows)
    out = report.e10_dvemb({"E10_dvemb": df, "E10_lds": None})
    sel = df[(df.epochs == 3) & (df.estimator == "acc_sgd_ie")]["spearman_per_target"]
    assert out["epochs"] == 3 and out["acc all_epoch"] == pytest.approx(sel.mean())
    assert out["published all_epoch"] == 0.736 and out["seeds"] == 2
    assert out["acc vs dattri all_epoch"] == "higher" and out["acc vs dvemb all_epoch"] == "lower"
    assert out["acc single_epoch"] is None and out["lds traj sgd"] is None
    assert set(out) == set(report.e10_dvemb({"E10_dvemb": None, "E10_lds": None}))


def test_setup_numbers_come_from_the_configuration():
    out = report.setup_numbers(SMOKE)
    assert out["cfgName"] == "smoke"
    assert out["cfgEiSizes"] == "bc 60/40/60"
    assert out["cfgOnCuration"] == "0" and out["cfgEiiiDatasets"] == NOT_RUN
    assert out["cfgOnFidelity"] == "1"
    assert out["cfgDiffinPaperM"] == "5" and out["cfgDiffinPaperProxyBatch"] == "128"
    cfg = merge(SMOKE, {"estimators": {"diffin_paper": {"hparams": {"m": 3}}}})
    assert report.setup_numbers(cfg)["cfgDiffinPaperM"] == "3"


def test_numbers_file_is_the_same_for_the_same_results(tmp_path):
    (tmp_path / "metrics").mkdir()
    e1_table().to_csv(tmp_path / "metrics" / "E1_fidelity.csv", index=False)
    a, b = tmp_path / "a.tex", tmp_path / "b.tex"
    write_numbers(tmp_path, a, SMOKE)
    write_numbers(tmp_path, b, SMOKE)
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_text().splitlines()
    assert all(re.fullmatch(r"\\newcommand\{\\[A-Za-z]+\}\{.*\}", ln) for ln in lines if not ln.startswith("%"))
