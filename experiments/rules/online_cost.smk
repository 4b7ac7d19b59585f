# LAI-4 in the LAI paper's setting: cost of one curated step on the transformers (influence.tasks.online_cost).


rule online_cost:
    conda:
        CORE_ENV
    output:
        f"{RES}/metrics/transformer_cost.csv",
    params:
        models=exp_cfg("online_cost")["models"],
        policies=exp_cfg("online_cost")["policies"],
        batch_size=exp_cfg("online_cost")["batch_size"],
        target_size=exp_cfg("online_cost")["target_size"],
        repeats=exp_cfg("online_cost")["repeats"],
        warmup=exp_cfg("online_cost")["warmup"],
        seed=exp_cfg("online_cost")["seed"],
    log:
        f"{RES}/logs/online_cost.log",
    benchmark:
        f"{RES}/benchmarks/online_cost.tsv"
    # the timings compare policies within this one job: it must not share its core
    threads: 1
    resources:
        mem_mb=3000,
        runtime=15,
    script:
        "../scripts/online_cost.py"
