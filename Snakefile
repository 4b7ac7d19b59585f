# Training-data influence along the SGD trajectory: every result, figure, table and the claims table.
#
#   snakemake --cores 8                                   # default config (offline, ~15 min on 2 idle cores)
#   snakemake --cores 2 --configfile experiments/config/smoke.yaml     # seconds
#   snakemake --profile experiments/profiles/slurm --configfile experiments/config/paper.yaml
#
# Data flow: prepare_data -> inject_noise -> train -> {estimate[estimator], loo[shard] -> loo_merge}
#            -> evaluate / cleanse / deletion -> aggregate tables; curate (E3); bounds (E5); cost (E6)
#            -> notebooks (figures, tables) -> claims -> paper.
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


# The default configuration, loaded first: it holds the defaults of every key (the schema the rest)
# (found relative to the Snakefile, so `--directory elsewhere` works too). A `--configfile` given on the command
# line is laid over it (Snakemake merges nested mappings; lists replace): switch an experiment off with
# `enabled: false`.
configfile: os.path.join(workflow.basedir, "experiments/config/default.yaml")


REPO = workflow.basedir
# Rule scripts and notebooks import the library (influence/) and the replication package (experiments/replication/)
# from this checkout, with the interpreter running Snakemake (jupyter's "python3" kernel and the script directive
# both resolve "python" on PATH).
SOURCES = (REPO, os.path.join(REPO, "experiments"))
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (*SOURCES, os.environ.get("PYTHONPATH", "")) if p
    ),
    PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
)
os.environ.setdefault("MPLBACKEND", "Agg")
# The notebook directive probes `papermill --version` and, failing, executes with jupyter-nbconvert (a dependency;
# papermill is not): without papermill, bash printed "papermill: command not found" for every notebook job. Where
# none is installed, a silent stand-in that fails is defined instead (bash's default prefix kept).
shell.prefix(
    "set -euo pipefail; command -v papermill >/dev/null || papermill() {{ return 127; }}; "
)
for _source in reversed(SOURCES):
    if _source not in sys.path:
        sys.path.insert(0, _source)

from influence import (
    estimators,
)  # noqa: E402  (the registry, once the checkout is importable)

# Estimators defined outside the library: `plugins:` lists importable modules whose @register calls add them. They
# are imported before `estimators:` is filled in and validated below, so they join the workflow as the built-in ones
# do; the rule scripts import them too (influence.estimators reads INFLUENCE_PLUGINS on first use).
_plugins = config.get("plugins") or []
try:
    estimators.load_plugins(_plugins)
except (ImportError, TypeError) as _e:
    from snakemake.exceptions import WorkflowError

    raise WorkflowError(f"config: plugins: {_e}") from None
os.environ[estimators.PLUGINS_ENV] = ",".join(_plugins)

# Every registered estimator gets an options entry (no entry, or `name:` with nothing after it, means the
# defaults), so `validate` fills in the schema's defaults of each (experiments/config/schema.yaml).
config["estimators"] = {name: opts or {} for name, opts in config["estimators"].items()}
config["estimators"].update(
    {name: {} for name in estimators.names() if name not in config["estimators"]}
)
validate(config, "experiments/config/schema.yaml")


include: "experiments/rules/common.smk"
include: "experiments/rules/runs.smk"
include: "experiments/rules/evaluate.smk"
include: "experiments/rules/curation.smk"
include: "experiments/rules/online_cost.smk"
include: "experiments/rules/bounds.smk"
include: "experiments/rules/lm.smk"
include: "experiments/rules/text.smk"
include: "experiments/rules/dvemb.smk"
include: "experiments/rules/e11_sec71.smk"
include: "experiments/rules/e12_cg_pruning.smk"
include: "experiments/rules/e7_peers.smk"
include: "experiments/rules/report.smk"
include: "experiments/rules/notebooks_html.smk"


rule all:
    default_target: True
    input:
        all_targets(),
