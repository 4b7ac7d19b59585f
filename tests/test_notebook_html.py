"""The notebooks' HTML copies read offline: maths typeset, no network request, code folded.

A small committed notebook with maths (``tests/fixtures/notebook_maths.ipynb``: display and inline formulas in a
markdown cell and in a generated Markdown output, a figure, the Snakemake preamble cell) is converted by
:func:`replication.notebook_html.export_html`, the function the workflow's ``notebook_html`` rule runs. The page is
checked as HTML, then opened in headless Chromium with the network off: the rendered text holds no raw TeX, and the
browser's network log holds no request. The stock nbconvert page fails that check (it loads MathJax from a CDN), so
the check can fail. Every formula of notebooks/*.ipynb must convert too.

The browser tests skip, saying why, only where Chromium is missing, outside CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from replication.notebook_html import MathError, export_html, notebook_to_html, to_mathml

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "notebook_maths.ipynb"
N_FORMULAS = 9  # in the fixture's markdown cell one $$, four $, one \(...\), one \[...\]; two in its output
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\\[A-Za-z]+")  # $$, \( \[ and any TeX command (\mathrm, \frac, ...)
CHROMIUM = next((shutil.which(b) for b in ("chromium-headless-shell", "chromium", "chromium-browser",
                                           "google-chrome") if shutil.which(b)), None)
INSTALL = "apt-get install -y --no-install-recommends chromium-headless-shell"


class Page(HTMLParser):
    """What a page loads, shows and folds: remote loads, scripts, visible text (outside code), <math>, <details>."""

    LOADS = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src", "embed": "src",
             "object": "data", "audio": "src", "video": "src"}
    CODE = {"details", "pre", "code", "style", "script", "title"}  # text a reader does not read as prose

    def __init__(self, html: str):
        super().__init__()
        self.remote, self.scripts, self.maths, self.details = [], 0, 0, 0
        self.text: list[str] = []
        self.open: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        url = a.get(self.LOADS.get(tag, ""), "") or ""
        if re.match(r"(https?:)?//", url):
            self.remote.append(url)
        self.scripts += tag == "script"
        self.maths += tag == "math"
        self.details += tag == "details"
        if tag not in {"br", "img", "meta", "link", "input", "hr", "mspace", "mprescripts", "none"}:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if self.open and self.open[-1] == tag:
            self.open.pop()

    def handle_endtag(self, tag):
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def handle_data(self, data):
        if not self.CODE & set(self.open):
            self.text.append(data)

    @property
    def prose(self) -> str:
        return "".join(self.text)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    return export_html(FIXTURE, tmp_path_factory.mktemp("html") / "notebook_maths.html")


def test_page_is_self_contained_with_the_maths_as_mathml_and_the_code_folded(page):
    html = page.read_text()
    p = Page(html)
    assert p.remote == [] and p.scripts == 0, (p.remote, p.scripts)  # no CDN, no script at all
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", html), "a stylesheet loads from the network"
    assert p.maths == N_FORMULAS and 'class="nb-tex"' not in html  # every formula converted
    assert not RAW_TEX.search(p.prose), RAW_TEX.search(p.prose)
    assert "𝟙" in html  # \mathbb 1 as the Unicode double-struck one (MathML Core ignores mathvariant)
    assert 'cost = "$5"' in html  # a code span keeps its dollars
    # the preamble cell is left out; the two other code cells are folded, their outputs shown
    assert "snakemake preamble" not in html and "pickle.loads" not in html
    assert p.details == 2 and html.count('<details class="nb-code">') == 2
    assert "The fitted slope is" in p.prose and "3 checks ran" in html
    assert html.count('src="data:image/png;base64') == 1


@pytest.mark.parametrize("nb", sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb")))
def test_every_formula_of_the_notebooks_converts(nb):
    book = nbformat.read(REPO / "notebooks" / f"{nb}.ipynb", as_version=4)
    book.cells = [c for c in book.cells if c.cell_type == "markdown"]  # where the notebooks write their maths
    html = notebook_to_html(book, name=nb)
    assert 'class="nb-tex"' not in html, re.findall(r'class="nb-tex">([^<]*)', html)
    assert not RAW_TEX.search(Page(html).prose)


def test_a_formula_that_cannot_be_converted_is_an_error_not_mathml():
    assert "<mfrac>" in to_mathml(r"\frac{a}{b}", display=False)
    with pytest.raises(MathError):
        to_mathml(r"\nosuchcommand x", display=False)
    with pytest.raises(MathError):
        to_mathml(r"\begin{aligned} a &= b \end{aligned}", display=True)  # latex2mathml leaves a bare &


# ------------------------------------------------------------------------------------- in a browser, offline
def chromium() -> str:
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is missing in CI: .ci/run installs it ({INSTALL})")
    pytest.skip(f"Chromium is not installed: .ci/run installs it ({INSTALL})")


def render_offline(html: Path, tmp: Path) -> tuple[str, list[str]]:
    """The DOM headless Chromium holds once the page's scripts have run (if any), with every host unreachable, and
    the URLs it tried to fetch (its network log)."""
    netlog = tmp / "netlog.json"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp / 'profile'}",
           "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run",
           f"--log-net-log={netlog}", "--virtual-time-budget=5000", "--dump-dom", html.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "</html>" in res.stdout, res.stderr[-2000:]
    events = json.loads(netlog.read_text()).get("events", []) if netlog.exists() else []
    urls = sorted({e["params"][k] for e in events for k in ("url", "original_url") if k in e.get("params", {})})
    return res.stdout, [u for u in urls if not u.startswith(("file:", "data:"))]


def test_page_renders_its_maths_offline_in_headless_chromium(page, tmp_path):
    dom, requests = render_offline(page, tmp_path)
    assert requests == [], requests
    p = Page(dom)
    assert p.maths == N_FORMULAS  # parsed as MathML elements: the browser draws them
    assert not RAW_TEX.search(p.prose), RAW_TEX.search(p.prose)
    assert "The fitted slope is" in p.prose


def test_the_stock_nbconvert_page_fails_that_check(tmp_path):
    """nbconvert's own page asks a CDN for MathJax and require.js: offline its statements stay raw TeX."""
    from nbconvert import HTMLExporter

    stock = tmp_path / "stock.html"
    stock.write_text(HTMLExporter().from_filename(str(FIXTURE))[0])
    dom, requests = render_offline(stock, tmp_path)
    assert any("mathjax" in u.lower() for u in requests), requests
    assert re.search(r"\$\$.*\\mathrm", Page(dom).prose, re.S)
