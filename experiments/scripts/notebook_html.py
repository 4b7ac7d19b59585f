"""Rule notebook_html: the executed notebook (results/notebooks/<nb>.ipynb) as an HTML page a reader verifies
offline, maths already typeset as MathML, code folded, no network request (replication.notebook_html.export_html)."""

from wfio import setup

from replication.notebook_html import export_html

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
export_html(sm.input[0], sm.output[0])
