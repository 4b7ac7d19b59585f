"""Label noise and feature corruption: exact counts, masks, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from influence.data import load_dataset
from replication.noise import (
    apply_noise,
    cyclic_noise,
    gaussian_features,
    pair_noise,
    symmetric_noise,
    tfidf_features,
)

LABEL_NOISE = [symmetric_noise, pair_noise, cyclic_noise]


@pytest.mark.parametrize("fn", LABEL_NOISE)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37])
def test_label_noise_flips_exactly_floor_rn_and_masks_them(fn, rate):
    y = np.random.default_rng(0).integers(0, 10, 503)
    noisy, mask = fn(y, rate, 10, seed=1)
    assert mask.sum() == int(np.floor(rate * 503))
    np.testing.assert_array_equal(noisy != y, mask)
    assert noisy.min() >= 0 and noisy.max() < 10
    again, mask2 = fn(y, rate, 10, seed=1)
    np.testing.assert_array_equal(again, noisy)


def test_pair_and_cyclic_offsets():
    y = np.repeat(np.arange(5), 40)
    noisy, mask = pair_noise(y, 0.5, 5, seed=0)
    np.testing.assert_array_equal(noisy[mask], (y[mask] + 1) % 5)
    noisy, mask = cyclic_noise(y, 0.4, 5, seed=0)
    offsets = (noisy[mask] - y[mask]) % 5
    assert np.bincount(offsets, minlength=5).tolist() == [0, 20, 20, 20, 20]


def test_symmetric_noise_spreads_over_all_other_classes():
    y = np.zeros(4000, dtype=int)
    noisy, mask = symmetric_noise(y, 0.5, 4, seed=0)
    counts = np.bincount(noisy[mask], minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 550


def test_feature_corruption_touches_only_masked_rows():
    X = np.random.default_rng(0).random((200, 30))
    G, mask = gaussian_features(X, 0.25, sigma=2.0, seed=0)
    assert mask.sum() == 50
    np.testing.assert_array_equal((G != X).any(1), mask)
    assert 1.5 < (G - X)[mask].std() < 2.5
    T, mask = tfidf_features(X, 0.1, frac=0.2, seed=0)
    assert ((T == 1) & (X != 1)).sum(1)[mask].tolist() == [6] * 20
    np.testing.assert_array_equal(T[~mask], X[~mask])


def test_apply_noise_on_a_dataset():
    ds = load_dataset("digits")
    noisy, mask = apply_noise(ds, "symmetric", 0.2, seed=0)
    assert mask.sum() == int(0.2 * len(ds)) and noisy.meta["noise"] == "symmetric"
    clean, m0 = apply_noise(ds, "clean", 0.0)
    assert not m0.any()
    np.testing.assert_array_equal(clean.y, ds.y)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.3])
def test_invalid_rates_raise(rate):
    with pytest.raises(ValueError, match="noise rate must be in"):
        symmetric_noise(np.zeros(10, dtype=int), rate, 2)


def test_other_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels must lie"):
        pair_noise(np.array([0, 5]), 0.5, 3)
    with pytest.raises(ValueError, match="unknown noise kind"):
        apply_noise(load_dataset("breast_cancer"), "salt", 0.1)
    with pytest.raises(ValueError, match="2-D"):
        gaussian_features(np.zeros(5), 0.1)
