"""E8 beside the LAI authors' Shapley protocol: the per-step columns of the mean-loss game against independent
recomputations from the per-sample values (closed form from explicit losses, Pearson and drop fractions by hand),
and the published 0.96 / 0.90 recomputed from the authors' own file (skipped only when it is absent)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_e8_lm import TINY, easy_data

from influence.capture import capture
from influence.data import default_cache_dir
from influence.models import TinyGPT, sequence_losses
from replication.tasks.e8_lm import (
    PUBLISHED_SCORES_FILE,
    PUBLISHED_SCORES_SHA256,
    SHAPLEY_COLUMNS,
    STEP_SCORES,
    VALUE_COLUMNS,
    _step_scores,
    lm_step_shapley,
    published_shapley_summary,
)


@pytest.fixture(scope="module")
def tiny_out():
    data = easy_data(n_train=32)
    return lm_step_shapley(data, seed=0, noise_rate=0.25, **{**TINY, "warmup_epochs": 0.0}, n_steps=2,
                           shapley_batch=8, shapley_targets=4, eta=1e-4, n_perm=4)


def test_rows_and_values_carry_both_games(tiny_out):
    rows, vals = tiny_out["rows"], pd.DataFrame(tiny_out["values"])
    assert set(VALUE_COLUMNS) - set(vals) == {"dataset"}
    for r in rows:
        assert set(SHAPLEY_COLUMNS) - set(r) == {"dataset"}
        v = vals[vals["step"] == r["step"]]
        x = v["loss"].to_numpy()
        n = len(x)
        h = sum(1 / k for k in range(1, n + 1))
        # the authors' game by the formula of the task statement, from the losses
        phi = h / n * x + (1 - h) / (n * (n - 1)) * (x.sum() - x)
        np.testing.assert_allclose(v["shapley_meanloss"], phi, rtol=1e-12)
        assert r["pearson_meanloss_loss"] == pytest.approx(1.0, abs=1e-12)  # affine in the own loss
        for s in STEP_SCORES:
            assert r[f"pearson_meanloss_{s}"] == pytest.approx(np.corrcoef(v[s], x)[0, 1], abs=1e-10)
            assert r[f"pearson_{s}"] == pytest.approx(np.corrcoef(v[s], v["shapley"])[0, 1], abs=1e-10)
        for s in ("lai", "ghost", "ghost_flat", "lai_self", "ghost_self", "ghost_flat_self", "shapley",
                  "shapley_meanloss"):
            assert r[f"drop_le0_{s}"] == pytest.approx(float((v[s] <= 0).mean()))
        mc = v["shapley_meanloss_mc"].to_numpy()
        assert r["meanloss_mc_err"] == pytest.approx(np.abs(mc - phi).max() / phi.std(), rel=1e-9)
        assert mc.sum() == pytest.approx(x.mean(), rel=1e-12) and np.abs(mc - phi).max() < 0.05 * x.mean()
        assert r["pearson_ghost"] > 0.999  # the one-step game's check is unchanged


def test_step_scores_against_explicit_definitions():
    g = torch.Generator().manual_seed(0)
    m = TinyGPT(7, context=5, d_model=8, n_layers=1, n_heads=2, dtype=torch.float64, seed=0)
    seq = torch.randint(0, 7, (10, 6), generator=g)
    x, y = seq[:, :-1], seq[:, 1:]
    cap = capture(m, x, y, backward=True)
    sc = _step_scores(cap, 6)
    with torch.no_grad():
        np.testing.assert_allclose(sc["loss"], sequence_losses(m(x[:6]), y[:6]).numpy(), rtol=1e-12)
    # ‖∂ℓ_i/∂z_i‖² by autograd, one sample at a time
    for i in range(6):
        z = m(x[i : i + 1]).detach().requires_grad_(True)
        (gz,) = torch.autograd.grad(sequence_losses(z, y[i : i + 1]).sum(), z)
        assert sc["outgrad"][i] == pytest.approx(float(gz.square().sum()), rel=1e-10)
    # exact Ghost self-influence: mean over the batch (i included) of explicit per-sample gradient dots
    grads = []
    for i in range(6):
        m.zero_grad()
        sequence_losses(m(x[i : i + 1]), y[i : i + 1]).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]).clone())
    G = torch.stack(grads)
    np.testing.assert_allclose(sc["ghost_self"], (G @ G.T).mean(1).numpy(), rtol=1e-9)


def _published_file():
    p = default_cache_dir() / PUBLISHED_SCORES_FILE
    return p if p.exists() else None


@pytest.mark.skipif(_published_file() is None,
                    reason=f"the LAI authors' {PUBLISHED_SCORES_FILE} is not in the data cache (git show "
                           "370a4f8:DBC_tpu/mc/first_batch_scores.csv of github.com/yangziao56/Layer-Aware-Influence)")
def test_published_numbers_recomputed_from_the_authors_file():
    path = _published_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PUBLISHED_SCORES_SHA256
    s = published_shapley_summary(path)
    assert (s["n_steps"], s["n_samples"], s["batch_sizes"]) == (100, 1600, [16])
    assert s["pearson_lai_mean"] == pytest.approx(0.962, abs=5e-4) and s["pearson_lai_sd"] == pytest.approx(
        0.022, abs=5e-4)
    assert s["pearson_ghost_flat_mean"] == pytest.approx(0.904, abs=5e-4)
    assert s["pearson_ghost_flat_sd"] == pytest.approx(0.146, abs=5e-4)
    assert (s["n_lai_le0"], s["n_ghost_flat_le0"]) == (1, 0)  # "drop if LAI ≤ 0" removes 1 of 1,600
    # independent recomputation: an explicit loop over the steps
    df = pd.read_csv(path)
    lai, gh = [], []
    for _, g in df.groupby("global_step"):
        lai.append(np.corrcoef(g["shapley"], g["ghost_score"])[0, 1])
        gh.append(np.corrcoef(g["shapley"], g["jiacheng_score"])[0, 1])
    assert s["pearson_lai_mean"] == pytest.approx(np.mean(lai), abs=1e-12)
    assert s["diff_mean"] == pytest.approx(np.mean(np.subtract(lai, gh)), abs=1e-12)
    # the file is the mean-loss game: values sum to a plausible mean LM loss per step (efficiency), and the
    # losses implied by the closed form are those of a language model (≥ 0 up to Monte-Carlo noise, < ln 50257)
    assert 1.0 < s["mean_loss_min"] <= s["mean_loss_max"] < 4.0
    assert s["implied_loss_min"] > -0.05 and s["implied_loss_max"] < math.log(50257)


def test_published_summary_refuses_another_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("global_step,shapley,ghost_score,jiacheng_score\n100,0.1,1,1\n")
    with pytest.raises(ValueError, match="SHA-256"):
        published_shapley_summary(p)
