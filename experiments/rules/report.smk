# Notebooks (figures + tables, drawing only), the claims table, the report's numbers and the LaTeX report.

# One rule per notebook: notebook_E1_fidelity, ..., notebook_E7_peers (notebook_rule in common.smk).
for _nb in NB:
    notebook_rule(_nb)


# The claims table (replication.claims judges, replication.report renders): claims.csv (every column), claims.tex (the
# one-minute table: id, claim, paper's number, ours with its 95 % interval, verdict, diagnosis), claims_detail.tex
# (the report's appendix: what ours measures, criterion, per-setting verdicts, measured values) and claims.md (both,
# with the legend; `make readme-claims` copies its one-minute table into README.md).
rule claims:
    input:
        claims=f"{REPO}/paper/claims.yaml",
        tables=METRIC_TABLES,
        runs=run_summaries(),
    output:
        csv=report(f"{RES}/report/claims.csv", category="Claims"),
        tex=f"{RES}/report/claims.tex",
        detail=f"{RES}/report/claims_detail.tex",
        protocols=f"{RES}/report/protocols.tex",
        md=f"{RES}/report/claims.md",
    log:
        f"{RES}/logs/claims.log",
    benchmark:
        f"{RES}/benchmarks/claims.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("claims", (1000, 5)),
    params:
        config_name=config["name"],
        check_runs=check_runs(),
    script:
        "../scripts/claims.py"


# Every number and verdict the report's prose cites, as LaTeX macros (replication.report): from the claims table,
# the metric tables (and E7's peer tables) and the configuration. An experiment that did not run gives "not run".
rule numbers:
    input:
        claims=f"{RES}/report/claims.csv",
        claims_yaml=f"{REPO}/paper/claims.yaml",
        tables=METRIC_TABLES,
        peers=[p for k, p in NB_INPUTS["E7_peers"].items() if k in ("A", "B") and p],
    output:
        f"{RES}/report/numbers.tex",
    log:
        f"{RES}/logs/numbers.log",
    benchmark:
        f"{RES}/benchmarks/numbers.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("numbers", (1000, 5)),
    params:
        config=config,
    script:
        "../scripts/numbers.py"


# The PDF report (latexmk, with BibTeX for the bibliography paper/references.bib): a change to either source rebuilds.
rule paper:
    input:
        tex=f"{REPO}/paper/report.tex",
        bib=f"{REPO}/paper/references.bib",
        claims=f"{RES}/report/claims.tex",
        claims_detail=f"{RES}/report/claims_detail.tex",
        protocols=f"{RES}/report/protocols.tex",
        numbers=f"{RES}/report/numbers.tex",
        figures_tables=ALL_FIGURES_TABLES,
    output:
        PAPER_OUT,
    log:
        f"{RES}/logs/paper.log",
    benchmark:
        f"{RES}/benchmarks/paper.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("paper", (2000, 20)),
    params:
        config_name=config["name"],
    script:
        "../scripts/paper.py"
