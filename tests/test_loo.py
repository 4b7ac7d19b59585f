"""Ground truth: trajectory LOO, LOO-to-optimum and LDS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from influence.loo import (
    LOOResult,
    fit_optimum,
    lds,
    lds_ground_truth,
    lds_subsets,
    loo_to_optimum,
    merge_loo,
    shard_indices,
    trajectory_loo,
)
from influence.models import logistic_regression
from influence.train import train


def test_vectorised_loo_equals_a_loop_of_single_replays(tiny_mlp_run):
    traj, (X, y), (Xt, yt) = tiny_mlp_run
    res = trajectory_loo(traj, (X, y), (Xt, yt), indices=[0, 3, 11, 40], chunk=3)
    base = train(traj.model, traj.theta0, (X, y), traj.schedule, l2=traj.l2).final
    for r, j in enumerate(res.indices):
        w = torch.ones(len(y), dtype=torch.float64)
        w[j] = 0
        single = train(traj.model, traj.theta0, (X, y), traj.schedule, weights=w, l2=traj.l2).final
        np.testing.assert_allclose(res.delta_theta[r], (single - base).numpy(), atol=1e-13)
        change = traj.model.loss(single, Xt, yt) - traj.model.loss(base, Xt, yt)
        assert res.loss_change[r] == pytest.approx(float(change), abs=1e-13)


def test_loo_shards_merge_to_the_full_result(tiny_logreg_run, tmp_path):
    traj, train_data, target = tiny_logreg_run
    full = trajectory_loo(traj, train_data, target)
    parts = []
    for s in range(3):
        part = trajectory_loo(traj, train_data, target, indices=shard_indices(60, 3, s))
        part.save(tmp_path / f"s{s}.npz")
        parts.append(LOOResult.load(tmp_path / f"s{s}.npz"))
    merged = merge_loo(parts[::-1])
    np.testing.assert_array_equal(merged.indices, np.arange(60))
    np.testing.assert_allclose(merged.loss_change, full.loss_change, atol=1e-14)
    with pytest.raises(ValueError, match="overlap"):
        merge_loo([parts[0], parts[0]])


def test_saved_loo_holds_results_only_and_its_sidecar_the_measurements(tiny_logreg_run, tmp_path):
    import hashlib
    import json

    from influence.loo import MEASURED_KEYS, merge_provenance, read_provenance, sidecar
    from replication.tasks.e6_cost import cost_table

    traj, train_data, target = tiny_logreg_run
    digests, shards = [], []
    for rep in range(2):  # the same computation twice: different timings, the same bytes
        res = trajectory_loo(traj, train_data, target, indices=shard_indices(60, 2, 0))
        assert set(MEASURED_KEYS) <= set(res.meta)
        path = tmp_path / f"rep{rep}" / "shard0.npz"
        res.save(path)
        res.save_provenance(sidecar(path), shard=0)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        loaded = LOOResult.load(path)
        assert loaded.meta["method"] == "trajectory_loo" and not set(MEASURED_KEYS) & set(loaded.meta)
        rec = read_provenance(path)
        assert rec["wall_s"] == res.meta["wall_s"] and rec["shard"] == 0 and rec["n_loo"] == 30
        assert "torch" in rec["env"]
        shards.append(rec)
    assert digests[0] == digests[1]
    # merged provenance: total time, largest peak; E6 reads the LOO cost from the sidecar
    merged = merge_provenance(shards)
    assert merged["wall_s"] == pytest.approx(shards[0]["wall_s"] + shards[1]["wall_s"])
    assert merged["peak_rss_mb"] == max(r["peak_rss_mb"] for r in shards) and merged["shards"] == 2
    loo = tmp_path / "bc" / "clean" / "logreg" / "ep2" / "seed0" / "loo.npz"
    merge_loo([LOOResult.load(tmp_path / "rep0" / "shard0.npz")]).save(loo)
    sidecar(loo).write_text(json.dumps(merged))
    table = cost_table([], [loo])
    row = table.iloc[0]
    assert row["estimator"] == "trajectory_loo" and row["wall_s"] == merged["wall_s"] and row["n_loo"] == 30
    assert row["peak_rss_mb"] == merged["peak_rss_mb"] and row["setting_seed"] == 0
    sidecar(loo).unlink()
    with pytest.raises(FileNotFoundError, match=r"loo\.npz\.json"):
        cost_table([], [loo])


def test_shard_indices_partition_a_seeded_subset():
    parts = [shard_indices(100, 4, s, subset=30, seed=1) for s in range(4)]
    allidx = np.concatenate(parts)
    assert len(allidx) == 30 == len(np.unique(allidx))
    np.testing.assert_array_equal(allidx, np.concatenate([shard_indices(100, 4, s, 30, 1) for s in range(4)]))
    with pytest.raises(ValueError, match="shard"):
        shard_indices(10, 2, 2)


def test_loo_to_optimum_equals_a_cold_retrain(tiny_binary):
    (X, y), (Xt, yt) = tiny_binary
    model = logistic_regression(5)
    res = loo_to_optimum(model, (X, y), (Xt, yt), l2=0.05, indices=[2, 9])
    full = fit_optimum(model, (X, y), 0.05)
    for r, j in enumerate(res.indices):
        keep = np.setdiff1d(np.arange(len(y)), [j])
        cold = torch.zeros(model.n_params, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([cold], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            f = model.losses(cold, X[keep], y[keep]).mean() + 0.025 * (cold**2).sum()
            f.backward()
            return f

        opt.step(closure)
        np.testing.assert_allclose(full.numpy() + res.delta_theta[r], cold.detach().numpy(), atol=1e-6)


def test_fit_optimum_needs_a_convex_regularised_model(tiny_binary):
    (X, y), _ = tiny_binary
    with pytest.raises(ValueError, match="l2 > 0"):
        fit_optimum(logistic_regression(5), (X, y), 0.0)


def test_lds_is_high_for_the_true_leave_subset_out_effects(tiny_logreg_run):
    traj, train_data, target = tiny_logreg_run
    masks = lds_subsets(60, m=20, frac=0.5, seed=0)
    assert masks.sum(1).tolist() == [30] * 20
    losses = lds_ground_truth(traj, train_data, target, masks)
    loo = trajectory_loo(traj, train_data, target)
    per_target = loo.target_losses - loo.base_target_losses  # (n, n_target) LOO attributions
    score, per = lds(per_target, masks, losses)
    assert per.shape == (len(target[1]),)
    assert score > 0.5  # additive LOO effects predict half-subset retraining well on a convex toy problem
    rand, _ = lds(np.random.default_rng(0).normal(size=per_target.shape), masks, losses)
    assert rand < score - 0.3


@pytest.mark.parametrize("run", ["tiny_logreg_run", "tiny_mlp_run"])
def test_lds_ground_truth_in_float32_is_the_float64_one_to_float32_rounding(run, request):
    """The fast float32 retraining path: every subset's target losses within float32 rounding of float64's, and the
    same LDS of the exact LOO attributions; a dtype other than float32/float64 is refused."""
    traj, train_data, target = request.getfixturevalue(run)
    masks = lds_subsets(traj.schedule.n, m=12, frac=0.5, seed=1)
    f64 = lds_ground_truth(traj, train_data, target, masks)
    f32 = lds_ground_truth(traj, train_data, target, masks, dtype=torch.float32)
    assert f32.dtype == np.float64 and f32.shape == f64.shape
    np.testing.assert_allclose(f32, f64, rtol=1e-4, atol=1e-6)
    assert np.abs(f32 - f64).max() > 0  # it did run in float32
    loo = trajectory_loo(traj, train_data, target)
    attributions = loo.target_losses - loo.base_target_losses
    assert abs(lds(attributions, masks, f32)[0] - lds(attributions, masks, f64)[0]) < 0.02
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        lds_ground_truth(traj, train_data, target, masks, dtype=torch.float16)


def test_fixed_hessian_loo_equals_newton_loo(tiny_binary):
    (X, y), (Xt, yt) = tiny_binary
    model = logistic_regression(5)
    idx = [0, 7, 33, 59]
    fast = loo_to_optimum(model, (X, y), (Xt, yt), 0.02, idx)
    assert fast.meta["method"] == "loo_to_optimum/fixed_hessian"
    ref = loo_to_optimum(model, (X, y), (Xt, yt), 0.02, idx, method="newton")
    # both stop at ‖∇‖ < 1e-10 on an α-strongly convex objective: each within 1e-10/α of the optimum
    np.testing.assert_allclose(fast.delta_theta, ref.delta_theta, rtol=0, atol=2e-8)
    np.testing.assert_allclose(fast.loss_change, ref.loss_change, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="binary"):
        loo_to_optimum(logistic_regression(5, 3), (X, y % 3), (Xt, yt % 3), 0.02, idx, method="fixed_hessian")


def test_single_epoch_removal_equals_a_loop_of_runs_that_skip_the_sample_once(tiny_logreg_run):
    """Per-epoch weights (k, E, n) in train, and trajectory_loo(removal_epoch=e), against one run per sample
    whose callback drops it only in its epoch-e step (DVEmb's single-epoch removal)."""
    traj, (X, y), target = tiny_logreg_run
    sched, E = traj.schedule, traj.schedule.epochs
    idx = np.array([0, 7, 31])
    for epoch in (E - 1, 1):
        res = trajectory_loo(traj, (X, y), target, idx, removal_epoch=epoch if epoch == 1 else -1)
        Xt, yt = target
        base = train(traj.model, traj.theta0, (X, y), sched, l2=traj.l2, record="final").final
        for r, j in enumerate(idx):
            def drop(info, j=j, epoch=epoch):
                return torch.as_tensor((np.asarray(info.batch) != j) | (info.epoch != epoch), dtype=torch.float64)

            one = train(traj.model, traj.theta0, (X, y), sched, l2=traj.l2, record="final", callback=drop).final
            np.testing.assert_allclose(res.delta_theta[r], (one - base).numpy(), rtol=1e-10, atol=1e-13)
            ref = float(traj.model.loss(one, Xt, yt) - traj.model.loss(base, Xt, yt))
            assert abs(res.loss_change[r] - ref) <= 1e-10 * abs(ref) + 1e-14
    # removal in every epoch is the default and differs from single-epoch removal
    full = trajectory_loo(traj, (X, y), target, idx)
    last = trajectory_loo(traj, (X, y), target, idx, removal_epoch=-1)
    assert np.abs(full.loss_change - last.loss_change).max() > 1e-6
    with pytest.raises(ValueError, match="removal_epoch"):
        trajectory_loo(traj, (X, y), target, idx, removal_epoch=E)
    with pytest.raises(ValueError, match="per epoch"):
        train(traj.model, traj.theta0, (X, y), sched, weights=torch.ones(2, E + 1, len(y), dtype=torch.float64))


@pytest.mark.parametrize("engine", ["primal", "dual"])
@pytest.mark.parametrize("removal_epoch", [None, 1])
def test_multiclass_loo_by_the_closed_form_replays_equals_the_generic_replays(tiny_multiclass, engine, removal_epoch,
                                                                            monkeypatch):
    """Issue 15: 10-class-style (here 3-class) logistic-regression LOO through the closed-form replay engines
    (what ``train`` picks for it) gives the generic ``Model.batch_grad`` replays to 1e-12, both removal modes."""
    import influence.train as train_mod
    from influence.train import Schedule

    (X, y), (Xt, yt) = tiny_multiclass
    model = logistic_regression(4, 3)
    traj = train(model, model.init(0), (X, y), Schedule(len(y), 10, 3, 0.3, seed=2), l2=0.01)
    monkeypatch.setattr(train_mod, "_LINEAR_ENGINE", "generic")
    ref = trajectory_loo(traj, (X, y), (Xt, yt), chunk=7, removal_epoch=removal_epoch)
    monkeypatch.setattr(train_mod, "_LINEAR_ENGINE", engine)
    got = trajectory_loo(traj, (X, y), (Xt, yt), chunk=7, removal_epoch=removal_epoch)
    np.testing.assert_allclose(got.delta_theta, ref.delta_theta, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.loss_change, ref.loss_change, rtol=0, atol=1e-12)
    assert np.abs(ref.delta_theta).max() > 1e-4  # the removals move the parameters
