"""The estimator contract, checked for every registered estimator (like scikit-learn's
``parametrize_with_checks``): a new estimator joins these tests by registering itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import make_problem

from influence import estimators
from influence.data import Dataset
from influence.models import logistic_regression, mlp
from influence.optim import SGD, AdamW
from influence.train import Schedule, train

NAMES = estimators.names()
# Derived for plain SGD (θ_{t+1} = θ_t − η_t∇L): a run with momentum, optimiser weight decay or Adam is refused.
SGD_ONLY = {"sgd_ie", "acc_sgd_ie", "dvemb", "diffin", "diffin_paper", "diffin_self", "diffin_paper_negated",
            "diffin_self_negated"}
# Need no recorded run (traj=None accepted).
NO_RUN = {"cg_score", "random", "influence_function"}
# Small, fast settings for the estimators whose defaults are sized for real runs.
HPARAMS: dict[str, dict] = {
    "diffin": {"m": 2, "proxy_batch": 8},
    "diffin_paper": {"m": 2, "proxy_batch": 8},
    "diffin_self": {"m": 2, "proxy_batch": 8},
    "random": {"seed": 3},
}


def _run(model_kind: str):
    (X, y), (Xt, yt) = make_problem(n=24, n_target=10, d=3, seed=2)
    model = logistic_regression(3) if model_kind == "logreg" else mlp(3, (4,), 2)
    traj = train(model, model.init(0), (X, y), Schedule(24, 8, 2, 0.3, seed=1), l2=0.01)
    train_ds = Dataset(X.numpy(), y.numpy(), 2, "train")
    target_ds = Dataset(Xt.numpy(), yt.numpy(), 2, "target")
    return traj, train_ds, target_ds


@pytest.fixture(scope="module", params=["logreg", "mlp"])
def setting(request):
    return _run(request.param)


def test_every_estimator_is_registered_and_the_list_is_not_empty():
    assert len(NAMES) >= 15
    assert {"sgd_ie", "acc_sgd_ie", "diffin", "diffin_paper", "cg_score", "lai", "ghost", "tracin"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_returns_finite_float_scores_one_per_training_sample(name, setting):
    traj, train_ds, target_ds = setting
    scores, record = estimators.run(name, traj, train_ds, target_ds, **HPARAMS.get(name, {}))
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64
    assert scores.shape == (len(train_ds),)
    assert np.isfinite(scores).all()
    assert record["hparams"] == HPARAMS.get(name, {})
    assert record["estimator"] == name and record["wall_s"] >= 0


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_same_for_dataset_and_array_pair(name, setting):
    traj, train_ds, target_ds = setting
    fn, hp = estimators.get(name), HPARAMS.get(name, {})
    a = np.asarray(fn(traj, train_ds, target_ds, **hp))
    b = np.asarray(fn(traj, train_ds, target_ds, **hp))
    np.testing.assert_array_equal(a, b)
    c = np.asarray(fn(traj, (train_ds.X, train_ds.y), (target_ds.X, target_ds.y), **hp))
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_bad_data_with_an_error_naming_the_argument(name, setting):
    traj, train_ds, target_ds = setting
    fn = estimators.get(name)
    wide = (np.hstack([target_ds.X, target_ds.X[:, :1]]), target_ds.y)
    with pytest.raises(ValueError, match="target_data has 4 features"):
        fn(traj, train_ds, wide)
    with pytest.raises(ValueError, match="target_data y must have shape"):
        fn(traj, train_ds, (target_ds.X, target_ds.y[:-1]))
    bad = train_ds.X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="train_data X contains NaN"):
        fn(traj, (bad, train_ds.y), target_ds)
    with pytest.raises(ValueError, match="train_data has 23 samples"):
        fn(traj, train_ds.subset(np.arange(23)), target_ds)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_a_traj_that_is_not_a_recorded_run_naming_the_argument(name, setting):
    traj, train_ds, target_ds = setting
    fn, hp = estimators.get(name), HPARAMS.get(name, {})
    not_a_run = rf"^{name}: traj must be a recorded run \(influence.train.Trajectory.*\), got Linear$"
    with pytest.raises(TypeError, match=not_a_run):
        fn(torch.nn.Linear(3, 1), train_ds, target_ds, **hp)
    if estimators.SPECS[name].needs_run:
        with pytest.raises(ValueError, match=rf"^{name} needs a recorded training run \(traj\), got None"):
            fn(None, train_ds, target_ds, **hp)
    else:  # the registry lets None through (the estimator may still want other arguments: influence_function)
        estimators.check_inputs(name, None, train_ds, target_ds, needs_run=False)


def _run_trained_with(traj, optimizer):
    """A recorded run (duck-typed: model, schedule, thetas, steps, l2) that says it was trained with ``optimizer``."""
    return SimpleNamespace(**{a: getattr(traj, a) for a in ("model", "schedule", "thetas", "steps", "l2")},
                           optimizer=optimizer)


@pytest.mark.parametrize("name", NAMES)
def test_plain_sgd_estimators_refuse_other_optimisers(name, setting):
    traj, train_ds, target_ds = setting
    spec, fn = estimators.SPECS[name], estimators.get(name)
    if name in SGD_ONLY | {"tracin", "influence_function", "cg_score", "lai", "ghost", "loss"}:  # built-ins: declared
        assert spec.sgd_only is (name in SGD_ONLY)
    for opt in (SGD(momentum=0.9), SGD(weight_decay=1e-3), AdamW()):
        run = _run_trained_with(traj, opt)
        if spec.sgd_only:
            with pytest.raises(ValueError, match=f"^{name}: .*plain SGD"):
                fn(run, train_ds, target_ds, **HPARAMS.get(name, {}))
        else:
            estimators.check_inputs(name, run, train_ds, target_ds, needs_run=spec.needs_run, sgd_only=False)
    for opt in (None, SGD()):  # plain SGD passes the check
        estimators.check_inputs(name, _run_trained_with(traj, opt), train_ds, target_ds, sgd_only=spec.sgd_only)


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_can_be_named(name):
    """Keyword arguments, or ``**hparams`` passed on to the estimator declared with ``hparams_of``."""
    hp = estimators.hparam_names(name)
    assert all(isinstance(h, str) for h in hp)
    assert set(HPARAMS.get(name, {})) <= set(hp)


@pytest.mark.parametrize("name", NAMES)
def test_declares_which_end_of_its_scores_is_suspicious(name):
    declared = estimators.SUSPICIOUS[name]
    assert callable(declared) or declared in ("high", "low")
    assert estimators.suspicious(name) in ("high", "low")
    s = np.array([1.0, -2.0])
    expected = s if estimators.suspicious(name) == "high" else -s
    np.testing.assert_array_equal(estimators.suspicion(name, s), expected)
    # a config override wins over the declaration
    flipped = "low" if estimators.suspicious(name) == "high" else "high"
    assert estimators.suspicious(name, overrides={name: flipped}) == flipped


@pytest.mark.parametrize("name", NAMES)
def test_registry_name_is_the_function_name_or_the_reason_is_given(name):
    fn = estimators.get(name)
    assert fn.__name__ == name or len(estimators.RENAMED[name]) > 10
    assert fn.__wrapped__.__name__ == fn.__name__


def test_register_refuses_a_rename_without_reason_and_an_undeclared_direction():
    with pytest.raises(ValueError, match="renamed"):
        estimators.register("contract_probe_x", suspicious="low")(lambda traj, train_data, target_data=None: None)
    with pytest.raises(ValueError, match="suspicious"):
        estimators.register("contract_probe_y", suspicious="up")
    with pytest.raises(TypeError):
        estimators.register("contract_probe_z")  # the direction is required
    with pytest.raises(ValueError, match="hparams_of"):
        estimators.register("contract_probe_w", suspicious="low", hparams_of="contract_probe_w")
    probes = {"contract_probe_x", "contract_probe_y", "contract_probe_z", "contract_probe_w"}
    assert not probes & set(estimators.REGISTRY) and not probes & set(estimators.SPECS)


def test_prepare_gives_tensors_in_the_runs_dtype_and_checks_the_run(setting):
    traj, train_ds, target_ds = setting
    p = estimators.prepare("probe", traj, train_ds, target_ds, need_all_steps=True)
    assert p.X.dtype == p.Xt.dtype == traj.thetas.dtype and p.X.device == traj.thetas.device
    assert p.y.dtype == torch.long and p.n == len(train_ds) == p.X.shape[0] and p.model is traj.model
    assert estimators.prepare("probe", traj, train_ds).Xt is None
    sparse = train(traj.model, traj.theta0, train_ds, traj.schedule, l2=traj.l2, record="final")
    with pytest.raises(ValueError, match=r"^probe needs a single run recorded at every step .*record='all'.* 2 of 7"):
        estimators.prepare("probe", sparse, train_ds, need_all_steps=True)
    estimators.prepare("probe", sparse, train_ds)  # fine without need_all_steps
    with pytest.raises(ValueError, match="^probe: train_data has 23 samples but the run was trained on 24"):
        estimators.prepare("probe", traj, train_ds.subset(np.arange(23)))
    with pytest.raises(TypeError, match="^probe: traj must be a recorded run"):
        estimators.prepare("probe", train_ds, train_ds)


def test_direction_declared_by_a_function_of_the_hyperparameters(monkeypatch):
    monkeypatch.setattr(estimators, "REGISTRY", dict(estimators.REGISTRY))
    monkeypatch.setattr(estimators, "SUSPICIOUS", dict(estimators.SUSPICIOUS))
    monkeypatch.setattr(estimators, "SPECS", dict(estimators.SPECS))

    @estimators.register("by_form", suspicious=lambda hp: "high" if hp.get("form") == "full" else "low")
    def by_form(traj, train_data, target_data=None, form="paper"):
        return np.zeros(len(train_data[1]))

    assert estimators.suspicious("by_form") == "low"
    assert estimators.suspicious("by_form", {"form": "full"}) == "high"
    assert estimators.suspicious("by_form", {"form": "full"}, overrides={"by_form": "low"}) == "low"
    # Diff-In's self-influence: the high end in both forms, by derivation (tests/test_diffin.py)
    assert estimators.suspicious("diffin_self", {"form": "full"}) == estimators.suspicious("diffin_self") == "high"


def test_unknown_estimator_name_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown estimator 'nope'; known: "):
        estimators.get("nope")
    with pytest.raises(KeyError, match="unknown estimator"):
        estimators.suspicious("nope")
