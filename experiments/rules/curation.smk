# E3: online curation under label noise (influence.curation / influence.tasks.e3_curation).


rule curate:
    conda:
        CORE_ENV
    output:
        f"{RES}/curation/{{dataset}}/{{policy}}/seed{{seed}}.json",
    params:
        spec=lambda wc: config["data"][wc.dataset],
        run=exp_cfg("curation")["run"],
        noise_rate=exp_cfg("curation")["noise_rate"],
        probe_every=exp_cfg("curation")["probe_every"],
    log:
        f"{RES}/logs/curate/{{dataset}}/{{policy}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/curate/{{dataset}}/{{policy}}/seed{{seed}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/curate.py"


rule table_E3:
    conda:
        CORE_ENV
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
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/collect_curation.py"
