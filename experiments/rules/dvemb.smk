# E10: Data Value Embedding's MNIST protocol (replication.tasks.e10_dvemb): trajectory LOO of a set of training points in
# both removal modes, every trajectory estimator and dattri's DVEmb on the same recorded run, LDS of both kinds; the
# MLP of its Fig. 3 and its appendix's small CNN. Include it from the Snakefile after common.smk and before report.smk.
# Config block (defaults in default.yaml, types in schema.yaml):
#   experiments:
#     dvemb:
#       epochs: [3]            # one recorded run per (setting, epochs, seed)
#       seeds: [0]
#       settings: {...}        # any key of replication.tasks.e10_dvemb.DEFAULT (arch, sizes, model, SGD, estimators, ...)
#       variants:              # further settings, each named; run on the block's seeds (n_seeds: the first n of them)
#         cnn: {epochs: [2], settings: {arch: cnn, ...}}   # settings laid over the block's settings
# One job per (setting, epochs, seed): results/dvemb/<setting>/ep<epochs>/seed<seed>.json, <setting> the name of a
# variant or, for the block's own settings, their arch (mlp); table_E10 collects them into metrics/E10_dvemb.csv (one
# row per run, removal mode and method, DVEmb's published values included, column arch) and metrics/E10_lds.csv
# (notebook E10_dvemb).
from replication.tasks.e10_dvemb import check_dvemb_config, variant_settings

E10 = exp_cfg("dvemb")
try:
    E10_SETTINGS = {}  # setting name -> {"epochs", "seeds", "settings"}
    _main = check_dvemb_config(dict(E10["settings"]))
    E10_SETTINGS[_main["arch"]] = {
        "epochs": E10["epochs"],
        "seeds": E10["seeds"],
        "settings": _main,
    }
    for _name, _v in (E10.get("variants") or {}).items():
        if not re.fullmatch(NAME, _name) or _name in E10_SETTINGS:
            raise ValueError(
                f"E10 (dvemb): variant name {_name!r} must be a word ({NAME}) other than "
                f"{sorted(E10_SETTINGS)}"
            )
        if _v.get("enabled", True):
            E10_SETTINGS[_name] = {
                "epochs": _v.get("epochs", E10["epochs"]),
                "seeds": E10["seeds"][: _v.get("n_seeds", len(E10["seeds"]))],
                "settings": variant_settings(
                    dict(E10["settings"]), dict(_v.get("settings") or {})
                ),
            }
except ValueError as _e:
    raise WorkflowError(str(_e)) from None
E10_RUNS = [
    f"{RES}/dvemb/{name}/ep{e}/seed{s}.json"
    for name, v in E10_SETTINGS.items()
    for e in v["epochs"]
    for s in (v["seeds"] if exp_on("dvemb") else [])
]


rule dvemb_run:
    output:
        f"{RES}/dvemb/{{setting}}/ep{{epochs}}/seed{{seed}}.json",
    log:
        f"{RES}/logs/dvemb/{{setting}}/ep{{epochs}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/dvemb/{{setting}}/ep{{epochs}}/seed{{seed}}.tsv"
    wildcard_constraints:
        setting=NAME,
    conda:
        PEERS_ENV
    threads: 1
    resources:
        **COST.of("dvemb_run", (8000, 240)),
    params:
        settings=lambda wc: E10_SETTINGS[wc.setting]["settings"],
    script:
        "../scripts/e10_dvemb.py"


rule table_E10:
    input:
        E10_RUNS,
    output:
        runs=f"{RES}/metrics/E10_dvemb.csv",
        lds=f"{RES}/metrics/E10_lds.csv",
    log:
        f"{RES}/logs/tables/E10.log",
    benchmark:
        f"{RES}/benchmarks/table_E10.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E10", (1000, 5)),
    script:
        "../scripts/e10_collect.py"
