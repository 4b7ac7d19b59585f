# Shared helpers: the experiment grids of the config turned into the concrete settings the rules build.
# Every config key has its default in experiments/config/default.yaml (always loaded first) or in
# experiments/config/schema.yaml (filled in by `validate` in the Snakefile), so the rules read keys by indexing.
import itertools
import os
import re
import shutil
from types import SimpleNamespace

import yaml
from snakemake.exceptions import WorkflowError

from influence import estimators
from influence.data import SIZES
from influence.io import config_hash
from replication.cost import Requests
from replication.tasks.common import shift_seeds

# base_seed (schema default 0) shifts every seed of the configuration, before anything reads one
# (replication.tasks.common.shift_seeds): the seed wildcard of every result path is base_seed + s
shift_seeds(config, config["base_seed"])

RES = config["results"]
# Every rule's mem_mb / runtime: the cost model fitted to benchmark files (experiments/cost/model.json,
# replication.cost) times its safety factors; a rule the model does not know requests its own fallback.
COST = Requests(config)
# the `make bench` table the E6 / E7 notebooks show (relative paths: to the repository)
BENCH_SUMMARY = os.path.join(REPO, config["bench_summary"])
# Conda environments of the rules (`--software-deployment-method conda`), relative to the rule files.
ENVS = "../../envs"
CORE_ENV, NOTEBOOKS_ENV, PEERS_ENV = (
    f"{ENVS}/{name}.yaml" for name in ("core", "notebooks", "peers")
)
# One recorded training run: data setting / noise setting / model recipe / epochs / seed.
SET = "{dataset}/{noise}/{model}/ep{epochs}/seed{seed}"
NAME = r"[A-Za-z0-9_]+"
NO_MATCH = r"(?!)"  # a wildcard constraint no value meets (a rule switched off by batch_estimators)


wildcard_constraints:
    dataset=NAME,
    noise=NAME,
    model=NAME,
    estimator=NAME,
    policy=NAME,
    check=NAME,
    seed=r"\d+",
    epochs=r"\d+",
    shard=r"\d+",
    exp=r"E\d",


# The lists by which an experiment selects its jobs; a disabled experiment keeps its options but selects nothing.
SELECTIONS = ("grids", "estimators", "datasets", "policies", "seeds", "checks", "tasks")


def exp_on(name):
    return bool(config["experiments"][name]["enabled"])


def exp_cfg(name):
    """The config block of one experiment; in a disabled one every selection list (grids, estimators, ...) is empty."""
    block = config["experiments"][name]
    return (
        block
        if exp_on(name)
        else {**block, **{k: [] for k in SELECTIONS if k in block}}
    )


def _check_names(kind, names, known):
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise WorkflowError(
            f"config: unknown {kind} {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        )


def settings(exp):
    """All settings (dicts with dataset, noise, model, epochs, seed) of an experiment's grids."""
    out = []
    for g in exp_cfg(exp)["grids"]:
        for d, z, m, e, s in itertools.product(
            g["datasets"], g["noises"], g["models"], g["epochs"], g["seeds"]
        ):
            out.append(dict(dataset=d, noise=z, model=m, epochs=int(e), seed=int(s)))
    seen, uniq = set(), []
    for s in out:
        key = SET.format(**s)
        if key not in seen:
            seen.add(key)
            uniq.append(s)
    return uniq


def estimators_for(exp, model):
    """The experiment's estimators that apply to a model recipe (``skip_models`` in the estimator config)."""
    return [
        name
        for name in exp_cfg(exp)["estimators"]
        if model not in est_spec(name)["skip_models"]
    ]


def est_spec(name):
    """Options of an estimator (every registered name has an entry, with the schema's defaults; see the Snakefile)."""
    return config["estimators"][name]


# Detection directions set in the config (``suspicion:``), overriding the ones declared at registration.
SUSPICION_OVERRIDES = {
    name: spec["suspicion"]
    for name, spec in config["estimators"].items()
    if "suspicion" in spec
}


def setting_key(wc):
    return SET.format(
        dataset=wc.dataset,
        noise=wc.noise,
        model=wc.model,
        epochs=wc.epochs,
        seed=wc.seed,
    )


# ---------------------------------------------------------------------------- checks at planning time
for _exp in ("fidelity", "detection", "deletion", "cost"):
    for _s in settings(_exp):
        _check_names("data setting", [_s["dataset"]], config["data"])
        _check_names("noise setting", [_s["noise"]], config["noise"])
        _check_names("model recipe", [_s["model"]], config["models"])
    _check_names("estimator", exp_cfg(_exp)["estimators"], estimators.names())
    # an enabled experiment with settings but no estimator for one of them would fail once its runs are done
    for _s in settings(_exp):
        if not estimators_for(_exp, _s["model"]):
            _why = (
                "is empty"
                if not exp_cfg(_exp)["estimators"]
                else (
                    f"has only estimators that skip the model {_s['model']!r} (skip_models)"
                )
            )
            raise WorkflowError(
                f"config: experiments.{_exp}.estimators {_why}; list at least one estimator for it, "
                f"or set experiments.{_exp}.enabled: false"
            )
for _d in exp_cfg("curation")["datasets"]:
    _check_names("data setting", [_d], config["data"])
# the cleansing subset picks among the detection estimators: a misspelled name would drop one silently
_check_names(
    "estimator in experiments.detection.cleanse_estimators",
    exp_cfg("detection")["cleanse_estimators"] or [],
    estimators.names(),
)
# every key of `estimators:` is a registered name (the Snakefile adds the registered ones before validating)
_check_names(
    "estimator (a key of estimators:)", config["estimators"], estimators.names()
)


def estimator_hparams(name):
    """Names of the keyword arguments (hyperparameters) of a registered estimator, after (traj, train, target); for
    one that passes **hparams on, those of the estimator it declared at registration (``hparams_of=...``).
    """
    try:
        return estimators.hparam_names(name)
    except (TypeError, ValueError) as e:
        raise WorkflowError(
            f"config: estimators.{name}.hparams cannot be checked: {e}"
        ) from None


for _name, _spec in config["estimators"].items():
    if _spec["hparams"]:
        _known = estimator_hparams(_name)
        _unknown = sorted(set(_spec["hparams"]) - set(_known))
        if _unknown:
            raise WorkflowError(
                f"config: estimators.{_name}.hparams: unknown {', '.join(map(repr, _unknown))}; "
                f"{_name} takes {', '.join(_known) or 'none'}"
            )

# every data setting fits in its dataset (sizes known without loading it: influence.data.SIZES)
for _name, _spec in config["data"].items():
    _total = _spec["n_train"] + _spec["n_target"] + _spec["n_test"]
    if _total > SIZES[_spec["source"]]:
        raise WorkflowError(
            f"config: data.{_name} asks for {_total} samples (n_train {_spec['n_train']} + n_target "
            f"{_spec['n_target']} + n_test {_spec['n_test']}), but {_spec['source']} has {SIZES[_spec['source']]}"
        )

# Which estimators each setting needs (a setting may belong to several experiments).
SETTING_ESTIMATORS = {}
SETTING_WILDCARDS = (
    {}
)  # the same settings' wildcard values (strings, as Snakemake passes them), for the batch rules
for _exp in ("fidelity", "detection", "deletion", "cost"):
    for _s in settings(_exp):
        SETTING_ESTIMATORS.setdefault(SET.format(**_s), [])
        SETTING_WILDCARDS[SET.format(**_s)] = SimpleNamespace(
            **{k: str(v) for k, v in _s.items()}
        )
        for _e in estimators_for(_exp, _s["model"]):
            if _e not in SETTING_ESTIMATORS[SET.format(**_s)]:
                SETTING_ESTIMATORS[SET.format(**_s)].append(_e)


def n_shards():
    return int(config["loo"]["shards"])


def loo_shards(wc):
    return expand(
        f"{RES}/loo/{setting_key(wc)}/shard{{shard}}.npz", shard=range(n_shards())
    )


def scores_of(wc):
    return {
        e: f"{RES}/scores/{setting_key(wc)}/{e}.npy"
        for e in SETTING_ESTIMATORS.get(setting_key(wc), [])
    }


def splits_of(wc):
    base = f"{RES}/data/{wc.dataset}/seed{wc.seed}"
    return dict(
        train=f"{base}/{wc.noise}/train.npz",
        mask=f"{base}/{wc.noise}/mask.npy",
        target=f"{base}/target.npz",
        test=f"{base}/test.npz",
    )


HAVE_TEX = shutil.which("latexmk") is not None
PAPER_OUT = f"{RES}/report/paper.pdf" if HAVE_TEX else f"{RES}/report/paper_SKIPPED.txt"


def all_targets():
    return [
        f"{RES}/report/claims.csv",
        f"{RES}/report/claims.tex",
        f"{RES}/report/claims.md",
        f"{RES}/report/numbers.tex",
        PAPER_OUT,
        *ALL_FIGURES_TABLES,
        *NOTEBOOK_HTML,
    ]


def score_config_hash(wc):
    """Short hash of everything that determines a score file (recorded in its provenance)."""
    return config_hash(
        {
            "data": config["data"][wc.dataset],
            "noise": config["noise"][wc.noise],
            "model": config["models"][wc.model],
            "epochs": int(wc.epochs),
            "seed": int(wc.seed),
            "estimator": {
                "name": wc.estimator,
                "hparams": est_spec(wc.estimator)["hparams"],
            },
        }
    )


def _scores_or_none(wc):
    """Score file of a real estimator; the baselines 'oracle' (true noise mask) and 'none' need none."""
    if wc.estimator in ("oracle", "none", "random_removal"):
        return []
    return [f"{RES}/scores/{setting_key(wc)}/{wc.estimator}.npy"]


def _per_setting(exp, pattern, extra=None):
    """Files of one kind for every setting of an experiment (``{estimator}`` expanded when present)."""
    out = []
    for s in settings(exp):
        ests = estimators_for(exp, s["model"]) + list(extra or [])
        for e in ests if "{estimator}" in pattern else [None]:
            out.append(pattern.format(**s, estimator=e))
    return out


def cleanse_estimators(model):
    """Estimators used for cleansing (``cleanse_estimators``; null: all detection estimators) + baselines."""
    ests = estimators_for("detection", model)
    chosen = exp_cfg("detection")["cleanse_estimators"]
    if chosen is not None:
        ests = [e for e in ests if e in chosen]
    return ests + ["oracle", "random_removal"]


def _detection_settings():
    return [
        s
        for s in settings("detection")
        if config["noise"][s["noise"]]["kind"] != "clean"
    ]


def bound_checks():
    """The E5 checks by name (a list in the config, so a config laid over another replaces it whole)."""
    checks = {}
    for c in exp_cfg("bounds")["checks"]:
        if c["name"] in checks:
            raise WorkflowError(f"config: bound check name {c['name']!r} appears twice")
        checks[c["name"]] = c
    return checks


def _check_spec(wc):
    return bound_checks()[wc.check]


def _check_inputs(wc):
    """A check that reads a recorded run (``run:`` in its config) depends on that run and its data."""
    run = check_runs().get(wc.check)
    if not run:
        return {}
    w = SimpleNamespace(**run)
    return dict(splits_of(w), run=f"{RES}/runs/{setting_key(w)}/run.pt")


def check_runs():
    """E5 check name -> the setting of the recorded run it reads (checks with ``run:`` only)."""
    keys = ("dataset", "noise", "model", "epochs", "seed")
    return {
        name: {k: c["run"][k] for k in keys}
        for name, c in bound_checks().items()
        if c.get("run")
    }


def run_summaries():
    """The summary.json (with the run's health) of every recorded run the experiments and checks use."""
    keys = set(SETTING_ESTIMATORS) | {SET.format(**s) for s in check_runs().values()}
    return [f"{RES}/runs/{k}/summary.json" for k in sorted(keys)]


# The notebooks: tables read, figures and tables written (experiments/notebooks.yaml; one rule each, in report.smk).
with open(os.path.join(REPO, "experiments", "notebooks.yaml")) as _f:
    NB = yaml.safe_load(_f)
# Named inputs of each notebook; an included rule file may leave out some of them (e7_peers.smk does).
NB_INPUTS = {
    nb: {k: f"{RES}/{p}" for k, p in spec["inputs"].items()} for nb, spec in NB.items()
}
# The experiment tables (metrics/*.csv) the notebooks draw, which the claims table reads.
METRIC_TABLES = [
    f"{RES}/{p}"
    for spec in NB.values()
    for p in spec["inputs"].values()
    if p.startswith("metrics/")
]


def nb_on(nb):
    """A notebook tied to an experiment (``experiment:``) runs while it is enabled; the others always."""
    return "experiment" not in NB[nb] or exp_on(NB[nb]["experiment"])


def _claim_tables(test):
    """The metric tables a claim's test reads (``kind: all`` recursively; ``checks`` read E5_bounds by default)."""
    if test.get("kind") == "all":
        return {t for sub in test["tests"] for t in _claim_tables(sub)}
    if test.get("kind") == "checks":
        return {test.get("table", "E5_bounds")}
    return {test["table"]} if "table" in test else set()


with open(os.path.join(REPO, "paper", "claims.yaml")) as _f:
    _CLAIMS = yaml.safe_load(_f)
# The claims each notebook tests (its opening cell names them, its captions list them): those whose test reads one
# of its metric tables, or whose `experiment:` names it (X-2: E7, asserted by the test suite).
NB_CLAIMS = {
    nb: [
        c["id"]
        for c in _CLAIMS
        if _claim_tables(c["test"])
        & {os.path.splitext(os.path.basename(p))[0] for p in spec["inputs"].values()}
        or nb.split("_")[0] in [e.strip() for e in str(c["experiment"]).split(",")]
    ]
    for nb, spec in NB.items()
}
# The caption of figure <f> in the `snakemake --report` HTML: experiments/report/captions/<f>.rst (RST, rendered
# with Jinja: `snakemake.params.notebook`, `snakemake.params.claims`); a figure without one has no caption.
CAPTIONS = os.path.join(REPO, "experiments", "report", "captions")


def _caption(f):
    return (
        f"../report/captions/{f}.rst"
        if os.path.exists(os.path.join(CAPTIONS, f"{f}.rst"))
        else None
    )


def nb_outputs(nb):
    spec = NB[nb]
    out = {}
    for f in spec["figures"]:
        out[f"{f}_pdf"] = f"{RES}/figures/{f}.pdf"
        out[f"{f}_png"] = report(
            f"{RES}/figures/{f}.png",
            caption=_caption(f),
            category=nb.replace("_", " "),
            labels={"figure": f},
        )
    for t in spec["tables"]:
        out[f"{t}_csv"] = f"{RES}/tables/{t}.csv"
        out[f"{t}_tex"] = f"{RES}/tables/{t}.tex"
    return out


def notebook_rule(nb):
    """Define the rule notebook_<nb> (called from report.smk, once e7_peers.smk has set the E7 inputs).

    A function, not a loop body: the notebook path is evaluated again when the job runs, by when a loop
    variable would hold the last notebook.
    """

    rule:
        name:
            f"notebook_{nb}"
        input:
            **NB_INPUTS[nb],
            claims_yaml=f"{REPO}/paper/claims.yaml",  # the criteria of the claims the notebook tests, stated in it
        output:
            **nb_outputs(nb),
        # the executed notebook (no wfio log: a failing cell's error is in it with papermill, on stderr without)
        log:
            notebook=f"{RES}/notebooks/{nb}.ipynb",
        benchmark:
            f"{RES}/benchmarks/notebooks/{nb}.tsv"
        conda:
            NOTEBOOKS_ENV
        threads: 1
        resources:
            **COST.batch(f"notebook_{nb}", f"notebook_{nb}", [{}], (2000, 10)),
        params:
            notebook=nb,
            claims=NB_CLAIMS[nb],
        notebook:
            f"../../notebooks/{nb}.ipynb"


# Every figure and table of the notebooks that run in this configuration.
ALL_FIGURES_TABLES = [
    p
    for nb in NB
    if nb_on(nb)
    for p in (
        [f"{RES}/figures/{f}.{x}" for f in NB[nb]["figures"] for x in ("pdf", "png")]
        + [f"{RES}/tables/{t}.{x}" for t in NB[nb]["tables"] for x in ("csv", "tex")]
    )
]
# The executed notebooks exported to HTML, readable without Jupyter, figures embedded (the notebook_html rule,
# in experiments/rules/notebooks_html.smk).
NOTEBOOK_HTML = [f"{RES}/notebooks/{nb}.html" for nb in NB if nb_on(nb)]


# ---------------------------------------------------------------------------- batch_seeds: one job per stage and setting
# With batch_seeds, every stage of the recorded runs (data, noise, train, LOO, LOO merge, scores, evaluation,
# cleansing, deletion) runs all the seeds of a setting (dataset / noise / model / epochs) in one job: the rule's own
# script once per seed in one interpreter (experiments/scripts/seeds.py), the same files byte for byte. A job's
# fixed cost (Python, torch, Snakemake's script preamble) is ~3 CPU-s on a 2-core machine, more than most of these
# jobs compute: 5 seeds a setting would otherwise multiply it by 5. The per-seed rules then match no seed.
BATCH_SEEDS = bool(config["batch_seeds"])
SEED_WC = NO_MATCH if BATCH_SEEDS else r"\d+"
RUN_KEYS = ("dataset", "noise", "model", "epochs", "seed")


def all_runs():
    """Every recorded run the experiments and the E5 checks use: SET key -> wildcard values (strings, SET order)."""
    runs = {
        k: {c: str(getattr(w, c)) for c in RUN_KEYS}
        for k, w in SETTING_WILDCARDS.items()
    }
    for s in check_runs().values():
        runs.setdefault(SET.format(**s), {c: str(s[c]) for c in RUN_KEYS})
    return runs


def seed_groups(runs):
    """Runs (wildcard dicts) grouped by their setting without the seed: '<dataset>/<noise>/<model>/ep<epochs>' ->
    runs by ascending seed."""
    groups = {}
    for w in runs:
        groups.setdefault("{dataset}/{noise}/{model}/ep{epochs}".format(**w), {})[
            int(w["seed"])
        ] = w
    return {g: [by_seed[s] for s in sorted(by_seed)] for g, by_seed in groups.items()}


def _ns(w):
    return SimpleNamespace(**w)


def job_prepare_data(dataset, seed):
    base = f"{RES}/data/{dataset}/seed{seed}"
    return dict(
        input={},
        output={p: f"{base}/{p}.npz" for p in ("train", "target", "test")},
        params=dict(spec=config["data"][dataset]),
        wildcards=dict(dataset=dataset, seed=str(seed)),
        log=f"{RES}/logs/prepare_data/{dataset}_seed{seed}.log",
    )


def job_inject_noise(dataset, noise, seed):
    base = f"{RES}/data/{dataset}/seed{seed}"
    return dict(
        input=dict(train=f"{base}/train.npz"),
        output=dict(train=f"{base}/{noise}/train.npz", mask=f"{base}/{noise}/mask.npy"),
        params=dict(spec=config["noise"][noise]),
        wildcards=dict(dataset=dataset, seed=str(seed), noise=noise),
        log=f"{RES}/logs/inject_noise/{dataset}_seed{seed}_{noise}.log",
    )


def job_train(w):
    key = SET.format(**w)
    return dict(
        input=splits_of(_ns(w)),
        output=dict(
            run=f"{RES}/runs/{key}/run.pt",
            meta=f"{RES}/runs/{key}/run.pt.json",
            summary=f"{RES}/runs/{key}/summary.json",
        ),
        params=dict(spec=config["models"][w["model"]]),
        wildcards=dict(w),
        log=f"{RES}/logs/train/{key}.log",
    )


def job_loo(w, shard):
    key = SET.format(**w)
    return dict(
        input=dict(splits_of(_ns(w)), run=f"{RES}/runs/{key}/run.pt"),
        output=dict(
            loo=f"{RES}/loo/{key}/shard{shard}.npz",
            provenance=f"{RES}/loo/{key}/shard{shard}.npz.json",
        ),
        params=dict(
            n_shards=n_shards(),
            subset=config["loo"]["subset"],
            chunk=config["loo"]["chunk"],
        ),
        wildcards=dict(w, shard=str(shard)),
        log=f"{RES}/logs/loo/{key}/shard{shard}.log",
    )


def job_loo_merge(w):
    key, shards = SET.format(**w), loo_shards(_ns(w))
    return dict(
        input=dict(shards=shards, provenance=[f"{p}.json" for p in shards]),
        output=dict(
            loo=f"{RES}/loo/{key}/loo.npz", provenance=f"{RES}/loo/{key}/loo.npz.json"
        ),
        params={},
        wildcards=dict(w),
        log=f"{RES}/logs/loo_merge/{key}.log",
    )


def job_estimate(w):
    key, ests = SET.format(**w), SETTING_ESTIMATORS[SET.format(**w)]
    return dict(
        input=dict(splits_of(_ns(w)), run=f"{RES}/runs/{key}/run.pt"),
        output=dict(
            scores=[f"{RES}/scores/{key}/{e}.npy" for e in ests],
            provenance=[f"{RES}/scores/{key}/{e}.json" for e in ests],
        ),
        params=dict(
            estimators=list(ests),
            setting=dict(w),
            hparams=[est_spec(e)["hparams"] for e in ests],
            config_hash=[
                score_config_hash(SimpleNamespace(**w, estimator=e)) for e in ests
            ],
        ),
        wildcards=dict(w),
        log=f"{RES}/logs/estimate/{key}/batch.log",
    )


def job_evaluate_fidelity(w):
    key = SET.format(**w)
    return dict(
        input=dict(
            scores_of(_ns(w)),
            loo=f"{RES}/loo/{key}/loo.npz",
            summary=f"{RES}/runs/{key}/summary.json",
        ),
        output=[f"{RES}/metrics/fidelity/{key}.csv"],
        params=dict(ps=config["jaccard_percents"]),
        wildcards=dict(w),
        log=f"{RES}/logs/evaluate_fidelity/{key}.log",
    )


def job_evaluate_detection(w):
    key = SET.format(**w)
    return dict(
        input=dict(scores_of(_ns(w)), mask=splits_of(_ns(w))["mask"]),
        output=[f"{RES}/metrics/detection/{key}.csv"],
        params=dict(directions=SUSPICION_OVERRIDES),
        wildcards=dict(w),
        log=f"{RES}/logs/evaluate_detection/{key}.log",
    )


def job_cleanse(w):
    key, ests = SET.format(**w), cleanse_estimators(w["model"])
    return dict(
        input=dict(
            splits_of(_ns(w)),
            scores=[
                f"{RES}/scores/{key}/{e}.npy"
                for e in ests
                if e not in ("oracle", "random_removal")
            ],
        ),
        output=[f"{RES}/cleansing/{key}/{e}.csv" for e in ests],
        params=dict(
            estimators=ests,
            setting=dict(w),
            spec=config["models"][w["model"]],
            fractions=exp_cfg("detection")["cleanse_fractions"],
            directions=SUSPICION_OVERRIDES,
        ),
        wildcards=dict(w),
        log=f"{RES}/logs/cleanse/{key}/batch.log",
    )


def job_deletion(w):
    key, ests = SET.format(**w), estimators_for("deletion", w["model"]) + [
        "random_removal"
    ]
    return dict(
        input=dict(
            splits_of(_ns(w)),
            scores=[
                f"{RES}/scores/{key}/{e}.npy" for e in ests if e != "random_removal"
            ],
        ),
        output=dict(
            deletion=[f"{RES}/deletion/{key}/{e}.csv" for e in ests],
            coreset=[f"{RES}/coreset/{key}/{e}.csv" for e in ests],
        ),
        params=dict(
            estimators=ests,
            setting=dict(w),
            spec=config["models"][w["model"]],
            ks=exp_cfg("deletion")["ks"],
            keep_fractions=exp_cfg("deletion")["keep_fractions"],
        ),
        wildcards=dict(w),
        log=f"{RES}/logs/deletion/{key}/batch.log",
    )


PER_ESTIMATOR = ("estimate", "cleanse", "deletion")


def seed_batch_rule(stage, group, script_file, jobs, mem, minutes, tag="seeds"):
    """Define the job ``<stage>_<group>``: the script of the per-seed ``stage`` run for every job of ``jobs`` in one
    process (experiments/scripts/seeds.py); its inputs and outputs are those of the jobs together.
    """
    inputs, outputs = {}, {}
    for i, j in enumerate(jobs):
        inputs.update({f"j{i}_{k}": v for k, v in j["input"].items() if v != []})
        outs = (
            j["output"]
            if isinstance(j["output"], dict)
            else dict(enumerate(j["output"]))
        )
        outputs.update({f"j{i}_{k}": v for k, v in outs.items()})
    suffix = re.sub(r"\W", "_", group)
    rule_name = f"{stage}_{suffix}"
    members = (
        []
    )  # what the job runs, for its requests: one per run, or per run and estimator
    for j in jobs:
        ests = j["params"].get("estimators") if stage in PER_ESTIMATOR else None
        members += (
            [dict(j["wildcards"], estimator=e) for e in ests]
            if ests
            else [j["wildcards"]]
        )

    rule:
        name:
            rule_name
        input:
            **inputs,
        output:
            **outputs,
        log:
            f"{RES}/logs/{stage}/{group}/{tag}.log",
        benchmark:
            f"{RES}/benchmarks/{stage}/{group}/{tag}.tsv"
        conda:
            CORE_ENV
        threads: 1
        resources:
            **COST.batch(rule_name, stage, members, (mem, minutes)),
        params:
            script=os.path.join(REPO, "experiments", "scripts", script_file),
            rule=stage,
            jobs=jobs,
        script:
            "../scripts/seeds.py"
