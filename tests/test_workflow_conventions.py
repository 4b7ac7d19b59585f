"""Conventions of the workflow's sources: the rule files are snakefmt-formatted, `snakemake --lint` finds nothing
(default config), and experiments/config/README.md is what experiments/scripts/config_readme.py makes of the schema.

Each checker is also run once on something that breaks its convention, so a check that could not fail shows up."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE, SNAKEFMT = BIN / "snakemake", BIN / "snakefmt"
SCHEMA = REPO / "experiments" / "config" / "schema.yaml"
README = REPO / "experiments" / "config" / "README.md"

needs_snakemake = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
needs_snakefmt = pytest.mark.skipif(not SNAKEFMT.exists(), reason="snakefmt is not installed in this environment")


def _load_config_readme():
    path = REPO / "experiments" / "scripts" / "config_readme.py"
    spec = importlib.util.spec_from_file_location("config_readme", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


config_readme = _load_config_readme()


# ------------------------------------------------------------------------------------------------ snakefmt
def snakefmt_check(*paths: Path) -> tuple[int, str]:
    res = subprocess.run([str(SNAKEFMT), "--check", *map(str, paths)], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    return res.returncode, res.stdout + res.stderr


@needs_snakefmt
def test_snakefile_and_rule_files_are_snakefmt_formatted():
    rc, out = snakefmt_check(REPO / "Snakefile", REPO / "experiments" / "rules")
    assert rc == 0, f"run `snakefmt Snakefile experiments/rules/`:\n{out[-4000:]}"


@needs_snakefmt
def test_snakefmt_check_fails_on_an_unformatted_rule_file(tmp_path):
    bad = tmp_path / "bad.smk"
    bad.write_text("rule a:\n    output: 'x'\n    shell: 'touch {output}'\n")
    rc, out = snakefmt_check(bad)
    assert rc != 0, out


# ------------------------------------------------------------------------------------------------ lint
def lint(snakefile: Path, workdir: Path) -> tuple[int, str]:
    """Exit status and output of `snakemake --lint`; the Snakefile loads its config (default.yaml) itself."""
    res = subprocess.run([str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir), "--lint"],
                         capture_output=True, text=True, timeout=300, cwd=workdir)
    return res.returncode, res.stdout + res.stderr


def lint_problems(rc: int, out: str) -> list[str]:
    """The lints Snakemake reports ("Lints for rule x", "Lints for snakefile y"), or why the lint did not finish."""
    found = re.findall(r"^Lints for .*$", out, flags=re.M)
    if rc != 0 and not found:
        found = [f"snakemake --lint exited {rc}: {out[-2000:]}"]
    if rc == 0 and not found and "your workflow is in a good condition" not in out:
        found = [f"snakemake --lint said neither lints nor a clean bill: {out[-2000:]}"]
    return found


@needs_snakemake
def test_lint_finds_no_problems_with_the_default_config(tmp_path):
    rc, out = lint(REPO / "Snakefile", tmp_path)
    problems = lint_problems(rc, out)
    assert not problems, "\n".join(problems) + "\n" + out[-6000:]


@needs_snakemake
def test_lint_problems_are_found_in_a_workflow_that_has_some(tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text('rule a:\n    output:\n        "x",\n    shell:\n        "touch {output}"\n')  # no log
    rc, out = lint(snakefile, tmp_path)
    assert rc != 0 and lint_problems(rc, out) == ["Lints for rule a (line 1, " + str(snakefile) + "):"], out


# ------------------------------------------------------------------------------------------------ config README
def schema_keys(node, found: set[str] | None = None) -> set[str]:
    """Every property name anywhere in the schema (its $defs included)."""
    found = set() if found is None else found
    if isinstance(node, dict):
        found.update(node.get("properties", {}) if isinstance(node.get("properties"), dict) else ())
        for value in node.values():
            schema_keys(value, found)
    elif isinstance(node, list):
        for value in node:
            schema_keys(value, found)
    return found


def test_config_readme_is_generated_from_the_current_schema():
    expected = config_readme.render(yaml.safe_load(SCHEMA.read_text()))
    assert README.read_text() == expected, "experiments/config/README.md is out of date: run `make config-readme`"


def test_config_readme_documents_every_key_of_the_schema():
    text = README.read_text()
    paths = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))
    last = {re.split(r"[.\[\]]+", p.rstrip("]"))[-1] for p in paths}
    missing = sorted(schema_keys(yaml.safe_load(SCHEMA.read_text())) - last)
    assert not missing, f"keys of schema.yaml missing from the README: {missing}"
    for path in ("base_seed", "data.<name>.source", "models.<name>.lr", "estimators.<name>.mem_mb",
                 "experiments.fidelity.grids[].seeds", "experiments.bounds.checks[].run.seed",
                 "experiments.online_cost.models.gpt.n_heads", "experiments.dvemb.variants.<name>.n_seeds",
                 "experiments.sec71.sizes.<name>.n_val", "experiments.lm.shapley.n_perm"):
        assert path in paths, path
    # every row has a description
    undescribed = re.findall(r"^\| `([^`]+)` \|.*\|  \|$", text, flags=re.M)
    assert not undescribed, f"keys without a description in schema.yaml: {undescribed}"


def test_config_readme_changes_with_the_schema():
    schema = yaml.safe_load(SCHEMA.read_text())
    schema["properties"]["loo"]["properties"]["new_key"] = {"type": "integer", "minimum": 3, "default": 4,
                                                             "description": "a key added after the README"}
    text = config_readme.render(schema)
    assert text != README.read_text()
    assert "| `loo.new_key` | integer | `4` | ≥ 3 | a key added after the README |" in text


# ------------------------------------------------------------------------------------------------ report
@pytest.mark.slow
@needs_snakemake
def test_workflow_report_builds_from_a_run(tmp_path):
    """`snakemake --report` (make workflow-report) reads a run's metadata into one HTML file; here for a tiny run."""
    target = "results/runs/bc/sym20/logreg/ep2/seed0/run.pt"  # the smoke config's recorded run: 3 jobs
    base = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(REPO / "experiments" / "config" / "smoke.yaml")]
    run = subprocess.run([*base, "--cores", "1", target], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    html = tmp_path / "results" / "report" / "workflow.html"
    html.parent.mkdir(parents=True, exist_ok=True)  # Snakemake does not make it (the Makefile target does)
    rep = subprocess.run([*base, "--report", str(html), target], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert rep.returncode == 0 and "Report created" in rep.stderr, rep.stderr[-4000:]
    text = html.read_text(errors="replace")
    assert "train_bc_sym20_logreg_ep2" in text and "prepare_data_bc" in text  # the run's (batched) jobs
