"""Online curation of nn.Module runs (AdamW / SGD) against hand-written training loops."""

import copy

import numpy as np
import pytest
import torch

from influence.capture import capture
from influence.curation import MODULE_POLICIES, curate_module
from influence.estimators.online import batch_scores, lai_inner
from influence.models import TextClassifier, TinyGPT, sequence_losses
from influence.train import TrainingDiverged

D = torch.float64


def lm_data(n=20, T=6, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, V, (n, T + 1), generator=g)
    return seq[:, :-1], seq[:, 1:]


def gpt(seed=0):
    return TinyGPT(11, context=6, d_model=8, n_layers=1, n_heads=2, dtype=D, seed=seed)


def test_vanilla_equals_a_plain_adamw_loop():
    X, Y = lm_data()
    a, b = gpt(), gpt()
    out = curate_module(a, (X, Y), None, "vanilla", epochs=2, batch_size=8, lr=1e-2, weight_decay=0.1, seed=3)
    opt = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    rng = np.random.default_rng(3)
    for _ in range(2):
        order = rng.permutation(len(X))
        for s in range(0, len(X), 8):
            S = order[s : s + 8]
            opt.zero_grad()
            sequence_losses(b(X[S]), Y[S]).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert len(out["logs"]) == 6 and all(not r["curating"] for r in out["logs"])
    assert out["evals"] == []


@pytest.mark.parametrize("policy", ["ghost", "ghost_self", "ghost_flat", "lai", "lai_self", "lai_self_offdiag",
                                    "small_loss"])
def test_curated_step_equals_weighted_backward(policy):
    """One curated step (no warm-up) = keep mask from the scores, Σ w_i ∇ℓ_i / |B| by autograd, AdamW."""
    X, Y = lm_data(n=8)
    Xv, Yv = lm_data(n=10, seed=1)
    a, b = gpt(), gpt()
    with torch.no_grad():  # leave the initial point so that scores have both signs
        for p in list(a.parameters()) + list(b.parameters()):
            p.add_(0.2 * torch.sin(torch.arange(p.numel(), dtype=D).reshape(p.shape)))
    out = curate_module(a, (X, Y), (Xv, Yv), policy, epochs=1, batch_size=8, lr=1e-2, warmup_epochs=0,
                        target_size=4, seed=5)
    rng = np.random.default_rng(5)
    S = rng.permutation(8)
    xb, yb = X[S], Y[S]
    opt = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.0)
    method, self_inf, offdiag = MODULE_POLICIES[policy] or ("small_loss", False, False)
    if not self_inf:
        V = rng.choice(10, size=4, replace=False)
    if policy == "small_loss":
        with torch.no_grad():
            thr = sequence_losses(b(Xv[V]), Yv[V]).median()
            keep = sequence_losses(b(xb), yb) <= thr
    else:
        xc, yc = (xb, yb) if self_inf else (torch.cat([xb, Xv[V]]), torch.cat([yb, Yv[V]]))
        cap = capture(copy.deepcopy(b), xc, yc)
        if offdiag:  # mean over j != i, from the full LAI matrix
            M = lai_inner(cap)
            keep = (M.sum(1) - M.diagonal()) / 7 >= 0
        else:
            keep = batch_scores(cap, 8, method, self_influence=self_inf) >= 0
    opt.zero_grad()
    (sequence_losses(b(xb), yb) * keep.to(D)).sum().div(8).backward()
    opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-10, atol=1e-12), float((p - q).abs().max())
    assert out["logs"][0]["kept_fraction"] == pytest.approx(float(keep.double().mean()))
    assert out["logs"][0]["dropped"] == S[~keep.numpy()].tolist()


def test_classifier_with_sgd_noise_counts_and_evaluation():
    g = torch.Generator().manual_seed(0)
    X = torch.randint(1, 13, (24, 6), generator=g)
    y = torch.randint(0, 3, (24,), generator=g)
    mask = np.zeros(24, dtype=bool)
    mask[:6] = True
    model = TextClassifier(13, 3, context=6, d_model=8, n_layers=1, n_heads=2, dtype=D, seed=0)
    out = curate_module(model, (X, y), (X[:8], y[:8]), "lai", epochs=2, batch_size=8, lr=0.1, optimizer="sgd",
                        warmup_epochs=1, noise_mask=mask, eval_every=2,
                        evaluate=lambda m: {"acc": float((m(X).argmax(1) == y).double().mean())})
    logs = out["logs"]
    assert [r["curating"] for r in logs] == [False] * 3 + [True] * 3
    assert sum(r["n_noisy"] for r in logs[:3]) == 6
    assert [e["step"] for e in out["evals"]] == [2, 4, 6]
    assert out["summary"]["curated_steps"] == 3


def test_bad_arguments_and_divergence_raise():
    X, Y = lm_data()
    with pytest.raises(ValueError, match="unknown curation policy"):
        curate_module(gpt(), (X, Y), None, "nope")
    with pytest.raises(ValueError, match="needs target_data"):
        curate_module(gpt(), (X, Y), None, "lai")
    with pytest.raises(ValueError, match="optimizer"):
        curate_module(gpt(), (X, Y), None, "vanilla", optimizer="adam")
    with pytest.raises(ValueError, match="noise_mask"):
        curate_module(gpt(), (X, Y), None, "vanilla", noise_mask=np.zeros(3, bool))
    with pytest.raises(TrainingDiverged):
        curate_module(gpt(), (X, Y), None, "vanilla", lr=float("nan"), optimizer="sgd", epochs=2)


@pytest.mark.parametrize("policy", ["lai", "lai_self", "lai_self_offdiag", "ghost", "ghost_self"])
def test_curated_step_fast_path_equals_the_reference_path(policy):
    """curated_step (split LAI captures, GhostStep) = the reference (one capture + batch_scores), with the
    update Σ w_i ∇ℓ_i / |B| by autograd, on a CNN, an MLP and a TinyGPT."""
    from influence.curation import curated_step
    from influence.models import SmallCNN, example_losses, mlp

    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    m = mlp(6, (5, 4), 3)
    X, Y = lm_data(n=14)
    cases = [
        (SmallCNN(2, 8, 4, width=3, dtype=D), torch.randn(14, 2, 8, 8, generator=g, dtype=D),
         torch.randint(0, 4, (14,), generator=g)),
        (m.to_module(m.init(1, dtype=D)), torch.randn(14, 6, generator=g, dtype=D),
         torch.randint(0, 3, (14,), generator=g)),
        (gpt(), X, Y),
    ]
    method, self_inf, offdiag = MODULE_POLICIES[policy]
    dropped = []
    for module, x, y in cases:
        xb, yb, target = x[:8], y[:8], (x[8:], y[8:])
        ref_cap = capture(module, xb if self_inf else x, yb if self_inf else y)
        ref = batch_scores(ref_cap, 8, method, self_influence=self_inf, exclude_self=offdiag) >= 0
        module.zero_grad()
        (example_losses(module(xb), yb) * ref.to(D)).sum().div(8).backward()
        ref_grads = [p.grad.clone() for p in module.parameters()]
        module.zero_grad()
        keep, losses, _, nbytes = curated_step(module, policy, xb, yb, None if self_inf else target)
        assert keep.tolist() == ref.tolist() and keep.sum() > 0, type(module).__name__
        dropped.append(int((~keep).sum()))
        assert torch.allclose(losses, example_losses(module(xb), yb).detach(), rtol=1e-12, atol=0) and nbytes > 0
        for p, r in zip(module.parameters(), ref_grads, strict=True):
            assert torch.allclose(p.grad, r, rtol=1e-10, atol=1e-13), type(module).__name__
    # the weighted update is exercised (self-influence LAI with i included keeps nearly everything)
    assert policy == "lai_self" or max(dropped) > 0, dropped
