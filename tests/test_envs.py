"""The conda files (which cannot be solved here) never drift from the tested versions in constraints.txt."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    """The tested versions: constraints.txt (pyproject.toml keeps ranges)."""
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt line {line!r} is not pinned with =="
            out[name.lower()] = version
    return out


def _pip_section(path: Path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip, f"{path.name} has no pip section"
    assert "python=3.11" in env["dependencies"], f"{path.name} must pin python=3.11"
    return pip[0]["pip"]


def test_every_pin_in_the_conda_files_matches_pyproject():
    pins = _pins()
    files = [ROOT / "environment.yml", *sorted((ROOT / "envs").glob("*.yaml"))]
    assert len(files) >= 3
    for path in files:
        for req in _pip_section(path):
            if req.startswith(("-e ", "-c ")):
                assert req in ("-c constraints.txt", "-e .[workflow,dev,slurm]", "-e experiments"), req
                continue
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s]+)", req)
            assert m, f"{path.name}: {req!r} is not a pinned requirement"
            name, version = m.group(1).lower(), m.group(2)
            assert pins.get(name) == version, f"{path.name} pins {name}=={version}, constraints has {pins.get(name)}"


def test_torch_is_pinned_to_the_cpu_wheel_everywhere():
    assert _pins()["torch"] == "2.13.0"
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()
