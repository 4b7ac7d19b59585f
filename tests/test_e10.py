"""E10 (DVEmb's MNIST-MLP protocol): configuration errors, the metric, and a tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from influence.tasks import e10_dvemb as e10

TINY = {"n_train": 96, "n_target": 12, "hidden": [6], "n_points": 6, "batch_size": 32,
        "registry": ["sgd_ie", "dvemb", "tracin", "random"], "dattri": {"enabled": False},
        "lds": {"m": 4, "extra_seeds": [1]}}


def test_unknown_keys_and_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown keys"):
        e10.check_dvemb_config({"n_trian": 10})
    with pytest.raises(ValueError, match="unknown keys"):
        e10.check_dvemb_config({"lds": {"mm": 3}})
    with pytest.raises(ValueError, match="unknown estimators"):
        e10.check_dvemb_config({"registry": ["nope"]})
    with pytest.raises(ValueError, match="n_points"):
        e10.check_dvemb_config({"n_points": 0})


def test_per_target_spearman_averages_columns_and_skips_constant_ones():
    rng = np.random.default_rng(0)
    est, truth = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    truth[:, 2] = 1.0  # a constant column has no rank correlation: left out
    want = np.mean([stats.spearmanr(est[:, t], truth[:, t])[0] for t in (0, 1)])
    assert e10.per_target_spearman(est, truth) == pytest.approx(want)


@pytest.fixture(scope="module")
def tiny_run():
    return e10.run_protocol(TINY, epochs=2, seed=0)


def test_tiny_protocol_scores_every_method_in_both_removal_modes(tiny_run):
    rows = tiny_run["rows"]
    got = {(r["removal"], r["estimator"], r["form"]) for r in rows}
    for removal in e10.REMOVALS:
        for name in ("sgd_ie", "acc_sgd_ie", "dvemb"):
            assert (removal, name, "points") in got
        for name in TINY["registry"]:
            assert (removal, name, "all_n") in got
    assert all(r["status"] == "ok" for r in rows)
    by = {(r["removal"], r["estimator"], r["form"]): r for r in rows}
    # the forward form on the points and the registry's backward form give the same mean-target scores
    for name in ("sgd_ie", "dvemb"):
        a, b = by[("all_epoch", name, "points")], by[("all_epoch", name, "all_n")]
        assert a["spearman"] == pytest.approx(b["spearman"]) and a["rmse"] == pytest.approx(b["rmse"], rel=1e-6)
    for name in ("sgd_ie", "acc_sgd_ie", "dvemb"):
        assert np.isfinite(by[("single_epoch", name, "points")]["spearman_per_target"])
    # single-epoch ACC-SGD-IE is single-epoch SGD-IE
    assert by[("single_epoch", "acc_sgd_ie", "points")]["rmse"] == pytest.approx(
        by[("single_epoch", "sgd_ie", "points")]["rmse"], rel=1e-9)
    assert {r["estimator"] for r in tiny_run["lds"]} == set(TINY["registry"])
    assert tiny_run["n_points"] == 6 and len(set(tiny_run["points"])) == 6


def test_tables_add_the_published_values_of_the_epoch_counts_run(tiny_run):
    rows, lds_rows = e10.tables([tiny_run, {**tiny_run, "epochs": 3, "seed": 1}])
    pub = [r for r in rows if r["estimator"] == "dvemb_published"]
    assert {(r["epochs"], r["removal"]) for r in pub} == {(3, "all_epoch"), (3, "single_epoch")}
    assert {r["spearman_per_target"] for r in pub} == {0.747, 0.736}
    assert all(set(r) == set(e10.COLUMNS) for r in rows)
    assert len(lds_rows) == 2 * len(tiny_run["lds"])
