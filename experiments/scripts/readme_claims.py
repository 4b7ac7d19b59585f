"""Write the README's claims summary from the workflow's claims table (``make readme-claims``): the text between the
README's two claims-snapshot markers becomes a short summary of results/report/claims.md: its first line (date,
configuration, counts per verdict) and one row per paper listing its claims by verdict. Nothing in it is typed:
run the workflow, then this. The whole table, with every number and diagnosis, stays in claims.md, the report and
the documentation's claims page.

    python experiments/scripts/readme_claims.py [--claims results/report/claims.md] [--readme README.md]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# this folder holds the rule scripts (numbers.py would shadow the standard library's numbers): the repository instead
sys.path[0] = str(REPO)

from influence.io import save_text  # noqa: E402
from replication.report import DETAILS_MARK, README_END, README_START  # noqa: E402

#: The paper of a claim, from its id's prefix (``LAI-2-authors`` → LAI), in the order of the summary.
PAPERS = {
    "LAI": "LAI (Yang, Huang, Liu 2025)",
    "DIFF": "Diff-In (Tan et al. 2025)",
    "CG": "CG-score (Ki, Choi, Chung 2023)",
    "ACC": "ACC-SGD-IE (Shi et al. 2025)",
    "TRAJ": "SGD-IE / DVEmb / MAGIC (trajectory)",
    "X": "across papers",
}
#: Verdict columns, in this order (a verdict not listed here gets a column after them).
VERDICTS = ("reproduced", "partly", "inconclusive", "refuted", "invalid run", "not run")
_ROW = re.compile(r"^\|\s*([A-Za-z0-9][\w.-]*)\s*\|.*\|\s*\*\*([^*|]+)\*\*\s*\|[^|]*\|\s*$")


def parse(claims_md: str) -> tuple[str, list[tuple[str, str]]]:
    """The first line of ``claims_md`` and its (id, verdict) rows, from the one-minute table. ``ValueError`` when it
    is not a claims table."""
    table = claims_md.split(DETAILS_MARK)[0]
    if "| id | " not in table:
        raise ValueError("not a claims table (results/report/claims.md of the workflow's claims rule)")
    head = table.strip().splitlines()[0].strip()
    rows = [(m.group(1), m.group(2).strip()) for m in map(_ROW.match, table.splitlines()) if m]
    if not rows:
        raise ValueError("the claims table has no rows")
    return head, rows


def summary(claims_md: str) -> str:
    """The README's short summary of ``claims_md``: its first line, then one row per paper with its claims per
    verdict."""
    head, rows = parse(claims_md)
    present = [v for v in VERDICTS if any(r[1] == v for r in rows)]
    present += sorted({v for _, v in rows} - set(present))
    by_paper: dict[str, dict[str, list[str]]] = {}
    for cid, verdict in rows:
        prefix = cid.split("-")[0]
        by_paper.setdefault(prefix, {}).setdefault(verdict, []).append(cid)
    order = [p for p in PAPERS if p in by_paper] + sorted(set(by_paper) - set(PAPERS))
    lines = [head, "", "| paper | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
    for p in order:
        cells = [", ".join(by_paper[p].get(v, [])) or "—" for v in present]
        lines.append(f"| {PAPERS.get(p, p)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_with_summary(readme: str, claims_md: str) -> str:
    """``readme`` with the text between :data:`README_START` and :data:`README_END` replaced by
    :func:`summary`. ``ValueError`` when the markers are not there exactly once each, in order."""
    if readme.count(README_START) != 1 or readme.count(README_END) != 1 or \
            readme.index(README_START) > readme.index(README_END):
        raise ValueError(f"the README must hold the lines {README_START!r} and {README_END!r}, once each, in order")
    head, rest = readme.split(README_START)
    tail = rest.split(README_END)[1]
    return f"{head}{README_START}\n{summary(claims_md)}\n{README_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=Path, default=REPO / "results" / "report" / "claims.md")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = ap.parse_args(argv)
    if not args.claims.exists():
        print(f"readme_claims: {args.claims} does not exist: run the workflow first (snakemake --cores N)",
              file=sys.stderr)
        return 1
    old = args.readme.read_text()
    try:
        new = readme_with_summary(old, args.claims.read_text())
    except ValueError as e:
        print(f"readme_claims: {e}", file=sys.stderr)
        return 1
    if new != old:
        save_text(args.readme, new)
        print(f"readme_claims: {args.readme} updated from {args.claims}")
    else:
        print(f"readme_claims: {args.readme} already holds {args.claims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
