"""replication.cost: the fitted job-cost model behind every rule's ``runtime`` / ``mem_mb`` request (issue 26).

The decisive test reads the stored measurements of the default run (run ``default`` in
``experiments/cost/measurements.csv``, one of the two runs the model is fitted on, with ``medium``) and checks, job by
job, that the measured wall time and peak memory lie below the request and above a third of it, and that a dry run
of the default configuration asks Slurm for exactly those requests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from influence.data import load_dataset
from influence.models import Model
from replication import cost
from replication.cluster_plan import parse_plan

CHECK_RUN = "default"


def _members(row) -> list[cost.Member]:
    return [cost.Member(**m) for m in json.loads(row["members"])]


@pytest.fixture(scope="module")
def model() -> cost.CostModel:
    return cost.CostModel.load()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return cost.read_measurements()


# ------------------------------------------------------------------------------------------- sizes and fit
@pytest.mark.parametrize("d, classes, hidden", [(104, 2, []), (64, 10, []), (784, 10, [128]), (40, 10, [8, 8])])
def test_n_params_is_the_model_s_own_count(d, classes, hidden):
    assert cost.n_params(d, classes, hidden) == Model(d, classes, tuple(hidden)).n_params


@pytest.mark.parametrize("source", ["adult", "mnist17", "digits", "breast_cancer"])
def test_dims_are_those_of_the_prepared_data(source):
    ds = load_dataset(source)
    assert (ds.X.shape[1], ds.n_classes) == cost.DIMS[source]


def test_fit_recovers_a_known_linear_cost_exactly():
    a, b_lin, b_mlp, c, m = 2.5, 3e-7, 2e-6, 300.0, 1e-4
    rows = []
    for k, (w1, w2, size) in enumerate([(1e6, 0, 1e5), (4e6, 0, 3e5), (0, 2e6, 2e6), (5e5, 5e6, 1e6)]):
        members = [cost.Member("estimate:a:linear", w1, size), cost.Member("estimate:b:mlp", w2, size / 2)]
        rows.append({"run": "t", "rule": "estimate", "family": "estimate", "benchmark": f"b{k}", "threads": 1,
                     "s": a + b_lin * w1 + b_mlp * w2, "cpu_time": 0.0, "max_rss": c + m * size,
                     "members": json.dumps([x.__dict__ for x in members])})
    fitted = cost.fit(rows)
    assert fitted.intercept_s["estimate"] == pytest.approx(a, rel=1e-6)
    assert fitted.slope_s["estimate:a:linear"] == pytest.approx(b_lin, rel=1e-6)
    assert fitted.slope_s["estimate:b:mlp"] == pytest.approx(b_mlp, rel=1e-6)
    assert fitted.intercept_mb["estimate"] == pytest.approx(c, rel=1e-6)
    assert fitted.slope_mb["estimate"] == pytest.approx(m, rel=1e-6)
    # an unmeasured key of the family takes its largest slope; requests round up to whole minutes
    assert fitted.slope("estimate", "estimate:new:mlp") == pytest.approx(b_mlp, rel=1e-6)
    one = [cost.Member("estimate:a:linear", 1e8, 0.0)]
    secs = a + b_lin * 1e8  # 32.5 s: 1.5 × that is 0.81 min, to the nearest minute 1
    assert fitted.runtime_min("estimate", one) == 1
    assert fitted.runtime_min("estimate", one, attempt=2) == 2  # 65 s × 1.5 = 1.6 min
    big = [cost.Member("estimate:a:linear", 1e9 * 24, 0.0)]  # 7202.5 s: × 1.5 = 180.06 min → 180, ≥ 1.2 × fit
    assert fitted.runtime_min("estimate", big) == max(round(1.5 * (a + b_lin * 2.4e10) / 60),
                                                      math.ceil(1.2 * (a + b_lin * 2.4e10) / 60)) == 180
    assert secs < 60


def test_model_file_is_the_fit_of_the_stored_measurements(rows, model):
    fit_rows = [r for r in rows if r["run"] in model.meta["runs"]]
    assert set(model.meta["runs"]) == {CHECK_RUN, "medium"}
    refit = cost.fit(fit_rows)
    for name in ("intercept_s", "slope_s", "intercept_mb", "slope_mb"):
        got, want = getattr(refit, name), getattr(model, name)
        assert got.keys() == want.keys(), name
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-12), (name, k)


def test_unknown_rule_requests_its_fallback_and_doubles_time_on_a_retry():
    empty = cost.Requests({"loo": {"shards": 1}}, path="/nonexistent/model.json")
    res = empty.of("some_new_rule", (1234, 7))
    assert res["mem_mb"]({}) == 1234
    assert res["runtime"]({}, 1) == 7 and res["runtime"]({}, 2) == 14


# ------------------------------------------------------------------------------------------ job graph, wall
def test_simulated_wall_time_of_small_graphs():
    # two independent 10 s jobs, then one of 5 s that needs both
    deps = [[], [], [0, 1]]
    assert cost.simulate_wall([10, 10, 5], [1, 1, 1], deps, cores=2) == 15
    assert cost.simulate_wall([10, 10, 5], [1, 1, 1], deps, cores=1) == 25
    # a 2-CPU job cannot run beside another on 2 cores; the critical path goes first
    assert cost.simulate_wall([10, 4, 4], [2, 1, 1], [[], [], [1]], cores=2) == 18
    assert cost.simulate_wall([1, 8, 1], [1, 1, 1], [[], [], [1]], cores=1) == 10


def test_job_graph_reads_snakemake_s_dot_output():
    dot = ('digraph snakemake_dag {\n\t0[label = "all", color = "0 0 0"];\n\t1[label = "train", color = "1"];\n'
           '\t2[label = "loo_merge", color = "1"];\n\t1 -> 0\n\t2 -> 0\n\t1 -> 2\n}')
    nodes, edges = cost.job_graph(dot)
    assert nodes == {0: "all", 1: "train", 2: "loo_merge"}
    assert sorted(edges) == [(1, 0), (1, 2), (2, 0)]


# ----------------------------------------------------------------------- the default run inside its requests
@pytest.mark.parametrize("run", [CHECK_RUN, "medium"])
def test_every_job_of_a_stored_run_lies_inside_its_fitted_request(rows, model, run):
    """Every job of the default run (and of the medium run): measured wall time and peak memory at most the
    request, and at least a third of it. Lower bounds skip what the measurement cannot show: time where the
    request is Slurm's minimum (1 minute: a 5 s job cannot ask for less; on the default configuration every job
    is under a minute, so its time lower bound is tested on the medium run), memory of jobs under 2 s
    (Snakemake's benchmark samples the process every 0.5 s, so a shorter job's peak is not seen)."""
    check = [r for r in rows if r["run"] == run and r["rule"] != "part"]
    assert len(check) >= {CHECK_RUN: 150, "medium": 100}[run], f"only {len(check)} jobs of run {run} are stored"
    over, under, timed = [], [], 0
    for r in check:
        ms = _members(r)
        req_s, req_mb = 60 * model.runtime_min(r["family"], ms), model.mem_mb(r["family"], ms)
        if r["s"] > req_s or r["max_rss"] > req_mb:
            over.append((r["benchmark"], r["s"], req_s, r["max_rss"], req_mb))
        timed += req_s > 60 * cost.MIN_RUNTIME_MIN
        if (req_s > 60 * cost.MIN_RUNTIME_MIN and r["s"] < req_s / 3) or (
                r["s"] >= 2 and np.isfinite(r["max_rss"]) and r["max_rss"] < req_mb / 3):
            under.append((r["benchmark"], r["s"], req_s, r["max_rss"], req_mb))
    assert not over, f"jobs above their request: {over}"
    assert not under, f"jobs below a third of their request: {under}"
    if run == "medium":
        assert timed >= 3, "too few jobs ask for more than the minimum: the time lower bound was not tested"


@pytest.mark.slow
def test_default_config_requests_are_the_model_s(rows, model):
    """A dry run of the default configuration: every job with a stored measurement asks for the model's request."""
    exe = [sys.executable, "-m", "snakemake"]
    res = subprocess.run([*exe, "-n", "--forceall", "--cores", "2"], cwd=cost.ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    by_bench = {j.benchmark: j for j in parse_plan(res.stdout + res.stderr)}
    checked = 0
    for r in (r for r in rows if r["run"] == CHECK_RUN and r["rule"] != "part"):
        job = by_bench.get(r["benchmark"])
        assert job is not None, f"{r['benchmark']}: no such job in the default configuration any more"
        ms = _members(r)
        assert int(job.resources["runtime"]) == model.runtime_min(r["family"], ms), r["benchmark"]
        assert int(job.resources["mem_mb"]) == model.mem_mb(r["family"], ms), r["benchmark"]
        checked += 1
    assert checked >= 150


def test_an_estimator_s_own_request_in_the_config_replaces_the_model_s(model):
    cfg = {"data": {"adult": {"source": "adult", "n_train": 400, "n_target": 400}}, "models": {"lr": {"hidden": []}},
           "loo": {"shards": 1}, "estimators": {"acc_sgd_ie": {"mem_mb": 16000, "runtime": 240}, "tracin": {}}}
    req = cost.Requests(cfg)
    wc = {"dataset": "adult", "noise": "clean", "model": "lr", "epochs": "10", "seed": "0"}
    own = req.of("estimate")
    assert own["mem_mb"](dict(wc, estimator="acc_sgd_ie")) == 16000
    assert own["runtime"](dict(wc, estimator="acc_sgd_ie"), 2) == 480
    fitted = [cost.member("estimate", dict(wc, estimator="tracin"), cfg)]
    assert own["mem_mb"](dict(wc, estimator="tracin")) == model.mem_mb("estimate", fitted)
    assert own["runtime"](dict(wc, estimator="tracin"), 1) == model.runtime_min("estimate", fitted)
    # a batch: the override only where every estimator of the job has one
    both = req.batch("estimate_x", "estimate", [dict(wc, estimator=e) for e in ("acc_sgd_ie", "tracin")])
    pair = [cost.member("estimate", dict(wc, estimator=e), cfg) for e in ("acc_sgd_ie", "tracin")]
    assert both["mem_mb"] == model.mem_mb("estimate", pair)
    assert both["runtime"]({}, 1) == model.runtime_min("estimate", pair)


def test_readme_and_cluster_page_state_the_stored_paper_plan():
    """The paper configuration's predicted cost in the README and on the cluster page is the stored plan's
    (``make plan-cost``, written to experiments/cost/paper_plan.json by ``plan --out``)."""
    plan = json.loads((cost.ROOT / "experiments" / "cost" / "paper_plan.json").read_text())
    model = cost.CostModel.load()
    assert plan["model_fitted"] == model.meta["fitted"] and plan["model_runs"] == model.meta["runs"]
    readme = (cost.ROOT / "README.md").read_text()
    page = (cost.ROOT / "docs" / "replication" / "cluster.md").read_text()
    for text in (readme, page):
        assert f"{plan['jobs']:,} jobs" in text
        assert f"{plan['fitted_cpu_h']:,.0f} CPU-hours" in text
        assert f"{plan['requested_cpu_h']:,.0f}" in text
        for cores in ("64", "512"):
            assert f"{plan['wall_h'][cores]:.1f} h on {cores} cores" in text
