# The executed notebooks as HTML, readable without Jupyter and without a network: results/notebooks/<name>.html from
# the executed copy that each notebook rule writes as its log (results/notebooks/<name>.ipynb; notebook_rule in
# common.smk). One self-contained file each: the figures embedded (the notebooks display the PNGs they save), the
# maths typeset at conversion time as MathML (no MathJax, no script from a CDN), the code cells folded (a click opens
# them), the Snakemake preamble cell (the pickled job, tagged snakemake-job-properties) left out; see
# experiments/replication/notebook_html.py, which tests/test_notebook_html.py checks in a headless browser offline.
# Default targets: NOTEBOOK_HTML (common.smk); they also appear in `snakemake --report` under "Notebooks".
# Include it from the Snakefile after report.smk.


rule notebook_html:
    input:
        f"{RES}/notebooks/{{nb}}.ipynb",
    output:
        report(
            f"{RES}/notebooks/{{nb}}.html",
            category="Notebooks",
            labels={"notebook": "{nb}"},
        ),
    log:
        f"{RES}/logs/notebook_html/{{nb}}.log",
    benchmark:
        f"{RES}/benchmarks/notebook_html/{{nb}}.tsv"
    wildcard_constraints:
        nb="|".join(NB),
    conda:
        NOTEBOOKS_ENV
    threads: 1
    resources:
        **COST.of("notebook_html", (1000, 5)),
    # written atomically (influence.io): an interrupted export leaves no half-written HTML
    script:
        "../scripts/notebook_html.py"
