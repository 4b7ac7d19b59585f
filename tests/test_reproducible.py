"""Reproducible results: two clean smoke runs give byte-identical files, except the ones that record how a
run went (logs, benchmarks, provenance sidecars, the executed notebooks) rather than what it computed.

Excluded, and why:

* ``logs/``, ``benchmarks/``: job logs and Snakemake's timing tables.
* ``notebooks/*.ipynb``: the executed notebooks are the notebook rules' *logs* (``log: notebook=``): cell
  timestamps, kernel metadata and the pickled job with its absolute paths. The figures and tables they write
  are compared. Their HTML copies (``notebooks/*.html``, rule ``notebook_html``) likewise: the generated prose
  states the run's per-step times.
* Provenance sidecars: ``scores/**/*.json`` (estimator timing, memory, versions), ``runs/**/summary.json``
  (training timing) and ``loo/**/*.npz.json`` (LOO timing, memory, versions).
* E6 (``metrics/E6_cost.csv``, ``tables/E6_cost.*``, ``figures/E6_cost.*``): the cost experiment's results
  *are* timings.
* ``report/paper.pdf`` where TeX is installed: latexmk's PDF carries TeX's own dates (the library does not
  write it).

Compared without their measurements (keys / columns naming a time, a wall clock or a resident set size):
the E8 / E9 run records and tables (``lm/``, ``text/``, ``metrics/E8_*``, ``metrics/E9_*``, ``tables/E8_*.csv``,
``tables/E9_*.csv``), which keep each run's per-step time and memory beside what it computed; their LaTeX
twins ``tables/E8_*.tex`` / ``tables/E9_*.tex`` are left out (the same numbers as the CSVs, formatted).

The claims report's "generated <date>" line is the same within a day; a run pair straddling midnight would
differ there, so that line is compared without its date.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import test_workflow
from test_workflow import SMOKE, SNAKEMAKE, snakemake

from replication import plotting

smoke_run = test_workflow.smoke_run  # the first of the two runs: test_workflow's module fixture

RUN_RECORDS = (
    "logs/**",
    "benchmarks/**",
    "notebooks/*.ipynb",
    "notebooks/*.html",
    "scores/**/*.json",
    "runs/**/summary.json",
    "loo/**/*.npz.json",
    "metrics/E6_cost.csv",
    "tables/E6_cost.*",
    "figures/E6_cost.*",
    "report/paper.pdf",
    "tables/E8_*.tex",
    "tables/E9_*.tex",
    "tables/E10_dvemb.tex",
)
# results that carry measurements beside what they computed: compared with those removed
MEASURED = ("lm/**.json", "text/**.json", "dvemb/**.json", "sec71/**.csv", "cg_pruning/**.json", "metrics/E8_*.csv",
            "metrics/E9_*.csv", "metrics/E10_*.csv", "metrics/E11_*.csv", "tables/E8_*.csv", "tables/E9_*.csv",
            "tables/E10_*.csv")
_TIMING = re.compile(r"time|wall|rss|cpu_s|seconds")
_GENERATED = re.compile(rb"generated \d{4}-\d{2}-\d{2}")


def _without_measurements(rel: Path, data: bytes) -> bytes:
    """JSON without the keys, CSV without the columns, that name a time, a wall clock or an RSS."""
    if not any(fnmatch.fnmatchcase(rel.as_posix(), pat) for pat in MEASURED):
        return data
    if rel.suffix == ".json":
        def strip(o):
            if isinstance(o, dict):
                return {k: strip(v) for k, v in o.items() if not _TIMING.search(k)}
            return [strip(v) for v in o] if isinstance(o, list) else o

        return json.dumps(strip(json.loads(data)), sort_keys=True).encode()
    import pandas as pd

    df = pd.read_csv(io.BytesIO(data))
    return df[[c for c in df.columns if not _TIMING.search(c)]].to_csv(index=False).encode()


def _excluded(rel: Path) -> bool:
    """Whether a path relative to the results folder is a run record (``*`` also matches ``/`` here)."""
    return any(fnmatch.fnmatchcase(rel.as_posix(), pat) for pat in RUN_RECORDS)


def _digests(results: Path) -> dict[str, str]:
    """sha256 of every result file (relative path → digest), the claims' date normalised."""
    out = {}
    for p in sorted(results.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.parent.name == "report":
                data = _GENERATED.sub(b"generated <date>", data)
            data = _without_measurements(p.relative_to(results), data)
            out[str(p.relative_to(results))] = hashlib.sha256(data).hexdigest()
    return out


def test_excluded_patterns_are_the_run_records_only():
    for rel in ("logs/train/x.log", "benchmarks/loo/a/shard0.tsv", "notebooks/E1_fidelity.ipynb",
                "scores/bc/c/m/ep2/seed0/sgd_ie.json", "runs/bc/c/m/ep2/seed0/summary.json",
                "loo/bc/c/m/ep2/seed0/loo.npz.json", "loo/bc/c/m/ep2/seed0/shard0.npz.json",
                "metrics/E6_cost.csv", "figures/E6_cost.pdf"):
        assert _excluded(Path(rel)), rel
    for rel in ("loo/bc/c/m/ep2/seed0/loo.npz", "loo/bc/c/m/ep2/seed0/shard0.npz", "runs/bc/c/m/ep2/seed0/run.pt",
                "runs/bc/c/m/ep2/seed0/run.pt.json", "scores/bc/c/m/ep2/seed0/sgd_ie.npy",
                "metrics/E1_fidelity.csv", "metrics/fidelity/bc/c/m/ep2/seed0.csv", "figures/E1_agreement.pdf",
                "tables/E1_fidelity.tex", "report/claims.md", "report/build/report.tex", "report/build/paths.tex",
                "data/bc/seed0/train.npz"):
        assert not _excluded(Path(rel)), rel


def test_figures_are_reproducible(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    files = {}
    for i, epoch in enumerate(("1000000000", "1700000000")):  # matplotlib would stamp this date into the PDF
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        out = {f"F_{x}": str(tmp_path / str(i) / f"F.{x}") for x in ("pdf", "png")}
        plotting.placeholder(out, "F", "not run")
        files[i] = {x: Path(out[f"F_{x}"]).read_bytes() for x in ("pdf", "png")}
    assert files[0] == files[1]
    assert b"CreationDate" not in files[0]["pdf"]


@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
def test_two_clean_smoke_runs_give_identical_result_files(smoke_run, tmp_path):
    res = snakemake(tmp_path, "--configfile", str(SMOKE), "--cores", "2", "--quiet", "rules", timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    first, second = _digests(smoke_run / "results"), _digests(tmp_path / "results")
    assert sorted(first) == sorted(second), set(first) ^ set(second)
    compared = [k for k in first if not _excluded(Path(k))]
    differ = [k for k in compared if first[k] != second[k]]
    assert not differ, differ
    # what must be compared is compared: ground truth, runs, scores, tables, figures
    for must in ("loo/bc/sym20/logreg/ep2/seed0/loo.npz", "loo/bc/sym20/logreg/ep2/seed0/shard0.npz",
                 "runs/bc/sym20/logreg/ep2/seed0/run.pt", "metrics/E1_fidelity.csv", "figures/E1_agreement.pdf"):
        assert must in compared, must
    assert len(compared) >= 40, len(compared)
    # the timings moved to the sidecars
    loo = smoke_run / "results" / "loo" / "bc" / "sym20" / "logreg" / "ep2" / "seed0"
    for name in ("loo.npz.json", "shard0.npz.json"):
        rec = json.loads((loo / name).read_text())
        assert rec["wall_s"] > 0 and rec["peak_rss_mb"] > 0 and "torch" in rec["env"], name
