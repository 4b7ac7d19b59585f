# Data, noise, recorded training runs, estimator scores and the sharded trajectory-LOO ground truth.


rule prepare_data:
    conda:
        CORE_ENV
    output:
        train=f"{RES}/data/{{dataset}}/seed{{seed}}/train.npz",
        target=f"{RES}/data/{{dataset}}/seed{{seed}}/target.npz",
        test=f"{RES}/data/{{dataset}}/seed{{seed}}/test.npz",
    params:
        spec=lambda wc: config["data"][wc.dataset],
    log:
        f"{RES}/logs/prepare_data/{{dataset}}_seed{{seed}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/prepare_data.py"


rule inject_noise:
    conda:
        CORE_ENV
    input:
        train=f"{RES}/data/{{dataset}}/seed{{seed}}/train.npz",
    output:
        train=f"{RES}/data/{{dataset}}/seed{{seed}}/{{noise}}/train.npz",
        mask=f"{RES}/data/{{dataset}}/seed{{seed}}/{{noise}}/mask.npy",
    params:
        spec=lambda wc: config["noise"][wc.noise],
    log:
        f"{RES}/logs/inject_noise/{{dataset}}_seed{{seed}}_{{noise}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/inject_noise.py"


rule train:
    conda:
        CORE_ENV
    input:
        unpack(splits_of),
    output:
        run=f"{RES}/runs/{SET}/run.pt",
        meta=f"{RES}/runs/{SET}/run.pt.json",
        summary=f"{RES}/runs/{SET}/summary.json",
    params:
        spec=lambda wc: config["models"][wc.model],
    log:
        f"{RES}/logs/train/{SET}.log",
    benchmark:
        f"{RES}/benchmarks/train/{SET}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/train.py"


rule estimate:
    conda:
        CORE_ENV
    input:
        unpack(splits_of),
        run=f"{RES}/runs/{SET}/run.pt",
    output:
        scores=f"{RES}/scores/{SET}/{{estimator}}.npy",
        provenance=f"{RES}/scores/{SET}/{{estimator}}.json",
    params:
        hparams=lambda wc: est_spec(wc.estimator)["hparams"],
        config_hash=score_config_hash,
    log:
        f"{RES}/logs/estimate/{SET}/{{estimator}}.log",
    benchmark:
        f"{RES}/benchmarks/estimate/{SET}/{{estimator}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc: int(est_spec(wc.estimator)["mem_mb"]),
        runtime=lambda wc: int(est_spec(wc.estimator)["runtime"]),
    script:
        "../scripts/estimate.py"


rule loo:
    conda:
        CORE_ENV
    input:
        unpack(splits_of),
        run=f"{RES}/runs/{SET}/run.pt",
    output:
        loo=f"{RES}/loo/{SET}/shard{{shard}}.npz",
        provenance=f"{RES}/loo/{SET}/shard{{shard}}.npz.json",
    params:
        n_shards=n_shards(),
        subset=config["loo"]["subset"],
        chunk=config["loo"]["chunk"],
    log:
        f"{RES}/logs/loo/{SET}/shard{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/loo/{SET}/shard{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/loo.py"


rule loo_merge:
    conda:
        CORE_ENV
    input:
        shards=loo_shards,
        provenance=lambda wc: [f"{p}.json" for p in loo_shards(wc)],
    output:
        loo=f"{RES}/loo/{SET}/loo.npz",
        provenance=f"{RES}/loo/{SET}/loo.npz.json",
    log:
        f"{RES}/logs/loo_merge/{SET}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/loo_merge.py"
