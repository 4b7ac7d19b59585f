# E8: char-level LM pretraining on Shakespeare with online data filtering, and LAI-2 (per-step Shapley) on the LM
# (replication.tasks.e8_lm). Include it from the Snakefile after common.smk and before report.smk.
# Config block (defaults in default.yaml, types and descriptions in schema.yaml):
#   experiments:
#     lm:
#       policies: [vanilla, lai_self, ghost_self, ghost_flat_self, small_loss, lai]
#       seeds: [0, 1, 2]
#       noise: {kind: random, rate: 0.3}        # injected harmful windows (replication.text.inject_lm_noise)
#       clean_reference: true                   # also vanilla on the clean stream (policy column vanilla_clean)
#       data: {n_train: 2560, n_target: 128, n_val: 128, n_test: 128, split_seed: 0}
#       model: {context: 64, d_model: 64, n_layers: 2, n_heads: 4}
#       run: {epochs: 1, batch_size: 16, lr: 0.003, weight_decay: 0.1, warmup_epochs: 0.2, target_size: 16,
#             eval_every: 32, learned_margin: 0.1}
#       shapley: {enabled: true, seed: 0, n_steps: 4, batch_size: 16, target_size: 16, eta: 0.001, n_perm: 8,
#                 chunk: 4}
# One job per (policy, seed): results/lm/noisy/<policy>/seed<seed>.json, plus results/lm/clean/vanilla/seed<seed>.json
# (the clean reference: what the architecture reaches without the injected windows); one Shapley job
# (results/lm/shapley.json, a deterministic replay of the vanilla run of shapley.seed); table_E8 collects them into
# metrics/E8_lm.csv, E8_curves.csv, E8_shapley.csv and E8_shapley_values.csv (notebook E8_lm).
# Budget (default config, measured): 21 runs of 8-13 CPU-s (~4.5 s of it interpreter, torch and data start-up) and a
# 13 CPU-s Shapley job: ~205 CPU-s, i.e. ~100 s on 2 cores. The Shapley job also values each batch with the LAI
# authors' mean-loss game (closed form, and their 1000-permutation estimate) and scores it with the self-influence
# forms and two loss-only controls from the same capture: +0.3 CPU-s over its 8 steps (measured).
from replication.tasks.e8_lm import check_lm_config

E8 = exp_cfg("lm")
if exp_on("lm"):
    try:
        check_lm_config(E8)
    except ValueError as _e:
        raise WorkflowError(str(_e)) from None
E8_DATASET = "shakespeare"
E8_SHAPLEY = exp_on("lm") and bool(E8["shapley"]["enabled"])

# Every E8 run file: each policy on the noisy stream, and vanilla on the clean stream (clean_reference).
E8_RUNS = expand(
    f"{RES}/lm/noisy/{{policy}}/seed{{seed}}.json",
    policy=E8["policies"],
    seed=E8["seeds"],
)
if E8["clean_reference"] and float(E8["noise"]["rate"]) > 0:
    E8_RUNS += expand(f"{RES}/lm/clean/vanilla/seed{{seed}}.json", seed=E8["seeds"])


rule lm_run:
    output:
        f"{RES}/lm/{{stream}}/{{policy}}/seed{{seed}}.json",
    log:
        f"{RES}/logs/lm/{{stream}}/{{policy}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/lm/{{stream}}/{{policy}}/seed{{seed}}.tsv"
    wildcard_constraints:
        seed=NO_MATCH if config["batch_seeds"] else r"\d+",  # batched: below
        stream="noisy|clean",
    conda:
        CORE_ENV
    threads: 1
    # default config: ~10 s a job; paper config (4 layers, context 128, 750 steps of 32): ~10 min on one core
    resources:
        **COST.of("lm_run", (2000, 60)),
    params:
        seeds=lambda wc: [wc.seed],
        dataset=E8_DATASET,
        data=E8["data"],
        model=E8["model"],
        run=E8["run"],
        noise=E8["noise"],
    script:
        "../scripts/e8_run.py"


# batch_seeds: all seeds of a lm_run in one job (one interpreter start instead of one per seed)
if config["batch_seeds"]:

    use rule lm_run as lm_run_seeds with:
        output:
            expand(
                f"{RES}/lm/{{stream}}/{{policy}}/seed{{seed}}.json",
                seed=E8["seeds"],
                allow_missing=True,
            ),
        log:
            f"{RES}/logs/lm/{{stream}}/{{policy}}/seeds.log",
        benchmark:
            f"{RES}/benchmarks/lm/{{stream}}/{{policy}}/seeds.tsv"
        resources:
            **COST.of(
                "lm_run_seeds", (2000, 60 * len(E8["seeds"])), count=len(E8["seeds"])
            ),
        params:
            seeds=E8["seeds"],


rule lm_shapley:
    output:
        f"{RES}/lm/shapley.json",
    log:
        f"{RES}/logs/lm/shapley.log",
    benchmark:
        f"{RES}/benchmarks/lm/shapley.tsv"
    conda:
        CORE_ENV
    threads: 1
    # default config: ~15 s; paper config (8 steps, 32 permutations, |V| = 32 at context 128): ~30 min on one core
    resources:
        **COST.of("lm_shapley", (3000, 120)),
    params:
        dataset=E8_DATASET,
        data=E8["data"],
        model=E8["model"],
        run=E8["run"],
        noise=E8["noise"],
        shapley={k: v for k, v in E8["shapley"].items() if k != "enabled"},
    script:
        "../scripts/e8_shapley.py"


rule table_E8:
    input:
        runs=E8_RUNS,
        shapley=[f"{RES}/lm/shapley.json"] if E8_SHAPLEY else [],
    output:
        runs=f"{RES}/metrics/E8_lm.csv",
        curves=f"{RES}/metrics/E8_curves.csv",
        shapley=f"{RES}/metrics/E8_shapley.csv",
        values=f"{RES}/metrics/E8_shapley_values.csv",
    log:
        f"{RES}/logs/tables/E8.log",
    benchmark:
        f"{RES}/benchmarks/table_E8.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E8", (1000, 5)),
    script:
        "../scripts/e8_collect.py"
