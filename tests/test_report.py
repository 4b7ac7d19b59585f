"""The report's numbers (replication.report): macro names, formatting, per-experiment values checked against an
independent computation, "not run" for what did not run, clear errors for a table without a needed column."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_paper import DEFAULT, REPO, claims_table, merge, needs_tex

from replication import report
from replication.report import NOT_RUN, ReportError, TeX, escape, fmt, macro_name, numbers, to_tex, write_numbers

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
    assert escape("a ≤ b") == r"a \ensuremath{\leq} b"


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
    claims = pd.DataFrame({"id": ["A-1", "A-2", "B-1", "B-2", "B-3"], "paper": "p", "claim": "c", "experiment": "E1",
                           "metric": "m", "criterion": "k", "measured": "run a/b=c",
                           "paper_value": ["0.96 vs 0.90", "", "", "", ""],
                           "effect": "Kendall τ(A) − Kendall τ(B), paired by seed",
                           "ours": ["+0.012 [−0.004, +0.028]", "0.83× [0.80×, 0.86×]", "", "", ""],
                           "diagnosis": "IQR 0.694–0.734", "settings": "3 reproduced, 1 inconclusive of 4",
                           "verdict": ["reproduced", "refuted", "partly", "not run", "inconclusive"]})
    out = report.claim_numbers(claims, ids=["A-1", "C-9"])
    assert (out["okAi"], out["refutedAi"], out["judgedAi"]) == ("1", "0", "1")
    assert (out["okAii"], out["refutedAii"], out["judgedAii"]) == ("0", "1", "1")
    assert (out["okBi"], out["judgedBi"], out["judgedBii"]) == ("0", "1", "0")
    assert (out["inconclusiveBiii"], out["judgedBiii"], out["inconclusiveAi"]) == ("1", "1", "0")
    assert out["verdictCix"] == NOT_RUN and out["okCix"] == "0" and out["oursCix"] == NOT_RUN  # not in the table
    assert out["claimsN"] == "5" and out["claimsReproduced"] == "1" and out["claimsInvalidRun"] == "0"
    assert (out["claimsRefuted"], out["claimsInconclusive"], out["claimsPartly"], out["claimsNotRun"]) == \
        ("1", "1", "1", "1")
    assert out["measuredAi"] == r"run a/\allowbreak{}b=\allowbreak{}c"
    assert out["oursAi"] == r"+0.012 {[}\ensuremath{-}0.004, +0.028{]}"
    assert out["oursAii"] == r"0.83\ensuremath{\times} {[}0.80\ensuremath{\times}, 0.86\ensuremath{\times}{]}"
    assert out["diagnosisAi"] == "IQR 0.694--0.734"  # the en dash kept
    assert out["paperValueAi"] == "0.96 vs 0.90" and out["paperValueAii"] == "none published"
    assert out["oursBi"] == "no interval"
    assert out["effectAi"] == (r"Kendall \ensuremath{\tau}(A) \ensuremath{-} Kendall \ensuremath{\tau}(B), "
                               "paired by seed")
    # a table of the claims engine before its new columns still gives every macro (read as empty)
    old = claims.drop(columns=["paper_value", "effect", "ours", "diagnosis", "settings"])
    assert set(report.claim_numbers(old)) == set(report.claim_numbers(claims))


# ---------------------------------------------------------------------------------------- the escaper
GENERATED = ("IQR 0.694–0.734", "+0.012 [−0.004, +0.028]", "0.83× [0.80×, 0.86×]", "τ ≥ 0.8, ρ ≈ 1, ℓ → 0",
             "a — b", "Kendall τ(ACC-SGD-IE) − Kendall τ(SGD-IE)", "Δθ ≤ ε · ‖g‖, α ± σ", "R² = 0.9, x₁ … x₉",
             "Pearson ≠ 0; 1e−5 ≪ η", "café, naïve, Erdős, Gauß, Łukasz", "50 % & $5 # x_y {z} ~ ^ \\",
             "a--b <<c>> ''d''",
             "☃ 🙂 \x07 \u0301")


@pytest.mark.parametrize("text", GENERATED)
def test_escape_gives_ascii_tex_and_drops_no_character(text):
    tex = escape(text)
    tex.encode("ascii")  # plain pdflatex input
    for ch in text:
        assert escape(ch), repr(ch)  # every character becomes something
    assert "[" not in tex.replace("{[}", "") and "]" not in tex.replace("{]}", "")  # never an optional argument


@given(st.text(max_size=20))
def test_escape_of_any_text_is_ascii_and_keeps_every_character(text):
    tex = escape(text)
    tex.encode("ascii")
    assert all(escape(ch) for ch in text)


def test_escape_writes_the_characters_of_generated_strings_as_tex():
    assert escape("IQR 0.694–0.734") == "IQR 0.694--0.734"  # was dropped by NFKD: "0.6940.734"
    assert escape("−0.5") == r"\ensuremath{-}0.5" and escape("a—b") == "a---b"
    assert escape("×≥≈τρℓ→") == "".join(rf"\ensuremath{{{m}}}" for m in
                                        (r"\times", r"\geq", r"\approx", r"\tau", r"\rho", r"\ell", r"\rightarrow"))
    assert escape("é") == r"\'{e}" and escape("ï") == r'\"{\i}' and escape("ç") == r"\c{c}"
    assert escape("a--b") == "a-{}-b" and escape("''") == "'{}'"  # no TeX ligature made of two characters
    assert escape("☃") == "{[}U+2603{]}"  # unknown: visible, never dropped
    assert escape("x\ny") == "x y" and escape("\x07") == "{[}U+0007{]}"
    assert report.tex_unicode(r"\textbf{τ} & –") == r"\textbf{\ensuremath{\tau}} & --"  # TeX's own ASCII left alone


@needs_tex
def test_every_character_the_escaper_knows_renders_in_a_pdf(tmp_path):
    """A document with every character of the escaper's tables, the Greek alphabet, accented Latin letters and
    the generated strings compiles with the report's preamble, with no character missing from its fonts, and
    pdftotext reads the generated strings back."""
    import subprocess

    from test_paper import squeeze

    chars = [*report._TEXT_TEX, *report._MATH_TEX, *report._SUPER, *report._SUB,
             *(chr(c) for c in range(0x391, 0x3CA) if c != 0x3A2), *(chr(c) for c in range(0xC0, 0x180))]
    body = " ".join(escape(c) for c in chars) + "\n\n" + "\n\n".join(escape(t) for t in GENERATED)
    (tmp_path / "t.tex").write_text("\\documentclass{article}\\usepackage{lmodern}\\usepackage[T1]{fontenc}"
                                    "\\usepackage[utf8]{inputenc}\\usepackage{amsmath,amssymb}\\tracinglostchars=3"
                                    "\\begin{document}\n"
                                    + body + "\n\\end{document}\n")
    proc = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True)
    log = (tmp_path / "t.log").read_text(errors="replace")
    assert proc.returncode == 0, [ln for ln in log.splitlines() if ln.startswith("!")]
    assert "Missing character" not in log
    text = squeeze(subprocess.run(["pdftotext", str(tmp_path / "t.pdf"), "-"], capture_output=True, text=True,
                                  check=True).stdout)
    for t in GENERATED[:6]:
        assert squeeze(t) in text, t


# ----------------------------------------------------------------------------------------- the tables
def test_claims_markdown_is_the_one_minute_table_then_the_details():
    table = claims_table()
    md = report.claims_markdown(table)
    glance, details = md.split(report.DETAILS_MARK)
    lines = glance.strip().splitlines()
    assert lines[0] == "| id | protocol | claim | paper's number | ours (95 % CI) | verdict | diagnosis |"
    rows = [ln for ln in lines[2:] if ln.startswith("| ")]
    assert len(rows) == len(table)
    for row, (_, r) in zip(rows, table.iterrows(), strict=True):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert cells[0] == r["id"] and cells[1] == r["protocol"] and cells[2] == report.short_claim(r["claim"])
        assert cells[3] == (r["paper_value"] or "—") and cells[4] == (r["ours"] or "—")
        assert cells[5] == f"**{r['verdict']}**" and cells[6] == r["diagnosis"].replace("|", "\\|")
    assert "Verdicts: *reproduced*" in glance and "*inconclusive*" in glance
    assert "| id | what ours measures | criterion | per setting | measured |" in details
    for _, r in table.iterrows():
        assert r["measured"] in details and r["settings"] in details
    assert report.DETAILS_MARK not in report.claims_markdown(table, details=False)


def test_short_claim_is_the_first_sentence_cut_at_a_word():
    assert report.short_claim("One. Two.") == "One."
    assert report.short_claim("Pruning keeps accuracy -- judged on ours.") == "Pruning keeps accuracy"
    long = "word " * 40
    assert report.short_claim(long, 30).endswith("…") and len(report.short_claim(long, 30)) <= 31


def test_claims_latex_has_a_row_per_claim_in_ascii_tex():
    table = claims_table()
    for tex, n_cols in ((report.claims_latex(table), 7), (report.claims_detail_latex(table), 5)):
        tex.encode("ascii")
        assert tex.startswith(r"\begin{longtable}") and tex.rstrip().endswith(r"\end{longtable}")
        rows = [ln for ln in tex.splitlines() if ln.endswith(r"\\ \addlinespace[2pt]")]
        assert len(rows) == len(table)
        assert all(ln.count(" & ") == n_cols - 1 for ln in rows)
    glance = report.claims_latex(table)
    assert r"\textbf{refuted}" in glance and "0.80--0.85" in glance and r"\ensuremath{-}0.004" in glance


def _pair_table(verdict_a: str, verdict_b: str) -> pd.DataFrame:
    base = {"paper": "P", "claim": "Method beats baseline. More.", "ours": "+0.1 [0.0, 0.2]"}
    return pd.DataFrame([
        {**base, "id": "C-1", "protocol": "ours", "verdict": verdict_a, "counterpart": "", "difference": ""},
        {**base, "id": "C-1-authors", "protocol": "authors", "verdict": verdict_b, "counterpart": "C-1",
         "difference": "their model did not learn"},
        {**base, "id": "C-2", "protocol": "check", "verdict": "reproduced", "counterpart": "", "difference": ""},
    ])


def test_protocol_pairs_put_each_claim_in_both_protocols_side_by_side():
    pairs = report.protocol_pairs(_pair_table("refuted", "reproduced"))
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert row["authors"] == "C-1-authors: reproduced; +0.1 [0.0, 0.2]" and row["ours"].startswith("C-1: refuted")
    assert row["difference"] == "their model did not learn" and row["claim"] == "Method beats baseline."
    same = report.protocol_pairs(_pair_table("reproduced", "reproduced")).iloc[0]
    assert same["difference"] == "same verdict. their model did not learn"
    # found from the ground-truth side too, once; a counterpart absent from the table says so
    t = _pair_table("refuted", "refuted")
    t.loc[0, "counterpart"] = "C-1-authors"
    assert len(report.protocol_pairs(t)) == 1
    lone = t[t["id"] != "C-1"]
    assert report.protocol_pairs(lone).iloc[0]["ours"] == "C-1: not in this table"
    md = report.protocols_markdown(_pair_table("refuted", "reproduced"))
    assert md.splitlines()[0] == ("| paper | claim | in the authors' protocol | against ground truth (ours) | "
                                  "what explains the difference |")
    tex = report.protocols_latex(_pair_table("refuted", "reproduced"))
    tex.encode("ascii")
    assert tex.count(r"\\ \addlinespace[2pt]") == 1
    # the claim as the main row states it (CG-2 for its supplementary CG-2-global)
    t = _pair_table("refuted", "reproduced")
    t["id"] = ["C-1-global", "C-1", "C-2"]
    t["counterpart"] = ["C-1", "C-1-global", ""]
    t["claim"] = ["Supplementary: ours.", "The main claim.", "c"]
    assert report.protocol_pairs(t).iloc[0]["claim"] == "The main claim."
    assert report.protocols_markdown(_pair_table("x", "y").iloc[[2]]) == ""
    assert "No claim" in report.protocols_latex(_pair_table("x", "y").iloc[[2]])


def test_notebook_claims_show_the_one_minute_table_of_the_notebooks_claims(monkeypatch):
    import replication.claims

    seen = {}

    def fake(claims, tables=None, **kw):
        seen["claims"] = {c["id"]: c for c in claims}
        return claims_table().set_index("id").loc[[c["id"] for c in claims]].reset_index()

    monkeypatch.setattr(replication.claims, "evaluate_claims", fake)
    claims = [{"id": "LAI-1", "test": {"kind": "threshold", "table": "E3_curation"}},
              {"id": "LAI-3", "test": {"kind": "all", "tests": [{"kind": "compare", "table": "E9_text"},
                                                                 {"kind": "compare", "table": "E8_lm"}]}},
              {"id": "ACC-1", "test": {"kind": "checks"}}]
    md = report.notebook_claims(["LAI-1", "LAI-3", "ACC-1"], claims, {"E3_curation": None, "E9_text": None})
    assert set(seen["claims"]) == {"LAI-1", "LAI-3"}
    assert [t["table"] for t in seen["claims"]["LAI-3"]["test"]["tests"]] == ["E9_text"]  # its part on these tables
    assert "| id | protocol | claim | paper's number | ours (95 % CI) | verdict | diagnosis |" in md
    for cid in ("LAI-1", "LAI-3"):
        r = claims_table().set_index("id").loc[cid]
        assert f"| {cid} |" in md and f"**{r['verdict']}**" in md and r["diagnosis"] in md
    assert "the part on E8_lm is judged in the notebook that reads it" in md
    assert "Measured elsewhere (no table of this notebook carries them): ACC-1." in md
    assert "No claim" in report.notebook_claims([], claims, {})


# ------------------------------------------------------------------------------------- the README snapshot
def test_readme_claims_writes_a_short_summary_between_the_markers(tmp_path):
    """`make readme-claims`: the README gets the claims table's first line and its claims per paper and verdict."""
    import subprocess
    import sys

    md = "Claims table generated 2030-01-01 from the `smoke` configuration (1 refuted).\n\n" + \
        report.claims_markdown(claims_table())
    readme = f"# title\n\nintro\n{report.README_START}\nold | table | not reproduced\n{report.README_END}\n\n## Data\n"
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "claims.md").write_text(md)
    script = REPO / "experiments" / "scripts" / "readme_claims.py"
    subprocess.run([sys.executable, str(script), "--claims", str(tmp_path / "claims.md"), "--readme",
                    str(tmp_path / "README.md")], check=True, capture_output=True)
    new = (tmp_path / "README.md").read_text()
    assert new.startswith("# title\n\nintro\n" + report.README_START + "\nClaims table generated 2030-01-01")
    assert new.endswith(report.README_END + "\n\n## Data\n") and "not reproduced" not in new
    section = new.split(report.README_START)[1].split(report.README_END)[0]
    lines = [ln.strip("|").split(" | ") for ln in section.strip().splitlines() if ln.startswith("| ")]
    header, body = [c.strip() for c in lines[0]], lines[1:]
    placed = {cid: header[i] for row in body for i, cell in enumerate(row) if i
              for cid in cell.strip().split(", ") if cid != "—"}
    assert placed == {r["id"]: r["verdict"] for _, r in claims_table().iterrows()}  # every claim once, its verdict
    assert "what ours measures" not in section and len(section.splitlines()) <= 12
    again = subprocess.run([sys.executable, str(script), "--claims", str(tmp_path / "claims.md"), "--readme",
                            str(tmp_path / "README.md")], capture_output=True, text=True)
    assert again.returncode == 0 and (tmp_path / "README.md").read_text() == new  # idempotent
    absent = subprocess.run([sys.executable, str(script), "--claims", str(tmp_path / "none.md"), "--readme",
                             str(tmp_path / "README.md")], capture_output=True, text=True)
    assert absent.returncode == 1 and "run the workflow first" in absent.stderr
    bad = subprocess.run([sys.executable, str(script), "--claims", str(tmp_path / "README.md"), "--readme",
                          str(tmp_path / "README.md")], capture_output=True, text=True)
    assert bad.returncode != 0 and "not a claims table" in bad.stderr


def test_the_readme_holds_a_generated_claims_snapshot():
    text = (REPO / "README.md").read_text()
    assert text.count(report.README_START) == 1 and text.count(report.README_END) == 1
    section = text.split(report.README_START)[1].split(report.README_END)[0]
    assert section.strip().startswith("Claims table generated ") and "| paper | " in section


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

    @report.experiment("E99", "metrics/E99_new.csv")
    def e99(t):
        return {"spearman acc": report._mean(t["E99_new"], "spearman", "E99_new", {"estimator": "acc"})}

    (tmp_path / "metrics").mkdir()
    pd.DataFrame({"estimator": ["acc", "acc"], "spearman": [0.5, 0.7]}).to_csv(tmp_path / "metrics" /
                                                                              "E99_new.csv", index=False)
    out = numbers(tmp_path, SMOKE)
    assert out["ExcixSpearmanAcc"] == "0.6" and out["ranExcix"] == "1"
    with pytest.raises(ReportError, match="registered twice"):
        report.experiment("E99", "metrics/other.csv")(e99)


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


def test_authors_protocol_numbers_are_paired_means_of_their_own_rows():
    """E11 / E12 / E9 macros of the authors' protocols against an explicit computation on small tables."""
    rng = np.random.default_rng(3)
    rows = []
    for model in ("dnn", "logreg", "dnn_learns"):
        for epochs in (2, 38):
            for seed in range(5):
                acc = rng.uniform(0.6, 0.9)
                for est in ("sgd_ie", "acc_sgd_ie_authors", "acc_sgd_ie"):
                    rows.append({"dataset": "adult", "noise": "clean", "model": model, "epochs": epochs, "seed": seed,
                                 "estimator": est, "kendall": rng.uniform(0, 1), "jaccard10": rng.uniform(0, 1),
                                 "test_accuracy": acc, "majority_rate": 0.75, "learned": acc > 0.77,
                                 "predicted_positive": 0.0 if model == "dnn" else 0.3})
    e11 = pd.DataFrame(rows)
    out = report.e11_sec71({"E11_sec71": e11})
    last = e11[(e11["model"] == "logreg") & (e11["epochs"] == 38)].set_index(["seed", "estimator"])["kendall"]
    gain = np.mean([last[(s, "acc_sgd_ie_authors")] - last[(s, "sgd_ie")] for s in range(5)])
    assert out["logreg kendall gain"] == pytest.approx(gain)
    assert out["dnn last one class"] == 5 and out["logreg last one class"] == 0
    dnn = e11[(e11["model"] == "dnn") & (e11["epochs"] == 2) & (e11["estimator"] == "sgd_ie")]
    assert out["dnn first learned"] == int(dnn["learned"].sum())

    rows = [{"dataset": "m", "model": "mlp", "method": "full", "keep_fraction": 1.0, "seed": s, "test_accuracy": 0.9,
             "majority_rate": 0.1} for s in range(3)]
    for s in range(3):
        for method, acc in (("cg_classwise_prune_low", 0.88 + 0.01 * s), ("random_classwise", 0.85)):
            rows.append({"dataset": "m", "model": "mlp", "method": method, "keep_fraction": 0.5, "seed": s,
                         "test_accuracy": acc, "majority_rate": 0.1})
    out = report.e12_cg_pruning({"E12_cg_pruning": pd.DataFrame(rows)})
    assert out["gain 50"] == pytest.approx(0.04) and out["full acc"] == pytest.approx(0.9)
    assert out["gain 70"] is None and out["fractions"] == "0.5"

    e9 = pd.DataFrame([{"dataset": d, "protocol": p, "policy": pol, "seed": s, "noise_rate": 0.4, "learned": True,
                        "final_test_acc": acc + 0.01 * s, "majority_acc": 0.3, "n_classes": c,
                        "noisy_dropped_fraction": 0.5, "clean_dropped_fraction": 0.4}
                       for d, p, c, base in (("rt", "e9", 2, 0.6), ("plays", "authors", 6, 0.2))
                       for pol, acc in (("vanilla", base), ("lai", base + 0.05)) for s in range(3)])
    out = report.e9_text({"E9_text": e9})
    assert out["acc lai"] == pytest.approx(0.66) and out["authors acc lai"] == pytest.approx(0.26)
    assert out["authors lai minus vanilla"] == pytest.approx(0.05) and out["authors classes"] == 6
