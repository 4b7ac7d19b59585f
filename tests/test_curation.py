"""Online curation: vanilla is plain training bit for bit; curated updates use only kept samples / |B|."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from influence.curation import POLICIES, Curator, curate, summarize
from influence.models import mlp
from influence.train import Schedule, train
from replication.tasks.e3_curation import run_e3


@pytest.fixture
def problem(tiny_multiclass):
    (X, y), (Xt, yt) = tiny_multiclass
    model = mlp(X.shape[1], (6,), 3)
    sched = Schedule(n=len(y), batch_size=12, epochs=3, lr=0.3, seed=2)
    mask = np.zeros(len(y), dtype=bool)
    mask[::4] = True
    return model, (X, y), (Xt, yt), sched, mask


def test_vanilla_policy_reproduces_plain_training_bit_for_bit(problem):
    model, data, target, sched, mask = problem
    plain = train(model, model.init(0), data, sched, l2=1e-3)
    cur = curate(model, model.init(0), data, target, sched, "vanilla", noise_mask=mask, l2=1e-3)
    assert torch.equal(plain.thetas, cur.thetas)
    assert len(cur.logs) == sched.n_steps and all(r["kept_fraction"] == 1.0 for r in cur.logs)


def _direct_scores(model, theta, xb, yb, Xt, yt, method):
    """Per-sample scores computed independently: LAI from a functional forward, Ghost from vmap(grad)."""
    if method == "ghost":
        def li(th, xi, yi):
            return model.losses(th, xi[None], yi[None])[0]

        G = vmap(grad(li), in_dims=(None, 0, 0))(theta, xb, yb)
        return G @ grad(lambda q: model.loss(q, Xt, yt))(theta)
    p = model.unflatten(theta)
    n = len(model.widths) - 1

    def acts(x):
        out, h = [], x
        for k in range(n):
            out.append(h)
            h = h @ p[f"W{k}"].T + p[f"b{k}"]
            if k < n - 1:
                h = torch.relu(h)
        return out, h

    ab, zb = acts(xb)
    at, zt = acts(Xt)
    gb, gt = model.output_grad(zb, yb), model.output_grad(zt, yt)
    layers = range(n) if method == "lai" else [n - 1]
    A = sum(ab[k] @ at[k].T + 1.0 for k in layers)
    return ((gb @ gt.T) * A).mean(1)


@pytest.mark.parametrize("policy", ["lai", "lai_last_layer", "ghost", "small_loss"])
def test_curated_update_uses_only_kept_samples_with_batch_size_denominator(problem, policy):
    model, (X, y), (Xt, yt), sched, mask = problem
    l2 = 1e-3
    traj = curate(model, model.init(0), (X, y), (Xt, yt), sched, policy, noise_mask=mask, l2=l2,
                  target_size=None)
    spe = sched.steps_per_epoch
    batches, lrs = sched.batches(), sched.lrs()
    n_dropped_total = 0
    for t in range(sched.n_steps):
        rec, S, th = traj.logs[t], batches[t], traj.thetas[t]
        if t < spe:  # warm-up epoch: vanilla
            assert not rec["curating"] and rec["dropped"] == []
            continue
        if policy == "small_loss":
            keep = model.losses(th, X[S], y[S]) <= model.losses(th, Xt, yt).median()
        else:
            keep = _direct_scores(model, th, X[S], y[S], Xt, yt, policy) >= 0
        assert sorted(rec["dropped"]) == sorted(S[~keep.numpy()].tolist())
        n_dropped_total += len(rec["dropped"])
        # manual step: θ − η (1/|B|) Σ_{kept} ∇(ℓ_i + α/2 ‖θ‖²)
        w = keep.double()
        g = grad(lambda q: (w * model.losses(q, X[S], y[S])).sum() / len(S)
                 + (l2 / 2) * (w.sum() / len(S)) * q.pow(2).sum())(th)
        torch.testing.assert_close(traj.thetas[t + 1], th - lrs[t] * g, rtol=1e-12, atol=1e-13)
        assert rec["n_noisy"] == int(mask[S].sum())
        assert rec["n_noisy_dropped"] == int((mask[S] & ~keep.numpy()).sum())
    assert n_dropped_total > 0  # the policy did drop something, so the test exercised the weights


def test_summary_aggregates_noisy_drop_counts(problem):
    model, data, target, sched, mask = problem
    traj = curate(model, model.init(0), data, target, sched, "lai", noise_mask=mask, target_size=8, seed=1)
    s = traj.meta["curation"]["summary"]
    cur = [r for r in traj.logs if r["curating"]]
    assert s["curated_steps"] == len(cur) == sched.n_steps - sched.steps_per_epoch
    n_noisy = sum(int(mask[b].sum()) for b in sched.batches()[sched.steps_per_epoch:])
    n_nd = sum(r["n_noisy_dropped"] for r in cur)
    assert s["noisy_dropped_fraction"] == pytest.approx(n_nd / n_noisy)
    assert 0.0 <= s["kept_fraction"] <= 1.0 and s["score_time_s"] > 0
    assert summarize([]) == {"curated_steps": 0}


def test_policy_validation():
    model = mlp(2, (3,), 3)
    with pytest.raises(ValueError, match="unknown curation policy"):
        Curator(model, (torch.zeros(2, 2), torch.zeros(2)), "lia")
    with pytest.raises(ValueError, match="target_size"):
        Curator(model, (torch.zeros(2, 2), torch.zeros(2)), "lai", target_size=0)
    assert POLICIES == ("vanilla", "lai", "lai_last_layer", "ghost", "small_loss")


def test_e3_task_returns_curves_table_and_lai_ghost_agreement(tiny_multiclass):
    (X, y), (Xt, yt) = tiny_multiclass
    mask = np.zeros(len(y), dtype=bool)
    mask[:12] = True
    yn = y.clone()
    yn[:12] = (y[:12] + 1) % 3
    splits = {"train": (X, yn), "target": (Xt, yt), "test": (Xt, yt), "noise_mask": mask, "clean_y": y}
    res = run_e3("synthetic", policies=("vanilla", "lai", "small_loss"), seeds=(0, 1), epochs=3, batch_size=12,
                 lr=0.2, hidden=(5,), target_size=8, probe_every=1, splits=splits)
    assert len(res["runs"]) == 6
    r = res["runs"][0]
    assert len(r["test_acc"]) == 4 and len(r["train_clean_acc"]) == 4
    assert len(r["step_logs"]["kept_fraction"]) == 3 * 4
    assert len(r["spearman_lai_ghost"]) == 3 * 4
    assert all(-1.0 <= v <= 1.0 for v in r["spearman_lai_ghost"])
    assert set(res["table"]) == {"vanilla", "lai", "small_loss"}
    assert "noisy_dropped_fraction" in res["table"]["lai"]
    with pytest.raises(ValueError, match="unknown policy"):
        run_e3("synthetic", policies=("nope",), splits=splits)


@pytest.mark.parametrize("policy", ["lai", "lai_last_layer", "ghost"])
def test_self_influence_policies_score_the_batch_against_itself(problem, policy):
    """Curator runs curated_step (no update) on model.to_module(θ_t): with self_influence the batch is its own
    target (i included), as the independent functional scores say."""
    model, (X, y), (Xt, yt), sched, mask = problem
    traj = curate(model, model.init(0), (X, y), (Xt, yt), sched, policy, self_influence=True, warmup_epochs=0)
    n_dropped = 0
    for t, S in enumerate(sched.batches()):
        th = traj.thetas[t]
        keep = _direct_scores(model, th, X[S], y[S], X[S], y[S], policy) >= 0
        assert sorted(traj.logs[t]["dropped"]) == sorted(S[~keep.numpy()].tolist())
        n_dropped += int((~keep).sum())
    assert n_dropped > 0  # the weights were exercised
