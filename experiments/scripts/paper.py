"""Rule paper: build results/report/paper.pdf with latexmk, or say clearly why the PDF was skipped.

The report source (paper/report.tex) reads the generated figures and tables through ``\\resultsdir``,
defined in a small ``paths.tex`` written next to a copy of the source in results/report/build/.
"""

import os
import shutil
import subprocess
from pathlib import Path

from wfio import setup

from influence.io import atomic_write, save_text

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
out = Path(sm.output[0])
results = Path(sm.input.claims).resolve().parents[1]  # <results>/report/claims.tex
build = out.parent / "build"
atomic_write(build / "report.tex", Path(sm.input.tex).read_bytes())
# relative to the build folder (where latexmk runs), so the file is the same wherever results/ lies
resultsdir = Path(os.path.relpath(results, build.resolve())).as_posix()
save_text(build / "paths.tex",
          f"\\newcommand{{\\resultsdir}}{{{resultsdir}}}\n\\newcommand{{\\configname}}{{{sm.params.config_name}}}\n")
latexmk = shutil.which("latexmk")
if out.suffix != ".pdf" or latexmk is None:
    msg = ("The PDF report was SKIPPED: latexmk / TeX is not installed on this machine.\n"
           "Everything else was produced: figures in results/figures, tables in results/tables, the claims "
           "table in results/report/claims.{csv,tex,md}.\n"
           "To build the PDF: `make paper` (installs texlive-latex-base texlive-latex-recommended "
           "texlive-fonts-recommended latexmk lmodern from Debian, then reruns this rule).\n")
    log.warning(msg)
    save_text(out, msg)
else:
    cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "report.tex"]
    with open(sm.log[0], "a") as fh:
        subprocess.run(cmd, cwd=build, check=True, stdout=fh, stderr=subprocess.STDOUT)
    atomic_write(out, (build / "report.pdf").read_bytes())
    log.info("wrote %s", out)
