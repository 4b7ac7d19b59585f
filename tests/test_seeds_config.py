"""Seeds of the workflow: every comparison claim rests on >= 5 seeds in the default configuration, and one key
(``base_seed``) moves every seed of it (replication.tasks.common.shift_seeds, applied in experiments/rules/common.smk).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import yaml

from replication.tasks.common import shift_seeds

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "config"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
MIN_SEEDS = 5


def _default():
    return yaml.safe_load((CONFIGS / "default.yaml").read_text())


def test_default_config_has_five_seeds_for_every_experiment_behind_a_comparison_claim():
    exps = _default()["experiments"]
    # E1 (DIFF-1, ACC-1, ACC-2, X-1), E2 (DIFF-3, CG-1, ACC-5), E4 (DIFF-4, CG-2): every grid
    for name in ("fidelity", "detection", "deletion"):
        assert exps[name]["grids"], name
        for g in exps[name]["grids"]:
            assert len(set(g["seeds"])) >= MIN_SEEDS, (name, g)
    # E3 (LAI-1, LAI-3-mlp, LAI-4-mlp), E8 and E9 (LAI-3), E10 (TRAJ-1)
    for name in ("curation", "lm", "text", "dvemb"):
        assert len(set(exps[name]["seeds"])) >= MIN_SEEDS, name


def test_default_e1_grid_spans_one_epoch_to_fitted_for_lr_and_mlp_clean_and_corrupted():
    cfg = _default()
    rows = [(d, z, m, e) for g in cfg["experiments"]["fidelity"]["grids"] for d in g["datasets"] for z in g["noises"]
            for m in g["models"] for e in g["epochs"]]
    models = {m for *_, m, _ in rows}
    assert any(not cfg["models"][m]["hidden"] for m in models) and any(cfg["models"][m]["hidden"] for m in models)
    assert {cfg["noise"][z]["kind"] == "clean" for _, z, _, _ in rows} == {True, False}
    for m in models:
        epochs = {e for _, _, mm, e in rows if mm == m}
        assert 1 in epochs and len(epochs - {1}) >= 2, (m, epochs)


def test_shift_seeds_moves_every_seed_of_the_default_config():
    cfg = _default()
    out = shift_seeds(copy.deepcopy(cfg), 100)
    exps, before = out["experiments"], cfg["experiments"]
    for name in ("fidelity", "detection", "deletion", "cost"):
        for g, g0 in zip(exps[name]["grids"], before[name]["grids"], strict=True):
            assert g["seeds"] == [100 + s for s in g0["seeds"]]
    for name in ("curation", "lm", "text", "dvemb"):
        assert exps[name]["seeds"] == [100 + s for s in before[name]["seeds"]]
    assert exps["lm"]["data"]["split_seed"] == 100 + before["lm"]["data"]["split_seed"]
    assert exps["lm"]["shapley"]["seed"] == 100 + before["lm"]["shapley"]["seed"]
    assert exps["online_cost"]["seed"] == 100 + before["online_cost"]["seed"]
    assert exps["dvemb"]["settings"]["split_seed"] >= 100 and exps["dvemb"]["settings"]["points_seed"] >= 100
    assert min(exps["dvemb"]["settings"]["lds"]["extra_seeds"]) >= 100
    runs = [c["run"] for c in exps["bounds"]["checks"] if c.get("run")]
    assert runs and all(r["seed"] >= 100 for r in runs)
    # 0 changes nothing
    assert shift_seeds(copy.deepcopy(cfg), 0) == cfg


def test_dry_run_with_base_seed_plans_only_shifted_seeds(tmp_path):
    """`--config base_seed=100`: every seed in a planned path is >= 100, for every experiment with seeds."""
    res = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-n", "--cores", "2",
                          "--config", "base_seed=100"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stdout + res.stderr
    seeds = [int(s) for s in re.findall(r"/seed(\d+)", out)]
    assert seeds and min(seeds) >= 100, sorted(set(seeds))[:10]
    # every experiment with seeds in its paths is there, on the shifted seeds
    for prefix in ("results/runs/", "results/data/", "results/loo/", "results/scores/", "results/curation/",
                   "results/lm/", "results/text/", "results/dvemb/"):
        found = [int(s) for s in re.findall(re.escape(prefix) + r"[^\s,]*?/seed(\d+)", out)]
        assert found and min(found) >= 100, prefix
