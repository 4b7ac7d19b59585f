"""The README's "Use it on your model" snippets run as written (each in a fresh namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

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


def _run(which: int) -> dict:
    namespace = {"__name__": "__readme__"}
    exec(compile(_snippets()[which], f"README.md snippet {which}", "exec"), namespace)
    return namespace


def test_snippet_a_scores_every_row_and_drops_the_mislabelled_ones(capsys):
    """Your AdamW loop with online Ghost curation: the planted mislabelled rows are the ones dropped."""
    g = _run(0)
    assert "drops per mislabelled row" in capsys.readouterr().out
    step, noisy, dropped = g["step"], g["noisy"], g["dropped"]
    # the last step's scores: one finite Ghost score per batch row, on the rows' device; keep = score >= 0
    assert step.scores.shape == (len(g["idx"]),) and bool(torch.isfinite(step.scores).all())
    assert step.keep.dtype == np.bool_ and step.keep.tolist() == (step.scores >= 0).tolist()
    # the user's optimiser and scheduler stepped once per batch (6 epochs of 16)
    assert g["sched"].last_epoch == 96 and g["opt"].state[next(g["model"].parameters())]["step"] == 96
    # 5 curated epochs: most mislabelled rows are dropped (nearly) every time, clean rows almost never
    assert float(dropped[noisy].mean()) > 3.0
    assert float(dropped[~noisy].mean()) < 0.5
    assert float((dropped[noisy] >= 3).double().mean()) > 0.8


def test_snippet_b_records_the_loop_and_acc_sgd_ie_tracks_its_exact_loo(capsys):
    g = _run(1)
    spearman = float(capsys.readouterr().out.split()[0])
    assert spearman > 0.9  # ACC-SGD-IE tracks the recorded run's exact leave-one-out
    assert g["my_run"].n_steps == 12 and g["truth"].shape == (64,)
