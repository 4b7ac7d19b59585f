# E7: side by side with dattri, Captum, kronfluence and traker (Task A and Task B of spec/peers.md).
# Self-contained: include it from the Snakefile after common.smk and add E7_TARGETS to `rule all`.
# Config block (optional; defaults in influence.tasks.peers.TASK_A / TASK_B):
#   experiments:
#     peers:
#       enabled: true
#       tasks: [A, B]
#       A: {n_loo: 200}                  # any key of TASK_A
#       B: {lds_m: 50, lds_seeds: [0, 1, 2]}
#       ours: null                       # restrict our estimators (null: the whole registry)
#       peers: null                      # restrict peer methods (null: all of influence.tasks.peers.PEERS)
# Needs the `peers` extra installed; a peer that fails is recorded in the table, not fatal.

E7 = exp_cfg("peers")
E7_TASKS = E7.get("tasks", ["A", "B"]) if E7 else []
E7_FIGURES = ["E7_peers"]
E7_TABLES = ["E7_peers_A", "E7_peers_B", "E7_peers_cost"]
E7_TARGETS = (
    [f"{RES}/figures/{f}.{x}" for f in E7_FIGURES for x in ("pdf", "png")]
    + [f"{RES}/tables/{t}.{x}" for t in E7_TABLES for x in ("csv", "tex")]
    if E7
    else []
)


rule peers_task:
    conda:
        "../../envs/peers.yaml"
    output:
        table=f"{RES}/peers/task{{task}}.csv",
        cost=f"{RES}/peers/task{{task}}_groundtruth_cost.csv",
        versions=f"{RES}/peers/task{{task}}_versions.json",
    params:
        cfg=lambda wc: E7.get(wc.task, {}),
        ours=E7.get("ours"),
        peers=E7.get("peers"),
    wildcard_constraints:
        task="A|B",
    log:
        f"{RES}/logs/peers/task{{task}}.log",
    benchmark:
        f"{RES}/benchmarks/peers/task{{task}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/e7_peers.py"


rule notebook_E7_peers:
    conda:
        "../../envs/notebooks.yaml"
    input:
        A=f"{RES}/peers/taskA.csv" if "A" in E7_TASKS else [],
        B=f"{RES}/peers/taskB.csv" if "B" in E7_TASKS else [],
        cost_A=f"{RES}/peers/taskA_groundtruth_cost.csv" if "A" in E7_TASKS else [],
        cost_B=f"{RES}/peers/taskB_groundtruth_cost.csv" if "B" in E7_TASKS else [],
    output:
        **{f"{f}_{x}": f"{RES}/figures/{f}.{x}" for f in E7_FIGURES for x in ("pdf", "png")},
        **{f"{t}_{x}": f"{RES}/tables/{t}.{x}" for t in E7_TABLES for x in ("csv", "tex")},
    log:
        notebook=f"{RES}/notebooks/E7_peers.ipynb",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    notebook:
        "../../notebooks/E7_peers.ipynb"
