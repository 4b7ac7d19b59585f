"""Rule claims: the claims table from paper/claims.yaml and the experiment tables: CSV (every column), the
one-minute table and the detailed one as LaTeX (claims.tex, claims_detail.tex; the report inputs both), the claims
judged in both protocols side by side (protocols.tex), and
Markdown (claims.md: both tables with the verdicts' legend; `make readme-claims` copies its one-minute table into
the README)."""

import datetime
from pathlib import Path

from wfio import setup

from influence.io import read_json, save_csv, save_text
from replication.claims import evaluate_claims
from replication.report import (
    claims_detail_latex,
    claims_latex,
    claims_markdown,
    claims_summary,
    protocols_latex,
    protocols_markdown,
)

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
runs = [read_json(p) for p in sm.input.runs]
table = evaluate_claims(sm.input.claims, metrics_dir=Path(sm.input.tables[0]).parent, runs=runs,
                        check_runs=dict(sm.params.check_runs))
save_csv(sm.output.csv, table)
save_text(sm.output.tex, claims_latex(table))
save_text(sm.output.detail, claims_detail_latex(table))
save_text(sm.output.protocols, protocols_latex(table))
stamp = datetime.date.today().isoformat()
header = (f"Claims table generated {stamp} from the `{sm.params.config_name}` configuration "
          f"({claims_summary(table)}).\n\n")
side = protocols_markdown(table)
side = ("\n### In the authors' protocol and against ground truth\n\n" + side) if side else ""
save_text(sm.output.md, header + claims_markdown(table) + side)
log.info("claims: %s", claims_summary(table))
