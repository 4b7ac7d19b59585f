"""The executed notebooks as HTML a reader verifies offline: maths already typeset, code folded, no network request.

``export_html(ipynb, html)`` is what the workflow's ``notebook_html`` rule runs (experiments/scripts/notebook_html.py)
and what tests/test_notebook_html.py checks in a headless browser with the network off.

Why the maths is converted here, to MathML, and not left to MathJax in the browser: nbconvert's page loads MathJax
and require.js from a CDN, so offline (a cluster login node, a plane) every statement reads as raw ``$$...$$``. A
MathJax copy shipped next to the page (jupyter-server-mathjax carries MathJax 2.7) would typeset only while the page
stays beside that folder: not in an HTML file copied or mailed alone, nor in ``snakemake --report``, which carries the
.html file only; and MathJax 2 loads dozens of files at run time. MathML written at conversion time (latex2mathml,
pure Python) makes one self-contained file with no script at all, which browsers draw natively (Firefox, Safari,
Chromium 109 and later). The few MathML features Chromium lacks (``mathvariant`` other than normal, named spaces) are
rewritten into what it draws (Unicode mathematical letters, lengths in em). A formula latex2mathml cannot convert
is logged and shown as its TeX, marked (tests/test_notebook_html.py requires every formula of notebooks/ to convert).

The rest of the page: the Snakemake preamble cell (tag ``snakemake-job-properties``) is left out, every code cell is
folded into a ``<details>`` element (prose, maths, figures and tables first; a click opens the code) and the blocks
of nbconvert's lab template that load scripts from the network (require.js, MathJax, mermaid, widgets) are empty.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
import nbformat
from latex2mathml.converter import convert
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from traitlets.config import Config

from influence.io import save_text

log = logging.getLogger(__name__)

MATHML_NS = "http://www.w3.org/1998/Math/MathML"
ET.register_namespace("", MATHML_NS)

# nbconvert's lab template without its network loads, code cells folded
TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
<style type="text/css">
  math { font-size: 1.1em; }  /* the math font's x-height is smaller than the prose font's */
  math[display="block"] { margin: 0.6em 0; overflow-x: auto; overflow-y: hidden; }
  details.nb-code > summary { cursor: pointer; color: var(--jp-ui-font-color2); font-size: var(--jp-ui-font-size1);
                              padding: 2px 0 2px var(--jp-cell-prompt-width); }
  code.nb-tex { color: #b00; }
</style>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block input_group -%}
<details class="nb-code"><summary>code{% if cell.execution_count %} [{{ cell.execution_count }}]{% endif %}</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""

# MathML Core (what Chromium draws) ignores mathvariant other than "normal": letters take their Unicode
# mathematical form instead (\mathbb 1 -> U+1D7D9)
VARIANT_NAMES = {
    "bold": "BOLD", "italic": "ITALIC", "bold-italic": "BOLD ITALIC", "double-struck": "DOUBLE-STRUCK",
    "script": "SCRIPT", "bold-script": "BOLD SCRIPT", "fraktur": "FRAKTUR", "bold-fraktur": "BOLD FRAKTUR",
    "sans-serif": "SANS-SERIF", "bold-sans-serif": "SANS-SERIF BOLD", "sans-serif-italic": "SANS-SERIF ITALIC",
    "sans-serif-bold-italic": "SANS-SERIF BOLD ITALIC", "monospace": "MONOSPACE",
}
# the named spaces of MathML 3, which MathML Core dropped, in em (TeX's \, \: \; and their negatives)
NAMED_SPACES = {
    "veryverythinmathspace": 1, "verythinmathspace": 2, "thinmathspace": 3, "mediummathspace": 4,
    "thickmathspace": 5, "verythickmathspace": 6, "veryverythickmathspace": 7,
}
CHAR_NAME = re.compile(r"(?:LATIN|GREEK) (CAPITAL|SMALL) LETTER (\w+)|DIGIT (\w+)")


class MathError(ValueError):
    """A formula latex2mathml could not turn into well-formed MathML."""


def styled(ch: str, variant: str) -> str:
    """``ch`` in the Unicode mathematical alphabet of a MathML ``mathvariant`` (unchanged where there is none)."""
    style = VARIANT_NAMES.get(variant)
    m = CHAR_NAME.fullmatch(unicodedata.name(ch, ""))
    if not style or not m:
        return ch
    tail = f"DIGIT {m.group(3)}" if m.group(3) else f"{m.group(1)} {m.group(2)}"
    # most live in the Mathematical Alphanumeric Symbols block; a few older ones in Letterlike Symbols (ℝ, ℒ)
    for name in (f"MATHEMATICAL {style} {tail}", f"{style} {tail}"):
        try:
            return unicodedata.lookup(name)
        except KeyError:
            continue
    return ch


def to_mathml(tex: str, display: bool) -> str:
    """One formula as MathML that Chromium, Firefox and Safari draw; :class:`MathError` when it cannot be converted."""
    try:
        root = ET.fromstring(convert(tex, display="block" if display else "inline"))
    except Exception as e:  # latex2mathml raises its own exceptions, and may emit malformed XML (a bare &)
        raise MathError(f"cannot convert ${tex}$: {e}") from e
    for el in root.iter():
        variant = el.attrib.get("mathvariant")
        if variant and variant != "normal" and el.text:
            el.text = "".join(styled(c, variant) for c in el.text)
            del el.attrib["mathvariant"]
        width = el.attrib.get("width", "")
        if width.removeprefix("negative") in NAMED_SPACES:
            sign = "-" if width.startswith("negative") else ""
            el.attrib["width"] = f"{sign}{NAMED_SPACES[width.removeprefix('negative')] / 18:.3f}em"
        if el.text and re.search(r"\\[A-Za-z]", el.text):  # an unknown command, passed through verbatim
            raise MathError(f"cannot convert ${tex}$: unknown command {el.text}")
    root.set("alttext", tex.strip())  # the TeX source, for screen readers and copying
    # HTML parses <math> into the MathML namespace by itself: no xmlns (nor any URL) in the page
    return ET.tostring(root, encoding="unicode").replace(f' xmlns="{MATHML_NS}"', "", 1)


class MathMLRenderer(IPythonRenderer):
    """nbconvert's markdown renderer with every formula written as MathML (a formula that fails stays TeX, marked)."""

    def _math(self, tex: str, display: bool) -> str:
        try:
            return to_mathml(tex, display)
        except MathError as e:
            log.warning("%s; left as TeX", e)
            delim = "$$" if display else "$"
            return f'<code class="nb-tex">{html.escape(delim + tex + delim)}</code>'

    def block_math(self, body: str) -> str:
        return self._math(body, display=True)

    def inline_math(self, body: str) -> str:
        return self._math(body, display=False)

    def latex_environment(self, name: str, body: str) -> str:
        return self._math(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)


class OfflineHTMLExporter(HTMLExporter):
    """nbconvert's lab HTML with MathML maths, folded code and no network load (see the module docstring)."""

    @jinja2.pass_context
    def markdown2html(self, context, source):
        """Markdown (cells and outputs) to HTML, formulas as MathML."""
        cell = context.get("cell", {})
        renderer = MathMLRenderer(
            escape=False,
            attachments=cell.get("attachments", {}),
            embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text,
            exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options,
        )
        return MarkdownWithMath(renderer=renderer).render(source)


def exporter() -> OfflineHTMLExporter:
    """The exporter, configured as the workflow uses it: the Snakemake preamble cell left out."""
    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = {"snakemake-job-properties"}
    return OfflineHTMLExporter(config=config, extra_loaders=[jinja2.DictLoader({"offline.html.j2": TEMPLATE})],
                               template_file="offline.html.j2")


def notebook_to_html(book: nbformat.NotebookNode, name: str = "notebook") -> str:
    """The HTML page of a notebook (``name`` is its title when the notebook sets none)."""
    body, _ = exporter().from_notebook_node(book, resources={"metadata": {"name": name}})
    return body


def export_html(ipynb: str | Path, html_path: str | Path) -> Path:
    """Write ``ipynb`` (an executed notebook) as the HTML page ``html_path`` (atomically)."""
    ipynb = Path(ipynb)
    book = nbformat.read(ipynb, as_version=4)
    page = notebook_to_html(book, name=ipynb.stem)
    log.info("%s -> %s (%d formulas as MathML)", ipynb, html_path, page.count("<math "))
    return save_text(html_path, page)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ipynb", type=Path)
    parser.add_argument("html", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    export_html(args.ipynb, args.html)


if __name__ == "__main__":
    main()
