"""E6 re-timing for DIFF-5: interleaved rounds, one row per (implementation, estimator, round), scores checked
round to round, the same checkpoints for every estimator, one torch thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from influence import estimators
from influence.estimators.diffin import diffin_checkpoints
from replication.tasks.e6_cost import shared_checkpoints, time_estimators


def test_rounds_are_interleaved_and_timed(tiny_logreg_run):
    traj, train_data, target = tiny_logreg_run
    t = time_estimators(traj, train_data, target, ["diffin_paper", "tracin"], repeats=5, warmup=1)
    assert len(t) == 10 and set(t["estimator"]) == {"diffin_paper", "tracin"} and set(t["impl"]) == {"default"}
    assert sorted(t["rep"].unique()) == list(range(5))
    assert (t["wall_s"] > 0).all() and (t["cpu_s"] > 0).all() and (t["n_train"] == 60).all()
    assert (t["n_checkpoints"] == -1).all()  # each estimator's own checkpoints
    # interleaved: every round calls each estimator once, and the order rotates from round to round (the first
    # timed round is round 1 after one warm-up round)
    assert list(t["estimator"][:6]) == ["tracin", "diffin_paper", "diffin_paper", "tracin", "tracin", "diffin_paper"]
    assert (t.groupby("rep")["estimator"].nunique() == 2).all()
    # the timed calls are the registered estimators' own: hparams reach them
    t2 = time_estimators(traj, train_data, target, ["random"], hparams={"random": {"seed": 3}}, repeats=5, warmup=0)
    assert len(t2) == 5


def test_implementation_pairs_on_the_same_checkpoints(tiny_mlp_run, monkeypatch):
    traj, train_data, target = tiny_mlp_run
    steps = [int(s) for s in diffin_checkpoints(traj, 3)]
    seen = []
    real_get = estimators.get

    def spy(name):
        fn = real_get(name)
        return lambda *a, **k: (seen.append((name, k, torch.get_num_threads())), fn(*a, **k))[1]

    monkeypatch.setattr(estimators, "get", spy)
    torch.set_num_threads(2)
    try:
        t = time_estimators(traj, train_data, target, ["diffin_paper", "tracin"], hparams={"diffin_paper": {"m": 3}},
                            repeats=5, warmup=0, impls=["fast", "per_sample"], checkpoints="diffin")
        assert torch.get_num_threads() == 2  # one thread while timing, restored after
    finally:
        torch.set_num_threads(1)
    assert len(t) == 20 and set(t["impl"]) == {"fast", "per_sample"}
    assert (t.groupby(["impl", "estimator"]).size() == 5).all() and (t["n_checkpoints"] == len(steps)).all()
    # every call got its implementation and Diff-In's checkpoints; the estimator's own hparams are kept
    assert all(k["checkpoints"] == steps and k["impl"] in ("fast", "per_sample") and th == 1 for _, k, th in seen)
    assert all(k["m"] == 3 for n, k, _ in seen if n == "diffin_paper")
    assert shared_checkpoints(traj, ["tracin", "diffin_paper"], {"diffin_paper": {"m": 3}}) == steps
    assert shared_checkpoints(traj, ["tracin"]) is None
    with pytest.raises(ValueError, match="needs a Diff-In estimator"):
        time_estimators(traj, train_data, target, ["tracin"], checkpoints="diffin")
    with pytest.raises(ValueError, match="checkpoints must be"):
        time_estimators(traj, train_data, target, ["tracin"], checkpoints="epoch")
    with pytest.raises(ValueError, match="impls"):
        time_estimators(traj, train_data, target, ["tracin"], impls=["fast", "fast"])


def test_a_nondeterministic_estimator_and_bad_arguments_are_refused(tiny_logreg_run, monkeypatch):
    traj, train_data, target = tiny_logreg_run
    rng = np.random.default_rng(0)
    real_get = estimators.get
    monkeypatch.setattr(estimators, "get", lambda n: (lambda *a, **k: rng.random(60)) if n == "flaky" else real_get(n))
    with pytest.raises(RuntimeError, match="'flaky' \\(impl 'default'\\) gave different scores in round 1"):
        time_estimators(traj, train_data, target, ["flaky"], repeats=5, warmup=0)
    with pytest.raises(ValueError, match="repeats must be >= 5"):
        time_estimators(traj, train_data, target, ["tracin"], repeats=3)
    with pytest.raises(ValueError, match="distinct"):
        time_estimators(traj, train_data, target, ["tracin", "tracin"])
    with pytest.raises(KeyError, match="unknown estimator 'nope'"):
        time_estimators(traj, train_data, target, ["nope"])
