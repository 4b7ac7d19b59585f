"""The notebooks read like a replication report: each opens with what it shows, how to read it and the claims it
tests, ends with the measured numbers in words (generated, never typed), runs when its experiment did not, is
exported to HTML readable offline (tests/test_notebook_html.py), and its figures carry captions in
``snakemake --report``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import test_workflow
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = yaml.safe_load((REPO / "experiments" / "notebooks.yaml").read_text())
CLAIMS = yaml.safe_load((REPO / "paper" / "claims.yaml").read_text())
CAPTIONS = REPO / "experiments" / "report" / "captions"
# a measured-looking number typed into a markdown cell: a decimal (0.96) or a percentage (40 %); allowed only in a
# sentence that cites the paper ("the paper reports Pearson 0.96 vs 0.90"), never for what this run measured
TYPED_NUMBER = re.compile(r"(?<![\w.])\d+\.\d+|\b\d+\s?%")
CITES_PAPER = re.compile(r"paper|published", re.I)


def cells(nb: str) -> list[dict]:
    return json.loads((REPO / "notebooks" / f"{nb}.ipynb").read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def reads(test: dict) -> set[str]:
    """The metric tables a claim's test reads (written again here, independently of the workflow's helper)."""
    if test["kind"] == "all":
        return set().union(*(reads(t) for t in test["tests"]))
    if test["kind"] == "checks":
        return {test.get("table", "E5_bounds")}
    return {test["table"]} if "table" in test else set()


def claims_of(nb: str) -> set[str]:
    """Claims whose test reads one of the notebook's tables, or whose experiment field names the notebook."""
    tables = {Path(p).stem for p in NOTEBOOKS[nb]["inputs"].values()}
    exp = nb.split("_")[0]
    return {c["id"] for c in CLAIMS
            if reads(c["test"]) & tables or exp in [e.strip() for e in str(c["experiment"]).split(",")]}


def named_claims(text: str) -> set[str]:
    return {c["id"] for c in CLAIMS if re.search(rf"(?<![\w-]){re.escape(c['id'])}(?![\w-])", text)}


# ------------------------------------------------------------------------------------------------ static
@pytest.mark.parametrize("nb", sorted(NOTEBOOKS))
def test_notebook_opens_with_what_it_shows_how_to_read_it_and_its_claims(nb):
    first = cells(nb)[0]
    assert first["cell_type"] == "markdown", nb
    text = source(first)
    assert "**What it shows.**" in text and "**How to read" in text, nb
    # the claims paragraph names exactly the claims of paper/claims.yaml that read this notebook's tables
    para = re.search(r"\*\*Claims tested\*\*(.*?)(\n\n|$)", text, re.S)
    assert para, f"{nb}: no '**Claims tested**' paragraph"
    assert named_claims(para.group(1)) == claims_of(nb), nb
    # every figure and table it writes is explained: by name in a markdown cell, or by the markdown section (after
    # the opening cell) that the cell drawing it belongs to
    cs = cells(nb)
    markdown = "\n".join(source(c) for c in cs if c["cell_type"] == "markdown")
    for name in NOTEBOOKS[nb]["figures"] + NOTEBOOKS[nb]["tables"]:
        drawn = [i for i, c in enumerate(cs) if c["cell_type"] == "code" and f'"{name}"' in source(c)]
        assert drawn, (nb, name, "no cell writes it")
        in_section = any(c["cell_type"] == "markdown" for c in cs[1:drawn[0]])
        assert name in markdown or in_section, (nb, name)


def typed_numbers(text: str) -> list[str]:
    """Decimals and percentages of the text outside sentences that cite the paper."""
    sentences = re.split(r"(?<=[.;])\s+(?=[A-Z*(])|\n\n", text)
    return [m for s in sentences if not CITES_PAPER.search(s) for m in TYPED_NUMBER.findall(s)]


@pytest.mark.parametrize("nb", sorted(NOTEBOOKS))
def test_notebook_types_no_measured_number_and_ends_with_generated_words(nb):
    cs = cells(nb)
    typed = [m for c in cs if c["cell_type"] == "markdown" for m in typed_numbers(source(c))]
    assert not typed, f"{nb}: numbers typed in markdown cells: {typed}"
    last = cs[-1]
    assert last["cell_type"] == "code" and "display(Markdown(" in source(last), nb
    assert not any(c.get("outputs") for c in cs if c["cell_type"] == "code"), f"{nb} is stored with outputs"


def test_every_figure_has_a_caption_and_every_caption_a_figure():
    figures = {f for spec in NOTEBOOKS.values() for f in spec["figures"]}
    captions = {p.stem for p in CAPTIONS.glob("*.rst")}
    assert captions - figures == set(), "captions of figures no notebook writes"
    assert figures - captions == set(), "figures without a caption (experiments/report/captions/<figure>.rst)"


@pytest.mark.parametrize("path", sorted(CAPTIONS.glob("*.rst")), ids=lambda p: p.stem)
def test_caption_renders_as_snakemake_renders_it(path):
    import jinja2
    from docutils.core import publish_parts

    nb = next(n for n, spec in NOTEBOOKS.items() if path.stem in spec["figures"])
    job = SimpleNamespace(params=SimpleNamespace(notebook=nb, claims=sorted(claims_of(nb))))
    rst = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(path.read_text()).render(snakemake=job)
    html = publish_parts(rst, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["body"]
    assert f"{nb}.html" in html and "<strong>" in html
    for cid in claims_of(nb):
        assert cid in html


# ------------------------------------------------------------------------- executed, with nothing to read
def run_notebook(nb: str, inputs: dict, outdir: Path, params: dict) -> dict:
    """Execute notebooks/<nb>.ipynb as the notebook directive does: a first cell defines ``snakemake``."""
    import nbformat
    from nbclient import NotebookClient

    outputs = {f"{f}_{x}": str(outdir / f"{f}.{x}") for f in NOTEBOOKS[nb]["figures"] for x in ("pdf", "png")}
    outputs |= {f"{t}_{x}": str(outdir / f"{t}.{x}") for t in NOTEBOOKS[nb]["tables"] for x in ("csv", "tex")}
    config = yaml.safe_load((REPO / "experiments" / "config" / "default.yaml").read_text())
    preamble = (
        "import types\n"
        "class _Files(dict):\n    __getattr__ = dict.__getitem__\n"
        f"snakemake = types.SimpleNamespace(input=_Files({inputs!r}), output=_Files({outputs!r}),\n"
        f"    params=types.SimpleNamespace(**{params!r}), config={config!r})\n"
    )
    book = nbformat.reads((REPO / "notebooks" / f"{nb}.ipynb").read_text(), as_version=4)
    book.cells.insert(0, nbformat.v4.new_code_cell(preamble))
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return {"book": book, "outputs": outputs}


def markdown_outputs(book) -> str:
    return "\n".join("".join(o["data"]["text/markdown"]) for c in book.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if "text/markdown" in o.get("data", {}))


@pytest.mark.slow
@pytest.mark.parametrize("nb", sorted(NOTEBOOKS))
def test_notebook_runs_on_an_experiment_that_did_not_run_and_says_so(nb, tmp_path):
    inputs = {k: str(tmp_path / "absent" / p) for k, p in NOTEBOOKS[nb]["inputs"].items()}
    inputs["claims_yaml"] = str(REPO / "paper" / "claims.yaml")
    res = run_notebook(nb, inputs, tmp_path, {"notebook": nb, "claims": sorted(claims_of(nb))})
    missing = [p for p in res["outputs"].values() if not Path(p).exists() or Path(p).stat().st_size == 0]
    assert not missing, missing
    words = markdown_outputs(res["book"])
    assert re.search(r"not run|no .* ran", words, re.I), words[-2000:]
    for cid in claims_of(nb):
        assert cid in words, (nb, cid)


# ------------------------------------------------------------------------------------- the smoke run's
smoke_run = test_workflow.smoke_run  # test_workflow's module fixture: one smoke run (about 30 jobs) for this module


def executed(root: Path, nb: str) -> str:
    """The markdown the executed notebook results/notebooks/<nb>.ipynb displayed (its generated words)."""
    book = json.loads((root / "results" / "notebooks" / f"{nb}.ipynb").read_text())
    return "\n".join("".join(o["data"]["text/markdown"]) for c in book["cells"] if c["cell_type"] == "code"
                     for o in c["outputs"] if "text/markdown" in o.get("data", {}))


@pytest.mark.slow
def test_smoke_notebooks_state_the_numbers_of_their_tables(smoke_run):
    m = smoke_run / "results" / "metrics"
    fid = pd.read_csv(m / "E1_fidelity.csv")
    words = executed(smoke_run, "E1_fidelity")
    for (_model, est), g in fid.groupby(["model", "estimator"]):
        sd = g["spearman"].std()
        assert f"`{est}` {g['spearman'].mean():.3f} ± {np.nan_to_num(sd):.3f}" in words, est
    det = pd.read_csv(m / "E2_detection.csv")
    words = executed(smoke_run, "E2_detection")
    for est, a in det.groupby("estimator")["auroc"].mean().items():
        assert f"`{est}` AUROC {a:.3f}" in words, est
    lm = pd.read_csv(m / "E8_lm.csv")
    words = executed(smoke_run, "E8_lm")
    for pol, g in lm.groupby("policy"):
        assert f"`{pol}` {g['final_val_loss'].mean():.3f}" in words, pol
    text = pd.read_csv(m / "E9_text.csv")
    words = executed(smoke_run, "E9_text")
    for (ds, pol), g in text[text["noise_rate"] > 0].groupby(["dataset", "policy"]):  # per data set (E9's protocol
        assert f"`{pol}` {g['final_test_acc'].mean():.3f}" in words, (ds, pol)      # and the authors')
    # smoke switches curation and deletion off: those notebooks say so
    for nb in ("E3_curation", "E4_deletion"):
        assert "not run in this configuration" in executed(smoke_run, nb), nb


@pytest.mark.slow
def test_smoke_notebooks_are_exported_to_html_with_their_figures_and_words(smoke_run):
    for nb in test_workflow.notebooks_run(test_workflow.SMOKE):
        html = (smoke_run / "results" / "notebooks" / f"{nb}.html").read_text()
        assert html.count('src="data:image/png;base64') >= len(NOTEBOOKS[nb]["figures"]), nb  # embedded figures
        assert "The measured numbers in words" in html or nb == "E5_bounds", nb
        assert "snakemake-job-properties" not in html and "pickle.loads" not in html, nb  # the preamble is left out
        # readable offline (tests/test_notebook_html.py opens one in a browser): maths already MathML, no script, no
        # CDN; the code folded
        assert "<script" not in html and "cdnjs" not in html and "$$" not in html, nb
        assert '<details class="nb-code">' in html, nb


@pytest.mark.slow
def test_snakemake_report_carries_the_figures_with_their_captions(smoke_run, tmp_path):
    import zipfile

    zipped = tmp_path / "r.zip"
    res = test_workflow.snakemake(smoke_run, "--configfile", str(test_workflow.SMOKE), "--report", str(zipped),
                                  timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    with zipfile.ZipFile(zipped) as z:
        names = z.namelist()
        blob = "\n".join(z.read(n).decode("utf-8", "replace") for n in names if n.endswith((".js", ".html", ".json")))
    for nb in test_workflow.notebooks_run(test_workflow.SMOKE):
        for f in NOTEBOOKS[nb]["figures"]:
            assert any(n.endswith(f"{f}.png") for n in names), f
            # the caption's bold title, up to its first non-ASCII character (the report may escape those)
            title = " ".join(re.search(r"\*\*(.+?)\*\*", (CAPTIONS / f"{f}.rst").read_text(), re.S).group(1).split())
            key = re.match(r"[ -~]+", title).group(0)
            assert len(key) >= 8 and key in blob, (f, key)
        assert any(n.endswith(f"{nb}.html") for n in names), nb


# ------------------------------------------------------------------------------ the helpers they import
def test_numbers_for_the_text_and_intervals_over_seeds():
    from scipy import stats

    from replication.notebook import sig, t_interval

    assert (sig(0.123456), sig(1234.5, 2), sig(3), sig(None), sig(float("nan"))) == ("0.123", "1.2e+03", "3", "n/a",
                                                                                       "n/a")
    mean, half = t_interval(pd.Series([1.0, 2.0, 3.0, np.nan]))  # non-finite values left out
    assert mean == 2.0 and half == pytest.approx(stats.t.ppf(0.975, 2) / np.sqrt(3))
    assert t_interval([5.0])[0] == 5.0 and np.isnan(t_interval([5.0])[1]) and np.isnan(t_interval([])[0])


def test_policy_palette_gives_every_policy_its_own_colour_and_the_clean_reference_grey():
    from replication.notebook import policy_palette
    from replication.plotting import palette

    names = ["vanilla_clean", "vanilla", "lai_self", "ghost_self", "ghost_flat_self", "lai", "ghost", "ghost_flat",
             "small_loss"]
    pal = policy_palette(names)
    assert list(pal) == names and pal["vanilla_clean"] == "#949494" and len(set(pal.values())) == len(names)
    assert pal["vanilla"] == palette(["vanilla"])["vanilla"]  # the first to have a colour keeps it


def test_show_and_the_claims_section(tmp_path, monkeypatch):
    from replication.notebook import claims_section, show
    from replication.plotting import placeholder

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    out = {"f_pdf": str(tmp_path / "f.pdf"), "f_png": str(tmp_path / "f.png")}
    placeholder(out, "f", "not run")
    show(out, "f")
    assert shown[0].data == Path(out["f_png"]).read_bytes()
    words = claims_section(["ACC-1"], {"bounds": str(tmp_path / "absent.csv"), "claims_yaml": str(REPO / "paper" /
                                                                                                   "claims.yaml")})
    assert "ACC-1" in words


def test_e5_sections_collect_each_sentence_for_the_summary(tmp_path, monkeypatch):
    from replication.bounds.notebook import Sections, verdict

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    out = {"E5_x_pdf": str(tmp_path / "x.pdf"), "E5_x_png": str(tmp_path / "x.png")}
    s = Sections([{"name": "a", "passed": True, "claims": ["ACC-1", "TRAJ-2"]}, {"name": "b", "passed": False}], out)
    assert s.rec("c") is None and verdict(s.rec("a")) == "**passes**" and verdict(s.rec("b")) == "**fails**"
    s.say("a", "A passes.", key="numbers of a")
    s.say("b", "B fails.", key="numbers of b")
    assert s.done == [("a", "ACC-1;TRAJ-2", True, "numbers of a"), ("b", "no claim", False, "numbers of b")]
    s.not_run("E5_x", "The check x")
    assert [m.data for m in shown] == ["A passes.", "B fails.", "*Not run in this configuration: The check x.*"]
    assert Path(out["E5_x_png"]).stat().st_size > 0 and len(s.done) == 2  # a placeholder figure, no summary line


def test_e5_reference_lines():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from replication.bounds.notebook import identity_line, int_ticks, powerline, ref_slope

    fig, ax = plt.subplots()
    identity_line(ax, -1.0, 2.0)
    ref_slope(ax, [1.0, 10.0], 2.0, 2, "slope 2")
    assert ax.lines[0].get_xydata().tolist() == [[-1.0, -1.0], [2.0, 2.0]] and ax.lines[0].get_label() == "$y = x$"
    assert ax.lines[1].get_ydata().tolist() == pytest.approx([2.0, 200.0]) and ax.texts[0].get_text() == "slope 2"
    ax.set_xscale("log")
    int_ticks(ax, [1.0, 2.0, 4.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"] and not ax.get_xticks(minor=True).size
    assert powerline([1.0, 2.0], {"log_c": np.log(3.0), "slope": 2.0}) == pytest.approx([3.0, 12.0])
    plt.close(fig)
