"""Schedules, functional models and recorded runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from influence.models import logistic_regression, mlp
from influence.train import Schedule, Trajectory, train


def test_schedule_is_deterministic_and_covers_each_sample_once_per_epoch():
    a, b = Schedule(103, 10, 3, 0.1, seed=7), Schedule(103, 10, 3, 0.1, seed=7)
    ba, bb = a.batches(), b.batches()
    assert len(ba) == a.n_steps == 3 * 11
    assert all(np.array_equal(x, y) for x, y in zip(ba, bb, strict=True))
    for k in range(3):
        epoch = np.concatenate(ba[k * 11 : (k + 1) * 11])
        assert np.array_equal(np.sort(epoch), np.arange(103))
    assert not np.array_equal(ba[0], ba[11])  # a fresh permutation every epoch
    assert not np.array_equal(ba[0], Schedule(103, 10, 3, 0.1, seed=8).batches()[0])


def test_decaying_step_size():
    s = Schedule(10, 5, 2, 0.4, decay="inv_sqrt")
    assert np.allclose(s.lrs(), 0.4 / np.sqrt(np.arange(1, 5)))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n >= 1"), ({"lr": -1.0}, "lr"), ({"epochs": 0}, "epochs"), ({"decay": "cosine"}, "decay")],
)
def test_schedule_rejects_bad_arguments(kwargs, match):
    base = {"n": 10, "batch_size": 2, "epochs": 1, "lr": 0.1}
    with pytest.raises(ValueError, match=match):
        Schedule(**{**base, **kwargs})


@pytest.mark.parametrize("make", [lambda: logistic_regression(5), lambda: logistic_regression(5, 3),
                                  lambda: mlp(5, (4,), 3), lambda: mlp(5, (4, 3), 2)])
def test_closed_form_batch_gradient_equals_autograd(make):
    model = make()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, model.n_classes, (9,), generator=g)
    theta = torch.randn(3, model.n_params, generator=g, dtype=torch.float64)
    w = torch.rand(3, 9, generator=g, dtype=torch.float64)
    grads, _ = model.batch_grad(theta, X, y, w, 9.0, 0.1)
    for r in range(3):
        t = theta[r].clone().requires_grad_()
        f = (w[r] * (model.losses(t, X, y) + 0.05 * (t**2).sum())).sum() / 9
        (expected,) = torch.autograd.grad(f, t)
        torch.testing.assert_close(grads[r], expected, rtol=1e-12, atol=1e-12)


def test_module_round_trip_gives_the_same_logits():
    model = mlp(6, (5, 4), 3)
    theta = model.init(3)
    x = torch.randn(7, 6, dtype=torch.float64)
    module = model.to_module(theta)
    torch.testing.assert_close(module(x), model.logits(theta, x))
    torch.testing.assert_close(model.from_module(module), theta)


def test_init_is_seeded_and_schemes_differ():
    model = mlp(10, (8,), 2)
    assert torch.equal(model.init(1), model.init(1))
    assert not torch.equal(model.init(1), model.init(2))
    small = model.init(1, scheme="normal1e-3")
    assert small.abs().max() < 1e-2 and small.std() > 1e-4
    assert torch.equal(logistic_regression(4).init(0), torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="init scheme"):
        model.init(0, scheme="xavier")


def _plain_sgd(model, theta0, X, y, sched, l2, drop=None):
    """Independent reference: plain Python SGD with autograd, skipping sample ``drop``."""
    theta = theta0.clone()
    for S, lr in zip(sched.batches(), sched.lrs(), strict=True):
        keep = [i for i in S if i != drop]
        t = theta.clone().requires_grad_()
        total = sum(model.losses(t, X[[i]], y[[i]])[0] + 0.5 * l2 * (t**2).sum() for i in keep)
        (g,) = torch.autograd.grad(total / len(S), t)
        theta = theta - lr * g
    return theta


@pytest.mark.parametrize("hidden", [(), (6,)])
def test_weighted_replay_equals_plain_retraining_without_the_sample(tiny_multiclass, hidden):
    (X, y), _ = tiny_multiclass
    model = mlp(4, hidden, 3) if hidden else logistic_regression(4, 3)
    sched = Schedule(len(y), 10, 3, 0.3, seed=2, decay="inv_sqrt")
    w = torch.ones(len(y), dtype=torch.float64)
    w[5] = 0
    replay = train(model, model.init(0), (X, y), sched, weights=w, l2=0.01).final
    reference = _plain_sgd(model, model.init(0), X, y, sched, 0.01, drop=5)
    torch.testing.assert_close(replay, reference, rtol=1e-12, atol=1e-13)


def test_batched_replays_equal_single_replays(tiny_binary):
    (X, y), _ = tiny_binary
    model = mlp(5, (4,), 2)
    sched = Schedule(len(y), 16, 2, 0.5, seed=1)
    W = torch.ones(3, len(y), dtype=torch.float64)
    W[0, 0] = 0
    W[1, 7] = 0.5
    batched = train(model, model.init(0), (X, y), sched, weights=W, l2=0.01, record="final").thetas[-1]
    for r in range(3):
        single = train(model, model.init(0), (X, y), sched, weights=W[r], l2=0.01).final
        torch.testing.assert_close(batched[r], single, rtol=1e-12, atol=1e-14)


def test_trajectory_records_every_step_and_round_trips(tmp_path, tiny_logreg_run):
    traj, _, _ = tiny_logreg_run
    assert traj.thetas.shape == (traj.n_steps + 1, traj.model.n_params)
    assert np.array_equal(traj.steps, np.arange(traj.n_steps + 1))
    path = tmp_path / "run.pt"
    traj.save(path)
    loaded = Trajectory.load(path)
    assert loaded.schedule == traj.schedule and loaded.model == traj.model and loaded.l2 == traj.l2
    assert torch.equal(loaded.thetas, traj.thetas)
    assert not list(tmp_path.glob("*.tmp"))


def test_trajectory_json_records_the_checksum_of_its_tensor_file(tmp_path, tiny_logreg_run):
    import hashlib
    import json

    traj, _, _ = tiny_logreg_run
    path = tmp_path / "run.pt"
    traj.save(path)
    meta = json.loads((tmp_path / "run.pt.json").read_text())
    assert meta["tensors_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # a corrupted tensor file is refused, naming both files
    path.write_bytes(path.read_bytes()[:-7] + b"garbage")
    with pytest.raises(ValueError, match=r"do not match.*run\.pt .*run\.pt\.json"):
        Trajectory.load(path)


def test_a_kill_between_the_two_trajectory_files_is_caught_on_load(tmp_path, tiny_logreg_run):
    traj, (X, y), _ = tiny_logreg_run
    path = tmp_path / "run.pt"
    traj.save(path)
    old_json = (tmp_path / "run.pt.json").read_bytes()
    other = train(traj.model, traj.theta0 + 0.1, (X, y), traj.schedule, l2=traj.l2)
    assert not torch.equal(other.thetas, traj.thetas)
    other.save(path)
    assert torch.equal(Trajectory.load(path).thetas, other.thetas)
    # simulate a kill after the new tensor file was renamed into place but before the new JSON was
    (tmp_path / "run.pt.json").write_bytes(old_json)
    with pytest.raises(ValueError, match="interrupted save left a mismatched pair") as err:
        Trajectory.load(path)
    assert str(path) in str(err.value) and str(path) + ".json" in str(err.value)


def test_callback_sees_each_step_and_its_weights_change_the_update(tiny_binary):
    (X, y), _ = tiny_binary
    model = logistic_regression(5)
    sched = Schedule(len(y), 16, 2, 0.5, seed=1)
    seen = []

    def drop_first(info):
        seen.append(info.step)
        w = torch.ones(len(info.batch), dtype=torch.float64)
        w[0] = 0
        return {"weights": w, "kept": float(w.mean())}

    traj = train(model, model.init(0), (X, y), sched, callback=drop_first)
    assert seen == list(range(sched.n_steps)) and len(traj.logs) == sched.n_steps
    W = torch.ones(len(y), dtype=torch.float64)
    # dropping the first member of each batch == zero weight for those samples at those steps only;
    # reproduce by hand for the first step
    S0 = sched.batches()[0]
    W[S0[0]] = 0
    g, _ = model.batch_grad(model.init(0)[None], X[S0], y[S0], W[S0][None], len(S0), 0.0)
    torch.testing.assert_close(traj.thetas[1], model.init(0) - 0.5 * g[0])


def test_divergence_raises_and_names_the_step(tiny_binary):
    (X, y), _ = tiny_binary
    model = mlp(5, (4,), 2)
    with pytest.raises(FloatingPointError, match="diverged at step"):
        train(model, model.init(0), (X * 1e200, y), Schedule(len(y), 16, 2, 1e10))


def test_bad_inputs_give_clear_errors(tiny_binary):
    (X, y), _ = tiny_binary
    model = logistic_regression(5)
    sched = Schedule(len(y), 16, 1, 0.1)
    with pytest.raises(ValueError, match="schedule was made for"):
        train(model, model.init(0), (X[:-1], y[:-1]), sched)
    with pytest.raises(ValueError, match="y must have shape"):
        train(model, model.init(0), (X, y[:-1]), sched)
    with pytest.raises(ValueError, match="weights must have shape"):
        train(model, model.init(0), (X, y), sched, weights=torch.ones(3))
    with pytest.raises(ValueError, match="theta0"):
        train(model, torch.zeros(3, dtype=torch.float64), (X, y), sched)
    assert math.isclose(sched.n_steps, 4)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
@pytest.mark.parametrize("engine", ["primal", "dual"])
def test_closed_form_replay_engines_equal_the_generic_step(n_classes, engine, monkeypatch):
    """Issue 15: the closed-form logistic-regression replays (primal W/b GEMMs; sample-space representer form)
    give the generic ``Model.batch_grad`` runs to 1e-12, for one and k runs, per-epoch weights, L2 with
    the shrink factor 1 − ηα·Σw/|S| positive, zero (ηα = 1: the dual form hands over to the primal) and
    negative, every recorded step and the logged batch losses."""
    import influence.train as train_mod

    g = torch.Generator().manual_seed(n_classes)
    n, d = 50, 6
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (n,), generator=g)
    model = logistic_regression(d, n_classes)
    theta0 = 0.1 * torch.randn(model.n_params, generator=g, dtype=torch.float64)
    sched = Schedule(n, 16, 3, 0.5, seed=4)
    loo = torch.ones(n, n, dtype=torch.float64) - torch.eye(n, dtype=torch.float64)
    for weights in (None, torch.rand(n, generator=g, dtype=torch.float64), loo,
                    torch.rand(4, 3, n, generator=g, dtype=torch.float64)):
        for l2 in (0.0, 0.01, 2.0, 5.0):
            for record in ("all", "final"):
                kw = {"weights": weights, "l2": l2, "record": record, "max_loss_growth": None}
                monkeypatch.setattr(train_mod, "_LINEAR_ENGINE", "generic")
                ref = train(model, theta0, (X, y), sched, **kw)
                monkeypatch.setattr(train_mod, "_LINEAR_ENGINE", engine)
                got = train(model, theta0, (X, y), sched, **kw)
                torch.testing.assert_close(got.thetas, ref.thetas, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-12, atol=1e-13)


def test_replay_engine_choice_follows_the_operation_counts():
    """The representer form is picked for many runs on few samples (n < 2d), the primal one for a single run
    (the n²d Gram matrix would cost more than its steps) and for n ≫ d."""
    from influence.train import _linear_engine

    wide, narrow = logistic_regression(784, 10), logistic_regression(20, 10)
    X = torch.zeros(1000, 784, dtype=torch.float64)
    sched = Schedule(1000, 100, 20, 0.1)
    assert _linear_engine(wide, X, 200, sched, 1) == "dual"
    assert _linear_engine(wide, X, 1, sched, 1) == "primal"
    assert _linear_engine(wide, X, 200, sched, sched.n_steps) == "primal"  # forming θ at every step
    assert _linear_engine(narrow, torch.zeros(1000, 20, dtype=torch.float64), 200, sched, 1) == "primal"
    assert _linear_engine(wide, X.float(), 200, sched, 1) == "primal"  # the representer form in float64 only


@pytest.mark.parametrize("engine", ["primal", "dual"])
def test_closed_form_replays_detect_divergence(tiny_binary, engine, monkeypatch):
    import influence.train as train_mod

    (X, y), _ = tiny_binary
    monkeypatch.setattr(train_mod, "_LINEAR_ENGINE", engine)
    model = logistic_regression(5, 3)
    y3 = y % 3
    with pytest.raises(FloatingPointError, match="diverged at step"):
        train(model, model.init(0), (X * 1e200, y3), Schedule(len(y), 16, 2, 1e10), weights=torch.ones(4, len(y)))
