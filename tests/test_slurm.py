"""The workflow on a real Slurm scheduler: a one-node cluster on localhost (``tests/slurm_cluster.py``) runs the
smoke configuration through the SLURM profile, and its result files equal a local run's byte for byte.

What runs:

* ``smoke_run``: the smoke workflow with the local executor (``tests/test_workflow.py``'s fixture; shared with
  that module if its scope is widened to the session).
* ``slurm_run``: the same workflow through ``experiments/profiles/slurm-noacct`` (the test cluster has no
  accounting database, so job states come from ``squeue``), every job a Slurm job. Compared with ``smoke_run``
  with the exclusions of ``tests/test_reproducible.py``: logs, benchmarks, provenance sidecars, the executed
  notebooks, E6 and the measured columns of E8 / E9 (what records how a run went, not what it computed).
* ``array_run``: the smoke setting's LOO in 2 shards and its two estimators, from the data and the recorded run of
  ``smoke_run``, with ``--slurm-array-jobs=loo,estimate``; while it runs, the first running LOO task is
  ``scancel``-ed. The profile's ``retries`` must rerun it, and the shards and scores must equal those of a local
  run of the same targets that nobody interrupted.

The one setting changed for the tests is the plugin's first status check: after 2 s instead of 40 s.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import slurm_cluster
import test_workflow
import yaml
from test_reproducible import _digests, _excluded
from test_workflow import REPO, SMOKE, SNAKEMAKE, snakemake

from replication import cluster_plan, cost

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment"),
]

smoke_run = test_workflow.smoke_run  # the local run every Slurm run is compared with

PROFILES = REPO / "experiments" / "profiles"
SETTING = "bc/sym20/logreg/ep2/seed0"  # the smoke configuration's one recorded run
ESTIMATORS = ("sgd_ie", "acc_sgd_ie")
SHARDS = 2
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "2")
_SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\S+)")
_ARRAY_TASK = re.compile(r"^\d+_\d+$")  # squeue --array lists an array's tasks as <array job id>_<task id>


def slurm_snakemake(cluster: slurm_cluster.Cluster, workdir: Path, *args: str, profile: str = "slurm-noacct",
                    timeout: float = 1800) -> subprocess.CompletedProcess:
    """Snakemake through a SLURM profile, against the test cluster (its SLURM_CONF, and srun on PATH)."""
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--profile", str(PROFILES / profile), *FAST_STATUS, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir, env=cluster.env)


@dataclass
class Run:
    """A finished Slurm run: its folder, Snakemake's output, what squeue showed meanwhile, its wall time."""

    workdir: Path
    result: subprocess.CompletedProcess
    watch: slurm_cluster.Watcher
    wall_s: float

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cluster():
    """A one-node cluster for the module; its daemons are stopped by PID afterwards, whatever the tests did."""
    reason = slurm_cluster.install()
    if reason is not None:
        pytest.skip(f"Slurm is not installed and cannot be installed here ({reason}); "
                    f"missing: {', '.join(slurm_cluster.missing_programs())}")
    c = slurm_cluster.start()
    try:
        yield c
    finally:
        slurm_cluster.stop(c)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    t0 = time.monotonic()
    with slurm_cluster.Watcher(cluster) as watch:
        res = slurm_snakemake(cluster, work, "--configfile", str(SMOKE))
    run = Run(work, res, watch, time.monotonic() - t0)
    assert res.returncode == 0, f"{run.output[-6000:]}\n{cluster.logs()}"
    return run


def _shards_config(folder: Path) -> Path:
    """The smoke configuration's LOO in SHARDS shards (laid over smoke.yaml)."""
    path = folder / "shards.yaml"
    path.write_text(yaml.safe_dump({"loo": {"shards": SHARDS, "subset": None, "chunk": 64}}))
    return path


def _array_targets() -> list[str]:
    return [*(f"results/loo/{SETTING}/shard{k}.npz" for k in range(SHARDS)),
            *(f"results/scores/{SETTING}/{e}.npy" for e in ESTIMATORS)]


def _copy_inputs(src: Path, dst: Path) -> None:
    """The data and the recorded run of a finished workflow, with their times (so nothing upstream reruns)."""
    for sub in ("data", "runs"):
        shutil.copytree(src / "results" / sub, dst / "results" / sub)


@pytest.fixture(scope="module")
def array_run(cluster, smoke_run, tmp_path_factory):
    """LOO shards and estimators submitted as Slurm arrays, the first running LOO task cancelled; and the same
    targets run locally, uninterrupted."""
    work, ref = tmp_path_factory.mktemp("array"), tmp_path_factory.mktemp("uninterrupted")
    configs = ("--configfile", str(SMOKE), str(_shards_config(work.parent)))
    for d in (work, ref):
        _copy_inputs(smoke_run, d)
    local = snakemake(ref, *_array_targets(), *configs, "--cores", "2", "--quiet", "rules", timeout=900)
    assert local.returncode == 0, local.stderr[-4000:]
    t0 = time.monotonic()
    with slurm_cluster.Watcher(cluster, kill=lambda j: j["comment"].startswith("rule_loo_wildcards_")) as watch:
        # --jobs unlimited: the plugin holds back array jobs handed over while more of the rule are ready (docs)
        res = slurm_snakemake(cluster, work, *_array_targets(), *configs, "--slurm-array-jobs=loo,estimate",
                              "--jobs", "unlimited")
    run = Run(work, res, watch, time.monotonic() - t0)
    assert res.returncode == 0, f"{run.output[-6000:]}\n{cluster.logs()}"
    return run, ref


# ------------------------------------------------------------------------------------------------ the tests
def test_noacct_profile_is_the_slurm_profile_with_squeue_status_and_no_account():
    full = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    noacct = yaml.safe_load((PROFILES / "slurm-noacct" / "config.yaml").read_text())
    assert noacct.pop("slurm-status-command") == "squeue"
    assert noacct.pop("slurm-no-account") is True
    assert noacct == full, "the two SLURM profiles drifted apart: " + str(
        {k: (full.get(k), noacct.get(k)) for k in set(full) | set(noacct) if full.get(k) != noacct.get(k)})
    assert full["retries"] >= 1 and full["rerun-incomplete"] is True
    # CPUs come from each rule's threads: a default cpus_per_task would override them (peers_task has 2)
    assert "cpus_per_task" not in full["default-resources"]


def _merged(base: dict, over: dict) -> dict:
    """``over`` laid over ``base`` key by key (how Snakemake lays a --configfile over the default)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


@pytest.mark.slow
def test_cluster_plan_lists_every_job_with_its_requests(tmp_path):
    # as the README runs it: account and partition on the command line (which replaces the profile's list)
    res = snakemake(tmp_path, "--profile", str(PROFILES / "slurm"), "--executor", "slurm", "--dry-run",
                    "--configfile", str(SMOKE), "--default-resources", "slurm_account=acct", "slurm_partition=part",
                    timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    text = res.stdout + res.stderr
    jobs = cluster_plan.parse_plan(text)
    # Snakemake's own table counts the same jobs, rule by rule
    table = dict(re.findall(r"^(\w+)\s+(\d+)$", text.split("Job stats:")[1].split("Reasons:")[0], re.M))
    assert int(table.pop("total")) == len(jobs) == cluster_plan.job_stats_total(text)
    assert {r: int(n) for r, n in table.items()} == {r: s["jobs"] for r, s in cluster_plan.summarize(jobs).items()}
    assert [j.rule for j in jobs if not j.submitted] == ["all"]
    sent = [j for j in jobs if j.submitted]
    for j in sent:  # every job sent to Slurm says what it needs, from its rule or the profile
        assert j.resources["mem_mb"].isdigit() and float(j.resources["runtime"]) > 0 and j.cpus >= 1, j
        assert j.resources["slurm_account"] == "acct" and j.resources["slurm_partition"] == "part", j
    # no set-resources in the profile: each job asks for its rule's request, the job-cost model's for its sizes
    cfg = _merged(yaml.safe_load((test_workflow.CONFIGS / "default.yaml").read_text()),
                  yaml.safe_load(SMOKE.read_text()))
    model, checked = cost.CostModel.load(), 0
    for j in sent:
        wc = dict(w.split("=") for w in j.wildcards.split(", ")) if j.wildcards else {}
        if j.rule in ("train", "loo", "estimate", "loo_merge", "inject_noise") and model.known(j.rule):
            ms = [cost.member(j.rule, wc, cfg)]
            assert int(j.resources["mem_mb"]) == model.mem_mb(j.rule, ms), j
            assert int(j.resources["runtime"]) == model.runtime_min(j.rule, ms), j
            checked += 1
    assert checked >= 5
    total = sum(j.cpus * float(j.resources["runtime"]) for j in sent) / 60
    assert sum(s["cpu_hours"] for s in cluster_plan.summarize(jobs).values()) == pytest.approx(total)


@pytest.mark.slow
def test_smoke_workflow_on_slurm_gives_the_local_run_s_result_files(slurm_run, smoke_run):
    out = slurm_run.output
    submitted = _SUBMITTED.findall(out)
    planned = cluster_plan.job_stats_total(out) - 1  # every job but `all`, which only collects the targets
    assert len(submitted) == planned, f"{len(submitted)} Slurm jobs for {planned} planned jobs"
    states = {i: s[-1] for i, s in slurm_run.watch.seen.items()}
    assert set(states) == set(submitted), f"squeue saw {sorted(states)}, Snakemake submitted {submitted}"
    assert set(states.values()) == {"COMPLETED"}, states
    first, second = _digests(smoke_run / "results"), _digests(slurm_run.workdir / "results")
    # logs and benchmark files are named by job: one per estimator / seed on Slurm, one per batch locally
    kept = lambda files: sorted(k for k in files if not k.startswith(("logs/", "benchmarks/")))  # noqa: E731
    assert kept(first) == kept(second), f"files only in one run: {sorted(set(kept(first)) ^ set(kept(second)))}"
    compared = sorted(k for k in first if not _excluded(Path(k)))
    differ = [k for k in compared if first[k] != second[k]]
    assert not differ, f"{len(differ)} of {len(compared)} compared files differ: {differ}\ncompared: {compared}"
    for must in (f"loo/{SETTING}/loo.npz", f"runs/{SETTING}/run.pt", f"scores/{SETTING}/acc_sgd_ie.npy",
                 "metrics/E1_fidelity.csv", "report/claims.csv", "figures/E1_agreement.pdf"):
        assert must in compared, f"{must} not compared; compared ({len(compared)}): {compared}"
    assert len(compared) >= 40, f"only {len(compared)} files compared: {compared}"


@pytest.mark.slow
def test_loo_shards_and_estimators_are_submitted_as_slurm_arrays(array_run):
    run, _ = array_run
    for rule, n in (("loo", SHARDS), ("estimate", len(ESTIMATORS))):
        tasks = [i for i in run.watch.jobs_of(rule) if _ARRAY_TASK.match(i)]
        assert len({i.split("_")[0] for i in tasks}) == 1, f"{rule}: not one array: {run.watch.seen}"
        assert len({i.split("_")[1] for i in tasks}) == n, f"{rule}: not {n} tasks: {run.watch.seen}"
    assert len(re.findall(r"^Submitted array job with Snakemake IDs", run.output, re.M)) == 2, run.output[-4000:]


@pytest.mark.slow
def test_a_job_cancelled_on_the_scheduler_is_retried_and_the_results_equal_an_uninterrupted_run(array_run):
    run, reference = array_run
    killed = run.watch.killed
    assert killed is not None, f"no LOO job was seen running: {run.watch.seen}"
    assert not [e for e in run.watch.errors if "scancel" in e], run.watch.errors
    assert run.watch.seen[killed["id"]][-1] == "CANCELLED", run.watch.seen
    assert "Trying to restart job" in run.output, run.output[-4000:]
    # the rerun: one more LOO job, on its own (the only one of its rule left, so not an array), completed
    again = [i for i in run.watch.jobs_of("loo") if i != killed["id"] and not _ARRAY_TASK.match(i)]
    assert len(again) == 1 and run.watch.seen[again[0]][-1] == "COMPLETED", run.watch.seen
    files = [t.removeprefix("results/") for t in _array_targets()]
    read = lambda root, f: (root / "results" / f).read_bytes()  # noqa: E731
    differ = [f for f in files if read(run.workdir, f) != read(reference, f)]
    assert not differ, f"{len(differ)} of {len(files)} files differ from the uninterrupted run: {differ}"
