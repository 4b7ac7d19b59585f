"""Copy the workflow's claims table into README.md (``make readme-claims``): the text between the README's two
claims-snapshot markers becomes results/report/claims.md (its header and one-minute table; ``--full``: the detailed
table too). Nothing in the snapshot is typed: run the workflow, then this.

    python experiments/scripts/readme_claims.py [--claims results/report/claims.md] [--readme README.md] [--full]
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# this folder holds the rule scripts (numbers.py would shadow the standard library's numbers): the repository instead
sys.path[0] = str(REPO)

from influence.io import save_text  # noqa: E402
from influence.report import readme_snapshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=Path, default=REPO / "results" / "report" / "claims.md")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    ap.add_argument("--full", action="store_true", help="copy the detailed table too")
    args = ap.parse_args(argv)
    if not args.claims.exists():
        print(f"readme_claims: {args.claims} does not exist: run the workflow first (snakemake --cores N)",
              file=sys.stderr)
        return 1
    new = readme_snapshot(args.readme.read_text(), args.claims.read_text(), full=args.full)
    if new != args.readme.read_text():
        save_text(args.readme, new)
        print(f"readme_claims: {args.readme} updated from {args.claims}")
    else:
        print(f"readme_claims: {args.readme} already holds {args.claims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
