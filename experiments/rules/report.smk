# Notebooks (figures + tables, drawing only), the claims table and the LaTeX report.

rule notebook_E1_fidelity:
    conda:
        "../../envs/notebooks.yaml"
    input:
        **NB["E1_fidelity"]["inputs"],
    output:
        **nb_outputs("E1_fidelity"),
    log:
        notebook=f"{RES}/notebooks/E1_fidelity.ipynb",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    notebook:
        "../../notebooks/E1_fidelity.ipynb"


rule notebook_E2_detection:
    conda:
        "../../envs/notebooks.yaml"
    input:
        **NB["E2_detection"]["inputs"],
    output:
        **nb_outputs("E2_detection"),
    log:
        notebook=f"{RES}/notebooks/E2_detection.ipynb",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    notebook:
        "../../notebooks/E2_detection.ipynb"


rule notebook_E3_curation:
    conda:
        "../../envs/notebooks.yaml"
    input:
        **NB["E3_curation"]["inputs"],
    output:
        **nb_outputs("E3_curation"),
    log:
        notebook=f"{RES}/notebooks/E3_curation.ipynb",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    notebook:
        "../../notebooks/E3_curation.ipynb"


rule notebook_E4_deletion:
    conda:
        "../../envs/notebooks.yaml"
    input:
        **NB["E4_deletion"]["inputs"],
    output:
        **nb_outputs("E4_deletion"),
    log:
        notebook=f"{RES}/notebooks/E4_deletion.ipynb",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    notebook:
        "../../notebooks/E4_deletion.ipynb"


rule notebook_E5_bounds:
    conda:
        "../../envs/notebooks.yaml"
    input:
        **NB["E5_bounds"]["inputs"],
    output:
        **nb_outputs("E5_bounds"),
    log:
        notebook=f"{RES}/notebooks/E5_bounds.ipynb",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    notebook:
        "../../notebooks/E5_bounds.ipynb"


rule notebook_E6_cost:
    conda:
        "../../envs/notebooks.yaml"
    input:
        **NB["E6_cost"]["inputs"],
    output:
        **nb_outputs("E6_cost"),
    log:
        notebook=f"{RES}/notebooks/E6_cost.ipynb",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    notebook:
        "../../notebooks/E6_cost.ipynb"


rule claims:
    conda:
        "../../envs/core.yaml"
    input:
        claims=f"{REPO}/paper/claims.yaml",
        tables=[p for nb in NB for p in NB[nb]["inputs"].values()],
    output:
        csv=report(f"{RES}/report/claims.csv", category="Claims"),
        tex=f"{RES}/report/claims.tex",
        md=f"{RES}/report/claims.md",
    params:
        config_name=config.get("name", "default"),
    log:
        f"{RES}/logs/claims.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/claims.py"


rule paper:
    conda:
        "../../envs/core.yaml"
    input:
        tex=f"{REPO}/paper/report.tex",
        claims=f"{RES}/report/claims.tex",
        figures_tables=ALL_FIGURES_TABLES,
        e7=E7_TARGETS,
    output:
        PAPER_OUT,
    params:
        config_name=config.get("name", "default"),
    log:
        f"{RES}/logs/paper.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    script:
        "../scripts/paper.py"
