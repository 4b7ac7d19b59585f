"""Rule numbers: results/report/numbers.tex, the LaTeX macros the report reads every number and verdict from
(:func:`replication.report.write_numbers`: the claims table, the configuration and each experiment's tables).

Per claim of paper/claims.yaml (defined even when the claims table lacks it): its verdict, the paper's number, our
estimate with its 95 % interval, the diagnosis and the flags ok / refuted / inconclusive / judged; and the count
of claims per verdict (claimsReproduced, claimsRefuted, claimsInconclusive, claimsPartly, claimsNotRun,
claimsInvalidRun; :func:`replication.report.claim_numbers`)."""

from pathlib import Path

from wfio import setup

from replication.claims import load_claims
from replication.report import write_numbers

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
results = Path(sm.input.claims).resolve().parents[1]  # <results>/report/claims.csv
ids = [c["id"] for c in load_claims(sm.input.claims_yaml)]
macros = write_numbers(results, sm.output[0], config=dict(sm.params.config), claim_ids=ids)
log.info("%d macros", len(macros))
