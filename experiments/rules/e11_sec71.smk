# E11: SGD-IE and ACC-SGD-IE in the ACC-SGD-IE authors' Sec. 7.1 protocol (replication.tasks.e11_sec71), beside E1's
# ground-truth test. Include it from the Snakefile after common.smk and before report.smk.
# Config block experiments.sec71 (default.yaml; types in schema.yaml): grids of datasets x noises x models x epochs x
# seeds, sizes per dataset, batch_size, feature_sigma, label_rate, optional extra model recipes.
# One job per (dataset, noise, model): results/sec71/<dataset>/<noise>/<model>.csv with every epoch count and seed of
# its grids (the cross-validated α of logistic regression is fitted once per seed); table_E11 concatenates them into
# metrics/E11_sec71.csv (notebook E11_sec71). Seeds are shifted by base_seed like every other seed.
E11 = exp_cfg("sec71")
E11_JOBS = {}
for _g in E11["grids"]:
    for _d, _z, _m in itertools.product(_g["datasets"], _g["noises"], _g["models"]):
        _e, _s = E11_JOBS.setdefault((_d, _z, _m), (set(), set()))
        _e.update(int(x) for x in _g["epochs"])
        _s.update(config["base_seed"] + int(x) for x in _g["seeds"])
from replication.tasks.e11_sec71 import MODELS as _E11_MODELS

_check_names(
    "E11 model",
    [m for (_, _, m) in E11_JOBS],
    {**_E11_MODELS, **(E11.get("models") or {})},
)
_E11_SIZES = E11.get("sizes") or {}
for _d, _, _ in E11_JOBS:
    if _d not in _E11_SIZES:
        raise WorkflowError(
            f"config: experiments.sec71.sizes has no entry for dataset {_d!r}"
        )
E11_PARTS = [f"{RES}/sec71/{d}/{z}/{m}.csv" for (d, z, m) in E11_JOBS]


rule e11_sec71:
    output:
        f"{RES}/sec71/{{dataset}}/{{noise}}/{{model}}.csv",
    log:
        f"{RES}/logs/sec71/{{dataset}}_{{noise}}_{{model}}.log",
    benchmark:
        f"{RES}/benchmarks/sec71/{{dataset}}_{{noise}}_{{model}}.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("e11_sec71", (3000, 60)),
    params:
        cfg={k: v for k, v in E11.items() if k != "grids"},
        epochs=lambda wc: sorted(E11_JOBS[(wc.dataset, wc.noise, wc.model)][0]),
        seeds=lambda wc: sorted(E11_JOBS[(wc.dataset, wc.noise, wc.model)][1]),
    script:
        "../scripts/e11_sec71.py"


rule table_E11:
    input:
        E11_PARTS,
    output:
        f"{RES}/metrics/E11_sec71.csv",
    log:
        f"{RES}/logs/tables/E11.log",
    benchmark:
        f"{RES}/benchmarks/table_E11.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E11", (1000, 5)),
    script:
        "../scripts/e11_collect.py"
