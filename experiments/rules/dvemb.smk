# E10: Data Value Embedding's MNIST-MLP protocol (influence.tasks.e10_dvemb): trajectory LOO of a set of training
# points in both removal modes, every trajectory estimator and dattri's DVEmb on the same recorded run, LDS of both
# kinds. Include it from the Snakefile after common.smk and before report.smk.
# Config block (defaults in default.yaml, types in schema.yaml):
#   experiments:
#     dvemb:
#       epochs: [3]            # one recorded run per (epochs, seed)
#       seeds: [0]
#       settings: {...}        # any key of influence.tasks.e10_dvemb.DEFAULT (sizes, model, SGD, estimators, dattri, LDS)
# One job per (epochs, seed): results/dvemb/ep<epochs>/seed<seed>.json; table_E10 collects them into
# metrics/E10_dvemb.csv (one row per run, removal mode and method, DVEmb's published values included) and
# metrics/E10_lds.csv (notebook E10_dvemb).
from influence.tasks.e10_dvemb import check_dvemb_config

E10 = exp_cfg("dvemb")
try:
    E10_SETTINGS = check_dvemb_config(dict(E10["settings"]))
except ValueError as _e:
    raise WorkflowError(str(_e)) from None
E10_SEEDS = E10["seeds"] if exp_on("dvemb") else []
E10_RUNS = expand(f"{RES}/dvemb/ep{{epochs}}/seed{{seed}}.json", epochs=E10["epochs"], seed=E10_SEEDS)


rule dvemb_run:
    conda:
        PEERS_ENV
    output:
        f"{RES}/dvemb/ep{{epochs}}/seed{{seed}}.json",
    params:
        settings=E10_SETTINGS,
    log:
        f"{RES}/logs/dvemb/ep{{epochs}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/dvemb/ep{{epochs}}/seed{{seed}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    script:
        "../scripts/e10_dvemb.py"


rule table_E10:
    conda:
        CORE_ENV
    input:
        E10_RUNS,
    output:
        runs=f"{RES}/metrics/E10_dvemb.csv",
        lds=f"{RES}/metrics/E10_lds.csv",
    log:
        f"{RES}/logs/tables/E10.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/e10_collect.py"
