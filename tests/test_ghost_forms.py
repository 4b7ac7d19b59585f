"""GhostStep's per-layer forms (token pairs, materialised per-sample gradients, contraction): the same scores and
update to float64 rounding, equal to explicit per-sample gradients, and the flop-count chooser."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from influence.capture import capture, row_losses_of
from influence.estimators.online import GHOST_FORMS, GhostStep, batch_scores, ghost_form_costs
from influence.models import SmallCNN, TinyGPT, mlp

D = torch.float64
FORMS = ("pairs", "materialise", "contract")


class SeqNet(nn.Module):
    """Linear layers on token sequences (m, T, k), tanh, mean over tokens, a Linear head on vectors: the
    3-D activations of a transformer's Linear layers and the 2-D ones of a classifier head."""

    def __init__(self, k: int, hidden: int, n_out: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(k, hidden, dtype=D)
        self.mid = nn.Linear(hidden, hidden, bias=False, dtype=D)
        self.head = nn.Linear(hidden, n_out, dtype=D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mid(torch.tanh(self.inp(x)))).mean(1))


def _cases():
    """(name, module, x, y): token sequences, a TinyGPT, an MLP on vectors and a CNN, float64."""
    g = torch.Generator().manual_seed(5)
    out = [("seq", SeqNet(5, 6, 3), torch.randn(9, 4, 5, generator=g, dtype=D), torch.randint(0, 3, (9,), generator=g))]
    seq = torch.randint(0, 11, (9, 6), generator=g)
    gpt = TinyGPT(11, context=5, d_model=8, n_layers=1, n_heads=2, dtype=D, seed=1)
    out.append(("gpt", gpt, seq[:, :-1], seq[:, 1:]))
    model = mlp(5, (7, 4), 3)
    out.append(("mlp", model.to_module(model.init(2, dtype=D)), torch.randn(9, 5, generator=g, dtype=D),
                torch.randint(0, 3, (9,), generator=g)))
    out.append(("cnn", SmallCNN(in_channels=2, side=8, n_out=3, width=2, dtype=D),
                torch.randn(9, 2, 8, 8, generator=g, dtype=D), torch.randint(0, 3, (9,), generator=g)))
    return out


CASES = _cases()


def _per_sample(module: nn.Module, x: torch.Tensor, y: torch.Tensor, weights_only: bool = False) -> torch.Tensor:
    params = {k: v.detach() for k, v in module.named_parameters()}
    keep = [k for k in params if k.endswith("weight")] if weights_only else list(params)

    def f(p, xi, yi):
        return row_losses_of(functional_call(module, {**params, **p}, (xi[None],)), yi[None])[0]

    G = vmap(grad(f), in_dims=(None, 0, 0))({k: params[k] for k in keep}, x, y)
    return torch.cat([G[k].reshape(x.shape[0], -1) for k in keep], 1)


def _close(a: torch.Tensor, b: torch.Tensor, msg: str) -> None:
    """Equal to float64 rounding: 1e-10 relative to the largest entry."""
    scale = float(b.abs().max())
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale, msg=msg)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("self_influence", [False, True], ids=["targets", "self"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "weights"])
def test_every_form_gives_the_per_sample_gradient_products(case, self_influence, bias):
    """pairs = materialise = contract = explicit per-sample gradients (vmap(grad)), 4 training rows against 5
    targets (or themselves), every layer forced into each form."""
    name, module, x, y = case
    n = 4
    rows = slice(0, n) if self_influence else slice(None)
    cap = capture(module, x[rows], y[rows])
    G = _per_sample(module, x[rows], y[rows], weights_only=not bias)
    ref = G[:n] @ (G[:n] if self_influence else G[n:]).mean(0)
    scores = {}
    for form in FORMS:
        gs = GhostStep(cap, n, self_influence=self_influence, bias=bias, form=form)
        weight_layers = [lc.name for lc in cap.layers if lc.is_weight_layer]
        assert all(gs.forms[k] == form for k in weight_layers), (form, gs.forms)
        scores[form] = gs.scores
        _close(gs.scores, ref, f"{name} {form}")
    _close(scores["pairs"], scores["materialise"], name)
    _close(scores["contract"], scores["materialise"], name)
    auto = GhostStep(cap, n, self_influence=self_influence, bias=bias)
    _close(auto.scores, ref, f"{name} auto")
    if bias:
        _close(batch_scores(cap, n, "ghost", self_influence=self_influence), ref, f"{name} batch_scores")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_form_gives_the_weighted_update(case):
    name, module, x, y = case
    n = 4
    w = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=D)
    module.zero_grad()
    (row_losses_of(module(x[:n]), y[:n]) * w).sum().div(3.0).backward()
    ref = [p.grad.clone() for p in module.parameters()]
    cap = capture(module, x, y)
    for form in FORMS:
        for p in module.parameters():
            p.grad = torch.full_like(p, 7.0)  # overwritten, not accumulated
        GhostStep(cap, n, form=form).set_update_grads(w, denom=3.0)
        for (pname, p), r in zip(module.named_parameters(), ref, strict=True):
            _close(p.grad, r, f"{name} {form} {pname}")


def test_several_targets_and_chunked_pairs_on_sequences():
    """The token-pair form in row chunks (a memory budget of one row's products) = unchunked, for 3 and 1 targets."""
    _, module, x, y = CASES[0]
    for n in (6, 8):
        cap = capture(module, x, y)
        full = GhostStep(cap, n, form="pairs").scores
        per_row = 2 * 4 * (9 - n) * 4 * 8  # 2 (T × m·T') float64 products per training row
        _close(GhostStep(cap, n, form="pairs", max_per_sample_bytes=per_row).scores, full, f"n={n}")
        _close(GhostStep(cap, n, form="materialise").scores, full, f"n={n}")


def test_the_cost_model():
    """The multiply-add counts of the docstring, by hand for one case."""
    n, m, T, Tt, k, o = 3, 5, 4, 2, 6, 7
    c = ghost_form_costs(n, m, T, Tt, k, o, update=False)
    assert c == {"pairs": n * m * T * Tt * (k + o + 1), "materialise": n * T * k * o + m * Tt * k * o + n * k * o,
                 "contract": m * Tt * k * o + n * T * k * o + n * T * k}
    u = ghost_form_costs(n, m, T, Tt, k, o)
    assert u["pairs"] - c["pairs"] == n * T * k * o and u["contract"] - c["contract"] == n * T * k * o
    assert u["materialise"] - c["materialise"] == n * k * o
    s = ghost_form_costs(n, n, T, T, k, o, self_influence=True, update=False)
    assert s["materialise"] == n * T * k * o + 2 * n * k * o and s["contract"] == 2 * n * T * k * o + n * T * k
    # vectors: materialising = contracting plus the outer products, never chosen
    v = ghost_form_costs(n, m, 1, 1, k, o)
    assert v["contract"] < v["materialise"]


def _forms(module: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, **kw) -> dict[str, str]:
    return GhostStep(capture(module, x, y), n, **kw).forms


def test_the_chooser_picks_each_form_where_it_must():
    g = torch.Generator().manual_seed(3)
    # wide layer on vectors, few rows: the pair form (n·m·(k + o + 1) ≪ (n + m)·k·o)
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Linear(64, 64, dtype=D), nn.Tanh(), nn.Linear(64, 2, dtype=D))
    x, y = torch.randn(5, 64, generator=g, dtype=D), torch.randint(0, 2, (5,), generator=g)
    f = _forms(wide, x, y, 3)
    assert f["0"] == "pairs" and f["2"] == "pairs"
    assert ghost_form_costs(3, 2, 1, 1, 64, 64)["pairs"] < min(ghost_form_costs(3, 2, 1, 1, 64, 64)["contract"],
                                                               ghost_form_costs(3, 2, 1, 1, 64, 64)["materialise"])
    # narrow layers on vectors, many rows: contract (pairs cost n·m·(k + o + 1), materialising adds n·k·o)
    torch.manual_seed(0)
    narrow = nn.Sequential(nn.Linear(2, 2, dtype=D), nn.Tanh(), nn.Linear(2, 2, dtype=D))
    x, y = torch.randn(40, 2, generator=g, dtype=D), torch.randint(0, 2, (40,), generator=g)
    f = _forms(narrow, x, y, 20)
    assert f["0"] == "contract" and f["2"] == "contract"
    # long sequences of narrow tokens: materialise (T·T'·m·(k + o) ≫ k·o)
    seq = SeqNet(3, 3, 2)
    x, y = torch.randn(6, 12, 3, generator=g, dtype=D), torch.randint(0, 2, (6,), generator=g)
    f = _forms(seq, x, y, 3)
    assert f["inp"] == "materialise" and f["mid"] == "materialise"
    # the same where the per-sample gradients exceed the memory budget: contract
    f = _forms(seq, x, y, 3, max_per_sample_bytes=3 * 3 * 3 * 8 - 1)
    assert f["inp"] == "contract" and f["mid"] == "contract"
    # a forced form is kept, materialise only within the budget
    assert set(_forms(seq, x, y, 3, form="pairs").values()) >= {"pairs"}
    assert _forms(seq, x, y, 3, form="materialise", max_per_sample_bytes=0)["inp"] == "contract"
    # the older linear_form forces the layers on vectors only
    f = _forms(seq, x, y, 3, linear_form="pair")
    assert f["head"] == "pairs" and f["inp"] == "materialise"


def test_bad_form():
    _, module, x, y = CASES[0]
    cap = capture(module, x, y)
    with pytest.raises(ValueError, match="form must be one of"):
        GhostStep(cap, 4, form="explicit")
    assert GHOST_FORMS == ("auto", "pairs", "materialise", "contract")


def test_layer_norm_inputs_from_the_forward_statistics():
    """x̂ of a LayerNorm from the mean and 1/σ its forward saved equals the recomputed layer norm (and a capture
    without a backward, or without those statistics, recomputes it)."""
    import torch.nn.functional as F

    _, module, x, y = CASES[1]
    cap = capture(module, x, y)
    lns = [lc for lc in cap.layers if isinstance(lc.module, nn.LayerNorm)]
    assert lns and all(lc._stats is not None for lc in lns)
    for lc in lns:
        ref = F.layer_norm(lc.inp, lc.module.normalized_shape, None, None, lc.module.eps)
        _close(lc.a, ref.reshape(lc.a.shape), lc.name)
        lc._a, lc._stats = None, None  # the fallback: the layer norm recomputed
        _close(lc.a, ref.reshape(lc.a.shape), lc.name)
    assert all(lc._stats is None for lc in capture(module, x, y, backward=False).layers)
