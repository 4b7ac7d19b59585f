"""Estimators defined outside the package (tests/plugin_example): registered through an entry point of group
``influence.estimators``, the ``INFLUENCE_PLUGINS`` variable or the workflow config's ``plugins:`` list, they pass
the estimator contract (tests/test_estimator_contract.py) and join the workflow; and the "Adding an estimator"
example at the top of influence/estimators/__init__.py works as written."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import test_estimator_contract as contract
from test_config_errors import SNAKEMAKE, plan, smoke_with

from influence import estimators
from influence.data import Dataset
from influence.train import Trajectory

TESTS = Path(__file__).resolve().parent
PLUGIN, NAME = "plugin_example", "plugin_example_loss"
CONTRACT = (
    contract.test_returns_finite_float_scores_one_per_training_sample,
    contract.test_deterministic_and_same_for_dataset_and_array_pair,
    contract.test_rejects_bad_data_with_an_error_naming_the_argument,
    contract.test_rejects_a_traj_that_is_not_a_recorded_run_naming_the_argument,
    contract.test_plain_sgd_estimators_refuse_other_optimisers,
)


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, plug-ins not yet scanned and the example not imported: what a test registers
    is gone afterwards (and a forked Snakemake sees only what its config loads)."""
    estimators.names()  # the built-in estimators, into the copies below
    for table in ("REGISTRY", "SUSPICIOUS", "RENAMED", "SPECS"):
        monkeypatch.setattr(estimators, table, dict(getattr(estimators, table)))
    monkeypatch.setattr(estimators, "_plugins_state", {"scanned": False})
    monkeypatch.delenv(estimators.PLUGINS_ENV, raising=False)
    monkeypatch.syspath_prepend(str(TESTS))
    sys.modules.pop(PLUGIN, None)
    yield estimators
    sys.modules.pop(PLUGIN, None)


def _entry_points(monkeypatch, *eps: importlib.metadata.EntryPoint) -> None:
    def entry_points(**selection):
        return [ep for ep in eps if ep.group == selection.get("group")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def _ep(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=estimators.ENTRY_POINT_GROUP)


def _passes_the_contract(name: str) -> None:
    assert name in estimators.names()
    for kind in ("logreg", "mlp"):
        setting = contract._run(kind)
        for check in CONTRACT:
            check(name, setting)
    contract.test_declares_which_end_of_its_scores_is_suspicious(name)
    contract.test_registry_name_is_the_function_name_or_the_reason_is_given(name)
    contract.test_hyperparameters_can_be_named(name)


def test_a_plugin_listed_by_name_registers_and_passes_the_contract(registry):
    assert NAME not in registry.names()
    assert registry.load_plugins([PLUGIN]) == [NAME]
    assert registry.load_plugins([PLUGIN]) == []  # imported once
    _passes_the_contract(NAME)
    assert registry.hparam_names(NAME) == ["scale"] and registry.suspicious(NAME) == "high"


def test_a_plugin_registers_through_an_entry_point(registry, monkeypatch):
    other_group = importlib.metadata.EntryPoint(name="x", value="no_such_module", group="other.group")
    _entry_points(monkeypatch, _ep("example", PLUGIN), other_group)
    _passes_the_contract(NAME)


def test_a_plugin_registers_through_the_environment_variable(registry, monkeypatch):
    """What the workflow's jobs see: the Snakefile passes its config's plugins on in INFLUENCE_PLUGINS."""
    monkeypatch.setenv(registry.PLUGINS_ENV, f" {PLUGIN} ,")
    assert NAME in registry.names()


def test_a_plugin_that_fails_to_import_is_named_and_leaves_nothing_registered(registry, monkeypatch, tmp_path):
    (tmp_path / "half_plugin.py").write_text(textwrap.dedent('''
        from influence.estimators import register

        @register("half_registered", suspicious="low")
        def half_registered(traj, train_data, target_data=None):
            return None

        raise RuntimeError("broken after registering")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "half_plugin", raising=False)
    with pytest.raises(ImportError, match=r"estimator plug-in 'half_plugin' failed to import: RuntimeError: broken"):
        registry.load_plugins(["half_plugin"])
    assert "half_registered" not in registry.REGISTRY and "half_registered" not in registry.SPECS
    with pytest.raises(ImportError, match="plug-in 'no_such_plugin_module' failed to import: ModuleNotFoundError"):
        registry.load_plugins(["no_such_plugin_module"])
    with pytest.raises(TypeError, match="list of importable module names"):
        registry.load_plugins(PLUGIN)
    _entry_points(monkeypatch, _ep("broken", "no_such_plugin_module"))
    for _ in range(2):  # the error again on the next use, not a registry silently without the plug-in
        with pytest.raises(ImportError, match=r"plug-in 'broken' \(entry point 'no_such_plugin_module' of group"):
            registry.names()


def test_a_plugin_passing_hparams_on_declares_where_they_go(registry):
    @registry.register("forwards_undeclared", suspicious="low")
    def forwards_undeclared(traj, train_data, target_data=None, **hparams):
        return None

    @registry.register("forwards_declared", suspicious="low", hparams_of="cg_score")
    def forwards_declared(traj, train_data, target_data=None, **hparams):
        return None

    with pytest.raises(TypeError, match="forwards_undeclared.*hparams_of"):
        registry.hparam_names("forwards_undeclared")
    assert registry.hparam_names("forwards_declared") == registry.hparam_names("cg_score")


def test_the_adding_an_estimator_example_works_as_written(registry):
    lines = estimators.__doc__.splitlines()
    assert lines[2].startswith("Adding an estimator") and lines[2].endswith("::") and lines[3] == ""
    n_code = next(i for i, ln in enumerate(lines[4:]) if ln and not ln.startswith(" "))
    code = textwrap.dedent("\n".join(lines[4:4 + n_code]))
    end = lines.index("", 4 + n_code)  # the end of the paragraph after the example
    assert end - 2 <= 15  # what a newcomer reads first: at most 15 lines
    exec(compile(code, "influence/estimators/__init__.py (docstring)", "exec"), {})
    (name,) = set(registry.REGISTRY) - set(contract.NAMES)
    _passes_the_contract(name)


# --------------------------------------------------------------------------------------------------- workflow
needs_snakemake = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
WITH_PLUGIN = {"plugins": [PLUGIN], f"estimators.{NAME}": {"hparams": {"scale": 2.0}},
               "experiments.fidelity.estimators": ["sgd_ie", NAME]}
SCORES = f"results/scores/bc/sym20/logreg/ep2/seed0/{NAME}"


@pytest.fixture
def workflow(registry, monkeypatch, tmp_path):
    """Plans in ``tmp_path``; the example importable in Snakemake and its jobs (tests/ on PYTHONPATH)."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))

    def run(changes: dict, *args: str) -> tuple[int, str]:
        path = tmp_path / "config.yaml"
        path.write_text(smoke_with(changes))
        return plan(tmp_path, "--configfile", str(path), *args)

    return run


@needs_snakemake
def test_dry_run_accepts_a_plugin_listed_under_plugins_and_estimators(workflow):
    rc, out = workflow(WITH_PLUGIN, "-n")
    assert rc == 0, out[-3000:]
    assert f"{SCORES}.npy" in out
    # its hyperparameters are checked like a built-in estimator's
    rc, out = workflow({**WITH_PLUGIN, f"estimators.{NAME}": {"hparams": {"scal": 2.0}}}, "-n")
    assert rc != 0 and f"estimators.{NAME}.hparams" in out and "'scal'" in out and "takes scale" in out, out[-3000:]
    # without `plugins:` the name is unknown
    rc, out = workflow({k: v for k, v in WITH_PLUGIN.items() if k != "plugins"}, "-n")
    assert rc != 0 and NAME in out, out[-3000:]


@pytest.mark.slow
@needs_snakemake
def test_the_workflow_runs_a_plugin_estimator(workflow, tmp_path):
    """The estimate job (a separate interpreter) loads the plug-in from INFLUENCE_PLUGINS, set by the Snakefile."""
    rc, out = workflow(WITH_PLUGIN, "--cores", "2", f"{SCORES}.npy")
    assert rc == 0, out[-3000:]
    scores = np.load(tmp_path / f"{SCORES}.npy")
    run = Trajectory.load(tmp_path / "results/runs/bc/sym20/logreg/ep2/seed0/run.pt")
    train = Dataset.load(tmp_path / "results/data/bc/seed0/sym20/train.npz")
    estimators.load_plugins([PLUGIN])
    np.testing.assert_array_equal(scores, estimators.get(NAME)(run, train, None, scale=2.0))
