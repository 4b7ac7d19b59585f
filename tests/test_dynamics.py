"""Training-dynamics baselines (loss, EL2N, GraNd, forgetting, random) vs independent computations,
and the suspicion-direction convention used by the detection task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from influence import estimators
from influence.estimators.dynamics import (
    early_step,
    el2n,
    final_loss,
    forgetting,
    forgetting_callback,
    forgetting_counts,
    grand,
    random_scores,
)
from influence.models import logistic_regression
from influence.train import Schedule, train


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def test_forgetting_counts_match_a_hand_made_sequence():
    # 5 samples, 4 "epochs" of 2-3 sample batches; presentations per sample in time order:
    # s0: T F T F -> 2 ; s1: F F T T -> 0 ; s2: F F F F -> never learned ; s3: T T T T -> 0 ; s4: T F F T -> 1
    seq = {0: "TFTF", 1: "FFTT", 2: "FFFF", 3: "TTTT", 4: "TFFT"}
    orders = [[3, 0, 4], [1, 2], [2, 4, 0], [1, 3], [0, 1, 2], [4, 3], [2, 3, 1], [4, 0]]
    seen = dict.fromkeys(seq, 0)
    batches, correct = [], []
    for b in orders:
        c = []
        for i in b:
            c.append(seq[i][seen[i]] == "T")
            seen[i] += 1
        batches.append(np.array(b))
        correct.append(np.array(c))
    assert all(v == 4 for v in seen.values())
    np.testing.assert_array_equal(forgetting_counts(batches, correct, 5), [2, 0, 4, 0, 1])
    np.testing.assert_array_equal(forgetting_counts(batches, correct, 5, never_learned=99), [2, 0, 99, 0, 1])
    with pytest.raises(ValueError, match="length"):
        forgetting_counts(batches, correct[:-1] + [np.array([True])], 5)


def _forgetting_by_loop(traj, X, y):
    """Independent: nn.Module forward at every θ_t, Python bookkeeping of the last state per sample."""
    last = {}
    counts = np.zeros(len(y))
    learned = np.zeros(len(y), bool)
    for t, S in enumerate(traj.batches()):
        net = traj.model.to_module(traj.thetas[t])
        with torch.no_grad():
            pred = net(X[S]).argmax(1)
        for i, ok in zip(S.tolist(), (pred == y[S]).tolist(), strict=True):
            if last.get(i) is True and not ok:
                counts[i] += 1
            learned[i] |= ok
            last[i] = ok
    counts[~learned] = traj.schedule.epochs
    return counts


def test_forgetting_from_thetas_and_from_callback_logs_match_a_plain_loop(tiny_multiclass):
    (X, y), target = tiny_multiclass
    from influence.models import mlp

    model = mlp(X.shape[1], (6,), 3)
    sched = Schedule(n=len(y), batch_size=8, epochs=6, lr=0.8, seed=2)
    traj = train(model, model.init(4), (X, y), sched, callback=forgetting_callback(model))
    by_loop = _forgetting_by_loop(traj, X, y)
    assert by_loop.max() > 0  # the run does forget something, else the test would be vacuous
    np.testing.assert_array_equal(forgetting(traj, (X, y), target, source="thetas"), by_loop)
    np.testing.assert_array_equal(forgetting(traj, (X, y), target, source="logs"), by_loop)
    # a run recording only a few θ still works through the logs, and says what to do without them
    sparse = train(model, model.init(4), (X, y), sched, record="final", callback=forgetting_callback(model))
    np.testing.assert_array_equal(forgetting(sparse, (X, y), target), by_loop)
    bare = train(model, model.init(4), (X, y), sched, record="final")
    with pytest.raises(ValueError, match="forgetting_callback"):
        forgetting(bare, (X, y), target)


def test_el2n_equals_explicit_softmax_error(tiny_mlp_run):
    traj, (X, y), target = tiny_mlp_run
    step = 2 * traj.schedule.steps_per_epoch
    p = torch.softmax(traj.model.to_module(traj.theta_at(step))(X), dim=1).detach().numpy()
    onehot = np.eye(3)[y.numpy()]
    expected = np.sqrt(((p - onehot) ** 2).sum(1))
    np.testing.assert_allclose(el2n(traj, (X, y), target, epoch=2), expected, rtol=1e-10)
    # the default early epoch is ceil(10 % of K) = 1 for K = 4; averaging over runs = mean of the runs
    assert early_step(traj, None) == traj.schedule.steps_per_epoch
    other = train(traj.model, traj.model.init(9), (X, y), traj.schedule, l2=traj.l2)
    both = el2n(traj, (X, y), target, epoch=2, trajectories=[other])
    np.testing.assert_allclose(both, (expected + el2n(other, (X, y), target, epoch=2)) / 2, rtol=1e-12)


def test_el2n_binary_uses_both_class_probabilities(tiny_logreg_run):
    traj, (X, y), target = tiny_logreg_run
    s = torch.sigmoid(X @ traj.model.unflatten(traj.final)["W0"][0] + traj.model.unflatten(traj.final)["b0"][0])
    np.testing.assert_allclose(el2n(traj, (X, y), target, epoch=5), (2**0.5 * (s - y).abs()).numpy(), rtol=1e-10)


def test_grand_equals_per_sample_autograd_loop(tiny_mlp_run):
    traj, (X, y), target = tiny_mlp_run
    net = traj.model.to_module(traj.theta_at(traj.schedule.steps_per_epoch))
    expected = []
    for i in range(len(y)):
        loss = F.cross_entropy(net(X[i : i + 1]), y[i : i + 1])
        gs = torch.autograd.grad(loss, list(net.parameters()))
        expected.append(float(torch.sqrt(sum((g**2).sum() for g in gs))))
    np.testing.assert_allclose(grand(traj, (X, y), target, epoch=1, chunk=7), expected, rtol=1e-10)
    # at initialisation (epoch 0) the scores are different and still per-sample
    assert not np.allclose(grand(traj, (X, y), target, epoch=0), expected)


def test_final_loss_equals_module_cross_entropy(tiny_mlp_run):
    traj, (X, y), target = tiny_mlp_run
    net = traj.model.to_module(traj.final)
    expected = F.cross_entropy(net(X), y, reduction="none").detach().numpy()
    np.testing.assert_allclose(final_loss(traj, (X, y), target), expected, rtol=1e-10)


def test_random_is_seeded_and_needs_no_run(tiny_binary):
    (X, y), _ = tiny_binary
    a = random_scores(None, (X, y), None, seed=3)
    assert a.shape == (len(y),)
    np.testing.assert_array_equal(a, random_scores(None, (X, y), None, seed=3))
    assert not np.allclose(a, random_scores(None, (X, y), None, seed=4))


def test_missing_theta_gives_a_clear_error(tiny_binary):
    (X, y), target = tiny_binary
    model = logistic_regression(X.shape[1])
    sched = Schedule(n=len(y), batch_size=16, epochs=5, lr=0.5, seed=0)
    traj = train(model, model.init(0), (X, y), sched, record="final")
    with pytest.raises(ValueError, match="record"):
        el2n(traj, (X, y), target, epoch=1)
    with pytest.raises(ValueError, match="needs a recorded training run"):
        grand(None, (X, y), target)


def test_registered_baselines_declare_high_as_suspicious():
    for name in ("cg_score", "loss", "el2n", "grand", "forgetting", "random"):
        assert estimators.suspicious(name) == "high", name
    assert estimators.suspicion("loss", np.array([1.0, -2.0])).tolist() == [1.0, -2.0]
    # loss-change estimates: the most negative (most harmful) sample is the most suspicious
    for name in ("tracin", "influence_function", "sgd_ie"):
        assert estimators.suspicious(name) == "low", name
    assert estimators.suspicion("tracin", np.array([1.0, -2.0])).tolist() == [-1.0, 2.0]
    # a config override wins over the declared direction
    assert estimators.suspicious("loss", overrides={"loss": "low"}) == "low"
    assert estimators.suspicion("loss", np.array([1.0, -2.0]), {"loss": "low"}).tolist() == [-1.0, 2.0]


def test_detection_task_runs_end_to_end_and_finds_flips():
    from replication.tasks.e2_detection import detection_experiment

    rows = detection_experiment("digits", noise_rates=(0.2,), sizes=(300, 30, 100), epochs=4, batch_size=32,
                                methods=("cg_score", "el2n", "forgetting", "loss", "random"))
    by = {r["method"]: r for r in rows}
    assert set(by) == {"cg_score", "el2n", "forgetting", "loss", "random"}
    assert all(r["n_noisy"] == 60 for r in rows)
    assert {r["direction"] for r in rows} == {"high"}  # all five rank high scores first
    assert by["cg_score"]["auroc"] > 0.8  # training-free detection works on real digits
    assert by["loss"]["auroc"] > 0.7
    assert 0.3 < by["random"]["auroc"] < 0.7
