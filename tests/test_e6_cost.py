"""E6 re-timing for DIFF-5: interleaved rounds, one row per (estimator, round), scores checked round to round."""

from __future__ import annotations

import numpy as np
import pytest

from influence import estimators
from influence.tasks.e6_cost import time_estimators


def test_rounds_are_interleaved_and_timed(tiny_logreg_run):
    traj, train_data, target = tiny_logreg_run
    t = time_estimators(traj, train_data, target, ["diffin_paper", "tracin"], repeats=5, warmup=1)
    assert len(t) == 10 and set(t["estimator"]) == {"diffin_paper", "tracin"}
    assert sorted(t["rep"].unique()) == list(range(5))
    assert (t["wall_s"] > 0).all() and (t["cpu_s"] > 0).all() and (t["n_train"] == 60).all()
    # interleaved: the rows alternate estimator by estimator within each round
    assert list(t["estimator"][:4]) == ["diffin_paper", "tracin", "diffin_paper", "tracin"]
    # the timed calls are the registered estimators' own: hparams reach them
    t2 = time_estimators(traj, train_data, target, ["random"], hparams={"random": {"seed": 3}}, repeats=5, warmup=0)
    assert len(t2) == 5


def test_a_nondeterministic_estimator_and_bad_arguments_are_refused(tiny_logreg_run, monkeypatch):
    traj, train_data, target = tiny_logreg_run
    rng = np.random.default_rng(0)
    real_get = estimators.get
    monkeypatch.setattr(estimators, "get", lambda n: (lambda *a, **k: rng.random(60)) if n == "flaky" else real_get(n))
    with pytest.raises(RuntimeError, match="'flaky' gave different scores in round 1"):
        time_estimators(traj, train_data, target, ["flaky"], repeats=5, warmup=0)
    with pytest.raises(ValueError, match="repeats must be >= 5"):
        time_estimators(traj, train_data, target, ["tracin"], repeats=3)
    with pytest.raises(ValueError, match="distinct"):
        time_estimators(traj, train_data, target, ["tracin", "tracin"])
    with pytest.raises(KeyError, match="unknown estimator 'nope'"):
        time_estimators(traj, train_data, target, ["nope"])
