"""Ghost / LAI on transformers: the capture kernel against explicit per-sample gradients (torch.func)."""

import pytest
import torch
from torch.func import functional_call, grad, vmap

from influence.capture import capture, layer_grads, set_update_grads, trainable_layers
from influence.estimators.online import batch_scores, ghost_flat_inner, ghost_inner, lai_inner
from influence.models import TextClassifier, TinyGPT, row_losses, sequence_logit_grad, sequence_losses
from replication.bounds.lai import check_lai_bound_module, lai_ghost_gap_module

D = torch.float64
T = 6


def gpt(vocab=11, seed=0):
    return TinyGPT(vocab, context=T, d_model=8, n_layers=2, n_heads=2, dtype=D, seed=seed)


def lm_batch(m=7, vocab=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, vocab, (m, T + 1), generator=g)
    return seq[:, :-1], seq[:, 1:]


def cls_batch(m=7, vocab=13, seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab, (m, T), generator=g)
    x[0, 4:] = 0  # padding
    x[3, 2:] = 0
    return x, torch.randint(0, 3, (m,), generator=g)


def per_sample_grads(module, x, y, by_module=False):
    """Explicit per-sample gradients of the row loss, (m, p), or per hooked module {name: (m, p_l)}."""
    params = {k: v.detach() for k, v in module.named_parameters()}

    def loss(p, xi, yi):
        z = functional_call(module, p, (xi[None],))
        return (sequence_losses(z, yi[None]) if z.ndim == 3 else row_losses(z, yi[None]))[0]

    G = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    if not by_module:
        return torch.cat([G[k].reshape(x.shape[0], -1) for k in params], 1)
    out = {}
    for name, _ in trainable_layers(module):
        keys = [k for k in params if k.rsplit(".", 1)[0] == name]
        out[name] = torch.cat([G[k].reshape(x.shape[0], -1) for k in keys], 1)
    return out


def perturb_models():
    """Perturb LayerNorm affine parameters away from (1, 0) so their gradients are generic."""
    models = [gpt(), gpt(vocab=50, seed=3), TextClassifier(13, 3, context=T, d_model=8, n_layers=2, n_heads=2,
                                                           dtype=D, seed=4)]
    g = torch.Generator().manual_seed(9)
    for mod in models:
        with torch.no_grad():
            for p in mod.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=D))
    return models


MODELS = perturb_models()
IDS = ["gpt-v11-explicit-embedding", "gpt-v50-paired-embedding", "encoder-classifier"]


def batch_for(module):
    return cls_batch() if isinstance(module, TextClassifier) else lm_batch(vocab=module.vocab_size)


@pytest.mark.parametrize("module", MODELS, ids=IDS)
def test_exact_ghost_equals_per_sample_gradient_products(module):
    x, y = batch_for(module)
    G = per_sample_grads(module, x, y)
    cap = capture(module, x, y)
    ref = G @ G.T
    got = ghost_inner(cap)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12 * ref.abs().max())
    # train (first 4) vs val (last 3) block, and per layer
    assert torch.allclose(ghost_inner(cap, range(4), range(4, 7)), ref[:4, 4:], rtol=1e-10,
                          atol=1e-12 * ref.abs().max())
    per = per_sample_grads(module, x, y, by_module=True)
    pl = ghost_inner(cap, per_layer=True)
    for k, (name, _) in enumerate(trainable_layers(module)):
        r = per[name] @ per[name].T
        assert torch.allclose(pl[k], r, rtol=1e-9, atol=1e-11 * ref.abs().max()), name
        assert torch.allclose(layer_grads(cap.layers[k]), per[name], rtol=1e-10, atol=1e-13), name


@pytest.mark.parametrize("module", MODELS, ids=IDS)
def test_batch_scores_ghost_train_val_and_self(module):
    x, y = batch_for(module)
    G = per_sample_grads(module, x, y)
    cap = capture(module, x, y)
    n = 4
    ref_val = (G[:n] @ G[n:].T).mean(1)
    ref_self = (G[:n] @ G[:n].T).mean(1)  # self-influence: j over the training batch, i included
    assert torch.allclose(batch_scores(cap, n, "ghost"), ref_val, rtol=1e-10, atol=1e-12 * ref_val.abs().max())
    assert torch.allclose(batch_scores(cap, n, "ghost", self_influence=True), ref_self, rtol=1e-10,
                          atol=1e-12 * ref_self.abs().max())


def naive_lai_and_flat(module, x, y):
    """LAI and the flattened Ghost from their definitions, one pair at a time."""
    inputs, outs = {}, {}
    lins = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]

    def keep(n):
        def hook(mod, a, o):
            inputs[n], outs[n] = a[0], o

        return hook

    hs = [m.register_forward_hook(keep(n)) for n, m in lins]
    z = module(x)
    for h in hs:
        h.remove()
    losses = sequence_losses(z, y) if z.ndim == 3 else row_losses(z, y)
    g = torch.autograd.grad(losses.sum(), z, retain_graph=True)[0].reshape(len(x), -1)
    bs = dict(zip([n for n, _ in lins], torch.autograd.grad(losses.sum(), [outs[n] for n, _ in lins]), strict=True))
    m = len(x)
    lai = torch.zeros(m, m, dtype=D)
    flat = torch.zeros(m, m, dtype=D)
    for i in range(m):
        for j in range(m):
            for n, mod in lins:
                a_i, a_j = inputs[n][i].reshape(-1), inputs[n][j].reshape(-1)
                c = (a_i.numel() // mod.in_features) if mod.bias is not None else 0
                A = torch.dot(a_i, a_j) + c
                lai[i, j] += A * torch.dot(g[i], g[j])
                flat[i, j] += A * torch.dot(bs[n][i].reshape(-1), bs[n][j].reshape(-1))
    return lai.detach(), flat.detach()


@pytest.mark.parametrize("module", MODELS, ids=IDS)
def test_lai_and_flat_ghost_equal_their_definitions(module):
    x, y = batch_for(module)
    cap = capture(module, x, y)
    lai, flat = naive_lai_and_flat(module, x, y)
    assert torch.allclose(lai_inner(cap), lai, rtol=1e-10, atol=1e-14)
    assert torch.allclose(ghost_flat_inner(cap), flat, rtol=1e-10, atol=1e-14)
    n = 4
    assert torch.allclose(batch_scores(cap, n, "lai"), lai[:n, n:].mean(1), rtol=1e-10, atol=1e-14)
    assert torch.allclose(batch_scores(cap, n, "lai", self_influence=True), lai[:n, :n].mean(1), rtol=1e-10,
                          atol=1e-14)
    assert torch.allclose(batch_scores(cap, n, "ghost_flat"), flat[:n, n:].mean(1), rtol=1e-10, atol=1e-14)
    # LAI needs no backward: the forward-only capture gives the same numbers
    cap_f = capture(module, x, y, backward=False)
    assert torch.allclose(batch_scores(cap_f, n, "lai"), lai[:n, n:].mean(1), rtol=1e-10, atol=1e-14)


def test_sequence_logit_grad_matches_autograd():
    module = MODELS[0]
    x, y = lm_batch()
    z = module(x).detach().requires_grad_(True)
    ref = torch.autograd.grad(sequence_losses(z, y).sum(), z)[0]
    assert torch.allclose(sequence_logit_grad(z.detach(), y), ref, rtol=1e-12, atol=1e-15)


def test_lai_is_exact_on_the_classifier_head_but_not_on_the_lm_head():
    cls, lm = MODELS[2], MODELS[0]
    x, y = cls_batch()
    cap = capture(cls, x, y)
    assert torch.allclose(lai_inner(cap, last_layer_only=True), ghost_inner(cap, last_layer_only=True),
                          rtol=1e-10, atol=1e-14)
    x, y = lm_batch()
    cap = capture(lm, x, y)
    # on sequences the LM head's output is the logits, so the flattened Ghost equals LAI there ...
    assert torch.allclose(lai_inner(cap, last_layer_only=True), ghost_flat_inner(cap, last_layer_only=True),
                          rtol=1e-10, atol=1e-14)
    # ... but the exact (all token pairs) Ghost differs from both
    gap = (lai_inner(cap, last_layer_only=True) - ghost_inner(cap, last_layer_only=True)).abs().max()
    assert gap > 1e-3 * ghost_inner(cap, last_layer_only=True).abs().max()


@pytest.mark.parametrize("module", MODELS, ids=IDS)
def test_lai_ghost_bound_holds_on_transformers(module):
    x, y = batch_for(module)
    chk = check_lai_bound_module(module, x[:5], y[:5])
    assert chk.passed, chk.measured
    assert chk.measured["n_violations"] == 0
    res = lai_ghost_gap_module(module, x[:5], y[:5])
    # the hidden layers have a real gap (the bound is not vacuous), and it never exceeds the bound
    assert float(res["gap"][:-1].max()) > 0
    assert float((res["gap"] / res["bound"].clamp_min(1e-300))[:-1].max()) <= 1 + 1e-9


def test_set_update_grads_on_a_transformer_equals_backward():
    module = MODELS[1]
    x, y = lm_batch(vocab=module.vocab_size)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=D)
    module.zero_grad()
    (w * sequence_losses(module(x), y)).sum().div(7).backward()
    ref = [p.grad.clone() for p in module.parameters()]
    cap = capture(module, x, y)
    set_update_grads(cap, 7, w)
    for p, r in zip(module.parameters(), ref, strict=True):
        assert torch.allclose(p.grad, r, rtol=1e-10, atol=1e-14)


def test_unhookable_parameters_and_bad_logits_raise():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)
            self.scale = torch.nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.lin(x) * self.scale

    with pytest.raises(ValueError, match="parameters of its own"):
        capture(Bad(), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        sequence_losses(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
    assert torch.isfinite(MODELS[2](torch.zeros(2, T, dtype=torch.long))).all()  # all-padding rows stay finite
    with pytest.raises(ValueError, match="Linear/Conv2d"):
        lai_inner(capture(MODELS[0], *lm_batch()), layers=["tok"])


def test_bound_check_on_real_text_models():
    """The workflow's E5 check (TinyGPT on Shakespeare, encoder on Rotten Tomatoes) at init and after training."""
    from replication.bounds.lai import check_lai_bound_transformers

    checks = check_lai_bound_transformers(steps=(0, 10), n_samples=3)
    assert [c.name for c in checks] == ["lai_ghost_bound_gpt", "lai_ghost_bound_encoder"]
    for c in checks:
        assert c.passed and c.measured["n_violations"] == 0, c.measured
        assert c.measured["last_layer_max_gap"] < 1e-12
        assert 0 < c.measured["max_gap_over_bound"] <= 1 + 1e-9


def test_lai_self_influence_without_the_diagonal():
    module = MODELS[0]
    x, y = lm_batch()
    cap = capture(module, x, y, backward=False)
    M = lai_inner(cap)
    n = len(x)
    off = batch_scores(cap, n, "lai", self_influence=True, exclude_self=True)
    assert torch.allclose(off, (M.sum(1) - M.diagonal()) / (n - 1), rtol=1e-12, atol=1e-15)
    assert torch.allclose(batch_scores(cap, n, "lai", self_influence=True), M.mean(1), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="exclude_self"):
        batch_scores(cap, n, "lai", exclude_self=True)


@pytest.mark.parametrize("module", MODELS, ids=IDS)
@pytest.mark.parametrize("budget", [2**27, 0], ids=["per-sample", "contraction"])
def test_ghost_step_on_transformers_equals_per_sample_gradients(module, budget):
    """The curation fast path (GhostStep) on token sequences: scores against targets and self-influence
    scores equal the explicit per-sample gradient products; the update equals the weighted backward."""
    from influence.estimators.online import GhostStep

    x, y = batch_for(module)
    G = per_sample_grads(module, x, y)
    cap = capture(module, x, y)
    gs = GhostStep(cap, 4, max_per_sample_bytes=budget)
    assert torch.allclose(gs.scores, G[:4] @ G[4:].mean(0), rtol=1e-10, atol=1e-13)
    cs = capture(module, x[:4], y[:4])
    gss = GhostStep(cs, 4, self_influence=True, max_per_sample_bytes=budget)
    assert torch.allclose(gss.scores, G[:4] @ G[:4].mean(0), rtol=1e-10, atol=1e-13)
    assert torch.allclose(gss.scores, batch_scores(cs, 4, "ghost", self_influence=True), rtol=1e-10, atol=1e-13)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=D)
    loss = sequence_losses if y.ndim == 2 else row_losses
    module.zero_grad()
    (w * loss(module(x[:4]), y[:4])).sum().div(4).backward()
    ref = [p.grad.clone() for p in module.parameters()]
    for step in (gs, gss):
        module.zero_grad()
        step.set_update_grads(w)
        for p, r in zip(module.parameters(), ref, strict=True):
            assert torch.allclose(p.grad, r, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("module", MODELS, ids=IDS)
def test_lai_scores_from_split_captures_on_transformers(module):
    from influence.estimators.online import lai_scores

    x, y = batch_for(module)
    M = lai_inner(capture(module, x, y, backward=False))
    ct = capture(module, x[:4], y[:4], backward=False, keep_graph=True)
    cv = capture(module, x[4:], y[4:], backward=False)
    assert torch.allclose(lai_scores(ct, cv), M[:4, 4:].mean(1), rtol=1e-12, atol=1e-15)
    assert torch.allclose(lai_scores(ct), M[:4, :4].mean(1), rtol=1e-12, atol=1e-15)
    Mt = M[:4, :4]
    assert torch.allclose(lai_scores(ct, exclude_self=True), (Mt.sum(1) - Mt.diagonal()) / 3, rtol=1e-12, atol=1e-15)


def test_user_token_loss_on_a_language_model():
    """A per-sequence loss the built-ins do not have (later tokens weigh more): exact Ghost equals its
    per-sample gradients, the Ghost step's update its weighted backward, and LAI's output gradient g is the
    autograd gradient of that loss w.r.t. the logits."""
    from influence.estimators.online import GhostStep

    module = MODELS[0]
    x, y = lm_batch()
    wt = torch.arange(1, T + 1, dtype=D) / T

    def late(z, t):
        tok = torch.nn.functional.cross_entropy(z.transpose(1, 2), t, reduction="none")
        return (tok * wt).sum(1) / wt.sum()

    params = {k: v.detach() for k, v in module.named_parameters()}

    def f(p, xi, yi):
        return late(functional_call(module, p, (xi[None],)), yi[None])[0]

    gr = vmap(grad(f), in_dims=(None, 0, 0))(params, x, y)
    G = torch.cat([gr[k].reshape(x.shape[0], -1) for k in params], 1)
    cap = capture(module, x, y, loss=late)
    assert torch.allclose(ghost_inner(cap), G @ G.T, rtol=1e-10, atol=1e-14)
    gs = GhostStep(cap, 4)
    assert torch.allclose(gs.scores, G[:4] @ G[4:].mean(0), rtol=1e-10, atol=1e-14)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=D)
    gs.set_update_grads(w)
    got = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    (late(module(x[:4]), y[:4]) * w).sum().div(4).backward()
    for p, r in zip(module.parameters(), got, strict=True):
        assert torch.allclose(r, p.grad, rtol=1e-10, atol=1e-14)
    module.zero_grad()
    z = module(x).detach()
    ref = (torch.softmax(z, -1) - torch.nn.functional.one_hot(y, z.shape[-1]).to(D)) * (wt / wt.sum())[:, None]
    assert torch.allclose(capture(module, x, y, backward=False, loss=late).g, ref, rtol=1e-10, atol=1e-14)
