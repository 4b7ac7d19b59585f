# Agreement with LOO (E1), noisy-sample detection and cleansing (E2), deletion and coresets (E4), cost (E6).


rule evaluate_fidelity:
    input:
        unpack(scores_of),
        loo=f"{RES}/loo/{SET}/loo.npz",
        summary=f"{RES}/runs/{SET}/summary.json",  # the run's test accuracy and majority-class rate
    output:
        f"{RES}/metrics/fidelity/{SET}.csv",
    log:
        f"{RES}/logs/evaluate_fidelity/{SET}.log",
    benchmark:
        f"{RES}/benchmarks/evaluate_fidelity/{SET}.tsv"
    wildcard_constraints:
        seed=SEED_WC,  # batch_seeds: the evaluate_fidelity_<setting> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("evaluate_fidelity", (1000, 5)),
    params:
        ps=config["jaccard_percents"],
    script:
        "../scripts/evaluate_fidelity.py"


rule evaluate_detection:
    input:
        unpack(scores_of),
        mask=f"{RES}/data/{{dataset}}/seed{{seed}}/{{noise}}/mask.npy",
    output:
        f"{RES}/metrics/detection/{SET}.csv",
    log:
        f"{RES}/logs/evaluate_detection/{SET}.log",
    benchmark:
        f"{RES}/benchmarks/evaluate_detection/{SET}.tsv"
    wildcard_constraints:
        seed=SEED_WC,  # batch_seeds: the evaluate_detection_<setting> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("evaluate_detection", (1000, 5)),
    params:
        directions=SUSPICION_OVERRIDES,
    script:
        "../scripts/evaluate_detection.py"


rule cleanse:
    input:
        unpack(splits_of),
        scores=_scores_or_none,
    output:
        f"{RES}/cleansing/{SET}/{{estimator}}.csv",
    log:
        f"{RES}/logs/cleanse/{SET}/{{estimator}}.log",
    benchmark:
        f"{RES}/benchmarks/cleanse/{SET}/{{estimator}}.tsv"
    wildcard_constraints:
        estimator=NO_MATCH if config["batch_estimators"] else NAME,  # batched: the cleanse_<run> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("cleanse", (2000, 30)),
    params:
        estimators=lambda wc: [wc.estimator],
        setting=lambda wc: dict(wc.items()),
        spec=lambda wc: config["models"][wc.model],
        fractions=exp_cfg("detection")["cleanse_fractions"],
        directions=SUSPICION_OVERRIDES,
    script:
        "../scripts/cleanse.py"


rule deletion:
    input:
        unpack(splits_of),
        scores=_scores_or_none,
    output:
        deletion=f"{RES}/deletion/{SET}/{{estimator}}.csv",
        coreset=f"{RES}/coreset/{SET}/{{estimator}}.csv",
    log:
        f"{RES}/logs/deletion/{SET}/{{estimator}}.log",
    benchmark:
        f"{RES}/benchmarks/deletion/{SET}/{{estimator}}.tsv"
    wildcard_constraints:
        estimator=NO_MATCH if config["batch_estimators"] else NAME,  # batched: the deletion_<run> jobs below
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("deletion", (2000, 30)),
    params:
        estimators=lambda wc: [wc.estimator],
        setting=lambda wc: dict(wc.items()),
        spec=lambda wc: config["models"][wc.model],
        ks=exp_cfg("deletion")["ks"],
        keep_fractions=exp_cfg("deletion")["keep_fractions"],
    script:
        "../scripts/deletion.py"


# batch_estimators: one job per recorded run for all its estimators' cleansing / deletion tables (as for the
# scores, runs.smk); the same tables as one job per estimator. With batch_seeds too: one job per setting (below).
if config["batch_estimators"] and not BATCH_SEEDS:
    for _s in _detection_settings():
        _key, _ests = SET.format(**_s), cleanse_estimators(_s["model"])
        _suffix = re.sub(r"\W", "_", _key)  # the run in the rule's name
        _wc = SETTING_WILDCARDS[_key]

        rule:
            name:
                f"cleanse_{_suffix}"
            input:
                **splits_of(_wc),
                scores=[
                    f"{RES}/scores/{_key}/{e}.npy"
                    for e in _ests
                    if e not in ("oracle", "random_removal")
                ],
            output:
                [f"{RES}/cleansing/{_key}/{e}.csv" for e in _ests],
            log:
                f"{RES}/logs/cleanse/{_key}/batch.log",
            benchmark:
                f"{RES}/benchmarks/cleanse/{_key}/batch.tsv"
            conda:
                CORE_ENV
            threads: 1
            resources:
                **COST.batch(
                    f"cleanse_{_suffix}",
                    "cleanse",
                    [dict(vars(_wc), estimator=e) for e in _ests],
                    (2000, 30 * len(_ests)),
                ),
            params:
                estimators=_ests,
                setting=vars(_wc),
                spec=config["models"][_s["model"]],
                fractions=exp_cfg("detection")["cleanse_fractions"],
                directions=SUSPICION_OVERRIDES,
            script:
                "../scripts/cleanse.py"

    for _s in settings("deletion"):
        _key, _ests = SET.format(**_s), estimators_for("deletion", _s["model"]) + [
            "random_removal"
        ]
        _suffix = re.sub(r"\W", "_", _key)  # the run in the rule's name
        _wc = SETTING_WILDCARDS[_key]

        rule:
            name:
                f"deletion_{_suffix}"
            input:
                **splits_of(_wc),
                scores=[
                    f"{RES}/scores/{_key}/{e}.npy"
                    for e in _ests
                    if e != "random_removal"
                ],
            output:
                deletion=[f"{RES}/deletion/{_key}/{e}.csv" for e in _ests],
                coreset=[f"{RES}/coreset/{_key}/{e}.csv" for e in _ests],
            log:
                f"{RES}/logs/deletion/{_key}/batch.log",
            benchmark:
                f"{RES}/benchmarks/deletion/{_key}/batch.tsv"
            conda:
                CORE_ENV
            threads: 1
            resources:
                **COST.batch(
                    f"deletion_{_suffix}",
                    "deletion",
                    [dict(vars(_wc), estimator=e) for e in _ests],
                    (2000, 30 * len(_ests)),
                ),
            params:
                estimators=_ests,
                setting=vars(_wc),
                spec=config["models"][_s["model"]],
                ks=exp_cfg("deletion")["ks"],
                keep_fractions=exp_cfg("deletion")["keep_fractions"],
            script:
                "../scripts/deletion.py"


# batch_seeds (common.smk): evaluation of all the seeds of a setting in one job; with batch_estimators, cleansing and
# deletion too
if BATCH_SEEDS:
    _wcs = lambda ss: [{c: str(s[c]) for c in RUN_KEYS} for s in ss]  # noqa: E731
    for _g, _ws in seed_groups(_wcs(settings("fidelity"))).items():
        seed_batch_rule(
            "evaluate_fidelity",
            _g,
            "evaluate_fidelity.py",
            [job_evaluate_fidelity(w) for w in _ws],
            1000,
            5 * len(_ws),
        )
    for _g, _ws in seed_groups(_wcs(_detection_settings())).items():
        seed_batch_rule(
            "evaluate_detection",
            _g,
            "evaluate_detection.py",
            [job_evaluate_detection(w) for w in _ws],
            1000,
            5 * len(_ws),
        )
        if config["batch_estimators"]:
            seed_batch_rule(
                "cleanse",
                _g,
                "cleanse.py",
                [job_cleanse(w) for w in _ws],
                2000,
                30 * len(_ws) * len(cleanse_estimators(_ws[0]["model"])),
                tag="batch",
            )
    if config["batch_estimators"]:
        for _g, _ws in seed_groups(_wcs(settings("deletion"))).items():
            seed_batch_rule(
                "deletion",
                _g,
                "deletion.py",
                [job_deletion(w) for w in _ws],
                2000,
                30 * len(_ws) * (len(estimators_for("deletion", _ws[0]["model"])) + 1),
                tag="batch",
            )


rule table_E1:
    input:
        table=_per_setting("fidelity", f"{RES}/metrics/fidelity/{SET}.csv"),
    output:
        table=f"{RES}/metrics/E1_fidelity.csv",
    log:
        f"{RES}/logs/tables/E1.log",
    benchmark:
        f"{RES}/benchmarks/table_E1.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E1", (1000, 5)),
    script:
        "../scripts/collect.py"


rule table_E2:
    input:
        detection=[
            f"{RES}/metrics/detection/{SET}.csv".format(**s)
            for s in _detection_settings()
        ],
        cleansing=[
            f"{RES}/cleansing/{SET}/{e}.csv".format(**s)
            for s in _detection_settings()
            for e in cleanse_estimators(s["model"])
        ],
    output:
        detection=f"{RES}/metrics/E2_detection.csv",
        cleansing=f"{RES}/metrics/E2_cleansing.csv",
    log:
        f"{RES}/logs/tables/E2.log",
    benchmark:
        f"{RES}/benchmarks/table_E2.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E2", (1000, 5)),
    script:
        "../scripts/collect.py"


rule table_E4:
    input:
        deletion=_per_setting("deletion", f"{RES}/deletion/{SET}/{{estimator}}.csv"),
        coreset=_per_setting(
            "deletion", f"{RES}/coreset/{SET}/{{estimator}}.csv", ["random_removal"]
        ),
    output:
        deletion=f"{RES}/metrics/E4_deletion.csv",
        coreset=f"{RES}/metrics/E4_coreset.csv",
    log:
        f"{RES}/logs/tables/E4.log",
    benchmark:
        f"{RES}/benchmarks/table_E4.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E4", (1000, 5)),
    script:
        "../scripts/collect.py"


rule table_E6:
    input:
        provenance=_per_setting("cost", f"{RES}/scores/{SET}/{{estimator}}.json")
        + _per_setting("fidelity", f"{RES}/scores/{SET}/{{estimator}}.json"),
        loo=_per_setting("cost", f"{RES}/loo/{SET}/loo.npz"),
        loo_provenance=_per_setting("cost", f"{RES}/loo/{SET}/loo.npz.json"),
        summaries=_per_setting("cost", f"{RES}/runs/{SET}/summary.json"),
    output:
        f"{RES}/metrics/E6_cost.csv",
    log:
        f"{RES}/logs/tables/E6.log",
    benchmark:
        f"{RES}/benchmarks/table_E6.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E6", (1000, 5)),
    script:
        "../scripts/collect.py"


# DIFF-5 on repeated measurements: the E6 timing estimators again, in interleaved rounds, in one job per cost setting
# (replication.tasks.e6_cost.time_estimators); the claim reads the median paired ratio over the rounds.
rule cost_timing:
    input:
        unpack(splits_of),
        run=f"{RES}/runs/{SET}/run.pt",
    output:
        f"{RES}/cost/{SET}/timing.csv",
    log:
        f"{RES}/logs/cost_timing/{SET}.log",
    benchmark:
        f"{RES}/benchmarks/cost_timing/{SET}.tsv"
    conda:
        CORE_ENV
    # Timed alone: locally the job takes every core of --cores, so that Snakemake runs no other job while it
    # times; the timed calls themselves run on one torch thread (e6_timing.py, time_estimators). On Slurm the
    # job asks for cpus_per_task = 2 instead (the SLURM plugin takes it over threads; --cores of a cluster run
    # is the whole run's): the job gets cores of its own, a whole physical core on hyperthreaded nodes.
    threads: workflow.resource_settings.cores or 1
    resources:
        **COST.of("cost_timing", (4000, 60)),
        cpus_per_task=2,
    params:
        estimators=exp_cfg("cost")["timing_estimators"],
        hparams={
            e: est_spec(e)["hparams"] for e in exp_cfg("cost")["timing_estimators"]
        },
        repeats=exp_cfg("cost")["repeats"],
        warmup=exp_cfg("cost")["warmup"],
        # DIFF-5 like for like: each estimator in both implementations of the gradient kernel they share
        # (influence.ghost.GradKernel), on Diff-In's checkpoints (replication.tasks.e6_cost.time_estimators)
        impls=exp_cfg("cost").get("timing_impls", ["fast", "per_sample"]),
        checkpoints=exp_cfg("cost").get("timing_checkpoints", "diffin"),
    script:
        "../scripts/e6_timing.py"


rule table_E6_timing:
    input:
        timing=_per_setting("cost", f"{RES}/cost/{SET}/timing.csv"),
    output:
        timing=f"{RES}/metrics/E6_timing.csv",
    log:
        f"{RES}/logs/tables/E6_timing.log",
    benchmark:
        f"{RES}/benchmarks/table_E6_timing.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E6_timing", (1000, 5)),
    script:
        "../scripts/collect.py"


# The side-by-side benchmark table of `make bench` (experiments/benchmarks/summary.py), for the E6 / E7 notebooks:
# a measurement of one machine, not a result of this run, so the workflow reads a stored copy (config
# `bench_summary`: the snapshot shipped with the repository, or a fresh results/benchmarks/summary.csv).
rule bench_summary:
    input:
        BENCH_SUMMARY,
    output:
        f"{RES}/metrics/bench_summary.csv",
    log:
        f"{RES}/logs/tables/bench_summary.log",
    benchmark:
        f"{RES}/benchmarks/bench_summary.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("bench_summary", (100, 1)),
    shell:
        "cp {input:q} {output:q} 2> {log:q}"
