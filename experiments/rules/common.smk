# Shared helpers: the experiment grids of the config turned into the concrete settings the rules build.
import itertools
from snakemake.exceptions import WorkflowError
import re
import shutil
from types import SimpleNamespace
from pathlib import Path

RES = config.get("results", "results")
# One recorded training run: data setting / noise setting / model recipe / epochs / seed.
SET = "{dataset}/{noise}/{model}/ep{epochs}/seed{seed}"
NAME = r"[A-Za-z0-9_]+"


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


def exp_cfg(name):
    """The config block of one experiment ({} when absent); disabled experiments count as absent."""
    block = config.get("experiments", {}).get(name) or {}
    return block if block.get("enabled", True) else {}


def _registered_estimators():
    """Names registered with @register("...") in influence/estimators/*.py, found without importing torch."""
    names = set()
    for f in Path(REPO, "influence", "estimators").glob("*.py"):
        names.update(re.findall(r"@register\(\s*[\"']([^\"']+)[\"']", f.read_text()))
    return names


def _check_names(kind, names, known):
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise WorkflowError(
            f"config: unknown {kind} {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        )


def settings(exp):
    """All settings (dicts with dataset, noise, model, epochs, seed) of an experiment's grids."""
    out = []
    for g in exp_cfg(exp).get("grids", []):
        for d, z, m, e, s in itertools.product(g["datasets"], g["noises"], g["models"], g["epochs"], g["seeds"]):
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
    out = []
    for name in exp_cfg(exp).get("estimators", []):
        spec = config.get("estimators", {}).get(name) or {}
        if model not in spec.get("skip_models", []):
            out.append(name)
    return out


def est_spec(name):
    return config.get("estimators", {}).get(name) or {}


def setting_key(wc):
    return SET.format(dataset=wc.dataset, noise=wc.noise, model=wc.model, epochs=wc.epochs, seed=wc.seed)


# ---------------------------------------------------------------------------- checks at planning time
for _exp in ("fidelity", "detection", "deletion", "cost"):
    for _s in settings(_exp):
        _check_names("data setting", [_s["dataset"]], config.get("data", {}))
        _check_names("noise setting", [_s["noise"]], config.get("noise", {}))
        _check_names("model recipe", [_s["model"]], config.get("models", {}))
    _check_names("estimator", exp_cfg(_exp).get("estimators", []), _registered_estimators())
for _d in exp_cfg("curation").get("datasets", []):
    _check_names("data setting", [_d], config.get("data", {}))

# Which estimators each setting needs (a setting may belong to several experiments).
SETTING_ESTIMATORS = {}
for _exp in ("fidelity", "detection", "deletion", "cost"):
    for _s in settings(_exp):
        SETTING_ESTIMATORS.setdefault(SET.format(**_s), [])
        for _e in estimators_for(_exp, _s["model"]):
            if _e not in SETTING_ESTIMATORS[SET.format(**_s)]:
                SETTING_ESTIMATORS[SET.format(**_s)].append(_e)


def n_shards():
    return int(config.get("loo", {}).get("shards", 1))


def loo_shards(wc):
    return expand(f"{RES}/loo/{setting_key(wc)}/shard{{shard}}.npz", shard=range(n_shards()))


def scores_of(wc):
    return {e: f"{RES}/scores/{setting_key(wc)}/{e}.npy" for e in SETTING_ESTIMATORS.get(setting_key(wc), [])}


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
        PAPER_OUT,
        *ALL_FIGURES_TABLES,
    ]


def config_digest(wc):
    """Short hash of everything that determines a score file (the same as influence.provenance.config_hash)."""
    import hashlib
    import json

    cfg = {
        "data": config["data"][wc.dataset],
        "noise": config["noise"][wc.noise],
        "model": config["models"][wc.model],
        "epochs": int(wc.epochs),
        "seed": int(wc.seed),
        "estimator": {"name": wc.estimator, "hparams": est_spec(wc.estimator).get("hparams", {})},
    }
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
    """Estimators used for cleansing (``cleanse_estimators``, default all detection estimators) + baselines."""
    ests = estimators_for("detection", model)
    chosen = exp_cfg("detection").get("cleanse_estimators")
    if chosen is not None:
        ests = [e for e in ests if e in chosen]
    return ests + ["oracle", "random_removal"]


def _detection_settings():
    return [s for s in settings("detection") if config["noise"][s["noise"]]["kind"] != "clean"]


def bound_checks():
    """The E5 checks by name (a list in the config, so a config laid over another replaces it whole)."""
    checks = {}
    for c in exp_cfg("bounds").get("checks", []):
        if c["name"] in checks:
            raise WorkflowError(f"config: bound check name {c['name']!r} appears twice")
        checks[c["name"]] = c
    return checks


def _check_spec(wc):
    return bound_checks()[wc.check]


def _check_inputs(wc):
    """A check that reads a recorded run (``run:`` in its config) depends on that run and its data."""
    run = bound_checks().get(wc.check, {}).get("run")
    if not run:
        return {}
    w = SimpleNamespace(**{k: run[k] for k in ("dataset", "noise", "model", "epochs", "seed")})
    return dict(splits_of(w), run=f"{RES}/runs/{setting_key(w)}/run.pt")


# Inputs (metric tables) and named outputs of every notebook.
NB = {
    "E1_fidelity": dict(
        inputs={"fidelity": f"{RES}/metrics/E1_fidelity.csv"},
        figures=["E1_fidelity_vs_epochs", "E1_agreement"],
        tables=["E1_fidelity"],
    ),
    "E2_detection": dict(
        inputs={"detection": f"{RES}/metrics/E2_detection.csv", "cleansing": f"{RES}/metrics/E2_cleansing.csv"},
        figures=["E2_auroc", "E2_cleansing"],
        tables=["E2_detection", "E2_cleansing"],
    ),
    "E3_curation": dict(
        inputs={"runs": f"{RES}/metrics/E3_curation.csv", "curves": f"{RES}/metrics/E3_curves.csv"},
        figures=["E3_curves"],
        tables=["E3_curation"],
    ),
    "E4_deletion": dict(
        inputs={"deletion": f"{RES}/metrics/E4_deletion.csv", "coreset": f"{RES}/metrics/E4_coreset.csv"},
        figures=["E4_deletion", "E4_coreset"],
        tables=["E4_deletion"],
    ),
    "E5_bounds": dict(
        inputs={"bounds": f"{RES}/metrics/E5_bounds.csv"},
        figures=["E5_bounds"],
        tables=["E5_bounds"],
    ),
    "E6_cost": dict(
        inputs={"cost": f"{RES}/metrics/E6_cost.csv"},
        figures=["E6_cost"],
        tables=["E6_cost"],
    ),
}


def nb_outputs(nb):
    spec = NB[nb]
    out = {}
    for f in spec["figures"]:
        out[f"{f}_pdf"] = f"{RES}/figures/{f}.pdf"
        out[f"{f}_png"] = report(f"{RES}/figures/{f}.png", category=nb.replace("_", " "), labels={"figure": f})
    for t in spec["tables"]:
        out[f"{t}_csv"] = f"{RES}/tables/{t}.csv"
        out[f"{t}_tex"] = f"{RES}/tables/{t}.tex"
    return out


ALL_FIGURES_TABLES = [
    p for nb in NB for p in (
        [f"{RES}/figures/{f}.{x}" for f in NB[nb]["figures"] for x in ("pdf", "png")]
        + [f"{RES}/tables/{t}.{x}" for t in NB[nb]["tables"] for x in ("csv", "tex")]
    )
]
