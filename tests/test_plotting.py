"""The notebooks' shared helpers: palette, table and figure output."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from replication import plotting


def _out(tmp_path, name, kinds=("csv", "tex")):
    return {f"{name}_{k}": str(tmp_path / f"{name}.{k}") for k in kinds}


def test_savetable_writes_csv_and_ascii_tex(tmp_path):
    df = pd.DataFrame({"bound": ["‖Δθ‖ ≤ η", "α −1", "κ"], "value": [1 / 3, np.nan, 2.0]})
    out = _out(tmp_path, "T")
    plotting.savetable(df, out, "T", "T: ε ≥ 0")
    assert (tmp_path / "T.csv").read_text() == "bound,value\n‖Δθ‖ ≤ η,0.333333\nα −1,\nκ,2\n"  # CSV keeps Unicode
    tex = (tmp_path / "T.tex").read_bytes()
    tex.decode("ascii")  # plain pdflatex input
    text = tex.decode()
    assert text.startswith("% T: \\ensuremath{\\varepsilon} \\ensuremath{\\geq} 0\n\\begin{tabular}")
    assert ("\\ensuremath{\\|}\\ensuremath{\\Delta}\\ensuremath{\\theta}\\ensuremath{\\|} \\ensuremath{\\leq} "
            "\\ensuremath{\\eta} & 0.333 \\\\") in text
    assert "\\ensuremath{\\alpha} \\ensuremath{-}1 & -- \\\\" in text  # a minus sign, not a hyphen
    assert "\n\\ensuremath{\\kappa} & 2 \\\\\n" in text  # every character kept (replication.report.tex_unicode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T.csv", "T.tex"]  # no temporary files left


def test_savetable_compact_tex_and_empty(tmp_path):
    df = pd.DataFrame({"a": [1.23456789, 2.0], "b": ["x_y", "z"]})
    out = _out(tmp_path, "T")
    plotting.savetable(df, out, "T", "cap", tex_df=df[["b"]])
    assert (tmp_path / "T.csv").read_text() == "a,b\n1.23457,x_y\n2,z\n"
    tex = (tmp_path / "T.tex").read_text()
    assert "x\\_y" in tex and "1.23" not in tex
    plotting.savetable(pd.DataFrame(), out, "T", "cap")
    assert (tmp_path / "T.tex").read_text() == "\\emph{cap: not run in this configuration.}\n"


def test_ascii_tex():
    assert plotting.ascii_tex("a ≤ b − c, α ± é") == (
        "a \\ensuremath{\\leq} b \\ensuremath{-} c, \\ensuremath{\\alpha} \\ensuremath{\\pm} \\'{e}")
    assert plotting.ascii_tex("IQR 0.69–0.73, ☃") == "IQR 0.69--0.73, {[}U+2603{]}"  # nothing dropped
    assert plotting.ascii_tex("plain & ascii\n") == "plain & ascii\n"


def test_files_get_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        out = {**_out(tmp_path, "T"), **_out(tmp_path, "F", ("pdf", "png"))}
        plotting.savetable(pd.DataFrame({"a": [1]}), out, "T", "cap")
        plotting.placeholder(out, "F", "not run")
    finally:
        os.umask(old)
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o640, p.name
    assert (tmp_path / "F.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "F.pdf").read_bytes()[:4] == b"%PDF"


def test_failed_write_leaves_no_file(tmp_path):
    class Broken(pd.DataFrame):
        def to_latex(self, *args, **kwargs):
            raise RuntimeError("boom")

    out = _out(tmp_path, "T")
    with pytest.raises(RuntimeError):
        plotting.savetable(pd.DataFrame({"a": [1]}), out, "T", "cap", tex_df=Broken({"a": [1]}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T.csv"]

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    savefig = fig.savefig

    def png_fails(f, format, **kwargs):
        savefig(f, format=format, **kwargs)  # some bytes reach the temporary file first
        if format == "png":
            raise OSError("disk full")

    fig.savefig = png_fails
    with pytest.raises(OSError):
        plotting.savefig(fig, _out(tmp_path, "F", ("pdf", "png")), "F")
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["F.pdf", "T.csv"]


def test_palette_covers_every_estimator_with_distinct_colours():
    from influence import estimators

    names = list(estimators.names())
    assert len(names) >= 18
    missing = [n for n in names if n not in plotting.PALETTE]
    assert missing == []
    extra = ["vanilla", "small_loss", "oracle", "random_removal", "trajectory_loo"]
    colours = [plotting.color(n) for n in names + extra]
    assert len(set(colours)) == len(colours)
    libraries = plotting.palette(["ours", "dattri", "captum", "kronfluence", "traker"])
    assert len(set(libraries.values())) == 5


def test_palette_is_stable():
    a = plotting.palette(["tracin", "lai", "some_new_method", "tracin"])
    b = plotting.palette(["some_new_method", "zzz", "lai"])
    assert list(a) == ["tracin", "lai", "some_new_method"]
    assert a["lai"] == b["lai"] and a["some_new_method"] == b["some_new_method"]
    assert plotting.color("sgd_ie") == "#0173b2"
    assert plotting.color("diffin_paper") != plotting.color("diffin")
    with pytest.raises(TypeError):
        plotting.PALETTE["lai"] = "#000000"
    # the fallback colour does not depend on the process (no salted hash())
    code = "from replication import plotting; print(plotting.color('some_new_method'))"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert got.strip() == a["some_new_method"]


def test_read(tmp_path):
    assert plotting.read(tmp_path / "missing.csv").empty
    assert plotting.read(None).empty and plotting.read([]).empty
    (tmp_path / "empty.csv").write_text("")
    assert plotting.read(tmp_path / "empty.csv").empty
    (tmp_path / "t.csv").write_text("a,b\n1,x\n")
    assert plotting.read(tmp_path / "t.csv").to_dict("records") == [{"a": 1, "b": "x"}]
    (tmp_path / "t.json").write_text(json.dumps([{"a": 1}, {"a": 2}]))
    assert plotting.read(tmp_path / "t.json")["a"].tolist() == [1, 2]


def test_module_is_torch_free():
    code = "import sys; import replication.plotting; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert got.split() == ["False", "False"]


def test_an_empty_table_writes_its_caption_escaped_for_tex(tmp_path):
    import pandas as pd

    from replication.plotting import savetable

    out = {"t_csv": tmp_path / "t.csv", "t_tex": tmp_path / "t.tex"}
    savetable(pd.DataFrame(), out, "t", "lds_mean_target: 50 % & more {x}")
    tex = (tmp_path / "t.tex").read_text()
    assert r"lds\_mean\_target: 50 \% \& more \{x\}" in tex and "not run" in tex
