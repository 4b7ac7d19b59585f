# LAI-4 in the LAI paper's setting: cost of one curated step on the transformers (replication.tasks.online_cost).


rule online_cost:
    output:
        f"{RES}/metrics/transformer_cost.csv",
    log:
        f"{RES}/logs/online_cost.log",
    benchmark:
        f"{RES}/benchmarks/online_cost.tsv"
    conda:
        CORE_ENV
    # Timed alone: locally the job takes every core of --cores, so that Snakemake runs no other job while it
    # times; the steps themselves run on one torch thread (online_cost.py, step_costs). On Slurm the job asks
    # for cpus_per_task = 2 instead (the SLURM plugin takes it over threads; --cores of a cluster run is the
    # whole run's): the job gets cores of its own, a whole physical core on hyperthreaded nodes.
    threads: workflow.resource_settings.cores or 1
    resources:
        **COST.of("online_cost", (3000, 15)),
        cpus_per_task=2,
    params:
        models=exp_cfg("online_cost")["models"],
        policies=exp_cfg("online_cost")["policies"],
        batch_size=exp_cfg("online_cost")["batch_size"],
        target_size=exp_cfg("online_cost")["target_size"],
        repeats=exp_cfg("online_cost")["repeats"],
        warmup=exp_cfg("online_cost")["warmup"],
        seed=exp_cfg("online_cost")["seed"],
    script:
        "../scripts/online_cost.py"
