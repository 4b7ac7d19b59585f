"""A griffe extension for the API reference: the reStructuredText habits of the docstrings, rendered as Markdown.

The docstrings of ``influence`` are numpy-style with a few reST constructs that Markdown reads differently:

* roles (``:func:`x```, ``:class:`~a.B```, ``:mod:``, ``:data:``, ``:meth:``, ``:attr:``, ``:exc:``) become code
  spans (a ``~`` prefix keeps only the last name, as Sphinx does);
* a paragraph ending in ``::`` before an indented block becomes one ending in ``:`` (the block is already an
  indented code block in Markdown);
* simple tables (rows of ``=====  =====`` rules) are kept as preformatted text, not read as setext headings;
* the compact parameter lines ``name : what it is`` (a description where numpy-style puts a type) become
  ``name`` with the description below, as numpy-style has it; an entry that reads as a type (no ``;``, not ending
  in ``.`` or a lowercase word) whose next line is indented and starts a sentence is a real ``name : type``;
* a ``Returns`` or ``Raises`` section written as prose (not entries) becomes an admonition titled "Result" or
  "Errors", instead of a table whose type column holds the sentence.

Loaded by mkdocstrings (``mkdocs.yml``: ``extensions: [docs/griffe_rst.py]``); it changes only what the site shows.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const|term|ref):`~?([^`]+)`")
_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")
_ENTRY = re.compile(r"^(\s*)([\w*][\w*, ]*?) : (.+)$")
_EXC = re.compile(r"^\s*[\w.]+(\s*,\s*[\w.]+)*\s*$")
_PROSE_TITLES = {"Returns": "Result", "Raises": "Errors"}  # not numpy section names: griffe makes admonitions
_SECTIONS = ("Parameters", "Other Parameters", "Returns", "Yields", "Attributes")


def _role(m: re.Match) -> str:
    target = m.group(1)
    if m.group(0).split("`")[1].startswith("~"):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with the reST constructs above rewritten for Markdown."""
    text = _ROLE.sub(_role, text)
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _RULE.match(line):  # a simple table: every line up to its closing rule, fenced
            j, rules = i + 1, 1
            while j < len(lines) and rules < 3:
                rules += bool(_RULE.match(lines[j]))
                j += 1
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}```text", *lines[i:j], f"{indent}```"]
            i = j
            continue
        if line.rstrip().endswith("::") and not line.strip().startswith((">>>", "...")):
            stripped = line.rstrip()[:-2].rstrip()
            line = f"{stripped}:" if stripped else ""
        out.append(line)
        i += 1
    return _compact_entries("\n".join(out))


def _typeish(what: str) -> bool:
    """Whether ``what`` reads as a type (``int, default 64``), not a description."""
    return ";" not in what and not what.endswith(".") and not re.search(r"(^|[^\w-])[a-z][a-z-]*$", what)


def _prose(header: str, first: str, second: str) -> bool:
    """Whether a Returns / Raises section whose first lines are ``first``, ``second`` is prose, not entries."""
    if header == "Raises":
        return not _EXC.match(first)
    indent = len(first) - len(first.lstrip())
    deeper = second.strip() and len(second) - len(second.lstrip()) > indent
    return not _ENTRY.match(first) and not (_typeish(first.strip()) and deeper)


def _compact_entries(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    section = None
    for i, line in enumerate(lines):
        if line is None:
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) and lines[i + 1] is not None else ""
        if nxt.strip() and set(nxt.strip()) == {"-"}:
            section = line.strip()
            first = lines[i + 2] if i + 2 < len(lines) else ""
            second = lines[i + 3] if i + 3 < len(lines) else ""
            if section in _PROSE_TITLES and first.strip() and _prose(section, first, second):
                # prose: an admonition titled by the section, not a table of made-up types
                indent = line[: len(line) - len(line.lstrip())]
                title = _PROSE_TITLES[section]
                out += [f"{indent}{title}", f"{indent}{'-' * len(title)}"]
                lines[i + 1] = None  # the underline goes too
                section = None
                continue
        m = _ENTRY.match(line)
        if section in _SECTIONS and m:
            indent, name, what = m.groups()
            cont = nxt.strip()
            deeper = len(nxt) - len(nxt.lstrip()) > len(indent) and cont
            if not (_typeish(what) and ((deeper and (cont[0].isupper() or cont[0] in "'\"*")) or what.startswith("{"))):
                out += [f"{indent}{name}", f"{indent}    {what}"]
                continue
        out.append(line)
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring once, when its object is created."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
