"""A diverged or non-learning run never becomes a verdict; bad raw inputs get an error naming the argument."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_problem

from influence import estimators
from influence.data import Dataset
from influence.loo import lds, lds_ground_truth, lds_subsets, loo_to_optimum, trajectory_loo
from influence.models import logistic_regression, mlp
from influence.train import Schedule, TrainingDiverged, train
from replication.claims import evaluate_claims
from replication.tasks.common import run_health, train_setting


@pytest.fixture
def binary():
    return make_problem(n=40, n_target=20, d=3, seed=7)


# ------------------------------------------------------------------------------------------ divergence
def test_huge_learning_rate_stops_with_a_named_error_and_the_fix(binary):
    (X, y), _ = binary
    model = logistic_regression(3)
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+ \(epoch \d+\).*lower the learning rate"):
        train(model, model.init(0), (X, y), Schedule(40, 10, 5, lr=1e6))


def test_mlp_loss_blowup_is_caught_long_before_overflow(binary):
    (X, y), _ = binary
    model = mlp(3, (16,), 2)
    with pytest.raises(TrainingDiverged, match="more than 100× the first step's"):
        train(model, model.init(0), (X, y), Schedule(40, 10, 20, lr=1e3))
    # the guard is configurable; without it the same run goes on until the parameters are non-finite
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(model, model.init(0), (X, y), Schedule(40, 10, 200, lr=1e3), max_loss_growth=None)


def test_the_guard_does_not_touch_a_run_that_learns(binary):
    (X, y), _ = binary
    model = logistic_regression(3)
    sched = Schedule(40, 10, 5, lr=0.5)
    a = train(model, model.init(0), (X, y), sched)
    b = train(model, model.init(0), (X, y), sched, max_loss_growth=None)
    torch.testing.assert_close(a.thetas, b.thetas, rtol=0, atol=0)


def test_recipe_sets_the_guard():
    (X, y), _ = make_problem(n=40, d=3, seed=7)
    spec = {"hidden": [], "lr": 1e4, "batch_size": 10}
    with pytest.raises(TrainingDiverged):
        train_setting(spec, (X, y), 2, epochs=3, seed=0)


# ------------------------------------------------------------------------------------------ non-learning
def test_run_that_did_not_learn_is_marked_and_one_that_did_is_not(binary):
    (X, y), (Xt, yt) = binary
    spec = {"hidden": [], "lr": 0.5, "batch_size": 10, "l2": 0.01}
    good = run_health(train_setting(spec, (X, y), 2, 5, 0), (X, y), (Xt, yt))
    assert good["learned"] and good["reason"] == ""
    assert good["final_train_loss"] < good["initial_train_loss"] and good["test_accuracy"] > good["majority_rate"]
    # labels unrelated to the features: the test accuracy cannot beat the majority class
    rng = np.random.default_rng(0)
    y_rand = torch.as_tensor(rng.integers(0, 2, len(y)))
    yt_major = torch.zeros_like(yt)
    bad = run_health(train_setting({**spec, "lr": 1e-6}, (X, y_rand), 2, 1, 0), (X, y_rand), (Xt, yt_major))
    assert not bad["learned"]
    assert "majority-class rate 1.000" in bad["reason"]


def _fidelity_table():
    rows = []
    for est, sp in (("acc_sgd_ie", 0.9), ("sgd_ie", 0.5)):
        for ds in ("a", "b"):
            for seed in range(5):  # 5 seeds: a paired interval
                sp_s = sp + 0.01 * seed * (est == "acc_sgd_ie")
                rows.append(dict(dataset=ds, noise="clean", model="logreg", epochs=3, seed=seed, estimator=est,
                                 spearman=sp_s, rmse=1 - sp_s))
    return pd.DataFrame(rows)


CLAIM = [{"id": "T-1", "paper": "p", "claim": "c", "experiment": "E1", "metric": "m", "criterion": "x",
          "test": {"kind": "compare", "table": "E1_fidelity", "estimator": "acc_sgd_ie", "baselines": ["sgd_ie"],
                   "metrics": {"spearman": "higher"}, "group_by": ["dataset"], "rule": "most"}}]


def test_claims_refuse_a_verdict_on_evidence_from_a_run_that_did_not_learn():
    tables = {"E1_fidelity": _fidelity_table()}
    ok = evaluate_claims(CLAIM, tables=tables)
    assert ok.loc[0, "verdict"] == "reproduced"
    run = {"setting": {"dataset": "b", "noise": "clean", "model": "logreg", "epochs": "3", "seed": "0"},
           "health": {"learned": False, "reason": "test accuracy 0.067 is not above the majority-class rate 0.5"}}
    out = evaluate_claims(CLAIM, tables=tables, runs=[run])
    assert out.loc[0, "verdict"] == "invalid run"
    assert "1 run(s) behind this claim did not learn: run dataset=b" in out.loc[0, "measured"]
    assert "0.067" in out.loc[0, "measured"]
    # a marked run the claim does not rest on changes nothing; a healthy run neither
    other = {**run, "setting": {**run["setting"], "dataset": "zzz"}}
    healthy = {**run, "health": {"learned": True, "reason": ""}}
    assert evaluate_claims(CLAIM, tables=tables, runs=[other, healthy]).loc[0, "verdict"] == "reproduced"


def test_theory_checks_on_a_run_that_did_not_learn_are_invalid_too():
    claim = [{**CLAIM[0], "id": "T-2", "test": {"kind": "checks"}}]
    tables = {"E5_bounds": pd.DataFrame([{"check": "lai_bound", "name": "lai_bound", "passed": True,
                                          "claims": "T-2"}])}
    run = {"setting": {"dataset": "a", "noise": "clean", "model": "mlp8", "epochs": 3, "seed": 0},
           "health": {"learned": False, "reason": "final training loss 0.7 is not below its start 0.69"}}
    check_runs = {"lai_bound": {"dataset": "a", "noise": "clean", "model": "mlp8", "epochs": 3, "seed": 0}}
    assert evaluate_claims(claim, tables=tables, runs=[run]).loc[0, "verdict"] == "reproduced"
    assert evaluate_claims(claim, tables=tables, runs=[run], check_runs=check_runs).loc[0, "verdict"] == "invalid run"


# ------------------------------------------------------------------------------------------ raw inputs
@pytest.mark.parametrize(
    "labels, match",
    [
        (lambda y: y * 5, r"labels in \[0, 5\], the model has 2 classes"),
        (lambda y: 2 * y - 1, r"not ±1"),
        (lambda y: y.double() * 0.5, "non-integer values"),
    ],
    ids=["label-5", "plus-minus-one", "half"],
)
def test_bad_labels_for_binary_logistic_regression_are_refused(binary, labels, match):
    (X, y), _ = binary
    model = logistic_regression(3)
    with pytest.raises(ValueError, match=match):
        train(model, model.init(0), (X, labels(y)), Schedule(40, 10, 1, 0.1))


def test_a_three_class_dataset_is_refused_by_a_binary_model(binary):
    (X, y), _ = binary
    model = logistic_regression(3)
    ds = Dataset(X.numpy(), y.numpy(), 3)
    with pytest.raises(ValueError, match="3-class Dataset, the model has 2 classes"):
        train(model, model.init(0), ds, Schedule(40, 10, 1, 0.1))


def test_nan_input_is_reported_as_bad_data_not_as_a_learning_rate_problem(binary):
    (X, y), _ = binary
    Xn = X.clone()
    Xn[3, 1] = float("nan")
    model = logistic_regression(3)
    with pytest.raises(ValueError, match=r"train: data X contains NaN or inf \(in 1 of 40 rows\)"):
        train(model, model.init(0), (Xn, y), Schedule(40, 10, 1, 0.1))
    with pytest.raises(ValueError, match="theta0 contains NaN"):
        train(model, torch.full((4,), float("nan"), dtype=torch.float64), (X, y), Schedule(40, 10, 1, 0.1))


def test_ground_truth_refuses_nan_or_empty_targets(tiny_logreg_run):
    traj, train_data, (Xt, yt) = tiny_logreg_run
    bad = Xt.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="trajectory_loo: target_data X contains NaN"):
        trajectory_loo(traj, train_data, (bad, yt))
    with pytest.raises(ValueError, match="trajectory_loo: target_data is empty"):
        trajectory_loo(traj, train_data, (Xt[:0], yt[:0]))
    with pytest.raises(ValueError, match="trajectory_loo: target_data has 4 features"):
        trajectory_loo(traj, train_data, (Xt[:, :4], yt))
    with pytest.raises(ValueError, match="loo_to_optimum: target_data is empty"):
        loo_to_optimum(traj.model, train_data, (Xt[:0], yt[:0]), 0.01)
    masks = lds_subsets(len(train_data[1]), m=4, seed=0)
    with pytest.raises(ValueError, match="lds_ground_truth: target_data X contains NaN"):
        lds_ground_truth(traj, train_data, (bad, yt), masks)
    truth = lds_ground_truth(traj, train_data, (Xt, yt), masks)
    attr = np.zeros((len(train_data[1]), len(yt)))
    attr[0, 0] = np.nan
    with pytest.raises(ValueError, match="lds: attributions contain NaN"):
        lds(attr, masks, truth)


def test_estimators_refuse_labels_outside_the_models_classes(tiny_logreg_run):
    traj, (X, y), target = tiny_logreg_run
    for name in ("sgd_ie", "tracin", "loss"):
        with pytest.raises(ValueError, match=f"{name}: train_data has labels in"):
            estimators.get(name)(traj, (X, y + 1), target)


def test_a_claim_that_needs_no_learned_model_keeps_its_verdict():
    tables = {"E1_fidelity": _fidelity_table()}
    run = {"setting": {"dataset": "b", "noise": "clean", "model": "logreg", "epochs": 3, "seed": 0},
           "health": {"learned": False, "reason": "test accuracy 0.5 is not above the majority-class rate 0.5"}}
    claim = [{**CLAIM[0], "needs_learned_runs": False}]
    assert evaluate_claims(claim, tables=tables, runs=[run]).loc[0, "verdict"] == "reproduced"


def test_a_table_row_flagged_not_learned_invalidates_the_claim_that_reads_it():
    """E8 / E9 runs live inside one job each and carry a ``learned`` column instead of a run summary."""
    rows = [{"dataset": "rt", "model": "enc", "policy": p, "seed": s, "final_test_acc": acc + 0.01 * s,
             "learned": True} for s in range(3) for p, acc in (("lai", 0.8), ("vanilla", 0.6), ("ghost", 0.7))]
    claim = [{**CLAIM[0], "id": "T-3",
              "test": {"kind": "compare", "table": "E9_text", "key": "policy", "estimator": "lai",
                       "baselines": ["vanilla"], "metrics": {"final_test_acc": "higher"}, "rule": "all"}}]
    ok = pd.DataFrame(rows)
    assert evaluate_claims(claim, tables={"E9_text": ok}).loc[0, "verdict"] == "reproduced"
    bad = ok.copy()
    bad.loc[(bad["policy"] == "vanilla") & (bad["seed"] == 1), "learned"] = False
    out = evaluate_claims(claim, tables={"E9_text": bad}).loc[0]
    assert out["verdict"] == "invalid run"
    assert "E9_text: dataset=rt/model=enc/policy=vanilla/seed=1" in out["measured"]
    # a row the test does not read (another policy) changes nothing
    other = ok.copy()
    other.loc[other["policy"] == "ghost", "learned"] = False
    assert evaluate_claims(claim, tables={"E9_text": other}).loc[0, "verdict"] == "reproduced"


def test_compare_reads_a_wide_table_through_columns():
    df = pd.DataFrame({"dataset": ["s"] * 4, "step": range(4), "pearson_lai": [0.9, 0.8, 0.85, 0.95],
                       "pearson_ghost": [0.7, 0.62, 0.68, 0.76], "learned": True})  # paired by row (step)
    test = {"kind": "compare", "table": "E8_shapley", "estimator": "lai", "baselines": ["ghost"],
            "columns": {"lai": "pearson_lai", "ghost": "pearson_ghost"}, "metrics": {"pearson": "higher"},
            "group_by": ["dataset"], "rule": "all"}
    claim = [{**CLAIM[0], "id": "T-4", "test": test}]
    assert evaluate_claims(claim, tables={"E8_shapley": df}).loc[0, "verdict"] == "reproduced"
    flipped = df.rename(columns={"pearson_lai": "pearson_ghost", "pearson_ghost": "pearson_lai"})
    assert evaluate_claims(claim, tables={"E8_shapley": flipped}).loc[0, "verdict"] == "refuted"
    assert evaluate_claims(claim, tables={"E8_shapley": df.drop(columns="pearson_ghost")}).loc[0, "verdict"] == \
        "not run"
