# E3: online curation under label noise (influence.curation / replication.tasks.e3_curation).


rule curate:
    output:
        f"{RES}/curation/{{dataset}}/{{policy}}/seed{{seed}}.json",
    log:
        f"{RES}/logs/curate/{{dataset}}/{{policy}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/curate/{{dataset}}/{{policy}}/seed{{seed}}.tsv"
    wildcard_constraints:
        seed=NO_MATCH if config["batch_seeds"] else r"\d+",  # batched: below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("curate", (4000, 60)),
    params:
        seeds=lambda wc: [wc.seed],
        spec=lambda wc: config["data"][wc.dataset],
        run=exp_cfg("curation")["run"],
        noise_rate=exp_cfg("curation")["noise_rate"],
        probe_every=exp_cfg("curation")["probe_every"],
    script:
        "../scripts/curate.py"


# batch_seeds: all seeds of a curate in one job (one interpreter start instead of one per seed)
if config["batch_seeds"]:

    use rule curate as curate_seeds with:
        output:
            expand(
                f"{RES}/curation/{{dataset}}/{{policy}}/seed{{seed}}.json",
                seed=exp_cfg("curation")["seeds"],
                allow_missing=True,
            ),
        log:
            f"{RES}/logs/curate/{{dataset}}/{{policy}}/seeds.log",
        benchmark:
            f"{RES}/benchmarks/curate/{{dataset}}/{{policy}}/seeds.tsv"
        resources:
            **COST.of(
                "curate_seeds",
                (4000, 60 * len(exp_cfg("curation")["seeds"])),
                count=len(exp_cfg("curation")["seeds"]),
            ),
        params:
            seeds=exp_cfg("curation")["seeds"],


rule table_E3:
    input:
        expand(
            f"{RES}/curation/{{dataset}}/{{policy}}/seed{{seed}}.json",
            dataset=exp_cfg("curation")["datasets"],
            policy=exp_cfg("curation")["policies"],
            seed=exp_cfg("curation")["seeds"],
        ),
    output:
        runs=f"{RES}/metrics/E3_curation.csv",
        curves=f"{RES}/metrics/E3_curves.csv",
    log:
        f"{RES}/logs/tables/E3.log",
    benchmark:
        f"{RES}/benchmarks/table_E3.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E3", (1000, 5)),
    script:
        "../scripts/collect_curation.py"
