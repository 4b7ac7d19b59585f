"""E9 in the LAI authors' text protocol: their cyclic noise, the 1[score >= 0] filter from the second epoch, and
the Shakespeare passage loader (synthetic plays, nothing read from disk)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from influence.curation import curate_module, curated_step
from influence.models import TextClassifier
from replication.noise import cyclic_noise
from replication.tasks.e9_text import AUTHORS_RUN, authors_cyclic_noise, protocol_run
from replication.text_plays import FOLIO_GENRE, SIX_PLAYS, label_map, play_passages, play_speech, play_splits


def their_loop(y: list[int], u: np.ndarray, rate: float, C: int) -> list[int]:
    """The authors' loop (Emotion_20News/pipeline.py) on given uniform draws u."""
    new = list(y)
    offset = 1
    for i in range(len(y)):
        if u[i] <= rate:
            new[i] = (new[i] + offset) % C
            offset += 1
            if offset % C == 0:
                offset = 1
    return new


@pytest.mark.parametrize("C", [2, 3, 6, 20])
def test_authors_noise_is_their_loop(C):
    rng = np.random.default_rng(5)
    y = rng.integers(0, C, 997)
    noisy, mask = authors_cyclic_noise(y, 0.4, C, seed=11)
    u = np.random.default_rng(11).random(len(y))
    assert noisy.tolist() == their_loop(y.tolist(), u, 0.4, C)
    assert np.array_equal(mask, u <= 0.4) and np.array_equal(mask, noisy != y)
    # the k-th corrupted label (data order) is shifted by k mod (C-1) + 1
    shift = (noisy[mask] - y[mask]) % C
    assert shift.tolist() == [k % (C - 1) + 1 for k in range(int(mask.sum()))]


def test_authors_noise_leaves_the_true_class_the_plurality():
    C, n = 6, 60000
    y = np.random.default_rng(0).integers(0, C, n)
    noisy, mask = authors_cyclic_noise(y, 0.4, C, seed=3)
    se = np.sqrt(0.4 * 0.6 / n)
    assert abs(mask.mean() - 0.4) < 5 * se  # Binomial(n, 0.4), not an exact count
    shares = np.bincount((noisy - y) % C, minlength=C) / n
    assert abs(shares[0] - 0.6) < 5 * se
    assert np.all(np.abs(shares[1:] - 0.4 / (C - 1)) < 0.002)  # cycling: the wrong classes share equally
    assert authors_cyclic_noise(y, 0.0, C)[1].sum() == 0


def test_e9_cyclic_noise_has_the_exact_fraction_and_the_same_offsets():
    C, n = 3, 1001
    y = np.arange(n) % C
    noisy, mask = cyclic_noise(y, 0.4, C, seed=2)
    assert mask.sum() == 400 == (noisy != y).sum()  # exactly floor(0.4 n)
    counts = np.bincount((noisy[mask] - y[mask]) % C, minlength=C)
    assert counts[0] == 0 and abs(counts[1] - counts[2]) <= 1


def test_authors_run_overrides_warmup_and_reference():
    run = {"epochs": 5, "warmup_epochs": 2, "target_size": 8, "lr": 1e-3}
    assert protocol_run("e9", run) == run
    assert protocol_run("authors", run) == {**run, "warmup_epochs": 1.0, "target_size": 32}
    assert AUTHORS_RUN["warmup_epochs"] == 1.0
    with pytest.raises(ValueError, match="protocol"):
        protocol_run("theirs", run)


def _tiny(seed: int = 0, dtype=torch.float64):
    g = np.random.default_rng(seed)
    X = torch.as_tensor(g.integers(1, 20, (24, 6)), dtype=torch.int64)
    y = torch.as_tensor(g.integers(0, 3, 24), dtype=torch.int64)
    return TextClassifier(20, 3, context=6, d_model=8, n_layers=1, n_heads=2, dtype=dtype, seed=seed), X, y


def test_filter_keeps_score_nonnegative_and_weights_the_mean():
    """Ghost scores against brute-force per-sample gradients: keep iff mean_j <grad l_i, grad l_j> >= 0, and the
    update is sum_i 1[s_i >= 0] grad l_i / |B| (dropped rows stay in the denominator)."""
    model, X, y = _tiny()
    xb, yb, xv, yv = X[:8], y[:8], X[8:14], y[8:14]
    params = [p for p in model.parameters() if p.requires_grad]

    def grad(x, t):
        loss = torch.nn.functional.cross_entropy(model(x[None]), t[None])
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    Gi = torch.stack([grad(xb[i], yb[i]) for i in range(8)])
    Gj = torch.stack([grad(xv[j], yv[j]) for j in range(6)])
    want_scores = (Gi @ Gj.T).mean(1)
    model.zero_grad()
    keep, _, _, _ = curated_step(model, "ghost", xb, yb, (xv, yv))
    assert np.array_equal(keep, (want_scores >= 0).numpy()) and 0 < keep.sum() < 8
    got = torch.cat([p.grad.reshape(-1) for p in params])
    want = (Gi * torch.as_tensor(keep, dtype=Gi.dtype)[:, None]).sum(0) / 8
    assert torch.allclose(got, want, atol=1e-10)


def test_filter_starts_at_the_second_epoch():
    model, X, y = _tiny(1, torch.float32)
    run = protocol_run("authors", {"epochs": 3, "warmup_epochs": 2})
    out = curate_module(model, (X, y), (X[:10], y[:10]), "lai", epochs=3, batch_size=8,
                        warmup_epochs=run["warmup_epochs"], target_size=4, seed=0)
    first = [r for r in out["logs"] if r["epoch"] == 0]
    later = [r for r in out["logs"] if r["epoch"] >= 1]
    assert len(first) == 3 and all(not r["curating"] and r["kept_fraction"] == 1 for r in first)
    assert later and all(r["curating"] for r in later)


PLAY = """TITLE

PERSONS REPRESENTED.

Alpha, a lord.

ACT I.

Scene I. A place.

[Enter Alpha.]

Alp.
one two three [aside] four
five six

Bet.
seven eight nine ten

[Exit.]

Scene II. Another.

Alp.
eleven twelve thirteen fourteen fifteen sixteen seventeen
"""


def test_play_speech_drops_tags_headings_and_directions():
    assert play_speech(PLAY) == [["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
                                 ["eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"]]
    assert play_passages(PLAY, 4) == [(0, "one two three four"), (0, "five six seven eight"),
                                      (1, "eleven twelve thirteen fourteen")]


def test_play_splits_on_synthetic_plays_split_by_scene():
    words = " ".join(f"w{k}" for k in range(40))
    scene = "\n\n".join(f"Scene {r}. X.\n\nAb.\n{words}" for r in ("I", "II", "III", "IV", "V", "VI"))
    plays = {p: f"{p}\n\nACT I.\n\n" + scene.replace("w1 ", f"{p} ") for p in SIX_PLAYS}
    plays["sonnets"] = plays[SIX_PLAYS[0]]  # not labelled: ignored
    sp = play_splits("play", max_len=8, vocab_size=50, n_train=60, n_val=30, n_test=30, seed=3, plays=plays)
    assert sp["X_train"].shape == (60, 8) and sp["meta"]["n"] == 6 * 6 * 5  # 5 passages of 8 words per scene
    assert not set(sp["group_train"]) & set(sp["group_test"]) and not set(sp["group_val"]) & set(sp["group_test"])
    assert not set(sp["group_train"]) & set(sp["group_val"])
    assert sp["meta"]["classes"] == list(SIX_PLAYS) and sp["y_train"].max() < 6
    again = play_splits("play", max_len=8, vocab_size=50, n_train=60, n_val=30, n_test=30, seed=3, plays=plays)
    assert np.array_equal(again["X_test"], sp["X_test"]) and np.array_equal(again["y_train"], sp["y_train"])
    with pytest.raises(ValueError, match="requested"):
        play_splits("play", max_len=8, n_train=200, n_val=10, n_test=10, plays=plays)


def test_genre_labels_follow_the_folio():
    lab, classes = label_map("genre")
    assert classes == ("comedy", "history", "tragedy") and len(lab) == 36 and "pericles" not in lab
    assert lab["hamlet"] == lab["troilus_and_cressida"] == 2 and lab["henry_v"] == 1 and lab["tempest"] == 0
    assert lab == FOLIO_GENRE and np.bincount(list(lab.values())).tolist() == [14, 10, 12]
