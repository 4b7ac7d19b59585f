# E12: CG-score data pruning with the CG-score authors' protocol (replication.tasks.e12_cg_pruning; claim CG-2):
# class-wise selection by CG-score, retrained for the full set's number of steps with batches drawn with replacement;
# baselines class-wise random pruning (same steps) and, supplementary, the E4 protocol (one global ranking, the
# run's own epochs over the kept set). Include it from the Snakefile after common.smk and before report.smk.
# Config block (defaults in default.yaml, types in schema.yaml):
#   experiments:
#     cg_pruning:
#       datasets: [{name: mnist5k, n_train: 4000, n_test: 1000}]
#       models: [{kind: mlp, hidden: [64]}]         # or {kind: cnn, width: 8} (28x28 images)
#       seeds: [0, 1, 2, 3, 4]                      # each sets the split, CG negatives, random measure, init, sampler
#       keep_fractions: [0.3, 0.5, 0.7, 0.9]
#       selections: [cg_classwise, random_classwise, cg_global, random_global]
#       directions: [prune_low, prune_high]         # prune_low = keep the highest CG (authors' --prun_hard)
#       cg: {rep: 1, unbalance_ratio: 1.0}
#       run: {epochs: 10, batch_size: 128, lr: 0.1, momentum: 0.9, weight_decay: 0.0005}
#       learned_margin: 0.1
# One job per (dataset, model), all seeds: results/cg_pruning/<dataset>/<model>.json; table_E12 collects them into
# metrics/E12_cg_pruning.csv (notebook E12_cg_pruning).
from replication.tasks.e12_cg_pruning import model_name as e12_model_name

E12 = exp_cfg("cg_pruning")
E12_DATASETS = {d["name"]: d for d in E12["datasets"]}
E12_MODELS = {e12_model_name(m): m for m in E12.get("models", [])}
E12_RUNS = expand(
    f"{RES}/cg_pruning/{{dataset}}/{{arch}}.json",
    dataset=list(E12_DATASETS),
    arch=list(E12_MODELS),
)


rule cg_pruning_run:
    output:
        f"{RES}/cg_pruning/{{dataset}}/{{arch}}.json",
    log:
        f"{RES}/logs/cg_pruning/{{dataset}}/{{arch}}.log",
    benchmark:
        f"{RES}/benchmarks/cg_pruning/{{dataset}}/{{arch}}.tsv"
    wildcard_constraints:
        arch=r"(mlp|cnn)[A-Za-z0-9_-]*",
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("cg_pruning_run", (2000, 30)),
    params:
        spec=lambda wc: E12_DATASETS[wc.dataset],
        arch=lambda wc: E12_MODELS[wc.arch],
        seeds=E12["seeds"],
        keep_fractions=E12["keep_fractions"],
        selections=E12["selections"],
        directions=E12["directions"],
        cg=E12["cg"],
        run=E12["run"],
        learned_margin=E12["learned_margin"],
    script:
        "../scripts/e12_cg_pruning.py"


rule table_E12:
    input:
        E12_RUNS,
    output:
        f"{RES}/metrics/E12_cg_pruning.csv",
    log:
        f"{RES}/logs/tables/E12.log",
    benchmark:
        f"{RES}/benchmarks/table_E12.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E12", (1000, 5)),
    script:
        "../scripts/e12_collect.py"
