"""Bad configurations stop the workflow at planning time (`snakemake -n`), with a message naming the key, before
anything is written under the results folder. One case per mistake: the smoke config with a few keys changed (laid
over default.yaml, as a user's `--configfile` is), or a config file's raw text."""

from __future__ import annotations

import copy
import inspect
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from influence import data, estimators

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SMOKE = REPO / "experiments" / "config" / "smoke.yaml"

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")


def plan(workdir: Path, *args: str) -> tuple[int, str]:
    """Exit status and output of `snakemake -s Snakefile --directory workdir ARGS`.

    Run as Snakemake's own command line (``snakemake.cli.main``) in a forked copy of this process, which has
    imported torch, the library, Snakemake and jsonschema (whose import alone builds ~40 grammars) already:
    ~1 s a plan instead of ~6 s for a fresh interpreter. Where there is no fork, a subprocess.
    """
    argv = ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    if not hasattr(os, "fork"):
        res = subprocess.run([str(SNAKEMAKE), *argv], capture_output=True, text=True, timeout=300, cwd=workdir)
        return res.returncode, res.stdout + res.stderr
    import jsonschema  # noqa: F401  (imported by the Snakefile's validate)
    import snakemake.cli

    out = workdir / "snakemake_output.txt"
    pid = os.fork()
    if pid == 0:  # the child: Snakemake's main(), its output to a file, then leave without pytest's teardown
        code = 70
        signal.alarm(300)  # a hung plan ends the child (rc -14), not the test session
        try:
            with open(out, "w", buffering=1) as f:
                os.dup2(f.fileno(), 1)
                os.dup2(f.fileno(), 2)
                sys.stdout = sys.stderr = f
                os.chdir(workdir)
                try:
                    snakemake.cli.main(argv)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    text = out.read_text()
    out.unlink()
    return os.waitstatus_to_exitcode(status), text


def smoke_with(changes: dict) -> str:
    """The smoke config with ``{"dotted.key.path": value}`` set, as YAML."""
    cfg = copy.deepcopy(yaml.safe_load(SMOKE.read_text()))
    for path, value in changes.items():
        *parents, key = path.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return yaml.safe_dump(cfg, sort_keys=False)


GRID = {"datasets": ["bc"], "noises": ["sym20"], "models": ["logreg"], "epochs": [2], "seeds": [0]}
BC = {"source": "breast_cancer", "n_train": 60, "n_target": 40, "n_test": 60}
CHECK = {"name": "one_epoch_identity", "function": "replication.bounds.sgd:check_one_epoch_identity"}

# (id, the change: a {dotted key: value} mapping applied to smoke.yaml, or a config file's text, words of the message)
CASES = [
    # --- caught before: the schema (experiments/config/schema.yaml), the name checks of common.smk, Snakemake
    ("unknown_estimator_in_an_experiment", {"experiments.fidelity.estimators": ["sgd_ie", "no_such_estimator"]},
     ["no_such_estimator"]),
    ("unknown_key", {"loo.shardz": 2}, ["shardz"]),
    ("unknown_key_of_a_model", {"models.logreg.learning_rate": 0.1}, ["learning_rate"]),
    ("unknown_top_level_key", {"experimnts": {}}, ["experimnts"]),
    ("wrong_type", {"models.logreg.batch_size": "twenty"}, ["twenty", "batch_size"]),
    ("unknown_data_setting_in_a_grid", {"experiments.fidelity.grids": [{**GRID, "datasets": ["nope_ds"]}]},
     ["nope_ds"]),
    ("unknown_noise_setting_in_a_grid", {"experiments.detection.grids": [{**GRID, "noises": ["sym99"]}]},
     ["sym99"]),
    ("unknown_model_in_a_grid", {"experiments.fidelity.grids": [{**GRID, "models": ["resnet"]}]}, ["resnet"]),
    ("unknown_curation_dataset", {"experiments.curation": {"enabled": True, "datasets": ["nope_ds"]}}, ["nope_ds"]),
    ("bound_check_named_twice", {"experiments.bounds.checks": [CHECK, CHECK]}, ["one_epoch_identity", "twice"]),
    ("unknown_data_source", {"data.bc2": {**BC, "source": "imagenet"}}, ["imagenet", "source"]),
    ("unknown_noise_kind", {"noise.blur": {"kind": "gaussian_blur", "rate": 0.1}}, ["gaussian_blur", "kind"]),
    ("noise_rate_of_one", {"noise.sym20.rate": 1.0}, ["['sym20']['rate']"]),
    ("data_setting_without_n_train", {"data.bc2": {"source": "digits", "n_target": 10, "n_test": 10}}, ["n_train"]),
    ("zero_epochs", {"experiments.fidelity.grids": [{**GRID, "epochs": [0]}]}, ["['epochs']"]),
    ("unknown_suspicion", {"estimators.sgd_ie.suspicion": "middle"}, ["middle", "suspicion"]),
    ("tiny_mem_mb", {"estimators.sgd_ie.mem_mb": 10}, ["['sgd_ie']['mem_mb']"]),
    ("bound_check_outside_influence_bounds", {"experiments.bounds.checks": [{**CHECK, "function": "os:system"}]},
     ["os:system", "function"]),
    ("unknown_bound_check_argument", {"experiments.bounds.checks": [{**CHECK, "args": ["weights"]}]},
     ["weights", "args"]),
    ("unknown_curation_policy", {"experiments.curation.policies": ["greedy"]}, ["greedy", "policies"]),
    ("zero_loo_shards", {"loo.shards": 0}, ["['loo']['shards']"]),
    ("setting_name_with_a_dash", {"data.bc-2": BC}, ["bc-2"]),
    ("unknown_peer_task", {"experiments.peers.tasks": ["C"]}, ["'C'", "tasks"]),
    # (by Snakemake, reading a --configfile before the Snakefile: file and line only with --verbose, test below)
    ("malformed_yaml", "loo:\n  shards: 2\n   chunk: 3\n", ["not valid JSON or YAML"]),
    # --- caught now, by the schema's per-kind noise rules and the plan-time checks of common.smk
    ("empty_estimator_list", {"experiments.fidelity.estimators": []}, ["experiments.fidelity.estimators", "empty"]),
    ("every_estimator_skips_the_model",
     {"estimators.sgd_ie.skip_models": ["logreg"], "estimators.acc_sgd_ie.skip_models": ["logreg"],
      "estimators.random.skip_models": ["logreg"]},
     ["experiments.fidelity.estimators", "logreg", "skip_models"]),
    ("label_noise_without_rate", {"noise.sym30": {"kind": "symmetric"}}, ["'rate' is a required", "['sym30']"]),
    ("feature_noise_without_rate", {"noise.feat": {"kind": "gaussian", "sigma": 2.0}},
     ["'rate' is a required", "['feat']"]),
    ("clean_with_a_rate", {"noise.clean30": {"kind": "clean", "rate": 0.3}}, ["['clean30']['rate']"]),
    ("sigma_for_label_noise", {"noise.sym20.sigma": 1.0}, ["sigma", "sym20"]),
    ("frac_for_gaussian_noise", {"noise.feat": {"kind": "gaussian", "rate": 0.2, "frac": 0.5}}, ["frac", "feat"]),
    ("misspelled_cleanse_estimator", {"experiments.detection.cleanse_estimators": ["acc_sgd_iee"]},
     ["cleanse_estimators", "'acc_sgd_iee'"]),
    ("unknown_estimator_as_a_key", {"estimators.no_such_estimator": {"mem_mb": 1000}}, ["no_such_estimator"]),
    ("misspelled_hyperparameter", {"estimators.sgd_ie.hparams": {"vmap_chnk": 8}},
     ["estimators.sgd_ie.hparams", "vmap_chnk", "vmap_chunk"]),
    ("misspelled_hyperparameter_passed_on", {"estimators.diffin_paper.hparams": {"checkpoint": "even"}},
     ["estimators.diffin_paper.hparams", "checkpoint", "checkpoints"]),
    ("splits_larger_than_the_dataset", {"data.bc.n_train": 500}, ["data.bc", "600 samples", "569"]),
    ("unimportable_plugin", {"plugins": ["no_such_plugin_module"]},
     ["config: plugins", "'no_such_plugin_module'", "ModuleNotFoundError"]),
    ("plugins_not_a_list", {"plugins": "no_such_plugin_module"}, ["config: plugins", "list of importable module"]),
]


@pytest.mark.parametrize("change, words", [pytest.param(c, w, id=i) for i, c, w in CASES])
def test_bad_config_stops_the_plan_naming_the_key(tmp_path, change, words):
    path = tmp_path / "bad.yaml"
    path.write_text(change if isinstance(change, str) else smoke_with(change))
    rc, out = plan(tmp_path, "--configfile", str(path), "-n")
    assert rc != 0, out[-3000:]
    missing = [w for w in words if w not in out]
    assert not missing, (missing, out[-3000:])
    assert not (tmp_path / "results").exists()


def test_malformed_yaml_names_file_and_line_with_verbose(tmp_path):
    # Snakemake reads --configfile before the Snakefile (no hook there) and drops the YAML error's position,
    # except from the traceback --verbose prints (see docs/replication/index.md, "When a run was interrupted").
    path = tmp_path / "bad.yaml"
    path.write_text("loo:\n  shards: 2\n   chunk: 3\n")
    rc, out = plan(tmp_path, "--configfile", str(path), "-n", "--verbose")
    assert rc != 0
    assert f'in "{path}", line 3' in out


def test_valid_hyperparameters_and_rates_pass(tmp_path):
    """The checks above reject only mistakes: known (and passed-on) hyperparameters, clean without a rate."""
    path = tmp_path / "ok.yaml"
    path.write_text(smoke_with({
        "estimators.sgd_ie.hparams": {"vmap_chunk": 32},
        "estimators.diffin_paper.hparams": {"m": 3, "checkpoints": "even"},
        "estimators.diffin_self.hparams": {"form": "full"},
        "noise.clean": {"kind": "clean"},
        "noise.feat": {"kind": "gaussian", "rate": 0.2, "sigma": 0.5},
        "data.bc.n_train": 469,  # 469 + 40 + 60 = 569, all of breast_cancer
    }))
    rc, out = plan(tmp_path, "--configfile", str(path), "-n", "--quiet", "rules")
    assert rc == 0, out[-3000:]


@pytest.mark.parametrize("name", data.OFFLINE)
def test_dataset_sizes_match_the_data(name):
    """influence.data.SIZES, which the plan-time check reads, against the loaded dataset (the offline ones)."""
    assert len(data.load_dataset(name)) == data.SIZES[name]


def test_every_estimator_taking_hparams_names_the_one_it_passes_them_to():
    """The hyperparameter check (common.smk's estimator_hparams) reads the signature; for ``**hparams`` that of the
    estimator declared at registration (``@register(..., hparams_of="diffin")``), which takes no ``**hparams``."""
    params = {n: inspect.signature(estimators.get(n).__wrapped__).parameters.values() for n in estimators.names()}
    takes_any = [n for n, ps in params.items() if any(p.kind is p.VAR_KEYWORD for p in ps)]
    hparams_of = {n: s.hparams_of for n, s in estimators.SPECS.items() if s.hparams_of is not None}
    assert sorted(hparams_of) == sorted(takes_any)
    assert all(t in estimators.names() and t not in hparams_of for t in hparams_of.values())
    assert "HPARAMS_OF" not in (REPO / "experiments" / "rules" / "common.smk").read_text()  # one place: the registry
    assert estimators.hparam_names("diffin_paper") == estimators.hparam_names("diffin")


def test_every_dataset_has_a_size():
    assert set(data.SIZES) == set(data.DATASETS)
