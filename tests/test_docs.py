"""The documentation site (``make docs``) and the README.

The site builds with ``mkdocs build --strict`` (a warning is an error: a broken link, a griffe warning about a
docstring) as on a clean clone, where ``results/`` does not exist; every relative link and resource of the built
HTML resolves inside the site, nothing is loaded from another host (MathJax included), every public function and
class has its entry in the API reference and every registered estimator its page. The estimator pages' numbers
come from ``results/`` at build time (docs/hooks.py), checked here on a small results folder the test writes.
The README stays short, and every command it shows is run by a test or by CI.
"""

from __future__ import annotations

import csv
import html.parser
import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"

#: The API pages and the modules they document (every public module of the library).
API_PAGES = {
    **{f"api/{m}.html": f"influence.{m}" for m in (
        "data", "models", "module", "train", "record", "optim", "loo", "capture", "curation", "ghost", "shapley",
        "metrics", "io", "provenance", "validation", "autodiff", "linear")},
    "api/estimators/index.html": "influence.estimators",
    **{f"api/estimators/{m}.html": f"influence.estimators.{m}" for m in (
        "sgd_ie", "diffin", "cg_score", "online", "tracin", "influence_function", "dvemb", "dynamics")},
}


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _docs_command() -> list[str]:
    """``make docs``'s mkdocs command line, from the Makefile."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^docs:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "the Makefile has no docs target"
    line = next(ln for ln in recipe.group(1).splitlines() if "mkdocs build" in ln)
    args = line.split("mkdocs", 1)[1].split()
    assert args[:2] == ["build", "--strict"], line
    return args


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `make docs` builds it, on a clean clone (no results/)."""
    out = tmp_path_factory.mktemp("site")
    no_results = tmp_path_factory.mktemp("no_results")
    args = _docs_command()
    args = args[: args.index("--site-dir")] if "--site-dir" in args else args
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "INFLUENCE_DOCS_RESULTS": str(no_results)}
    res = subprocess.run([sys.executable, "-m", "mkdocs", *args, "--site-dir", str(out)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    return out


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.rels: list[tuple[str, str]] = []  # (rel, href) of <link>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append((tag, key, a[key]))
        if tag == "link":
            self.rels.append((a.get("rel") or "", a.get("href") or ""))


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "assets/mathjax" not in p.as_posix())


def test_every_relative_link_and_resource_of_the_site_resolves_to_a_file(site):
    broken = []
    for page in _pages(site):
        parser = _Refs()
        parser.feed(page.read_text())
        for tag, key, value in parser.refs:
            url = urlsplit(value)
            if url.scheme or url.netloc or value.startswith("#"):
                continue
            path = unquote(url.path)
            target = (site / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
            if path.endswith("/") or target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: <{tag} {key}={value!r}>")
    assert not broken, "\n".join(broken[:40])


def test_the_site_loads_nothing_from_another_host(site):
    """Offline: no script, stylesheet, font or image from a CDN (links to other sites are fine)."""
    remote = []
    for page in _pages(site):
        parser = _Refs()
        parser.feed(page.read_text())
        remote += [f"{page.relative_to(site)}: {v}" for tag, key, v in parser.refs
                   if key == "src" and urlsplit(v).netloc]
        remote += [f"{page.relative_to(site)}: {h}" for rel, h in parser.rels
                   if urlsplit(h).netloc and rel not in ("canonical",)]
    assert not remote, "\n".join(remote[:20])


def test_mathjax_is_served_from_the_site_and_the_maths_is_marked_for_it(site):
    conventions = (site / "conventions.html").read_text()
    assert 'src="assets/mathjax/MathJax.js"' in conventions and 'src="javascripts/mathjax-config.js"' in conventions
    config = (site / "javascripts" / "mathjax-config.js").read_text()
    for name in re.findall(r'config:\s*\["([^"]+)"\]', config):
        assert (site / "assets" / "mathjax" / "config" / name).is_file(), name
    assert re.search(r'class="arithmatex">\\\[', conventions) and re.search(r'class="arithmatex">\\\(', conventions)
    assert (site / "assets" / "mathjax" / "jax" / "output" / "HTML-CSS" / "fonts" / "STIX-Web").is_dir()


_CHROMIUM = next((shutil.which(c) for c in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
                  if shutil.which(c)), None)


@pytest.mark.skipif(_CHROMIUM is None, reason="no headless Chromium here to render the page (.ci/run installs one)")
def test_mathjax_renders_every_formula_offline(site, tmp_path):
    """The page as a browser shows it, from the files alone: each arithmatex element becomes MathJax output."""
    page = site / "estimators" / "acc-sgd-ie.html"
    res = subprocess.run([_CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                          "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    maths = page.read_text().count('class="arithmatex"')
    rendered = len(re.findall(r'<span class="MathJax" id="MathJax-Element-\d+-Frame"', res.stdout))
    assert maths > 5 and rendered >= maths, (maths, rendered)
    assert 'class="merror"' not in res.stdout and "MathJax_Error" not in re.sub(r"<style.*?</style>", "", res.stdout,
                                                                                   flags=re.S)


@pytest.mark.parametrize("page,module", sorted(API_PAGES.items()))
def test_the_api_reference_documents_every_public_function_and_class(site, page, module):
    text = (site / page).read_text()
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)  # re-exports included
    if names is None:  # the module's own
        names = [n for n, o in vars(mod).items() if not n.startswith("_") and getattr(o, "__module__", "") == module]
    missing = []
    for name in names:
        obj = getattr(mod, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and f'id="{module}.{name}"' not in text:
            missing.append(name)
    assert not missing, f"{page} lacks {missing}"


def test_the_api_reference_holds_the_ground_truth_and_the_estimators(site):
    assert 'id="influence.loo.trajectory_loo"' in (site / "api" / "loo.html").read_text()
    assert 'id="influence.estimators.sgd_ie.acc_sgd_ie"' in (site / "api" / "estimators" / "sgd_ie.html").read_text()
    assert 'id="influence.record.Recorder"' in (site / "api" / "record.html").read_text()


def test_every_registered_estimator_has_a_page_that_names_it(site):
    from influence import estimators

    pages = _hooks().PAGES
    assert set(estimators.names()) <= set(pages), sorted(set(estimators.names()) - set(pages))
    for name, page in pages.items():
        text = (site / page.replace(".md", ".html")).read_text()
        assert f"<code>{name}</code>" in text, (name, page)


def test_without_results_the_pages_say_where_the_numbers_come_from(site):
    text = (site / "estimators" / "acc-sgd-ie.html").read_text()
    assert "Numbers not built yet" in text and "make reproduce" in text
    assert "Numbers not built yet" in (site / "replication" / "claims.html").read_text()


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_the_numbers_on_the_estimator_pages_are_read_from_the_results(tmp_path, monkeypatch):
    hooks = _hooks()
    res = tmp_path / "results"
    e1 = {"model": "logreg", "runs": 5, "kendall": 0.81234, "pearson": 0.9, "rmse": 0.001, "jaccard_top10": 0.5}
    _write(res / "tables" / "E1_fidelity.csv", [{"estimator": "acc_sgd_ie", "spearman": 0.95432, **e1},
                                                {"estimator": "random", "spearman": 0.01, **e1}])
    cost = {"model": "logreg", "runs": 3, "median_peak_rss_mb": 300, "exponent_n": ""}
    _write(res / "tables" / "E6_cost.csv", [{"estimator": "acc_sgd_ie", "median_wall_s": 0.5, **cost},
                                            {"estimator": "tracin", "median_wall_s": 0.1, **cost}])
    claim = {"paper": "ACC-SGD-IE", "protocol": "ours", "claim": "ACC beats SGD-IE.", "ours": "+0.1 [0.05, 0.2]",
             "diagnosis": "mean of 5 seeds"}
    _write(res / "report" / "claims.csv", [{"id": "ACC-2", "verdict": "reproduced", **claim}])
    (res / "report" / "claims.md").write_text("Claims table generated 2030-01-01 from the `smoke` configuration "
                                              "(1 reproduced).\n\n| id | protocol |\n|---|---|\n| ACC-2 | ours |\n")
    monkeypatch.setenv(hooks.RESULTS_ENV, str(res))
    page = hooks.render((DOCS / "estimators" / "acc-sgd-ie.md").read_text(), "estimators/acc-sgd-ie.md")
    assert "<!--" not in page  # every placeholder replaced
    assert "| acc_sgd_ie | logreg | 5 | 0.954 | 0.812 |" in page and "| random | logreg |" in page
    assert "| acc_sgd_ie | logreg | 3 | 0.5 | 5 |" in page  # 5 × TracIn's time
    assert "| ACC-2 | ours | ACC beats SGD-IE. | +0.1 [0.05, 0.2] | **reproduced** |" in page
    assert "2030-01-01 from the `smoke` configuration" in page and "Numbers not built yet" not in page
    home = hooks.render((DOCS / "index.md").read_text(), "index.md")
    assert "1 claims: 1 reproduced." in home and "[Claims and verdicts](replication/claims.md)" in home


@pytest.mark.skipif(not (REPO / "results" / "report" / "claims.csv").is_file(), reason="no workflow results here")
def test_every_page_renders_with_the_workflow_s_own_results(monkeypatch):
    """The tables the hooks read have the columns they expect (a renamed column fails here, not in a build)."""
    hooks = _hooks()
    monkeypatch.delenv(hooks.RESULTS_ENV, raising=False)
    for md in sorted(DOCS.rglob("*.md")):
        rel = md.relative_to(DOCS).as_posix()
        out = hooks.render(md.read_text(), rel)
        left = [m.group(0) for m in hooks.PLACEHOLDER.finditer(md.read_text()) if m.group(0) in out]
        assert not left, (rel, left)
    assert "| `acc_sgd_ie` |" in hooks.render("<!-- fidelity-overview -->", "estimators/index.md")


# ------------------------------------------------------------------------------------------------ the README
def _block_after(text: str, marker: str, lang: str = "bash") -> list[str]:
    start = text.index(marker)
    block = re.search(rf"```{lang}\n(.*?)```", text[start:], flags=re.S).group(1)
    return [ln.split("  #")[0].rstrip() for ln in block.splitlines() if ln.strip()]


def _install_recipe() -> list[str]:
    """The pip commands of the Makefile's install recipe, as one types them in an activated .venv."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", text, re.M).group(1)
    cmds = []
    for line in recipe.splitlines():
        line = line.strip()
        if "-m pip " in line:
            cmd = "pip " + line.split("-m pip ", 1)[1].replace(" -q", "").replace("$(VENV)", ".venv")
            cmds.append(re.sub(r"\s+", " ", cmd))
    return cmds


def test_the_readme_is_short():
    assert len(README.read_text()) <= 15000


def test_the_readme_s_manual_install_is_the_makefile_s_install_recipe():
    text = README.read_text()
    lines = _block_after(text, "**Installing**")
    assert lines[0] == "python3 -m venv .venv && . .venv/bin/activate"
    recipe = [c for c in _install_recipe() if "--upgrade pip" not in c]
    assert [re.sub(r"\s+", " ", ln) for ln in lines[1:]] == recipe
    # the docs show the same lines
    assert _block_after((DOCS / "getting-started.md").read_text(), "What it runs, by hand") == lines


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([\w-]+)", README.read_text()))
    assert named and named <= targets, named - targets


def test_the_library_only_install_names_the_distribution():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert f"`pip install {project['name']}`" in README.read_text()


def test_every_relative_link_of_the_readme_resolves():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    missing = [ln for ln in links if not urlsplit(ln).scheme and not (REPO / ln).exists()]
    assert links and not missing, missing


def test_the_docs_page_shows_the_readme_s_snippets_unchanged():
    def snippets(text: str, start: str) -> list[str]:
        i = text.index(start)
        j = text.find("\n## ", i + 3) if start.startswith("## ") else len(text)
        return re.findall(r"```python\n(.*?)```", text[i:j], flags=re.S)

    readme = snippets(README.read_text(), "## Use it on your model")
    page = snippets((DOCS / "use-on-your-model.md").read_text(), "# Use it on your model")
    assert len(readme) == 2 and page[:2] == readme


def test_the_getting_started_example_runs(capsys):
    text = (DOCS / "getting-started.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Ten lines"):], flags=re.S).group(1)
    namespace = {"__name__": "__docs__"}
    exec(compile(code, "docs/getting-started.md", "exec"), namespace)
    kendall = float(capsys.readouterr().out.split()[0])
    assert kendall > 0.8 and namespace["truth"].shape == (400,)


def test_every_make_command_of_the_readme_plans(tmp_path):
    """`make -n` of each target the README names: the recipe resolves (what each runs is tested elsewhere: the
    install lines above, the suite itself, the workflow's dry runs in tests/test_workflow.py, this site)."""
    for target in sorted(set(re.findall(r"`make ([\w-]+)", README.read_text()))):
        res = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, (target, res.stderr[-2000:])
