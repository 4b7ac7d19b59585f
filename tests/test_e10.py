"""E10 (DVEmb's MNIST protocol, MLP and small CNN): configuration errors, the metric, tiny end-to-end runs, the CNN
and its trajectory LOO, the published values and the tables."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from replication.tasks import e10_dvemb as e10

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


# ------------------------------------------------------------------------------------------ DVEmb's small CNN
TINY_CNN = {"arch": "cnn", "n_train": 32, "n_target": 8, "n_points": 4, "batch_size": 16, "lr": 0.1,
            "registry": ["sgd_ie", "dvemb", "tracin", "ghost", "random"], "dattri": {"proj_dim": 32},
            "lds": {"m": 3, "extra_seeds": [1]}}


def test_the_cnn_is_conv32_conv64_linear_on_28x28_images():
    import torch

    model = e10.build_model(e10.check_dvemb_config({"arch": "cnn"}), 784, 10)
    assert model.n_params == 320 + 18496 + 31370  # conv 1->32 3x3, conv 32->64 3x3, linear 64*7*7 -> 10
    assert [tuple(s) for s in model.shapes.values()] == [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (10, 3136), (10,)]
    theta = model.init(0)
    assert theta.dtype == torch.float64 and torch.equal(theta, model.init(0)) and not torch.equal(theta, model.init(1))
    X = torch.rand(5, 784, dtype=torch.float64)
    z = model.logits(theta, X)
    assert z.shape == (5, 10)
    # the module reshapes the rows to (n, 1, 28, 28) images: the same as a hand-made reshape
    net = model.to_module(theta)
    np.testing.assert_allclose(net[1:](X.reshape(5, 1, 28, 28)).detach(), z.detach(), rtol=1e-12)
    np.testing.assert_allclose(net(X[0]).detach(), z[0].detach(), rtol=1e-12)  # one unbatched row (dattri's vmap)
    with pytest.raises(ValueError, match="square"):
        e10.build_model(e10.check_dvemb_config({"arch": "cnn"}), 30, 10)
    with pytest.raises(ValueError, match="arch"):
        e10.check_dvemb_config({"arch": "resnet"})


@pytest.fixture(scope="module")
def tiny_cnn_run():
    return e10.run_protocol(TINY_CNN, epochs=2, seed=0)


def test_tiny_cnn_protocol_runs_every_method_including_dattri(tiny_cnn_run):
    r = tiny_cnn_run
    assert r["arch"] == "cnn" and r["n_params"] == 50186 and r["hidden"] == ["conv32", "conv64"]
    got = {(x["removal"], x["estimator"], x["form"]): x for x in r["rows"]}
    for removal in e10.REMOVALS:
        for name in ("sgd_ie", "acc_sgd_ie", "dvemb", "dattri_dvemb"):
            assert np.isfinite(got[(removal, name, "points")]["spearman_per_target"]), (removal, name)
        for name in TINY_CNN["registry"]:
            assert (removal, name, "all_n") in got
    assert all(x["status"] == "ok" for x in r["rows"]), [x["status"] for x in r["rows"] if x["status"] != "ok"]
    # the forward form on the points and the registry's backward form agree on the CNN too
    a, b = got[("all_epoch", "sgd_ie", "points")], got[("all_epoch", "sgd_ie", "all_n")]
    assert a["rmse"] == pytest.approx(b["rmse"], rel=1e-6)
    assert {x["estimator"] for x in r["lds"]} == set(TINY_CNN["registry"]) | {"dattri_dvemb"}


def test_cnn_trajectory_loo_equals_retraining_without_the_point():
    """trajectory_loo on the CNN run = train() again from the same θ₀ and batches with j's weight 0 (everywhere, or
    in the last epoch only)."""
    import torch

    from influence.data import as_tensors
    from influence.loo import trajectory_loo
    from influence.train import train

    cfg = e10.check_dvemb_config({**TINY_CNN, "n_points": 2})
    s = e10.setup(cfg, 2, 0)
    traj, tr, tg, j = s["traj"], s["train"], s["target"], int(s["points"][0])
    X, y = as_tensors(tr, torch.float64)
    Xt, yt = as_tensors(tg, torch.float64)
    model, n = traj.model, len(tr)
    base = model.losses(train(model, traj.theta0, (X, y), traj.schedule, record="final").final, Xt, yt)
    for removal_epoch in (None, 1):
        w = torch.ones(n, dtype=torch.float64) if removal_epoch is None else torch.ones(1, 2, n, dtype=torch.float64)
        if removal_epoch is None:
            w[j] = 0.0
        else:
            w[0, removal_epoch, j] = 0.0
        final = train(model, traj.theta0, (X, y), traj.schedule, weights=w, record="final").thetas[-1]
        want = (model.losses(final.reshape(-1), Xt, yt) - base).detach().numpy()
        loo = trajectory_loo(traj, tr, tg, [j], removal_epoch=removal_epoch)
        got = loo.target_losses[0] - loo.base_target_losses
        assert np.abs(want).max() > 0
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12)


def test_published_has_the_cnn_values_and_tables_show_them_beside_a_10_epoch_cnn_run(tiny_cnn_run, tiny_run):
    cnn = {p["removal"]: p["spearman"] for p in e10.published("cnn", 10)}
    assert cnn == {"single_epoch": 0.818, "all_epoch": 0.682}
    assert {p["arch"] for p in e10.PUBLISHED} == {"mlp", "cnn"}
    rows, _ = e10.tables([tiny_run, tiny_cnn_run, {**tiny_cnn_run, "epochs": 10}])
    pub = [r for r in rows if r["estimator"] == "dvemb_published"]
    assert {(r["arch"], r["epochs"], r["spearman_per_target"]) for r in pub} == {
        ("cnn", 10, 0.818), ("cnn", 10, 0.682)}  # the MLP ran 2 epochs: no published MLP value at 2
    assert {r["arch"] for r in rows if r["estimator"] != "dvemb_published"} == {"mlp", "cnn"}
    assert all(set(r) == set(e10.COLUMNS) for r in rows)


def test_variant_settings_lay_nested_blocks_over_the_block_s_settings():
    base = {"n_train": 500, "n_points": 8, "hidden": [32], "lds": {"m": 10, "seed": 7, "extra_seeds": [101]},
            "split_seed": 100}
    out = e10.variant_settings(base, {"arch": "cnn", "n_train": 96, "lds": {"m": 0}})
    assert out["arch"] == "cnn" and out["n_train"] == 96 and out["split_seed"] == 100
    assert out["lds"] == {**e10.DEFAULT["lds"], "m": 0, "seed": 7, "extra_seeds": [101]}  # the block's seeds kept
    with pytest.raises(ValueError, match="unknown keys"):
        e10.variant_settings(base, {"arch": "cnn", "chanels": 3})


def test_the_report_keeps_the_mlp_numbers_apart_from_the_cnn_s(tiny_run, tiny_cnn_run):
    import pandas as pd

    from replication import report

    rows, lds_rows = e10.tables([tiny_run, tiny_cnn_run])
    df, lds = pd.DataFrame(rows, columns=list(e10.COLUMNS)), pd.DataFrame(lds_rows, columns=list(e10.LDS_COLUMNS))
    out = report.e10_dvemb({"E10_dvemb": df, "E10_lds": lds})
    mlp_only = report.e10_dvemb({"E10_dvemb": df[df["arch"] == "mlp"], "E10_lds": lds[lds["arch"] == "mlp"]})
    assert {k: v for k, v in out.items() if not k.startswith("cnn")} == {
        k: v for k, v in mlp_only.items() if not k.startswith("cnn")}
    pt = {(x["removal"], x["estimator"]): x["spearman_per_target"] for x in tiny_cnn_run["rows"]
          if x["form"] == "points"}
    assert out["cnn acc all_epoch"] == pytest.approx(pt[("all_epoch", "acc_sgd_ie")])
    assert out["cnn epochs"] == 2 and out["cnn n train"] == 32 and out["cnn seeds"] == 1
    assert out["cnn published all_epoch"] == 0.682 and out["cnn published single_epoch"] == 0.818
    assert mlp_only["cnn acc all_epoch"] is None and mlp_only["cnn published all_epoch"] is None
