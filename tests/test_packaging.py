"""The package a researcher installs: the library apart from the replication (import graph), dependency ranges
with the tested versions in constraints.txt, licence / citation / changelog / version, provenance with the
commit, and the built wheel installed into a fresh venv with only the core dependencies."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import influence
from influence.provenance import environment, source_commit

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "influence"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# What the core library may import at module level (the rest of its needs are lazy imports in the data loaders).
CORE = {"torch", "numpy", "scipy", "psutil", "tqdm"}


def _library_modules() -> list[str]:
    names = []
    for f in sorted(LIBRARY.rglob("*.py")):
        parts = f.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by ``path`` (relative imports are inside the library by construction)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("replication."):
            found.add(node.value)  # importlib.import_module("replication....")
    return found


def test_nothing_in_the_library_imports_the_replication_package():
    offenders = {str(f.relative_to(REPO)): sorted(m for m in _imports(f) if m.split(".")[0] == "replication")
                 for f in LIBRARY.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    # the moved modules are gone from the library
    for moved in ("tasks", "bounds", "claims", "report", "plotting", "noise", "text", "text_plays"):
        assert not (LIBRARY / moved).exists() and not (LIBRARY / f"{moved}.py").exists(), moved


def test_the_import_graph_check_catches_an_arrow_the_wrong_way(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import importlib\nfrom replication.claims import VERDICTS\n"
                   "importlib.import_module('replication.report')\n")
    assert {"replication.claims", "replication.report"} <= _imports(bad)


def test_every_library_module_imports_with_only_the_core_dependencies():
    """In a fresh interpreter that refuses every third-party module outside torch/numpy/scipy/psutil/tqdm (and the
    standard library), every module of the library imports, and none of them loads the replication package."""
    code = f"""
import importlib, importlib.abc, sys
CORE = {sorted(CORE)!r}
STDLIB = set(sys.stdlib_module_names)
BOOT = ("importlib", "_frozen_importlib")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in STDLIB or top in CORE or top == "influence" or top.startswith("_") or name in sys.modules:
            return None
        caller = sys._getframe(1)
        while caller is not None and caller.f_globals.get("__name__", "").split(".")[0] in BOOT:
            caller = caller.f_back
        who = caller.f_globals.get("__name__", "") if caller is not None else ""
        if who.split(".")[0] in ("influence", "__main__"):
            raise ImportError(f"{{who}} imports {{name}}, which is not a core dependency")
        return None
sys.meta_path.insert(0, Refuse())
for m in {_library_modules()!r}:
    importlib.import_module(m)
assert not any(k.split(".")[0] == "replication" for k in sys.modules)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def _requirements() -> list[str]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return reqs


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_dependencies_are_ranges_and_the_tested_versions_are_in_constraints():
    project = PYPROJECT["project"]
    assert project["name"] == "trajectory-influence"
    assert {_name(r) for r in project["dependencies"]} == CORE
    pinned = [r for r in _requirements() if "==" in r]
    assert pinned == [], "exact pins belong in constraints.txt, not in pyproject.toml"
    constraints = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            constraints[name.lower().replace("_", "-")] = version
    needed = {_name(r) for r in _requirements()} - {"trajectory-influence", "torchvision"}
    assert sorted(needed - set(constraints)) == []
    assert constraints["torch"] == "2.13.0"  # the CPU wheel the Makefile installs first
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()


def test_licence_citation_changelog_and_one_version():
    version = influence.__version__
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "MIT" and PYPROJECT["project"]["license-files"] == ["LICENSE"]
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == version and cff["license"] == "MIT"
    assert cff["title"].startswith("trajectory-influence") and cff["authors"]
    assert f"## {version} " in (REPO / "CHANGELOG.md").read_text()
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "influence.__version__"}
    assert (LIBRARY / "py.typed").is_file()


def test_provenance_records_the_version_and_the_commit():
    env = environment()
    assert env["influence"] == influence.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    assert env["commit"] == source_commit() and env["commit"].split("-")[0] == head


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_with_only_core_dependencies_and_runs_the_readme_example(tmp_path):
    """Build the wheel, install it (with the tested versions of constraints.txt) into a new venv that has nothing
    else, and run the README's recorded-loop example there (ACC-SGD-IE against the exact LOO of a user's loop)."""
    from test_readme_snippets import _snippets

    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("trajectory_influence-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "influence/py.typed" in names and "influence/loo.py" in names
    assert not [n for n in names if n.split("/")[0] in ("replication", "tests", "experiments")]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)],
                   check=True, timeout=900, env=env)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            env=env).stdout.lower()
    for absent in ("scikit-learn", "pandas", "snakemake", "matplotlib", "jupyter"):
        assert f"\n{absent}==" not in f"\n{listed}", absent
    example = tmp_path / "example.py"
    example.write_text(_snippets()[1])
    out = subprocess.run([str(py), str(example)], capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.split()[0]) > 0.9  # the example's Spearman of ACC-SGD-IE with the exact LOO
