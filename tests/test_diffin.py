"""Diff-In: batched forms vs the per-sample definition, the D_t identity, FD-HVP order, sign vs LOO."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from conftest import make_problem

from influence import autodiff, estimators
from influence.estimators.diffin import add_negated_forms, diffin, diffin_checkpoints, diffin_direction
from influence.loo import trajectory_loo
from influence.metrics import auroc, spearman
from influence.models import logistic_regression, mlp
from influence.train import Schedule, train

diffin_mod = importlib.import_module("influence.estimators.diffin")


def _f(model, th, X, y, l2):
    return model.losses(th, X, y).mean() + 0.5 * l2 * th.dot(th)


def _explicit(traj, X, y, Xt, yt, *, form, target, m=3):
    """Per-sample loop of the definition with exact double-backprop HVPs; proxy batch = all samples."""
    model, l2, N, T = traj.model, traj.l2, len(y), traj.n_steps
    steps = np.unique(np.round(np.arange(1, m + 1) * T / m).astype(int))
    out = np.zeros(len(y)) if target != "params" else np.zeros((len(y), model.n_params))
    for t in steps:
        eta = traj.lrs()[min(t, T - 1)]
        th = traj.theta_at(int(t)).clone().requires_grad_(True)
        GB = torch.autograd.grad(_f(model, th, X, y, l2), th, create_graph=True)[0]
        v = torch.autograd.grad(model.losses(th, Xt, yt).mean(), th)[0] if target == "target" else None
        for z in range(N):
            Gz = torch.autograd.grad(_f(model, th, X[z : z + 1], y[z : z + 1], l2), th, create_graph=True)[0]
            HBGz = torch.autograd.grad(GB, th, Gz.detach(), retain_graph=True)[0]
            HzGB = torch.autograd.grad(Gz, th, GB.detach(), retain_graph=True)[0]
            D = (HBGz + HzGB).detach()
            w = {"target": v, "self": Gz.detach(), "params": None}[target]
            a = -t * eta**2 / (N * len(steps))
            c1 = (T / len(steps)) * eta / N
            if target == "params":
                out[z] += (a * D + (c1 * Gz.detach() if form == "full" else 0)).numpy()
            else:
                out[z] += a * float(w @ D) + (c1 * float(w @ Gz.detach()) if form == "full" else 0.0)
    return out


@pytest.mark.parametrize("run", ["tiny_logreg_run", "tiny_mlp_run"])
@pytest.mark.parametrize("form", ["paper", "full"])
def test_batched_target_form_equals_per_sample_definition(run, form, request):
    traj, (X, y), (Xt, yt) = request.getfixturevalue(run)
    ref = _explicit(traj, X, y, Xt, yt, form=form, target="target")
    kw = {"form": form, "m": 3, "proxy_batch": 10_000, "chunk": 7}
    np.testing.assert_allclose(diffin(traj, (X, y), (Xt, yt), hvp="exact", **kw), ref, rtol=1e-9, atol=1e-13)
    scale = np.abs(ref).max()
    for hvp, tol in (("forward", 2e-2), ("central", 1e-4)):
        got = diffin(traj, (X, y), (Xt, yt), hvp=hvp, **kw)
        assert np.abs(got - ref).max() <= tol * scale, hvp


def test_self_and_params_forms_equal_per_sample_definition(tiny_mlp_run):
    traj, (X, y), (Xt, yt) = tiny_mlp_run
    for form in ("paper", "full"):
        kw = {"form": form, "m": 3, "proxy_batch": 10_000, "hvp": "exact", "chunk": 7}
        np.testing.assert_allclose(diffin(traj, (X, y), None, target="self", **kw),
                                   _explicit(traj, X, y, Xt, yt, form=form, target="self"), rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(diffin(traj, (X, y), None, target="params", **kw),
                                   _explicit(traj, X, y, Xt, yt, form=form, target="params"), rtol=1e-9, atol=1e-14)


def test_target_form_is_params_form_projected_on_v_with_small_proxy_batches(tiny_logreg_run):
    """Same seeded proxy batches (16 of 60 samples, 2 per checkpoint): ⟨∇L(θ_T), I_θ(z)⟩ summed per
    checkpoint equals the target form when there is a single checkpoint (t = T)."""
    traj, (X, y), (Xt, yt) = tiny_logreg_run
    kw = {"form": "full", "hvp": "exact", "checkpoints": [traj.n_steps], "proxy_batch": 16,
          "batches_per_checkpoint": 2, "seed": 7}
    P = diffin(traj, (X, y), None, target="params", **kw)
    v = autodiff.mean_grad(traj.model, traj.final, Xt, yt).numpy()
    np.testing.assert_allclose(diffin(traj, (X, y), (Xt, yt), **kw), P @ v, rtol=1e-10, atol=1e-14)
    per = diffin(traj, (X, y), (Xt, yt), per_target=True, **kw)
    np.testing.assert_allclose(per.mean(1), P @ v, rtol=1e-10, atol=1e-14)


def test_direction_is_gradient_of_batch_sample_gradient_inner_product(tiny_mlp_run):
    """D_t(z) = H_B G_z + H_z G_B = ∇_θ ⟨G_B(θ), G_z(θ)⟩ (autograd of the inner product)."""
    traj, (X, y), _ = tiny_mlp_run
    model, l2, th = traj.model, traj.l2, traj.theta_at(5)
    B = np.arange(0, 48, 3)
    D = diffin_direction(model, th, X[:6], y[:6], X[B], y[B], l2=l2, hvp="exact")
    for z in range(6):
        t = th.clone().requires_grad_(True)
        GB = torch.autograd.grad(_f(model, t, X[B], y[B], l2), t, create_graph=True)[0]
        Gz = torch.autograd.grad(_f(model, t, X[z : z + 1], y[z : z + 1], l2), t, create_graph=True)[0]
        ref = torch.autograd.grad(GB.dot(Gz), t)[0]
        np.testing.assert_allclose(D[z], ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_finite_difference_hvp_converges_at_predicted_order(n_classes):
    (X, y), _ = make_problem(n=40, d=4, n_classes=n_classes, seed=3)
    model = logistic_regression(4, n_classes)
    g = torch.Generator().manual_seed(1)
    th = 0.5 * torch.randn(model.n_params, generator=g, dtype=torch.float64)
    u = torch.randn(model.n_params, generator=g, dtype=torch.float64)
    H = torch.autograd.functional.hessian(lambda t: _f(model, t, X, y, 0.01), th)
    exact = H @ u
    eps = np.array([1e-1, 1e-2, 1e-3])
    for method, order in (("forward", 1), ("central", 2)):
        err = [float((autodiff.loss_hvp(model, th, X, y, u, l2=0.01, method=method, eps=e) - exact).norm())
               for e in eps]
        slope = np.polyfit(np.log(eps), np.log(err), 1)[0]
        assert abs(slope - order) < 0.2, (method, slope)
        # per-sample FD HVPs converge too (Diff-In's H_z G_B)
        ps = autodiff.per_sample_hvps(model, th, X, y, u, l2=0.01, method=method, eps=1e-4)
        ref = autodiff.per_sample_hvps(model, th, X, y, u, l2=0.01, method="exact")
        assert float((ps - ref).abs().max()) < (1e-3 if order == 1 else 1e-6)


def test_sign_against_trajectory_loo(tiny_mlp_run):
    """Finding pinned by a test: the full form tracks LOO (positive), the paper form alone is
    anti-correlated with it (its a_t < 0 second-order term is a correction, not an estimate)."""
    traj, train_data, target = tiny_mlp_run
    truth = trajectory_loo(traj, train_data, target).loss_change
    assert spearman(estimators.get("diffin")(traj, train_data, target), truth) > 0.5
    assert spearman(estimators.get("diffin_paper")(traj, train_data, target), truth) < -0.5


def test_self_influence_suspicious_end_is_derived_from_the_exact_self_loo():
    """The removal self-influence ℓ_z(θ_{−z}) − ℓ_z(θ), computed exactly (trajectory LOO with z as its own
    target), puts flipped labels at its high end: the derived suspicious end of diffin_self, in both forms. The
    paper form's second-order term alone ranks them at the other end (measured: the supplementary
    diffin_self_negated, the same numbers negated)."""
    (X, y), _ = make_problem(n=80, d=4, seed=4)
    noisy = np.zeros(len(y), dtype=bool)
    noisy[np.random.default_rng(0).choice(len(y), 12, replace=False)] = True
    y = y.clone()
    y[torch.as_tensor(noisy)] = 1 - y[torch.as_tensor(noisy)]
    model = logistic_regression(4)
    traj = train(model, model.init(0), (X, y), Schedule(len(y), 16, 5, 0.5, seed=1), l2=0.01)
    exact_self = np.array([trajectory_loo(traj, (X, y), (X[j:j + 1], y[j:j + 1]), indices=[j]).loss_change[0]
                           for j in range(len(y))])
    assert auroc(exact_self, noisy) > 0.9  # removal self-influence: high = flipped
    assert estimators.suspicious("diffin_self") == "high"
    assert estimators.suspicious("diffin_self", {"form": "full"}) == "high"
    paper = estimators.get("diffin_self")(traj, (X, y), None)
    full = estimators.get("diffin_self")(traj, (X, y), None, form="full")
    assert auroc(full, noisy) > 0.8  # the full form tracks the exact self-LOO's end
    assert auroc(-paper, noisy) > 0.8  # the paper form's second-order term alone: the other end (a finding)
    np.testing.assert_array_equal(estimators.get("diffin_self_negated")(traj, (X, y), None), -paper)
    assert estimators.suspicious("diffin_self_negated") == "high"
    added = add_negated_forms({"diffin_self": paper})
    np.testing.assert_array_equal(added["diffin_self_negated"], -paper)


def test_checkpoints_and_bad_input(tiny_logreg_run):
    traj, train_data, target = tiny_logreg_run
    T = traj.n_steps
    np.testing.assert_array_equal(diffin_checkpoints(traj, 5), np.round(np.arange(1, 6) * T / 5).astype(int))
    r1, r2 = diffin_checkpoints(traj, 4, "random", seed=3), diffin_checkpoints(traj, 4, "random", seed=3)
    np.testing.assert_array_equal(r1, r2)
    assert len(np.unique(r1)) == 4 and r1.min() >= 1 and r1.max() <= T
    a = diffin(traj, train_data, target, form="paper", proxy_batch=8, seed=1)
    np.testing.assert_array_equal(a, diffin(traj, train_data, target, form="paper", proxy_batch=8, seed=1))
    assert not np.allclose(a, diffin(traj, train_data, target, form="paper", proxy_batch=8, seed=2))
    for bad, match in (({"form": "half"}, "form"), ({"target": "x"}, "target"), ({"hvp": "fd"}, "hvp"),
                       ({"eps": 0.0}, "eps"), ({"checkpoints": "odd"}, "checkpoints"),
                       ({"checkpoints": [T + 1]}, "checkpoint"), ({"proxy_batch": 0}, "proxy_batch")):
        with pytest.raises(ValueError, match=match):
            diffin(traj, train_data, target, **bad)
    with pytest.raises(ValueError, match="target data"):
        diffin(traj, train_data, None)
    assert {"diffin", "diffin_paper", "diffin_self"} <= set(estimators.names())
    assert "diffin_full" not in estimators.names()


@pytest.mark.parametrize("make", [lambda: logistic_regression(5), lambda: logistic_regression(5, 3),
                                  lambda: mlp(5, (6,), 3), lambda: mlp(5, (4, 3), 2)])
@pytest.mark.parametrize("l2", [0.0, 0.01])
def test_fast_self_form_gives_the_numbers_of_the_materialised_directions(make, l2, monkeypatch):
    """Issue 15: the factored self form (loss slopes at perturbed parameters) equals ⟨G_z, D_t(z)⟩ of the
    materialised HVP directions, for every HVP method, to 1e-10 of the scale (finite differences too:
    both sides evaluate the same difference quotient), with sub-chunks of 3 rows."""
    model = make()
    g = torch.Generator().manual_seed(2)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, model.n_classes, (40,), generator=g)
    th = 0.5 * torch.randn(model.n_params, generator=g, dtype=torch.float64)
    rng = np.random.default_rng(0)
    batches = [rng.choice(40, 16, replace=False) for _ in range(2)]
    monkeypatch.setattr(diffin_mod, "_SLOPE_ELEMENTS", 3 * 16 * max(model.widths[1:]))
    for hvp in ("exact", "forward", "central"):
        kw = {"l2": l2, "hvp": hvp, "eps": 1e-3, "chunk": 7}
        dots, sq = diffin_mod._self_terms(model, th, X, y, batches, **kw)
        ref_dots, ref_sq = diffin_mod._self_terms_reference(model, th, X, y, batches, **kw)
        assert float((dots - ref_dots).abs().max()) <= 1e-10 * float(ref_dots.abs().max()), hvp
        torch.testing.assert_close(sq, ref_sq, rtol=1e-12, atol=0)
        if hvp == "exact":  # and the finite differences are O(ε) away from the exact curvatures
            exact = dots
        else:
            assert float((dots - exact).abs().max()) <= 1e-2 * float(exact.abs().max()), hvp


def test_diffin_self_equals_the_materialised_definition_end_to_end(tiny_mlp_run, monkeypatch):
    """diffin_self with its defaults (forward differences, proxy batches, both forms) against the same run
    with the fast self form swapped for the materialised reference."""
    traj, data, _ = tiny_mlp_run
    kw = {"proxy_batch": 20, "batches_per_checkpoint": 2, "m": 3, "chunk": 10}
    fast = {form: estimators.get("diffin_self")(traj, data, None, form=form, **kw) for form in ("paper", "full")}
    monkeypatch.setattr(diffin_mod, "_self_terms", diffin_mod._self_terms_reference)
    for form, got in fast.items():
        ref = estimators.get("diffin_self")(traj, data, None, form=form, **kw)
        assert np.abs(got - ref).max() <= 1e-10 * np.abs(ref).max(), form


def _mlp2_run():
    """A two-hidden-layer MLP (5-7-4-3), 40 samples, batch 8, 3 epochs, L2 0.02."""
    (X, y), target = make_problem(n=40, n_target=11, d=5, n_classes=3, seed=5)
    model = mlp(5, (7, 4), 3)
    return train(model, model.init(2), (X, y), Schedule(len(y), 8, 3, 0.3, seed=1), l2=0.02), (X, y), target


@pytest.mark.parametrize("run", ["tiny_logreg_run", "tiny_mlp_run", "mlp2"])
def test_fast_and_per_sample_target_forms_equal_the_reference(run, request):
    """DIFF-5's timed pairs: ``diffin(impl='fast' | 'per_sample')`` (the gradient kernel TracIn gets too,
    influence.ghost.GradKernel) = the registered Diff-In (impl='auto') to 1e-10 of the largest score, for both forms,
    both finite-difference schemes, with and without L2, one or two proxy batches (measured ≤ 4e-13: the finite
    difference divides the rounding of two gradient passes by ε)."""
    traj, data, target = _mlp2_run() if run == "mlp2" else request.getfixturevalue(run)
    steps = diffin_checkpoints(traj, 3)
    for kw in ({"form": "paper"}, {"form": "full"}, {"form": "paper", "hvp": "central"},
               {"form": "full", "include_l2": False, "batches_per_checkpoint": 2, "proxy_batch": 7},
               {"form": "paper", "checkpoints": [int(t) for t in steps], "chunk": 7}):
        ref = diffin(traj, data, target, **kw)
        for impl in ("fast", "per_sample"):
            got = diffin(traj, data, target, impl=impl, **kw)
            assert np.abs(got - ref).max() <= 1e-10 * np.abs(ref).max(), (impl, kw)
    np.testing.assert_array_equal(estimators.get("diffin_paper")(traj, data, target, impl="fast"),
                                  diffin(traj, data, target, form="paper", impl="fast"))
    for bad, match in (({"impl": "ghost"}, "impl must be"), ({"impl": "fast", "hvp": "exact"}, "finite-difference"),
                       ({"impl": "per_sample", "per_target": True}, "target form"),
                       ({"impl": "fast", "target": "self"}, "target form")):
        with pytest.raises(ValueError, match=match):
            diffin(traj, data, target, **bad)


def test_negated_form_is_minus_the_published_form_and_e1_adds_it(tiny_logreg_run):
    """``diffin_paper_negated`` (the other sign of Eq. 9, a supplementary row) = −``diffin_paper`` with the same
    options; E1 adds it from diffin_paper's scores (:func:`add_negated_forms`) with the same numbers."""
    from influence.estimators.diffin import NEGATED_FORMS

    traj, train_data, target = tiny_logreg_run
    kw = {"m": 3, "proxy_batch": 16, "seed": 2}
    paper = estimators.get("diffin_paper")(traj, train_data, target, **kw)
    neg = estimators.get("diffin_paper_negated")(traj, train_data, target, **kw)
    np.testing.assert_array_equal(neg, -paper)
    assert np.abs(paper).max() > 0
    assert estimators.suspicious("diffin_paper") == "low" and estimators.suspicious("diffin_paper_negated") == "high"
    added = add_negated_forms({"diffin_paper": paper, "tracin": paper * 0 + 1})
    np.testing.assert_array_equal(added["diffin_paper_negated"], neg)
    assert set(added) == {"diffin_paper", "tracin", "diffin_paper_negated"} and NEGATED_FORMS
    assert add_negated_forms({"tracin": paper}).keys() == {"tracin"}  # nothing to negate: unchanged


def test_top30_agreement_matches_brute_force():
    """E1's ``spearman_top30`` / ``pearson_top30`` (Diff-In's protocol): the 30 samples of largest |score|, by an
    explicit sort and the textbook formulas (ranks by counting, Pearson by sums)."""
    from replication.tasks.e1_fidelity import agreement_table, top_k_agreement

    rng = np.random.default_rng(5)
    truth = rng.normal(size=80)
    est = 0.5 * truth + rng.normal(size=80)
    est[[3, 7]] = [-9.0, 8.5]  # large negative scores count as influential too

    order = sorted(range(80), key=lambda i: (-abs(est[i]), i))[:30]
    assert 3 in order and 7 in order
    e, t = est[order], truth[order]

    def ranks(x):
        return np.array([sum(v < xi for v in x) + 1 for xi in x], dtype=float)  # no ties here

    def corr(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    got = top_k_agreement(est, truth)
    assert got["spearman_top30"] == pytest.approx(corr(ranks(e), ranks(t)), abs=1e-12)
    assert got["pearson_top30"] == pytest.approx(corr(e, t), abs=1e-12)
    # the table carries them; NaN truth (no LOO) rows are dropped before the top 30 are chosen
    tr = truth.copy()
    tr[order[0]] = np.nan
    row = agreement_table({"x": est}, tr).iloc[0]
    keep = np.isfinite(tr)
    ref = top_k_agreement(est[keep], tr[keep])
    assert row["spearman_top30"] == pytest.approx(ref["spearman_top30"]) and row["n_compared"] == 79
    assert row["spearman_top30"] != pytest.approx(got["spearman_top30"])
    small = top_k_agreement(est[:10], truth[:10])  # fewer than 30 samples: all of them
    assert small["pearson_top30"] == pytest.approx(corr(est[:10], truth[:10]), abs=1e-12)
