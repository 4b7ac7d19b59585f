"""Rule paper: build results/report/paper.pdf with latexmk (:func:`replication.report.build_pdf`), or say clearly
why the PDF was skipped.

The report source (paper/report.tex) reads the generated figures and tables through ``\\resultsdir`` and every
number of its prose from ``<results>/report/numbers.tex`` (rule ``numbers``). Its bibliography, paper/references.bib,
is copied by build_pdf beside the build copy of the source (``<results>/report/build/``), where latexmk's BibTeX
finds it.
LaTeX's own files stay out of results/; its log (latexmk's output with BibTeX's, then the LaTeX log) is appended to
the rule's log.
"""

import shutil
from pathlib import Path

from wfio import setup

from influence.io import save_text
from replication.report import build_pdf

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
out = Path(sm.output[0])
results = Path(sm.input.claims).resolve().parents[1]  # <results>/report/claims.tex
if out.suffix != ".pdf" or shutil.which("latexmk") is None:
    msg = ("The PDF report was SKIPPED: latexmk / TeX is not installed on this machine.\n"
           "Everything else was produced: figures in results/figures, tables in results/tables, the claims "
           "table in results/report/claims.{csv,tex,md}, the report's numbers in results/report/numbers.tex.\n"
           "To build the PDF: `make paper` (installs texlive-latex-base texlive-latex-recommended "
           "texlive-fonts-recommended latexmk lmodern from Debian, then reruns this rule).\n")
    log.warning(msg)
    save_text(out, msg)
else:
    missing = build_pdf(sm.input.tex, results, out, config_name=sm.params.config_name, log_path=sm.log[0])
    log.info("wrote %s%s", out, f" ({len(missing)} value(s) missing from numbers.tex)" if missing else "")
