"""The Snakemake workflow: smoke run end to end, determinism, planning (default, paper, SLURM), lint, the config
schema, and the claims verdicts computed from hand-made metric tables."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from replication.claims import VERDICTS, evaluate_claims, load_claims

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CONFIGS = REPO / "experiments" / "config"
SMOKE = CONFIGS / "smoke.yaml"
# The notebooks with the figures and tables each writes: the workflow's one list of them.
NOTEBOOKS = yaml.safe_load((REPO / "experiments" / "notebooks.yaml").read_text())

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")


def snakemake(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def notebooks_run(config: Path) -> list[str]:
    """The notebooks a config runs: all but those tied to an experiment the config (laid over default) disables."""
    experiments = yaml.safe_load((CONFIGS / "default.yaml").read_text())["experiments"]
    for name, block in (yaml.safe_load(config.read_text()).get("experiments") or {}).items():
        experiments[name] = {**experiments.get(name, {}), **block}
    return [nb for nb, spec in NOTEBOOKS.items()
            if "experiment" not in spec or experiments[spec["experiment"]].get("enabled", True)]


def score_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "results" / "scores").rglob("*.npy"))}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One smoke run for the whole session (test_workflow, test_reproducible, test_notebooks and test_slurm share it;
    about 50 jobs, ~1 min on an idle 2-core machine)."""
    work = tmp_path_factory.mktemp("smoke")
    res = snakemake(work, "--configfile", str(SMOKE), "--cores", "2", "--quiet", "rules", timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    return work


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_smoke_workflow_produces_every_declared_output(smoke_run):
    res = smoke_run / "results"
    run = notebooks_run(SMOKE)
    assert "E1_fidelity" in run and "E7_peers" not in run  # smoke switches E7 off
    expected = [res / "figures" / f"{f}.{x}" for nb in run for f in NOTEBOOKS[nb]["figures"] for x in ("pdf", "png")]
    expected += [res / "tables" / f"{t}.{x}" for nb in run for t in NOTEBOOKS[nb]["tables"] for x in ("csv", "tex")]
    expected += [res / "report" / f"claims.{x}" for x in ("csv", "tex", "md")]
    expected += [res / "notebooks" / f"{nb}.ipynb" for nb in run]
    expected += [res / "report" / ("paper.pdf" if shutil.which("latexmk") else "paper_SKIPPED.txt")]
    missing = [str(p) for p in expected if not p.exists() or p.stat().st_size == 0]
    assert not missing, missing
    # nothing is left to do: every output is there and up to date
    dry = snakemake(smoke_run, "--configfile", str(SMOKE), "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    # no half-written temporary files were left behind
    assert not list(res.rglob("*.tmp"))


@pytest.mark.slow
def test_smoke_claims_table_is_computed_from_the_run(smoke_run):
    table = pd.read_csv(smoke_run / "results" / "report" / "claims.csv")
    claims = load_claims(REPO / "paper" / "claims.yaml")
    assert list(table["id"]) == [c["id"] for c in claims]
    assert set(table["verdict"]) <= set(VERDICTS)
    # the smoke run measures ACC-SGD-IE vs SGD-IE against LOO: that claim has a measured verdict
    acc2 = table.set_index("id").loc["ACC-2"]
    assert acc2["verdict"] != "not run" and "acc_sgd_ie:" in acc2["measured"] and acc2["ours"]
    fid = pd.read_csv(smoke_run / "results" / "metrics" / "E1_fidelity.csv")
    assert set(fid["estimator"]) == {"sgd_ie", "acc_sgd_ie", "random"}  # random: the claims' chance control
    assert (fid.loc[fid["estimator"] != "random", "kendall"] > 0.5).all()  # both track LOO on a tiny convex problem
    md = (smoke_run / "results" / "report" / "claims.md").read_text()
    assert "smoke" in md and "ACC-2" in md


@pytest.mark.slow
def test_two_clean_smoke_runs_give_identical_score_files_batched_or_one_job_per_estimator(smoke_run, tmp_path):
    first = score_files(smoke_run)
    assert first, "the smoke run wrote no score files"
    targets = [str(Path("results") / "scores" / Path(k).relative_to(Path("results") / "scores")) for k in first]
    # the smoke run scores a run's estimators in one job (batch_estimators); this one runs a job per estimator
    res = snakemake(tmp_path, *targets, "--configfile", str(SMOKE), "--config", "batch_estimators=False",
                    "--cores", "2", "--quiet", "rules", timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    bench = {p.name for p in (tmp_path / "results" / "benchmarks" / "estimate").rglob("*.tsv")}
    assert bench == {Path(k).with_suffix(".tsv").name for k in first}, bench  # one job per estimator, no batch.tsv
    assert {p.name for p in (smoke_run / "results" / "benchmarks" / "estimate").rglob("*.tsv")} == {"batch.tsv"}
    assert score_files(tmp_path) == first


@pytest.mark.slow
def test_estimator_provenance_is_recorded(smoke_run):
    import hashlib
    import json

    records = list((smoke_run / "results" / "scores").rglob("*.json"))
    assert records
    for p in records:
        rec = json.loads(p.read_text())
        for key in ("config_hash", "seed", "wall_s", "peak_rss_mb", "env", "hparams", "scores_sha256"):
            assert key in rec, (p, key)
        assert rec["scores_sha256"] == hashlib.sha256(np.load(p.with_suffix(".npy")).tobytes()).hexdigest()


# -------------------------------------------------------------------------------------------- planning
def test_every_notebook_is_listed_once_with_its_outputs():
    assert sorted(NOTEBOOKS) == sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    outputs = [f"figures/{f}" for spec in NOTEBOOKS.values() for f in spec["figures"]]
    outputs += [f"tables/{t}" for spec in NOTEBOOKS.values() for t in spec["tables"]]
    assert len(outputs) == len(set(outputs)), "two notebooks write the same figure or table"
    for nb, spec in NOTEBOOKS.items():
        assert set(spec) <= {"inputs", "figures", "tables", "experiment"}, nb
        assert spec["inputs"] and spec["figures"] and spec["tables"], nb


def test_dry_run_plans_the_default_config(tmp_path):
    res = snakemake(tmp_path, "--configfile", str(CONFIGS / "default.yaml"), "-n", "--quiet", "rules")
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stdout + res.stderr
    for rule in ("estimate", "loo", "loo_merge", "train", "curate", "bounds", "cleanse", "claims", "paper",
                 "peers_task", *(f"notebook_{nb}" for nb in notebooks_run(CONFIGS / "default.yaml"))):
        assert rule in out, rule


def test_dry_run_plans_the_paper_config(tmp_path):
    # The whole paper DAG has ~15k jobs and takes minutes to plan; plan every experiment except the E1 grid, plus
    # the E1 evaluation of one 20 Newsgroups run with its 8 LOO shards (the download happens only at run time).
    targets = ["results/metrics/E2_detection.csv", "results/metrics/E3_curation.csv", "results/metrics/E4_coreset.csv",
               "results/metrics/E5_bounds.csv", "results/metrics/fidelity/20ng/tfidf20/mlp8/ep38/seed5.csv"]
    res = snakemake(tmp_path, *targets, "--configfile", str(CONFIGS / "paper.yaml"), "-n", "--quiet", "rules",
                    timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stdout + res.stderr
    for rule in ("estimate", "loo", "loo_merge", "curate", "bounds", "cleanse", "deletion"):
        assert rule in out


def test_slurm_profile_plans_without_a_cluster(tmp_path):
    res = snakemake(tmp_path, "--profile", str(REPO / "experiments" / "profiles" / "slurm"), "--executor", "slurm",
                    "--dry-run", "--configfile", str(SMOKE))
    assert res.returncode == 0, res.stderr[-4000:]
    assert "estimate" in res.stdout + res.stderr


def test_lint_reports_no_errors(tmp_path):
    res = snakemake(tmp_path, "--configfile", str(SMOKE), "--lint")
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]


# ---------------------------------------------------------------------------------------------- schema
# (bad configs, each stopping the plan with a message naming the key: tests/test_config_errors.py)
def _validate(cfg):
    from snakemake.utils import validate

    validate(cfg, str(CONFIGS / "schema.yaml"))


@pytest.mark.parametrize("config", ["smoke", "default", "paper"])
def test_shipped_configs_are_valid(config):
    _validate(yaml.safe_load((CONFIGS / f"{config}.yaml").read_text()))


def test_schema_fills_in_the_defaults_of_keys_default_yaml_leaves_out():
    cfg = yaml.safe_load(SMOKE.read_text())
    _validate(cfg)
    assert all(block["enabled"] is (name not in ("curation", "online_cost", "deletion", "peers", "cost"))
               for name, block in cfg["experiments"].items())
    assert cfg["estimators"]["sgd_ie"] == {"hparams": {}, "skip_models": []}  # mem_mb / runtime: the cost model
    assert cfg["experiments"]["peers"]["ours"] is None and cfg["experiments"]["peers"]["A"] == {}


# ---------------------------------------------------------------------------------------------- claims
def test_every_shipped_claim_evaluates_to_not_run_without_results():
    claims = load_claims(REPO / "paper" / "claims.yaml")
    assert {c["id"] for c in claims} >= {"LAI-1", "LAI-5", "DIFF-1", "DIFF-5", "CG-1", "CG-3", "ACC-1", "ACC-5"}
    table = evaluate_claims(claims, tables={})
    assert (table["verdict"] == "not run").all()
