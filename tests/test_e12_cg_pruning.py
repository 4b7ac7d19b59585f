"""E12 (CG-score authors' pruning protocol): class-wise selection, the fixed-step with-replacement sampler, the
CG-score it ranks by, and one tiny end-to-end seed -- each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from influence.data import load_dataset, make_splits
from influence.estimators.cg_score import cg_score
from replication.tasks.e12_cg_pruning import (
    RESULT_COLUMNS,
    cg_scores_for,
    classwise_keep,
    global_keep,
    run_seed,
    selection_measure,
    steps_per_epoch,
    train_and_test,
    with_replacement_batches,
)


def _classwise_by_brute_force(measure, y, f):
    """Per class, sample i is kept iff fewer than ⌊n_c f⌋ class members rank before it (lower measure, or equal
    measure and lower index): an explicit double loop, no sorting."""
    keep = []
    for i in range(len(y)):
        members = [j for j in range(len(y)) if y[j] == y[i]]
        m = int(math.floor(len(members) * f + 1e-9))
        before = sum(1 for j in members if measure[j] < measure[i] or (measure[j] == measure[i] and j < i))
        if before < m:
            keep.append(i)
    return np.array(keep)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("f", [0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_classwise_keep_keeps_the_floor_count_of_lowest_scores_per_class(seed, f):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 80))
    y = rng.integers(0, 4, n)
    measure = rng.standard_normal(n).round(1)  # rounded: ties occur
    kept = classwise_keep(measure, y, f)
    np.testing.assert_array_equal(kept, _classwise_by_brute_force(measure, y, f))
    for c in np.unique(y):
        assert (y[kept] == c).sum() == int(math.floor((y == c).sum() * f + 1e-9))


def test_authors_count_is_floor_not_round():
    y = np.repeat([0, 1], [7, 500])
    kept = classwise_keep(np.arange(507.0), y, 0.7)
    assert (y[kept] == 0).sum() == 4  # int(7 * 0.7) = int(4.9) = 4 (round would give 5)
    assert (y[kept] == 1).sum() == 350  # 500 * 0.7 is 350 although 1 - 0.3 in floats is 0.7000000000000001


def test_prune_low_keeps_the_highest_cg_of_each_class_and_prune_high_the_lowest():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    cg = rng.random(90)
    for direction, pick in (("prune_low", np.max), ("prune_high", np.min)):
        kept = classwise_keep(selection_measure(cg, direction), y, 0.5)
        for c in range(3):
            members = np.flatnonzero(y == c)
            assert pick(cg[members]) in cg[kept[y[kept] == c]]
            pruned = np.setdiff1d(members, kept)
            if direction == "prune_low":
                assert cg[kept[y[kept] == c]].min() >= cg[pruned].max()
            else:
                assert cg[kept[y[kept] == c]].max() <= cg[pruned].min()
    with pytest.raises(ValueError, match="direction"):
        selection_measure(cg, "keep_easy")


def test_global_keep_is_the_top_ceil_fraction_overall():
    v = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8])
    np.testing.assert_array_equal(global_keep(v, 0.5), [1, 3, 4, 6])  # ⌈3.5⌉ = 4 highest: 0.9, 0.8, 0.7, 0.5
    rng = np.random.default_rng(0)
    w = rng.random(50)
    kept = global_keep(w, 0.3)
    assert len(kept) == 15 and w[kept].min() > np.delete(w, kept).max()


@pytest.mark.parametrize("n_kept", [32, 50, 200, 1000])
def test_fixed_step_count_whatever_the_kept_size(n_kept):
    g = torch.Generator().manual_seed(0)
    b = with_replacement_batches(n_kept, 32, 17, g)
    assert b.shape == (17, 32) and int(b.min()) >= 0 and int(b.max()) < n_kept
    # the authors' loop (pruning.py): a drop_last loader over RandomSampler(replacement=True), restarted when it
    # runs out, read for step_num steps: count the full batches it delivers
    sub = torch.utils.data.TensorDataset(torch.arange(n_kept))
    loader = torch.utils.data.DataLoader(sub, batch_size=32, drop_last=True,
                                         sampler=torch.utils.data.RandomSampler(sub, replacement=True))
    it, delivered = iter(loader), []
    for _ in range(17):
        try:
            (batch,) = next(it)
        except StopIteration:
            it = iter(loader)
            (batch,) = next(it)
        delivered.append(len(batch))
    assert delivered == [32] * 17 == [len(r) for r in b]


def test_with_replacement_draws_are_uniform_and_repeat():
    g = torch.Generator().manual_seed(1)
    batches = with_replacement_batches(20, 16, 2000, g).numpy()
    counts = np.bincount(batches.reshape(-1), minlength=20)
    # chi-square with 19 degrees of freedom: 43.8 is its 0.999 quantile
    expected = batches.size / 20
    assert ((counts - expected) ** 2 / expected).sum() < 43.8
    # with replacement: 16 draws from 20 repeat an index unless all differ, P = 20!/(4! 20^16) ≈ 1.5e-4
    assert np.mean([len(np.unique(b)) < 16 for b in batches]) > 0.99
    with pytest.raises(ValueError, match="smaller than one batch"):
        with_replacement_batches(10, 32, 5, g)


def test_training_takes_epochs_times_full_steps_for_every_kept_size():
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.standard_normal((300, 6)), dtype=torch.float32)
    y = torch.as_tensor((X[:, 0] > 0).long() + (X[:, 1] > 1).long())  # three classes
    spe = steps_per_epoch(300, 32)
    assert spe == 10  # ⌈300 / 32⌉
    arch = {"kind": "mlp", "hidden": [8]}
    for m in (40, 150, 300):
        r = train_and_test(X[:m], y[:m], X, y, arch=arch, n_classes=3, seed=0, epochs=3, batch_size=32, lr=0.1,
                           steps_per_epoch=spe)
        assert r["steps"] == 3 * spe
    plain = train_and_test(X[:150], y[:150], X, y, arch=arch, n_classes=3, seed=0, epochs=3, batch_size=32, lr=0.1)
    assert plain["steps"] == 3 * math.ceil(150 / 32)


def _cg_pass_by_definition(Xn, pos, neg):
    """One class pass of the authors' cg_function.py: H on unit rows, C(i) = yᵀH⁻¹y − y₋ᵢᵀH₋ᵢ⁻¹y₋ᵢ with explicit
    inverses, for the positives."""
    A = Xn[np.concatenate([pos, neg])]
    g = np.clip(A @ A.T, -1, 1)
    H = g * (np.pi - np.arccos(g)) / (2 * np.pi)
    np.fill_diagonal(H, 0.5)
    yy = np.concatenate([np.ones(len(pos)), -np.ones(len(neg))])
    full = yy @ np.linalg.inv(H) @ yy
    out = []
    for k in range(len(pos)):
        keep = np.arange(len(yy)) != k
        out.append(full - yy[keep] @ np.linalg.inv(H[np.ix_(keep, keep)]) @ yy[keep])
    return np.array(out)


def test_cg_score_used_equals_the_library_and_the_authors_definition_on_mnist():
    ds = load_dataset("mnist5k")
    tr = make_splits(ds, 60, 0, 10, seed=4)["train"]
    used = cg_scores_for(tr.X, tr.y, 4)
    np.testing.assert_array_equal(used, cg_score(None, (tr.X, tr.y), seed=4))
    _, info = cg_score(None, (tr.X, tr.y), seed=4, return_info=True)
    Xn = tr.X / np.linalg.norm(tr.X, axis=1, keepdims=True)  # raw pixels, unit rows (cg_function.py l. 49-50)
    by_def = np.zeros(len(tr.y))
    for p in info["passes"]:
        pos = np.flatnonzero(tr.y == p["cls"])
        by_def[pos] = _cg_pass_by_definition(Xn, pos, np.array(p["negatives"]))
        assert len(p["negatives"]) == len(pos)  # unbalance_ratio 1: as many negatives as positives
    np.testing.assert_allclose(used, by_def, rtol=1e-7, atol=1e-9)


def test_run_seed_end_to_end_tiny():
    ds = load_dataset("mnist5k")
    out = run_seed("mnist5k", 2, n_train=200, n_test=100, keep_fractions=[0.5], arch={"kind": "mlp", "hidden": [8]},
                   run={"epochs": 2, "batch_size": 16, "lr": 0.1}, data=ds)
    rows = out["rows"]
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(RESULT_COLUMNS))}
    methods = [r["method"] for r in rows]
    assert methods == ["full", "cg_classwise_prune_low", "cg_classwise_prune_high", "random_classwise",
                       "cg_global_prune_low", "cg_global_prune_high", "random_global"]
    by = {r["method"]: r for r in rows}
    spe = math.ceil(200 / 16)
    for m in ("cg_classwise_prune_low", "cg_classwise_prune_high", "random_classwise"):
        assert by[m]["steps"] == 2 * spe == by["full"]["steps"] and by[m]["n_kept"] == 100  # 10 classes × 10
    assert by["cg_global_prune_low"]["steps"] == 2 * math.ceil(100 / 16)
    tr = make_splits(ds, 200, 0, 100, seed=2)["train"]
    np.testing.assert_allclose(out["cg_scores_head"], cg_score(None, (tr.X, tr.y), seed=2)[:10], rtol=0, atol=0)
