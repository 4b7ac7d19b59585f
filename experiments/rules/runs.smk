# Data, noise, recorded training runs, estimator scores and the sharded trajectory-LOO ground truth.


rule prepare_data:
    output:
        train=f"{RES}/data/{{dataset}}/seed{{seed}}/train.npz",
        target=f"{RES}/data/{{dataset}}/seed{{seed}}/target.npz",
        test=f"{RES}/data/{{dataset}}/seed{{seed}}/test.npz",
    log:
        f"{RES}/logs/prepare_data/{{dataset}}_seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/prepare_data/{{dataset}}/seed{{seed}}.tsv"
    wildcard_constraints:
        seed=SEED_WC,  # batch_seeds: the prepare_data_<dataset> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("prepare_data", (2000, 10)),
    params:
        spec=lambda wc: config["data"][wc.dataset],
    script:
        "../scripts/prepare_data.py"


rule inject_noise:
    input:
        train=f"{RES}/data/{{dataset}}/seed{{seed}}/train.npz",
    output:
        train=f"{RES}/data/{{dataset}}/seed{{seed}}/{{noise}}/train.npz",
        mask=f"{RES}/data/{{dataset}}/seed{{seed}}/{{noise}}/mask.npy",
    log:
        f"{RES}/logs/inject_noise/{{dataset}}_seed{{seed}}_{{noise}}.log",
    benchmark:
        f"{RES}/benchmarks/inject_noise/{{dataset}}/{{noise}}/seed{{seed}}.tsv"
    wildcard_constraints:
        seed=SEED_WC,  # batch_seeds: the inject_noise_<dataset>_<noise> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("inject_noise", (1000, 5)),
    params:
        spec=lambda wc: config["noise"][wc.noise],
    script:
        "../scripts/inject_noise.py"


rule train:
    input:
        unpack(splits_of),
    output:
        run=f"{RES}/runs/{SET}/run.pt",
        meta=f"{RES}/runs/{SET}/run.pt.json",
        summary=f"{RES}/runs/{SET}/summary.json",
    log:
        f"{RES}/logs/train/{SET}.log",
    benchmark:
        f"{RES}/benchmarks/train/{SET}.tsv"
    wildcard_constraints:
        seed=SEED_WC,  # batch_seeds: the train_<setting> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("train", (2000, 30)),
    params:
        spec=lambda wc: config["models"][wc.model],
    script:
        "../scripts/train.py"


rule estimate:
    input:
        unpack(splits_of),
        run=f"{RES}/runs/{SET}/run.pt",
    output:
        scores=f"{RES}/scores/{SET}/{{estimator}}.npy",
        provenance=f"{RES}/scores/{SET}/{{estimator}}.json",
    log:
        f"{RES}/logs/estimate/{SET}/{{estimator}}.log",
    benchmark:
        f"{RES}/benchmarks/estimate/{SET}/{{estimator}}.tsv"
    wildcard_constraints:
        # with batch_estimators, the jobs below make every score file and this rule matches none
        estimator=NO_MATCH if config["batch_estimators"] else NAME,
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("estimate", (4000, 60)),
    params:
        estimators=lambda wc: [wc.estimator],
        setting=lambda wc: dict(wc.items()),
        hparams=lambda wc: [est_spec(wc.estimator)["hparams"]],
        config_hash=lambda wc: [score_config_hash(wc)],
    script:
        "../scripts/estimate.py"


# batch_estimators: one job per recorded run scores all the estimators its experiments need, in one
# interpreter (an estimate job on the default config spends ~2 of its ~3 CPU-s starting Python and torch;
# 220 jobs became 22). One rule per run, because a rule's outputs are fixed and the runs need different
# estimators. Same scores byte for byte (each estimator is seeded by its own hyperparameters, never by
# the process); time and peak memory are measured per estimator inside the job as before.
if config["batch_estimators"] and not BATCH_SEEDS:
    for _key, _ests in SETTING_ESTIMATORS.items():
        _suffix = re.sub(r"\W", "_", _key)  # the run in the rule's name
        _wc = SETTING_WILDCARDS[_key]

        rule:
            name:
                f"estimate_{_suffix}"
            input:
                **splits_of(_wc),
                run=f"{RES}/runs/{_key}/run.pt",
            output:
                scores=[f"{RES}/scores/{_key}/{e}.npy" for e in _ests],
                provenance=[f"{RES}/scores/{_key}/{e}.json" for e in _ests],
            log:
                f"{RES}/logs/estimate/{_key}/batch.log",
            benchmark:
                f"{RES}/benchmarks/estimate/{_key}/batch.tsv"
            conda:
                CORE_ENV
            threads: 1
            resources:
                **COST.batch(
                    f"estimate_{_suffix}",
                    "estimate",
                    [dict(vars(_wc), estimator=e) for e in _ests],
                    (4000, 60 * len(_ests)),
                ),
            params:
                estimators=list(_ests),
                setting=vars(_wc),
                hparams=[est_spec(e)["hparams"] for e in _ests],
                config_hash=[
                    score_config_hash(SimpleNamespace(**vars(_wc), estimator=e))
                    for e in _ests
                ],
            script:
                "../scripts/estimate.py"


rule loo:
    input:
        unpack(splits_of),
        run=f"{RES}/runs/{SET}/run.pt",
    output:
        loo=f"{RES}/loo/{SET}/shard{{shard}}.npz",
        provenance=f"{RES}/loo/{SET}/shard{{shard}}.npz.json",
    log:
        f"{RES}/logs/loo/{SET}/shard{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/loo/{SET}/shard{{shard}}.tsv"
    wildcard_constraints:
        seed=SEED_WC,  # batch_seeds: the loo_<setting> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("loo", (4000, 120)),
    params:
        n_shards=n_shards(),
        subset=config["loo"]["subset"],
        chunk=config["loo"]["chunk"],
    script:
        "../scripts/loo.py"


rule loo_merge:
    input:
        shards=loo_shards,
        provenance=lambda wc: [f"{p}.json" for p in loo_shards(wc)],
    output:
        loo=f"{RES}/loo/{SET}/loo.npz",
        provenance=f"{RES}/loo/{SET}/loo.npz.json",
    log:
        f"{RES}/logs/loo_merge/{SET}.log",
    benchmark:
        f"{RES}/benchmarks/loo_merge/{SET}.tsv"
    wildcard_constraints:
        seed=SEED_WC,  # batch_seeds: the loo_merge_<setting> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("loo_merge", (2000, 10)),
    script:
        "../scripts/loo_merge.py"


# batch_seeds (common.smk): one job per stage runs all the seeds of a setting (estimate: with batch_estimators, all
# the estimators of all its seeds; benchmarks/estimate/<setting>/batch.tsv)
if BATCH_SEEDS:
    _runs = all_runs()
    for _d in sorted({w["dataset"] for w in _runs.values()}):
        _seeds = sorted({int(w["seed"]) for w in _runs.values() if w["dataset"] == _d})
        seed_batch_rule(
            "prepare_data",
            _d,
            "prepare_data.py",
            [job_prepare_data(_d, s) for s in _seeds],
            2000,
            10 * len(_seeds),
        )
    for _d, _z in sorted({(w["dataset"], w["noise"]) for w in _runs.values()}):
        _seeds = sorted(
            {
                int(w["seed"])
                for w in _runs.values()
                if (w["dataset"], w["noise"]) == (_d, _z)
            }
        )
        seed_batch_rule(
            "inject_noise",
            f"{_d}/{_z}",
            "inject_noise.py",
            [job_inject_noise(_d, _z, s) for s in _seeds],
            1000,
            5 * len(_seeds),
        )
    for _g, _ws in seed_groups(_runs.values()).items():
        seed_batch_rule(
            "train", _g, "train.py", [job_train(w) for w in _ws], 2000, 30 * len(_ws)
        )
        seed_batch_rule(
            "loo",
            _g,
            "loo.py",
            [job_loo(w, k) for w in _ws for k in range(n_shards())],
            4000,
            120 * len(_ws) * n_shards(),
        )
        seed_batch_rule(
            "loo_merge",
            _g,
            "loo_merge.py",
            [job_loo_merge(w) for w in _ws],
            2000,
            10 * len(_ws),
        )
    if config["batch_estimators"]:
        for _g, _ws in seed_groups([_runs[k] for k in SETTING_ESTIMATORS]).items():
            _ests = SETTING_ESTIMATORS[SET.format(**_ws[0])]
            seed_batch_rule(
                "estimate",
                _g,
                "estimate.py",
                [job_estimate(w) for w in _ws],
                4000,
                60 * len(_ws) * len(_ests),
                tag="batch",
            )
