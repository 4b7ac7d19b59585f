# E3: online curation under label noise (influence.curation / influence.tasks.e3_curation).


rule curate:
    conda:
        "../../envs/core.yaml"
    output:
        f"{RES}/curation/{{dataset}}/{{policy}}/seed{{seed}}.json",
    params:
        spec=lambda wc: config["data"][wc.dataset],
        run=exp_cfg("curation").get("run", {}),
        noise_rate=exp_cfg("curation").get("noise_rate", 0.4),
        probe_every=exp_cfg("curation").get("probe_every", 0),
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
        "../../envs/core.yaml"
    input:
        expand(
            f"{RES}/curation/{{dataset}}/{{policy}}/seed{{seed}}.json",
            dataset=exp_cfg("curation").get("datasets", []),
            policy=exp_cfg("curation").get("policies", []),
            seed=exp_cfg("curation").get("seeds", []),
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
