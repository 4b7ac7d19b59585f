# The executed notebooks as HTML, readable without Jupyter: results/notebooks/<name>.html from the executed copy
# that each notebook rule writes as its log (results/notebooks/<name>.ipynb; notebook_rule in common.smk). The
# figures are embedded (the notebooks display the PNGs they save); the Snakemake preamble cell (the pickled job,
# tagged snakemake-job-properties) is left out. Default targets: NOTEBOOK_HTML (common.smk); they also appear in
# `snakemake --report` under "Notebooks".
# Include it from the Snakefile after report.smk.


rule notebook_html:
    conda:
        NOTEBOOKS_ENV
    input:
        f"{RES}/notebooks/{{nb}}.ipynb",
    output:
        report(f"{RES}/notebooks/{{nb}}.html", category="Notebooks", labels={"notebook": "{nb}"}),
    wildcard_constraints:
        nb="|".join(NB),
    log:
        f"{RES}/logs/notebook_html/{{nb}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    # written beside the output, then renamed (atomic: an interrupted export leaves no half-written HTML)
    shell:
        "jupyter nbconvert --to html --log-level WARN"
        " --TagRemovePreprocessor.remove_cell_tags snakemake-job-properties"
        " --output-dir $(dirname {output:q}) --output {wildcards.nb}.partial {input:q} > {log:q} 2>&1"
        " && mv $(dirname {output:q})/{wildcards.nb}.partial.html {output:q}"
