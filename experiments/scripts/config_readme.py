"""Write experiments/config/README.md, the reference of every configuration key, from experiments/config/schema.yaml.

    python experiments/scripts/config_readme.py           # (re)write the README (make config-readme)
    python experiments/scripts/config_readme.py --check   # exit 1 if the README is not what the schema gives now

One row per key: its dotted path (``<name>`` stands for a name the user picks, ``[]`` for each item of a list),
type, the schema's default, the values it allows and the schema's description. Sections follow the top-level keys;
``experiments`` has one per experiment.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parents[1] / "config"
SCHEMA = CONFIG / "schema.yaml"
README = CONFIG / "README.md"
HEADER = """\
<!-- Generated from schema.yaml by experiments/scripts/config_readme.py (`make config-readme`); do not edit by hand:
     tests/test_workflow_conventions.py fails when this file is not what the schema gives. -->
# Configuration keys

{description}

A run's configuration: default.yaml first, then a `--configfile` (smoke.yaml, paper.yaml, yours) laid over it (nested
mappings merge, lists replace), then `--config key=value`. *required*: a config must give the key (default.yaml
does). In key paths, `<name>` is a name you choose (letters, digits, `_`) and `[]` each item of a list.
"""

log = logging.getLogger("config_readme")


def resolve(node: dict, defs: dict) -> dict:
    """``node`` with a local ``$ref`` replaced by the definition it names (the node's own keys win)."""
    if "$ref" not in node:
        return node
    target = resolve(defs[node["$ref"].removeprefix("#/$defs/")], defs)
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def fmt(value: Any) -> str:
    """A value as it is written in the YAML config, in inline code."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`"


def cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, ``<`` outside code spans too (not an HTML tag)."""
    parts = re.sub(r"\s+", " ", text).strip().replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def type_of(node: dict, defs: dict) -> str:
    """The key's type in words: ``integer``, ``array of string``, ``mapping: name → object``, ..."""
    kind = node.get("type")
    if kind is None and "enum" in node:
        kind = "string" if all(isinstance(v, str) for v in node["enum"]) else "value"
    if kind is None and isinstance(node.get("additionalProperties"), dict):
        kind = "object"
    if kind is None:
        return "any"
    kinds = [kind] if isinstance(kind, str) else list(kind)
    words = []
    for k in kinds:
        if k == "array" and "items" in node:
            k = f"array of {type_of(resolve(node['items'], defs), defs)}"
        elif k == "object" and isinstance(node.get("additionalProperties"), dict):
            k = f"mapping: name → {type_of(resolve(node['additionalProperties'], defs), defs)}"
        words.append(k)
    return " or ".join(words)


def allowed(node: dict, defs: dict) -> list[str]:
    """The values a key allows beyond its type: enumerations, patterns, bounds, lengths."""
    out = []
    if "enum" in node:
        out.append("one of " + ", ".join(fmt(v) for v in node["enum"]))
    if "const" in node:
        out.append(f"only {fmt(node['const'])}")
    if "pattern" in node:
        out.append(f"matches `{node['pattern']}`")
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            out.append(f"{sign} {node[key]}")
    if "minItems" in node:
        out.append(f"at least {node['minItems']} item{'s' if node['minItems'] > 1 else ''}")
    if "propertyNames" in node:
        out.append("names: " + ", ".join(allowed(resolve(node["propertyNames"], defs), defs)))
    if isinstance(node.get("items"), dict):
        items = resolve(node["items"], defs)
        if allowed(items, defs) and not children(items, defs):
            out.append("each: " + ", ".join(allowed(items, defs)))
    return out


def children(node: dict, defs: dict) -> list[tuple[str, dict]]:
    """The keys below a node (resolved): its properties, a mapping's ``<name>`` entries, a list's object items."""
    if "properties" in node:
        return [(k, resolve(v, defs)) for k, v in node["properties"].items()]
    if isinstance(node.get("additionalProperties"), dict):
        return [("<name>", resolve(node["additionalProperties"], defs))]
    if isinstance(node.get("items"), dict):
        items = resolve(node["items"], defs)
        return [("[]", items)] if children(items, defs) else []
    return []


def rows(node: dict, path: str, defs: dict, required: bool = False) -> list[str]:
    """Table rows for the key at ``path`` and every key below it."""
    node = resolve(node, defs)
    out = []
    if not path.endswith((">", "]")):  # a mapping's entry or a list's item: described by its parent's row
        default = fmt(node["default"]) if "default" in node else ("*required*" if required else "")
        out.append("| " + " | ".join(cell(c) for c in (
            f"`{path}`", type_of(node, defs), default, "; ".join(allowed(node, defs)), node.get("description", "")
        )) + " |")
    needed = set(node.get("required", []))
    for key, sub in children(node, defs):
        out += rows(sub, f"{path}{'' if key == '[]' else '.'}{key}", defs, key in needed)
    return out


TABLE_HEAD = "| key | type | default | allowed | description |\n|---|---|---|---|---|"


def render(schema: dict) -> str:
    """The README's text for ``schema``."""
    defs = schema.get("$defs", {})
    needed = set(schema.get("required", []))
    top, sections = [], []
    for key, sub in schema["properties"].items():
        sub = resolve(sub, defs)
        below = [s for _, s in children(sub, defs)]
        if not below:
            top += rows(sub, key, defs, key in needed)
        elif "properties" in sub and all(children(s, defs) for s in below):  # experiments: a section per experiment
            sections += [f"## `{key}`\n", TABLE_HEAD, *rows({**sub, "properties": {}}, key, defs, key in needed), ""]
            for name, s in children(sub, defs):
                sections += [f"### `{key}.{name}`\n", TABLE_HEAD, *rows(s, f"{key}.{name}", defs), ""]
        else:
            sections += [f"## `{key}`\n", TABLE_HEAD, *rows(sub, key, defs, key in needed), ""]
    head = HEADER.format(description=cell(schema.get("description", "")))
    text = "\n".join([head, "## Top-level keys\n", TABLE_HEAD, *top, "", *sections])
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs from the schema's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    text = render(yaml.safe_load(SCHEMA.read_text()))
    if args.check:
        if not README.exists() or README.read_text() != text:
            log.error("%s is out of date: run `make config-readme`", README)
            return 1
        return 0
    README.write_text(text)
    log.info("wrote %s", README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
