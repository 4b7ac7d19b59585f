"""Rule claims: the claims table (CSV, LaTeX, Markdown) from paper/claims.yaml and the experiment tables."""

import datetime
from pathlib import Path

from wfio import setup

from influence.claims import evaluate_claims
from influence.io import read_json, save_csv, save_text
from influence.report import claims_latex, claims_markdown

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
runs = [read_json(p) for p in sm.input.runs]
table = evaluate_claims(sm.input.claims, metrics_dir=Path(sm.input.tables[0]).parent, runs=runs,
                        check_runs=dict(sm.params.check_runs))
save_csv(sm.output.csv, table)
save_text(sm.output.tex, claims_latex(table))
stamp = datetime.date.today().isoformat()
counts = table["verdict"].value_counts().to_dict()
header = (f"Claims table generated {stamp} from the `{sm.params.config_name}` configuration "
          f"({', '.join(f'{v} {k}' for k, v in counts.items())}).\n\n")
save_text(sm.output.md, header + claims_markdown(table))
log.info("claims: %s", counts)
