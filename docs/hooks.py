"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks: [docs/hooks.py]``).

1. The numbers. A page holds placeholders, each an HTML comment alone on its line, that become Markdown at
   build time from the registry (:data:`influence.estimators.SPECS`) and the workflow's results (``results/``,
   or ``$INFLUENCE_DOCS_RESULTS``); nothing measured is typed into a page:

   ``<!-- registry: a, b -->``   the estimators' declarations: function, suspicious end, plain SGD only, run
                                 needed, hyperparameters (``<!-- registry: * -->``: every one, linked to its
                                 page, with the first sentence of its docstring)
   ``<!-- numbers: a, b -->``    every results table that has rows for these estimators: E1 (fidelity to
                                 trajectory LOO), E10 (DVEmb's protocol), E2 (detection), E4 (deletion),
                                 E6 (cost), each beside its chance control
   ``<!-- fidelity-overview -->`` E1's mean Spearman with trajectory LOO, every estimator × model
   ``<!-- claims: PAPER -->``    the claims of one paper (``paper`` of ``paper/claims.yaml``) with their verdicts
   ``<!-- claims-summary -->``   counts per verdict, and each paper's claims by verdict
   ``<!-- claims-table -->``     the whole ``results/report/claims.md``
   ``<!-- results-source -->``   which run the numbers come from

   Where ``results/`` does not hold the table (a clean clone), the placeholder becomes a note saying that the
   numbers appear after ``make reproduce``: the site builds either way.
2. MathJax, offline: MathJax 2.7 from the installed ``jupyter-server-mathjax`` is copied into the site as
   ``assets/mathjax/`` (``mkdocs.yml`` loads it after ``javascripts/mathjax-config.js``); no CDN.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_ENV = "INFLUENCE_DOCS_RESULTS"
MATHJAX_DIR = "assets/mathjax"
PLACEHOLDER = re.compile(r"^<!--[ \t]*([a-z-]+)(?::[ \t]*(.*?))?[ \t]*-->[ \t]*$", re.M)

#: The page of each registered estimator (relative to docs/); a registered name missing here is an error.
PAGES = {
    "lai": "estimators/lai.md", "lai_last_layer": "estimators/lai.md",
    "ghost": "estimators/ghost.md",
    "diffin": "estimators/diffin.md", "diffin_paper": "estimators/diffin.md",
    "diffin_paper_negated": "estimators/diffin.md", "diffin_self": "estimators/diffin.md",
    "diffin_self_negated": "estimators/diffin.md",
    "cg_score": "estimators/cg-score.md",
    "acc_sgd_ie": "estimators/acc-sgd-ie.md",
    "sgd_ie": "estimators/sgd-ie.md",
    "metagradient": "estimators/metagradient.md",
    "dvemb": "estimators/dvemb.md",
    "tracin": "estimators/tracin.md", "grad_dot": "estimators/tracin.md", "self_influence": "estimators/tracin.md",
    "influence_function": "estimators/influence-functions.md",
    "loss": "estimators/dynamics.md", "el2n": "estimators/dynamics.md", "grand": "estimators/dynamics.md",
    "forgetting": "estimators/dynamics.md", "random": "estimators/dynamics.md",
}


def results_dir() -> Path:
    """Where the numbers are read from: ``$INFLUENCE_DOCS_RESULTS`` or the repository's ``results/``."""
    return Path(os.environ.get(RESULTS_ENV) or REPO / "results")


# ------------------------------------------------------------------------------------------------ formatting
def _num(v: Any, digits: int = 3) -> str:
    """A table cell: numbers to ``digits`` significant digits, the rest as text; missing → —."""
    if v is None or v == "":
        return "—"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v).replace("|", "\\|")
    if math.isnan(x):
        return "—"
    if x == int(x) and abs(x) < 1e6 and "." not in str(v):
        return str(int(x))
    return f"{x:.{digits}g}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_num(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _missing(what: str) -> str:
    return (f'!!! note "Numbers not built yet"\n    {what} appear here after `make reproduce` (the site reads '
            f"them from `results/` when it is built; `make docs` again afterwards).\n")


def _read(rel: str) -> list[dict[str, str]] | None:
    path = results_dir() / rel
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _mean(values: list[str]) -> float:
    xs = [float(v) for v in values if v not in ("", None) and not math.isnan(float(v))]
    return sum(xs) / len(xs) if xs else float("nan")


# ------------------------------------------------------------------------------------------------ registry
def registry(names: list[str], page: str) -> str:
    """The declarations of ``names`` (``*``: all, with links to their pages) from the registry."""
    from influence import estimators as E

    known = E.names()
    if names == ["*"]:
        names, link = known, True
    else:
        link = False
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"{page}: registry placeholder names unknown estimators {unknown}")
    rows = []
    for n in names:
        spec, fn = E.SPECS[n], E.REGISTRY[n].__wrapped__
        susp = spec.suspicious if isinstance(spec.suspicious, str) else "depends on the hyperparameters"
        flags = ["yes" if spec.sgd_only else "no", "yes" if spec.needs_run else "no"]
        if link:  # the overview: one line each, what it is
            first = re.sub(r"\s+", " ", (fn.__doc__ or "").strip().split("\n\n")[0])
            first = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", first).replace("``", "`")
            first = re.split(r"(?<!\bEq)(?<!\bal)(?<!\be\.g)(?<=\.)\s+(?=[A-Z])", first, maxsplit=1)[0]
            first = first.replace("|", "\\|")
            name = f"[`{n}`]({_rel(page, PAGES[n])})" if n in PAGES else f"`{n}`"
            rows.append([name, susp, *flags, first])
        else:  # a method's page: where it lives and what it takes
            try:
                hp = ", ".join(f"`{h}`" for h in E.hparam_names(n)) or "—"
            except TypeError:
                hp = "—"
            rows.append([f"`{n}`", f"`{fn.__module__}.{fn.__name__}`", susp, *flags, hp])
    if link:
        return _table(["name", "suspicious end", "plain SGD only", "needs a run", "what it is"], rows)
    return _table(["name", "function", "suspicious end", "plain SGD only", "needs a run", "hyperparameters"], rows)


def _rel(src: str, dst: str) -> str:
    return os.path.relpath(dst, os.path.dirname(src) or ".").replace(os.sep, "/")


# ------------------------------------------------------------------------------------------------ numbers
def _with_control(rows: list[dict[str, str]], names: list[str], setting: Any = None) -> list[dict[str, str]]:
    """The rows of the estimators ``names``, then the random control's rows (the chance level; only those of the
    settings ``setting(row)`` the selected rows have, when given); [] when none of ``names`` is in ``rows``."""
    sel = [r for r in rows if r["estimator"] in names]
    if not sel:
        return []
    keys = {setting(r) for r in sel} if setting else None
    return sel + [r for r in rows if r["estimator"] == "random" and "random" not in names
                  and (keys is None or setting(r) in keys)]


def _fidelity(names: list[str]) -> str | None:
    rows = _read("tables/E1_fidelity.csv")
    if rows is None:
        return None
    sel = _with_control(rows, names)
    if not sel:
        return ""
    out = [[r["estimator"], r["model"], r["runs"], r["spearman"], r["kendall"], r["pearson"], r["rmse"],
            r.get("jaccard_top10")] for r in sel]
    return ("**Against trajectory leave-one-out (E1)**: the recorded runs of the E1 settings, mean over runs "
            "(rank correlations with the exact LOO loss change of the same run; the random scores are the chance "
            "control).\n\n" + _table(["estimator", "model", "runs", "Spearman", "Kendall", "Pearson", "RMSE",
                                      "Jaccard top-10"], out))


def _dvemb(names: list[str]) -> str | None:
    rows, lds = _read("tables/E10_dvemb.csv"), _read("tables/E10_lds.csv")
    if rows is None:
        return None
    sel = _with_control(rows, names)
    if not sel:
        return ""
    out = [[r["estimator"], r["library"], r["form"], r["epochs"], r["removal"].replace("_", "-"),
            r["spearman_per_target_mean"], f"{_num(r['spearman_mean'])} ± {_num(r['spearman_std'])}",
            r["wall_s_mean"], r["n_seeds"]] for r in sel]
    text = ("**On DVEmb's MNIST-MLP protocol (E10)**: Spearman with the trajectory LOO of the same run, per target "
            "and on the mean target loss (mean ± sd over seeds; `points`: the protocol's 100 points, `all_n`: every "
            "training sample).\n\n" + _table(["estimator", "library", "form", "epochs", "removal",
                                              "Spearman per target", "Spearman (mean loss)", "wall s", "seeds"], out))
    if lds:
        ls = _with_control(lds, names)
        if ls:
            text += "\n\nLinear datamodeling score on the same protocol:\n\n" + _table(
                ["estimator", "epochs", "LDS (trajectory)", "LDS (multi-seed)"],
                [[r["estimator"], r["epochs"], f"{_num(r['lds_trajectory_mean'])} ± {_num(r['lds_trajectory_std'])}",
                  f"{_num(r['lds_multi_seed_mean'])} ± {_num(r['lds_multi_seed_std'])}"] for r in ls])
    return text


def _detection(names: list[str]) -> str | None:
    rows = _read("tables/E2_detection.csv")
    if rows is None:
        return None
    sel = _with_control(rows, names, lambda r: (r["dataset"], r["noise"], r["model"]))
    if not sel:
        return ""
    out = [[r["estimator"], r["dataset"], r["noise"], r["model"], r["auroc"], r["ap"], r["recall_at_k"]]
           for r in sel]
    return ("**Mislabel detection (E2)**: ranked by the estimator's declared suspicious end (self-influence for the "
            "loss-change estimators), mean over seeds.\n\n"
            + _table(["estimator", "dataset", "noise", "model", "AUROC", "AP", "recall@k"], out))


def _deletion(names: list[str]) -> str | None:
    rows = _read("tables/E4_deletion.csv")
    if rows is None:
        return None
    sel = _with_control(rows, names)
    if not sel:
        return ""
    out = [[r["estimator"], r["dataset"], r["pearson_pred_actual"], r["n"]] for r in sel]
    return ("**Group deletion (E4)**: Pearson between the predicted and the actual (retrained) change of the target "
            "loss when a group is removed.\n\n" + _table(["estimator", "dataset", "Pearson(predicted, actual)",
                                                          "groups"], out))


def _cost(names: list[str]) -> str | None:
    rows = _read("tables/E6_cost.csv")
    if rows is None:
        return None
    sel = [r for r in rows if r["estimator"] in names]
    text = ""
    if sel:
        tracin = {r["model"]: float(r["median_wall_s"]) for r in rows if r["estimator"] == "tracin"}
        out = []
        for r in sel:
            t = tracin.get(r["model"])
            ratio = float(r["median_wall_s"]) / t if t else float("nan")
            out.append([r["estimator"], r["model"], r["runs"], r["median_wall_s"], ratio, r["median_peak_rss_mb"],
                        r.get("exponent_n")])
        text = ("**Cost (E6)**: median wall time of one run of the estimator, its ratio to TracIn on the same "
                "model, peak memory, and the fitted exponent of the time in n where it was measured.\n\n"
                + _table(["estimator", "model", "runs", "median wall s", "× TracIn", "peak RSS MB", "exponent in n"],
                         out))
    steps = _read("tables/E6_transformer_cost.csv") or []
    online = [r for r in steps if r["policy"] in names or any(r["policy"].startswith(n + "_") for n in names)]
    if online:
        text += ("\n\n" if text else "") + (
            "**Online, per training step on transformers**: the median step time of each policy and its ratio to a "
            "plain (vanilla) step, with the extra memory footprint.\n\n"
            + _table(["model", "policy", "steps", "median step ms", "× vanilla", "footprint MB"],
                     [[r["model"], r["policy"], r["steps"], r["median_step_ms"], r["ratio_to_vanilla"],
                       r["footprint_mb"]] for r in online]))
    return text


def numbers(names: list[str]) -> str:
    """Every results table with rows for ``names``; the note when none of the tables exists."""
    parts = [f(names) for f in (_fidelity, _dvemb, _detection, _deletion, _cost)]
    if all(p is None for p in parts):
        return _missing("The measured numbers of " + ", ".join(f"`{n}`" for n in names))
    body = [p for p in parts if p]
    if not body:
        return ("*No experiment of this run measured " + ", ".join(f"`{n}`" for n in names)
                + "; the tests check it (see the API reference).*\n")
    return source() + "\n\n" + "\n\n".join(body) + "\n"


def fidelity_overview() -> str:
    rows = _read("tables/E1_fidelity.csv")
    if rows is None:
        return _missing("The fidelity of every estimator to trajectory leave-one-out (E1)")
    by = defaultdict(dict)
    models = sorted({r["model"] for r in rows})
    for r in rows:
        by[r["estimator"]][r["model"]] = r["spearman"]
    order = sorted(by, key=lambda e: -_mean([by[e].get(m, "") for m in models]))
    return source() + "\n\n" + _table(["estimator", *(f"Spearman, {m}" for m in models)],
                                      [[f"`{e}`", *(by[e].get(m) for m in models)] for e in order])


# ------------------------------------------------------------------------------------------------ claims
def _claims_header() -> str | None:
    path = results_dir() / "report" / "claims.md"
    if not path.is_file():
        return None
    return path.read_text().strip().splitlines()[0]


def source() -> str:
    head = _claims_header()
    where = f"`{results_dir().relative_to(REPO)}/`" if results_dir().is_relative_to(REPO) else "the results folder"
    if head and head.startswith("Claims table generated"):
        return f"*From {where}: {head[len('Claims table generated '):].split(' (')[0]}.*"
    return f"*From {where}.*"


def claims(paper: str) -> str:
    rows = _read("report/claims.csv")
    if rows is None:
        return _missing(f"The verdicts of the {paper} claims")
    sel = [r for r in rows if r["paper"] == paper]
    if not sel:
        return f"*No claim of paper `{paper}` in this run's claims table.*\n"
    return source() + "\n\n" + _table(
        ["id", "protocol", "claim", "ours (95 % CI)", "verdict", "diagnosis"],
        [[r["id"], r.get("protocol", ""), r["claim"], r["ours"], f"**{r['verdict']}**", r["diagnosis"]]
         for r in sel])


def claims_summary(page: str) -> str:
    rows = _read("report/claims.csv")
    if rows is None:
        return _missing("The verdicts of the last run")
    order = ["reproduced", "partly", "inconclusive", "refuted", "invalid run", "not run"]
    verdicts = [v for v in order if any(r["verdict"] == v for r in rows)]
    verdicts += sorted({r["verdict"] for r in rows} - set(verdicts))
    papers = list(dict.fromkeys(r["paper"] for r in rows))
    label = {"all": "across papers"}
    counts = ", ".join(f"{sum(r['verdict'] == v for r in rows)} {v}" for v in verdicts)
    table = _table(["paper", *verdicts],
                   [[label.get(p, p), *(", ".join(r["id"] for r in rows if r["paper"] == p and r["verdict"] == v) or "—"
                         for v in verdicts)] for p in papers])
    link = _rel(page, "replication/claims.md")
    return (f"{source()}\n\n{len(rows)} claims: {counts}.\n\n{table}\n\n"
            f"The whole table: [Claims and verdicts]({link}).\n")


def claims_table() -> str:
    path = results_dir() / "report" / "claims.md"
    if not path.is_file():
        return _missing("The claims table (`results/report/claims.md`)")
    return path.read_text()


# ------------------------------------------------------------------------------------------------ the hooks
def render(markdown: str, page: str) -> str:
    """``markdown`` of ``page`` (relative to docs/) with every placeholder replaced."""

    def one(m: re.Match) -> str:
        kind, arg = m.group(1), (m.group(2) or "").strip()
        names = [a.strip() for a in arg.split(",") if a.strip()]
        if kind == "registry":
            return registry(names, page)
        if kind == "numbers":
            return numbers(names)
        if kind == "fidelity-overview":
            return fidelity_overview()
        if kind == "claims":
            return claims(arg)
        if kind == "claims-summary":
            return claims_summary(page)
        if kind == "claims-table":
            return claims_table()
        if kind == "results-source":
            return source()
        return m.group(0)  # any other comment stays as it is

    return PLACEHOLDER.sub(one, markdown)


def on_page_markdown(markdown: str, *, page: Any, **kwargs: Any) -> str:
    return render(markdown, page.file.src_uri)


def mathjax_root() -> Path:
    import jupyter_server_mathjax

    return Path(jupyter_server_mathjax.__file__).parent / "static"


def on_files(files: Any, *, config: Any, **kwargs: Any) -> Any:
    """Add MathJax (its whole static tree: it loads its parts on demand) to the site's files."""
    from mkdocs.structure.files import File

    root = mathjax_root()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            files.append(File.generated(config, f"{MATHJAX_DIR}/{path.relative_to(root).as_posix()}",
                                        abs_src_path=str(path)))
    return files
