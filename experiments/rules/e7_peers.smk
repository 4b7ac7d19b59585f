# E7: side by side with dattri, Captum, kronfluence and traker (Task A: 1-vs-7 logistic regression vs LOO-to-optimum; Task B: MLP, LDS).
# Include it from the Snakefile after common.smk and before report.smk (which makes the notebook rule
# notebook_E7_peers from experiments/notebooks.yaml; its figures and tables are targets while E7 is enabled).
# Config block (defaults in default.yaml and schema.yaml; task settings in replication.tasks.e7_peers.TASK_A / TASK_B):
#   experiments:
#     peers:
#       enabled: true
#       tasks: [A, B]
#       A: {n_loo: 200}                  # any key of TASK_A
#       B: {lds_m: 50, lds_seeds: [0, 1, 2]}
#       ours: null                       # restrict our estimators (null: the whole registry)
#       peers: null                      # restrict peer methods (null: all of replication.tasks.e7_peers.PEERS)
# Needs the `peers` extra installed; a peer that fails is recorded in the table, not fatal.

E7 = exp_cfg("peers")
E7_TASKS = E7["tasks"]
# The notebook reads the tables of the configured tasks only (input keys A, cost_A for task A, B, cost_B for B; the
# other keys, e.g. bench, always).
NB_INPUTS["E7_peers"] = {
    key: (
        path
        if key.rpartition("_")[2] in E7_TASKS
        or key.rpartition("_")[2] not in ("A", "B")
        else []
    )
    for key, path in NB_INPUTS["E7_peers"].items()
}


rule peers_task:
    output:
        table=f"{RES}/peers/task{{task}}.csv",
        cost=f"{RES}/peers/task{{task}}_groundtruth_cost.csv",
        versions=f"{RES}/peers/task{{task}}_versions.json",
    log:
        f"{RES}/logs/peers/task{{task}}.log",
    benchmark:
        f"{RES}/benchmarks/peers/task{{task}}.tsv"
    wildcard_constraints:
        task="A|B",
    conda:
        PEERS_ENV
    threads: 2
    resources:
        **COST.of("peers_task", (8000, 60)),
    params:
        cfg=lambda wc: E7[wc.task],
        ours=E7["ours"],
        peers=E7["peers"],
    script:
        "../scripts/e7_peers.py"
