"""The README's "Use it on your model" snippets run as written (each in a fresh namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets() -> list[str]:
    text = README.read_text()
    start = text.index("## Use it on your model")
    end = text.index("\n## ", start + 3)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_section_has_both_snippets_each_at_most_40_lines():
    blocks = _snippets()
    assert len(blocks) == 2
    assert all(len(b.strip().splitlines()) <= 40 for b in blocks)


@pytest.mark.parametrize("which", [0, 1], ids=["online_curation_adamw", "recorded_sgd_loo_acc"])
def test_snippet_runs(which, capsys):
    code = _snippets()[which]
    exec(compile(code, f"README.md snippet {which}", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out.strip()
    if which == 0:
        noisy, clean = (float(v) for v in re.findall(r"row ([0-9.]+)", out))
        assert noisy > clean  # the curation drops mislabelled rows more often than clean ones
    else:
        spearman = float(out.split()[0])
        assert spearman > 0.9  # ACC-SGD-IE tracks the recorded run's exact leave-one-out
