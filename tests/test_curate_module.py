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


# ---------------------------------------------------------------------------------------------- your own loop
def _gelu_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 10, dtype=D), torch.nn.LayerNorm(10, dtype=D), torch.nn.GELU(),
                               torch.nn.Linear(10, 3, dtype=D))


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return torch.randn(n, 6, generator=g, dtype=D) + 2 * torch.eye(3, 6, dtype=D)[y], y


@pytest.mark.parametrize("policy", ["lai", "ghost", "small_loss"])
def test_own_optimizer_scheduler_and_loss_equal_a_hand_written_loop(policy):
    """curate_module with the caller's AdamW, LR scheduler and loss = a plain loop: keep from the reference scores
    (one concatenated capture, batch_scores), Σ w_i ∇ℓ_i / |B| by autograd, opt.step(), sched.step()."""
    X, y = _blobs(24, 0)
    y[:6] = (y[:6] + 1) % 3  # some mislabelled rows, so that rows are dropped
    Xv, yv = _blobs(10, 1)
    ce = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1)
    a, b = _gelu_net(), _gelu_net()
    oa = torch.optim.AdamW(a.parameters(), lr=0.05, weight_decay=0.01)
    sa = torch.optim.lr_scheduler.StepLR(oa, step_size=2, gamma=0.5)
    out = curate_module(a, (X, y), (Xv, yv), policy, epochs=2, batch_size=8, optimizer=oa, scheduler=sa, loss=ce,
                        warmup_epochs=0.34, target_size=5, seed=7)
    ob = torch.optim.AdamW(b.parameters(), lr=0.05, weight_decay=0.01)
    sb = torch.optim.lr_scheduler.StepLR(ob, step_size=2, gamma=0.5)
    rng = np.random.default_rng(7)
    step, n_dropped = 0, 0
    for _ in range(2):
        order = rng.permutation(24)
        for s in range(0, 24, 8):
            S = order[s : s + 8]
            xb, yb = X[S], y[S]
            keep = torch.ones(8, dtype=torch.bool)
            if step >= 1:
                V = rng.choice(10, size=5, replace=False)
                if policy == "small_loss":
                    with torch.no_grad():
                        keep = ce(b(xb), yb) <= ce(b(Xv[V]), yv[V]).median()
                else:
                    cap = capture(b, torch.cat([xb, Xv[V]]), torch.cat([yb, yv[V]]), loss=ce)
                    keep = batch_scores(cap, 8, policy) >= 0
            assert out["logs"][step]["dropped"] == S[~keep.numpy()].tolist()
            assert out["logs"][step]["lr"] == ob.param_groups[0]["lr"]
            n_dropped += int((~keep).sum())
            ob.zero_grad()
            (ce(b(xb), yb) * keep.to(D)).sum().div(8).backward()
            ob.step()
            sb.step()
            step += 1
    assert n_dropped > 0
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    assert sa.last_epoch == sb.last_epoch == 6


def test_optimizer_instance_arguments_are_checked():
    X, y = _blobs(8, 0)
    net = _gelu_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lr given with an optimizer instance"):
        curate_module(net, (X, y), None, "vanilla", optimizer=opt, lr=0.1)
    with pytest.raises(ValueError, match="none of the module's parameters"):
        curate_module(net, (X, y), None, "vanilla", optimizer=torch.optim.SGD(_gelu_net().parameters(), lr=0.1))
    with pytest.raises(ValueError, match="scheduler"):
        curate_module(net, (X, y), None, "vanilla", optimizer=opt, scheduler=object())


def test_curated_step_returns_scores_and_unpacks_as_the_four_tuple():
    from influence.curation import CuratedStep, curated_step

    X, y = _blobs(14, 2)
    net = _gelu_net()
    res = curated_step(net, "ghost", X[:8], y[:8], (X[8:], y[8:]))
    keep, losses, score_time, nbytes = res
    assert isinstance(res, CuratedStep) and len(res) == 4 and res.keep is keep and res.nbytes == nbytes > 0
    assert res.scores.shape == (8,) and keep.tolist() == (res.scores >= 0).tolist()
    cap = capture(net, X, y)
    torch.testing.assert_close(res.scores, batch_scores(cap, 8, "ghost"), rtol=1e-10, atol=1e-12)
    # score only: no gradient written
    net.zero_grad(set_to_none=True)
    only = curated_step(net, "lai", X[:8], y[:8], (X[8:], y[8:]), update=False)
    assert all(p.grad is None for p in net.parameters()) and not only.losses.requires_grad
    torch.testing.assert_close(only.scores, batch_scores(capture(net, X, y, backward=False), 8, "lai"),
                               rtol=1e-10, atol=1e-12)
    assert curated_step(net, "vanilla", X[:8], y[:8]).scores is None


@pytest.mark.parametrize("policy", ["lai_self", "ghost", "ghost_flat_self"])
def test_token_loss_given_by_the_user_equals_the_builtin_one(policy):
    """A TinyGPT run with ``loss`` = the mean token cross-entropy written by the user (g by autograd) is the
    built-in run (closed-form g) to float64 rounding."""
    X, Y = lm_data(n=16)
    Xv, Yv = lm_data(n=8, seed=1)
    a, b = gpt(), gpt()
    with torch.no_grad():
        for p in list(a.parameters()) + list(b.parameters()):
            p.add_(0.2 * torch.sin(torch.arange(p.numel(), dtype=D).reshape(p.shape)))

    def tokens(z, t):
        return torch.nn.functional.cross_entropy(z.transpose(1, 2), t, reduction="none").mean(1)

    kw = dict(epochs=1, batch_size=8, lr=1e-2, warmup_epochs=0, target_size=4, seed=2)
    ra = curate_module(a, (X, Y), (Xv, Yv), policy, **kw)
    rb = curate_module(b, (X, Y), (Xv, Yv), policy, loss=tokens, **kw)
    assert [r["dropped"] for r in ra["logs"]] == [r["dropped"] for r in rb["logs"]]
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("policy", ["lai", "lai_self_offdiag", "ghost", "ghost_flat", "small_loss"])
def test_online_step_on_cuda_equals_the_cpu_step(policy):
    """curated_step on CUDA (a GELU + LayerNorm MLP, a CNN, a TinyGPT): scores, keep mask and the written
    gradients equal the CPU step's; everything stays on the GPU but the keep mask."""
    from influence.curation import curated_step
    from influence.models import SmallCNN

    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    X, Y = lm_data(n=14)
    cases = [(_gelu_net(), *_blobs(14, 3)),
             (SmallCNN(2, 8, 4, width=3, dtype=D), torch.randn(14, 2, 8, 8, generator=g, dtype=D),
              torch.randint(0, 4, (14,), generator=g)),
             (gpt(), X, Y)]
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    for module, x, y in cases:
        loss = ce if x.ndim == 2 and x.is_floating_point() else None
        cpu = curated_step(module, policy, x[:8], y[:8], (x[8:], y[8:]), loss=loss)
        grads = [p.grad.clone() for p in module.parameters()]
        dev = copy.deepcopy(module).cuda()
        dev.zero_grad(set_to_none=True)
        xc, yc = x.cuda(), y.cuda()
        res = curated_step(dev, policy, xc[:8], yc[:8], (xc[8:], yc[8:]), loss=loss)
        assert res.scores.device.type == "cuda" and res.losses.device.type == "cuda"
        assert res.keep.tolist() == cpu.keep.tolist()
        torch.testing.assert_close(res.scores.cpu(), cpu.scores, rtol=1e-9, atol=1e-11)
        for p, r in zip(dev.parameters(), grads, strict=True):
            assert p.grad.device.type == "cuda"
            torch.testing.assert_close(p.grad.cpu(), r, rtol=1e-9, atol=1e-11)
