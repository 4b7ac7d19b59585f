# E9: noisy-label text classification with a from-scratch transformer (replication.tasks.e9_text; claim LAI-3 in
# the LAI paper's own setting, at CPU scale). Include it from the Snakefile after common.smk and before report.smk.
# Config block (defaults in default.yaml, types and descriptions in schema.yaml):
#   experiments:
#     text:
#       datasets: [{name: rotten_tomatoes, n_train: 3000, n_val: 500, n_test: 1000, max_len: 32, vocab_size: 2000},
#                  {name: shakespeare_play, ..., protocol: authors, policies: [vanilla, lai, ghost]}]
#       policies: [vanilla, lai, ghost, ghost_flat, small_loss]
#       seeds: [0, 1, 2]
#       noise_rate: 0.4          # cyclic noise on the training labels (a flip on a binary set)
#       clean_reference: true    # also vanilla on clean labels (what the architecture can reach)
#       learned_margin: 0.03     # a run learned: final test accuracy >= majority rate + this
#       model: {d_model: 32, n_layers: 1, n_heads: 2}
#       run: {epochs: 5, batch_size: 32, lr: 0.001, weight_decay: 0.01, warmup_epochs: 2, target_size: 32, eval_every: 0}
# One job per (dataset, noise rate, policy, seed): results/text/<dataset>/noise<percent>/<policy>/seed<seed>.json;
# table_E9 collects them into metrics/E9_text.csv and metrics/E9_curves.csv (notebook E9_text).
from replication.tasks.e9_text import check_text_config

E9 = exp_cfg("text")
try:
    check_text_config(E9)
except ValueError as _e:
    raise WorkflowError(str(_e)) from None
E9_DATASETS = {d["name"]: d for d in E9["datasets"]}
E9_PERCENT = round(100 * float(E9["noise_rate"]))
if abs(E9_PERCENT - 100 * float(E9["noise_rate"])) > 1e-9:
    raise WorkflowError(
        f"config: experiments.text.noise_rate must be a whole percentage, got {E9['noise_rate']}"
    )

# Every E9 run file: each policy at the noise rate (a dataset's own `policies` replace the block's), and
# vanilla on clean labels (clean_reference). A dataset's `protocol: authors` runs the LAI authors' text protocol.
E9_RUNS = [
    f
    for name, d in E9_DATASETS.items()
    for f in expand(
        f"{RES}/text/{name}/noise{E9_PERCENT}/{{policy}}/seed{{seed}}.json",
        policy=d.get("policies", E9["policies"]),
        seed=E9["seeds"],
    )
]
if E9["clean_reference"] and E9_PERCENT != 0:
    E9_RUNS += expand(
        f"{RES}/text/{{dataset}}/noise0/vanilla/seed{{seed}}.json",
        dataset=list(E9_DATASETS),
        seed=E9["seeds"],
    )


rule text_run:
    output:
        f"{RES}/text/{{dataset}}/noise{{rate}}/{{policy}}/seed{{seed}}.json",
    log:
        f"{RES}/logs/text/{{dataset}}/noise{{rate}}/{{policy}}/seed{{seed}}.log",
    benchmark:
        f"{RES}/benchmarks/text/{{dataset}}/noise{{rate}}/{{policy}}/seed{{seed}}.tsv"
    wildcard_constraints:
        seed=NO_MATCH if config["batch_seeds"] else r"\d+",  # batched: below
        rate=r"\d+",
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("text_run", (2000, 30)),
    params:
        seeds=lambda wc: [wc.seed],
        spec=lambda wc: E9_DATASETS[wc.dataset],
        model=E9["model"],
        run=E9["run"],
        learned_margin=E9["learned_margin"],
    script:
        "../scripts/e9_text.py"


# batch_seeds: all seeds of a text_run in one job (one interpreter start instead of one per seed)
if config["batch_seeds"]:

    use rule text_run as text_run_seeds with:
        output:
            expand(
                f"{RES}/text/{{dataset}}/noise{{rate}}/{{policy}}/seed{{seed}}.json",
                seed=E9["seeds"],
                allow_missing=True,
            ),
        log:
            f"{RES}/logs/text/{{dataset}}/noise{{rate}}/{{policy}}/seeds.log",
        benchmark:
            f"{RES}/benchmarks/text/{{dataset}}/noise{{rate}}/{{policy}}/seeds.tsv"
        resources:
            **COST.of(
                "text_run_seeds", (2000, 30 * len(E9["seeds"])), count=len(E9["seeds"])
            ),
        params:
            seeds=E9["seeds"],


rule table_E9:
    input:
        E9_RUNS,
    output:
        runs=f"{RES}/metrics/E9_text.csv",
        curves=f"{RES}/metrics/E9_curves.csv",
    log:
        f"{RES}/logs/tables/E9.log",
    benchmark:
        f"{RES}/benchmarks/table_E9.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E9", (1000, 5)),
    script:
        "../scripts/e9_collect.py"
