"""Online estimators: Ghost influence (Wang et al., ICLR 2025) and LAI (Yang, Huang & Liu, 2025).

Both score the members of a training batch by how much one SGD step on them lowers a target loss,
from quantities one forward (+ backward for Ghost) pass over ``[training batch; target batch]``
already produces, without per-sample gradients:

* :func:`influence.capture.capture` runs the pass with hooks (layer inputs and, for Ghost, the per-row
  gradients of the loss w.r.t. each layer's output).
* :func:`ghost_inner` / :func:`lai_inner` turn a capture into per-pair (per-layer) inner products (one
  per-layer pair kernel, :func:`layer_pair_gram`, also behind :class:`influence.ghost.GhostPairs`).
* :func:`batch_scores` is the per-step score of the rows of one capture; its Ghost form is
  :class:`GhostStep` (scores and the curated update from the same pieces), its LAI form the kernel of
  :func:`lai_scores` (from separate captures of the training and target rows). Online curation
  (:func:`influence.curation.curated_step`) runs these two.
* :func:`in_run_ghost`, :func:`in_run_lai` (registered as ``"ghost"``, ``"lai"`` and
  ``"lai_last_layer"``) replay a recorded :class:`~influence.train.Trajectory` and accumulate the
  per-step scores over the whole run, so they can be compared with trajectory LOO.

Rows of one pass must not interact (no BatchNorm in training mode): the per-row output gradients are
obtained from the gradient of the *sum* of the row losses. The row loss is the capture's: the built-in
losses by default, or any per-row ``loss(outputs, y)`` given to :func:`influence.capture.capture`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from influence.capture import Capture, LayerCapture, capture, layer_grads
from influence.data import as_tensors
from influence.estimators import prepare, register
from influence.train import Trajectory

__all__ = [
    "ghost_inner",
    "layer_pair_gram",
    "ghost_flat_inner",
    "lai_inner",
    "batch_scores",
    "lai_scores",
    "GhostStep",
    "GHOST_FORMS",
    "ghost_form_costs",
    "in_run_ghost",
    "in_run_lai",
    "in_run_lai_last_layer",
]

log = logging.getLogger(__name__)

# why the registered names drop the function names' prefix
_IN_RUN = ("in_run_: the function accumulates the per-step score over a recorded run; the estimator name is the "
           "method's")


# ---------------------------------------------------------------------------------------------- inner products
def _rows(rows: Any, m: int, device: torch.device | None = None) -> torch.Tensor | slice:
    if rows is None:
        return slice(None)
    if isinstance(rows, slice):
        return rows
    r = (rows.to(device=device, dtype=torch.long) if isinstance(rows, torch.Tensor)
         else torch.as_tensor(np.asarray(rows), dtype=torch.long, device=device))
    if r.numel() and (r.min() < 0 or r.max() >= m):
        raise ValueError(f"row indices must lie in [0, {m}), got range [{int(r.min())}, {int(r.max())}]")
    return r


def _pick(layers: list[LayerCapture], which: Any, last_layer_only: bool, weight_only: bool = False) -> list[int]:
    """Indices of the layers to use. ``last_layer_only``: the last Linear/Conv2d layer. ``weight_only``:
    only Linear/Conv2d layers are allowed (LAI and the flattened Ghost read their inputs)."""
    n = len(layers)
    weight = [k for k, lc in enumerate(layers) if lc.is_weight_layer]
    if last_layer_only:
        if which is not None:
            raise ValueError("give either layers or last_layer_only, not both")
        return [weight[-1]]
    if which is None:
        return weight if weight_only else list(range(n))
    out = []
    for w in which:
        if isinstance(w, str):
            names = [lc.name for lc in layers]
            if w not in names:
                raise ValueError(f"unknown layer {w!r}; layers: {names}")
            out.append(names.index(w))
        else:
            if not -n <= int(w) < n:
                raise ValueError(f"layer index {w} out of range for {n} layers")
            out.append(int(w) % n)
    if weight_only:
        bad = [layers[k].name for k in out if not layers[k].is_weight_layer]
        if bad:
            raise ValueError(f"layers {bad} are not Linear/Conv2d layers (LAI and flattened Ghost use only those)")
    return out


def _bias_count(lc: LayerCapture) -> int:
    """Number of constant-1 entries the bias adds to a layer's flattened (augmented) input: one per token
    position for a Linear layer on sequences (1 for plain vectors), 1 for a convolution."""
    if not lc.has_bias:
        return 0
    if isinstance(lc.module, nn.Linear):
        return lc.inp[0].numel() // lc.inp.shape[-1]
    return 1


def _embedding_ghost(lc: LayerCapture, ri: Any, rj: Any) -> torch.Tensor:
    """⟨∇_E ℓ_i, ∇_E ℓ_j⟩ = Σ_{τ,τ'} 1[idx_iτ = idx_jτ'] ⟨b_iτ, b_jτ'⟩ for an embedding table E: explicit
    per-row gradients (V·d each) when the vocabulary is smaller than T², the index-matching pair form
    otherwise."""
    ii, ij, bi, bj = lc.a[ri], lc.a[rj], lc.b[ri], lc.b[rj]
    V, T = lc.module.weight.shape[0], ii.shape[1]
    if V <= T * T:
        return layer_grads(lc, ri) @ layer_grads(lc, rj).T
    rows = []
    for r in range(ii.shape[0]):
        match = (ii[r][None, :, None] == ij[:, None, :]).to(bi.dtype)  # (mj, T, T')
        rows.append((torch.einsum("lo,jso->jls", bi[r], bj) * match).sum((1, 2)))
    return torch.stack(rows) if rows else bi.new_zeros(0, bj.shape[0])


def _explicit_pairs(lc: LayerCapture, ri: Any, rj: Any, bias: bool) -> torch.Tensor:
    gi, gj = layer_grads(lc, ri), layer_grads(lc, rj)
    if lc.has_bias and not bias:
        nw = lc.module.weight.numel()
        gi, gj = gi[:, :nw], gj[:, :nw]
    return gi @ gj.T


def ghost_inner(
    cap: Capture,
    rows_i: Any = None,
    rows_j: Any = None,
    *,
    per_layer: bool = False,
    layers: Any = None,
    last_layer_only: bool = False,
    bias: bool = True,
    conv_method: str = "auto",
) -> torch.Tensor:
    """Per-sample gradient inner products ⟨∇_θ ℓ_i, ∇_θ ℓ_j⟩ without per-sample gradients (ghost dot product).

    For a layer with unfolded inputs a_i (L, k) and output gradients b_i (L, o) the per-sample weight
    gradient is b_iᵀ a_i, so ⟨∇_W ℓ_i, ∇_W ℓ_j⟩ = Σ_{s,s'} (a_i a_jᵀ)_{ss'} (b_i b_jᵀ)_{ss'}, which for
    L = 1 (Linear) is ⟨a_i, a_j⟩⟨b_i, b_j⟩; the bias adds ⟨Σ_s b_i, Σ_s b_j⟩. A Linear layer on token
    sequences has L = T positions (the exact all-token-pairs form); embeddings use index matching and
    LayerNorm's affine parameters their explicit per-row gradients (:func:`influence.capture.layer_grads`).
    The sum over layers is the full per-sample gradient inner product when every parameter sits in a
    hooked layer.

    Parameters
    ----------
    cap : a :func:`capture` with ``backward=True``.
    rows_i, rows_j : row indices (or slices) of the capture; None = all rows.
    per_layer : return (n_layers, |i|, |j|) instead of the sum over layers.
    layers, last_layer_only : restrict to these layers (indices or names) / to the last one.
    bias : include the bias gradients (of layers that have one).
    conv_method : for L > 1, ``'ghost'`` (the L×L form), ``'explicit'`` (materialise the per-row weight
        gradients b_iᵀ a_i of this layer only) or ``'auto'`` (whichever needs fewer flops).

    Returns
    -------
    Tensor (|i|, |j|) or (n_layers, |i|, |j|).

    References
    ----------
    Wang, J. T., Mittal, P., Song, D., Jia, R. "Data Shapley in One Training Run", ICLR 2025.
    """
    if conv_method not in ("auto", "ghost", "explicit"):
        raise ValueError(f"conv_method must be 'auto', 'ghost' or 'explicit', got {conv_method!r}")
    m = cap.logits.shape[0]
    ri, rj = _rows(rows_i, m, cap.logits.device), _rows(rows_j, m, cap.logits.device)
    res = torch.stack([layer_pair_gram(cap.layers[k], ri, rj, bias=bias, conv_method=conv_method)
                       for k in _pick(cap.layers, layers, last_layer_only)])
    return res if per_layer else res.sum(0)


def layer_pair_gram(lc: LayerCapture, ri: Any, rj: Any, *, bias: bool = True, conv_method: str = "auto",
                    input_gram: torch.Tensor | None = None) -> torch.Tensor:
    """⟨∇_{θ_l} ℓ_i, ∇_{θ_l} ℓ_j⟩ of one hooked layer for rows ``ri`` × ``rj`` of its capture, (|i|, |j|): the
    one per-layer pair kernel of :func:`ghost_inner` and of :class:`influence.ghost.GhostPairs`.

    Linear on vectors (L = 1): (⟨a_i, a_j⟩ + 1[bias]) ⟨b_i, b_j⟩ (``input_gram`` replaces ⟨a_i, a_j⟩ when given,
    e.g. a cached Gram of the raw rows); L > 1: the L × L ghost form or the explicit per-row weight gradients
    (``conv_method``); Embedding: index matching; LayerNorm: explicit per-row gradients.
    """
    if lc.b is None:
        raise ValueError("ghost_inner needs a capture with backward=True")
    if isinstance(lc.module, nn.Embedding):
        return _embedding_ghost(lc, ri, rj)
    if not lc.is_weight_layer:  # LayerNorm: 2d parameters, explicit per-row gradients
        return _explicit_pairs(lc, ri, rj, bias)
    ai, aj, bi, bj = lc.a[ri], lc.a[rj], lc.b[ri], lc.b[rj]
    L = ai.shape[1]
    if L == 1:
        A = ai[:, 0] @ aj[:, 0].T if input_gram is None else input_gram
        B = bi[:, 0] @ bj[:, 0].T
        # A ⊙ B, plus the bias term ⟨b_i, b_j⟩ = B itself: one fused op
        return torch.addcmul(B, A, B) if bias and lc.has_bias else B.mul_(A)
    mi, mj, kk, o = ai.shape[0], aj.shape[0], ai.shape[2], bi.shape[2]
    explicit_cost = (mi + mj) * L * o * kk + mi * mj * o * kk
    ghost_cost = mi * mj * L * L * (kk + o)
    use_explicit = conv_method == "explicit" or (conv_method == "auto" and explicit_cost < ghost_cost)
    if use_explicit:
        gi = torch.einsum("nlo,nlk->nok", bi, ai).reshape(mi, -1)
        gj = torch.einsum("nlo,nlk->nok", bj, aj).reshape(mj, -1)
        val = gi @ gj.T
    else:
        val = torch.stack([
            (torch.einsum("lk,jsk->jls", ai[r], aj) * torch.einsum("lo,jso->jls", bi[r], bj)).sum((1, 2))
            for r in range(mi)
        ]) if mi else ai.new_zeros(0, mj)
    if bias and lc.has_bias:
        val = val + bi.sum(1) @ bj.sum(1).T
    return val


def lai_inner(
    cap: Capture,
    rows_i: Any = None,
    rows_j: Any = None,
    *,
    per_layer: bool = False,
    layers: Any = None,
    last_layer_only: bool = False,
    bias: bool = True,
) -> torch.Tensor:
    """Layer-aware influence inner products: ⟨g_i, g_j⟩ · Σ_l (⟨vec a_i^l, vec a_j^l⟩ + 1[bias_l]).

    g = ∂ℓ/∂logits (closed form) replaces every layer's output gradient; a^l is the input of layer l,
    flattened (for a convolution the raw input, not its unfolding; for a Linear layer on token
    sequences the (T × d) input, and g the (T × V) logit gradient of the sequence loss). With ``bias``
    the layer input is augmented by a constant 1 per position (the bias's input), so for the last Linear
    layer on vector inputs — whose output *is* the logits — the term equals that layer's exact
    weight-and-bias gradient inner product. Only Linear/Conv2d layers enter. Needs no backward pass.

    Returns (|i|, |j|) or (n_layers, |i|, |j|) with ``per_layer``.

    References
    ----------
    Yang, Huang, Liu (2025), "Layer-Aware Influence for Online Data Valuation Estimation" (LAI), arXiv 2510.16007.
    """
    m = cap.logits.shape[0]
    ri, rj = _rows(rows_i, m, cap.logits.device), _rows(rows_j, m, cap.logits.device)
    G = _flat(cap.g[ri]) @ _flat(cap.g[rj]).T
    return _flat_products(cap, ri, rj, layers, last_layer_only, bias, per_layer, lambda lc: G)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _flat_products(cap: Capture, ri: Any, rj: Any, layers: Any, last_layer_only: bool, bias: bool, per_layer: bool,
                   out_gram: Any) -> torch.Tensor:
    """Σ_l (⟨vec a_i^l, vec a_j^l⟩ + c_l) · out_gram(layer l) over the Linear/Conv2d layers (or per layer):
    the form shared by LAI (the logit-gradient Gram for every layer) and the flattened Ghost (each
    layer's output-gradient Gram)."""
    out = []
    for k in _pick(cap.layers, layers, last_layer_only, weight_only=True):
        lc = cap.layers[k]
        A = lc.a_flat[ri] @ lc.a_flat[rj].T
        if bias and lc.has_bias:
            A = A + float(_bias_count(lc))
        out.append(A * out_gram(lc))
    res = torch.stack(out)
    return res if per_layer else res.sum(0)


def ghost_flat_inner(
    cap: Capture,
    rows_i: Any = None,
    rows_j: Any = None,
    *,
    per_layer: bool = False,
    layers: Any = None,
    last_layer_only: bool = False,
    bias: bool = True,
) -> torch.Tensor:
    """Position-aligned ("flattened") Ghost: Σ_l (⟨vec a_i^l, vec a_j^l⟩ + c_l) ⟨vec b_i^l, vec b_j^l⟩.

    Each Linear/Conv2d layer's input and output gradient are flattened over token positions (T × d) and
    multiplied as if the layer saw one vector per sample; c_l = number of bias positions (T for a
    Linear layer on sequences, 1 otherwise). This is the Ghost baseline of the LAI authors' code for
    sequence models; it is *not* the gradient inner product when T > 1 (the exact form,
    :func:`ghost_inner`, sums over all token pairs), but it is the quantity LAI approximates layer by
    layer: LAI replaces vec b by the logit gradient vec g, so per layer

        Ghost_flat_l − LAI_l = (⟨vec a_i, vec a_j⟩ + c_l) · g_iᵀ (J_i J_jᵀ − I) g_j,

    J_i = ∂vec(logits_i)/∂vec(output of l) (see :mod:`replication.bounds.lai`). For vector inputs (T = 1)
    it equals :func:`ghost_inner` on Linear layers. Embeddings and LayerNorms are not included.
    """
    m = cap.logits.shape[0]
    ri, rj = _rows(rows_i, m, cap.logits.device), _rows(rows_j, m, cap.logits.device)

    def out_gram(lc: LayerCapture) -> torch.Tensor:
        if lc.b is None:
            raise ValueError("ghost_flat_inner needs a capture with backward=True")
        return _flat(lc.b[ri]) @ _flat(lc.b[rj]).T

    return _flat_products(cap, ri, rj, layers, last_layer_only, bias, per_layer, out_gram)


def batch_scores(
    cap: Capture,
    n_train: int,
    method: str,
    *,
    self_influence: bool = False,
    layers: Any = None,
    last_layer_only: bool = False,
    bias: bool = True,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Per-step score of each training row: mean over target rows j of the (ghost or LAI) inner product.

    The capture holds ``n_train`` training rows followed by target rows; with ``self_influence`` the
    targets are the training rows themselves (V_t = S_t, i included: the LAI authors' pretraining rule).
    ``method``: ``'ghost'`` (exact gradient inner products over every hooked layer), ``'ghost_flat'``
    (position-aligned, :func:`ghost_flat_inner`) or ``'lai'``. Score > 0: a step on the sample lowers
    the target loss (to first order), i.e. the sample helps. ``exclude_self`` (LAI with
    ``self_influence`` only): the mean over j ≠ i, an ablation of the authors' rule — with i included
    the term ⟨i, i⟩/|B| is positive and, on token sequences, can dominate the score.
    """
    m = cap.logits.shape[0]
    if exclude_self and not (self_influence and method == "lai"):
        raise ValueError("exclude_self applies to LAI self-influence scores only")
    if exclude_self and n_train < 2:
        raise ValueError("exclude_self needs a batch of at least 2 rows")
    if not 1 <= n_train <= m:
        raise ValueError(f"n_train must be in [1, {m}], got {n_train}")
    rows_i = slice(0, n_train)
    if self_influence:
        rows_j = slice(0, n_train)
    else:
        if n_train == m:
            raise ValueError("the capture holds no target rows; pass targets or use self_influence=True")
        rows_j = slice(n_train, m)
    if method == "ghost":
        return GhostStep(cap, n_train, self_influence=self_influence, bias=bias, layers=layers,
                         last_layer_only=last_layer_only, update=False).scores
    if method == "ghost_flat":
        return ghost_flat_inner(cap, rows_i, rows_j, layers=layers, last_layer_only=last_layer_only,
                                bias=bias).mean(1)
    if method != "lai":
        raise ValueError(f"method must be 'ghost', 'ghost_flat' or 'lai', got {method!r}")
    which = _pick(cap.layers, layers, last_layer_only, weight_only=True)
    return _lai_mean([cap.layers[k].a_flat[rows_i] for k in which], [cap.layers[k].a_flat[rows_j] for k in which],
                     cap.g[rows_i], cap.g[rows_j], sum(_bias_count(cap.layers[k]) for k in which) if bias else 0,
                     exclude_self)


def _lai_mean(a_i: list[torch.Tensor], a_j: list[torch.Tensor], g_i: torch.Tensor, g_j: torch.Tensor, n_bias: int,
              exclude_self: bool) -> torch.Tensor:
    """mean_j ⟨g_i,g_j⟩ (Σ_l ⟨a_i^l,a_j^l⟩ + Σ_l c_l) (over j ≠ i with ``exclude_self``, rows i = rows j then):
    one product of the logit gradients, the layer inputs' Grams accumulated in place."""
    A = None
    for ai, aj in zip(a_i, a_j, strict=True):
        A = ai @ aj.T if A is None else A.addmm_(ai, aj.T)
    if n_bias:
        A = A.add_(float(n_bias))
    M = (_flat(g_i) @ _flat(g_j).T).mul_(A)
    if exclude_self:
        return (M.sum(1) - M.diagonal()) / (M.shape[0] - 1)
    return M.mean(1)


def lai_scores(
    train: Capture,
    target: Capture | None = None,
    *,
    layers: Any = None,
    last_layer_only: bool = False,
    bias: bool = True,
    exclude_self: bool = False,
) -> torch.Tensor:
    """LAI per-step scores from a capture of the training rows and one of the target rows (the fast path
    of online curation: two forward-only captures, nothing concatenated).

    score_i = mean_{j∈V} ⟨g_i, g_j⟩ Σ_l (⟨vec a_i^l, vec a_j^l⟩ + c_l) (Yang, Huang & Liu 2025), equal to
    ``batch_scores(cat, len(train), "lai")`` on the capture of the concatenated rows. ``target`` None:
    the self-influence variant (V = the training rows, i included; ``exclude_self``: j ≠ i).
    """
    if target is None:
        if exclude_self and train.logits.shape[0] < 2:
            raise ValueError("exclude_self needs a batch of at least 2 rows")
    elif exclude_self:
        raise ValueError("exclude_self applies to the self-influence scores only (target=None)")
    elif len(target.layers) != len(train.layers) or any(
            a.module is not b.module for a, b in zip(train.layers, target.layers, strict=True)):
        raise ValueError("the training and target captures must come from the same module")
    which = _pick(train.layers, layers, last_layer_only, weight_only=True)
    a_i = [train.layers[k].a_flat for k in which]
    a_j = a_i if target is None else [target.layers[k].a_flat for k in which]
    g_j = train.g if target is None else target.g
    n_bias = sum(_bias_count(train.layers[k]) for k in which) if bias else 0
    return _lai_mean(a_i, a_j, train.g, g_j, n_bias, exclude_self)


#: The per-layer forms of :class:`GhostStep` for Linear and Conv2d layers (``form``); ``'auto'`` picks the one
#: with the fewest multiply-adds (:func:`ghost_form_costs`).
GHOST_FORMS = ("auto", "pairs", "materialise", "contract")


def ghost_form_costs(n: int, m: int, T: int, T_t: int, k: int, o: int, *, self_influence: bool = False,
                     update: bool = True) -> dict[str, int]:
    """Multiply-adds of the three exact forms of one layer's mean-target Ghost score in :class:`GhostStep`: the
    cost model behind ``form='auto'``, which takes the cheapest (ties: the first of pairs, materialise, contract).

    The layer has n training rows with inputs a_i (T, k) and output gradients b_i (T, o) (T positions: tokens of
    a Linear layer on sequences, output pixels of a convolution with k = C·kh·kw, 1 for vectors) and m target
    rows with T' = ``T_t`` positions (``self_influence``: the training rows, m = n, T' = T). The score of row i is
    ⟨G_i, Ḡ⟩ with G_i = b_iᵀ a_i = Σ_t b_it a_itᵀ and Ḡ = Σ_v G_v (the mean's 1/m is applied once, to the sum
    over layers). Costs (score + update, the update Σ_i w_i G_i counted only with ``update``):

    * ``pairs`` (token-pair ghost form, Σ_{v,t,s} ⟨a_it, a_vs⟩⟨b_it, b_vs⟩, no G_i):
      n·m·T·T'·(k + o + 1)  +  n·T·k·o (update (w ⊙ b)ᵀ a);
    * ``materialise`` (G_i summed over positions first: one batched matmul b_iᵀ a_i per row):
      n·T·k·o (G_i)  +  m·T'·k·o (Ḡ; self-influence n·k·o, Σ_i G_i)  +  n·k·o (G_i · Ḡ)
      +  n·k·o (update Σ_i w_i G_i);
    * ``contract`` (Σ_t b_itᵀ Ḡ a_it, no G_i): m·T'·k·o (Ḡ; self-influence n·T·k·o)  +  n·T·k·o  +  n·T·k
      +  n·T·k·o (update (w ⊙ b)ᵀ a).

    Against materialising, the pair form wins when n·m·T·T'·(k + o + 1) < m·T'·k·o + 2·n·k·o, roughly
    n·T·(k + o) < k·o: few training rows and positions, wide layers (an MLP's first layer on vectors); on long
    sequences materialising wins (it pays k·o per row once, not per pair of positions). Contracting costs about
    one more n·T·k·o than materialising but holds no n·k·o per-sample gradients (for vectors, T = 1, it is
    materialising without the outer products, so ``'auto'`` never materialises vectors). The bias terms
    (Σ_t b_it · Σ_{v,s} b_vs) cost the same in every form and are left out.
    """
    pair = n * m * T * T_t * (k + o + 1)
    gbar = n * k * o if self_influence else m * T_t * k * o
    mat = n * T * k * o + gbar + n * k * o
    con = (n * T * k * o if self_influence else m * T_t * k * o) + n * T * k * o + n * T * k
    if update:
        pair, mat, con = pair + n * T * k * o, mat + n * k * o, con + n * T * k * o
    return {"pairs": pair, "materialise": mat, "contract": con}


class GhostStep:
    """Ghost scores of the training rows of one capture and the curated update from the same pieces: the
    fast path of online curation (one forward + one backward per step, no per-step Python set-up).

    ``scores`` equals ``batch_scores(cap, n_train, "ghost", self_influence=...)``: mean_j ⟨∇ℓ_i, ∇ℓ_j⟩ over
    the target rows j (or the training rows themselves), i.e. ⟨∇ℓ_i, Ḡ⟩ with Ḡ the mean target gradient;
    :meth:`set_update_grads` writes ∇ Σ_i w_i ℓ_i / denom into the hooked layers' ``.grad`` (as
    :func:`influence.capture.set_update_grads`). Per layer:

    * Linear (on vectors, T = 1, or on token sequences) and Conv2d (T = output pixels): one of three exact forms
      of ⟨G_i, Ḡ⟩, G_i = b_iᵀ a_i, chosen per layer by multiply-add count (:func:`ghost_form_costs`,
      ``form='auto'``) or forced (``form``):

      - ``'pairs'``: the token-pair ghost form mean_j Σ_{t,s} ⟨a_it, a_js⟩⟨b_it, b_js⟩ (for vectors Wang et
        al.'s mean_j (⟨a_i, a_j⟩ + 1)⟨b_i, b_j⟩), in row chunks within ``max_per_sample_bytes``; update (w ⊙ b)ᵀ a.
      - ``'materialise'``: the per-sample weight gradients of the training rows, summed over positions first
        (one batched matmul b_iᵀ a_i, for a convolution one grouped weight-gradient convolution), score G_i · Ḡ,
        update Σ_i w_i G_i; Ḡ from one weight-gradient product over the target rows (Σ_i G_i with
        ``self_influence``). Where G_i would exceed ``max_per_sample_bytes`` the layer contracts instead.
      - ``'contract'``: Σ_t b_itᵀ Ḡ a_it (for a convolution ⟨b_i, conv(x_i; Ḡ)⟩) without G_i; update (w ⊙ b)ᵀ a.

      All three are the same sum in another order: equal to rounding (tested in float64).
    * Embedding and LayerNorm: contraction with Ḡ (index matching) / explicit per-row gradients (small).

    ``forms`` records the form each layer used (layer name → form; Embedding and LayerNorm: ``'contract'`` /
    ``'materialise'``). ``linear_form`` (the older name: ``'pair'`` or ``'contract'``) forces the form of the
    Linear layers on vectors only. ``update`` (default True): :meth:`set_update_grads` will be called, so the cost
    model counts the update (``batch_scores`` passes False). ``bias`` (scores only; the update always includes
    every parameter): include the bias gradients. ``layers`` / ``last_layer_only`` (as :func:`ghost_inner`):
    score with these layers only; such a step has no update (:meth:`set_update_grads` raises).
    :func:`batch_scores` with ``method='ghost'`` is this class's ``scores``: the one implementation of the
    mean-target Ghost score.

    References
    ----------
    Wang, J. T., Mittal, P., Song, D., Jia, R. "Data Shapley in One Training Run", ICLR 2025.
    """

    def __init__(self, cap: Capture, n_train: int, *, self_influence: bool = False, bias: bool = True,
                 max_per_sample_bytes: int = 2**27, form: str = "auto", linear_form: str = "auto",
                 update: bool = True, layers: Any = None, last_layer_only: bool = False) -> None:
        if form not in GHOST_FORMS:
            raise ValueError(f"form must be one of {GHOST_FORMS}, got {form!r}")
        if linear_form not in ("auto", "pair", "contract"):
            raise ValueError(f"linear_form must be 'auto', 'pair' or 'contract', got {linear_form!r}")
        m = cap.logits.shape[0]
        if not 1 <= n_train <= m:
            raise ValueError(f"n_train must be in [1, {m}], got {n_train}")
        if not self_influence and n_train == m:
            raise ValueError("the capture holds no target rows; pass targets or use self_influence=True")
        self.cap, self.n, self.bias = cap, int(n_train), bool(bias)
        self.self_influence = bool(self_influence)
        self.m_target = self.n if self.self_influence else m - self.n
        self.max_bytes, self.form, self.update = int(max_per_sample_bytes), form, bool(update)
        self._form_vectors = form if linear_form == "auto" else {"pair": "pairs", "contract": "contract"}[linear_form]
        self.nbytes = 0  # bytes of the per-sample gradients held for the update
        self.forms: dict[str, str] = {}
        self._update: list[tuple[LayerCapture, Any]] = []
        which = _pick(cap.layers, layers, last_layer_only)
        self.partial = len(which) != len(cap.layers)
        s = None
        for lc in (cap.layers[k] for k in which):
            if lc.b is None:
                raise ValueError("Ghost scores need a capture with backward=True")
            v = self._layer(lc)  # ⟨G_i, Σ_v G_v⟩ of the layer: every layer returns a fresh tensor
            s = v if s is None else s.add_(v)
        self.scores: torch.Tensor = s.div_(self.m_target)

    # ---- per layer: returns that layer's ⟨G_i, Σ_j G_j⟩ (n,) and records what the update needs
    def _layer(self, lc: LayerCapture) -> torch.Tensor:
        mod = lc.module
        if isinstance(mod, nn.Linear):
            return self._linear(lc)
        if isinstance(mod, nn.Conv2d):
            return self._conv(lc)
        n, b = self.n, lc.b
        if isinstance(mod, nn.Embedding):  # contraction with the summed target gradient (a V × d table)
            idx = lc.a
            rj = slice(0, n) if self.self_influence else slice(n, None)
            table = b.new_zeros(mod.weight.shape).index_add_(0, idx[rj].reshape(-1), b[rj].reshape(-1, b.shape[-1]))
            self._update.append((lc, None))
            self.forms[lc.name] = "contract"
            return (b[:n] * F.embedding(idx[:n], table)).sum((1, 2))
        # LayerNorm: per-row gradients Σ_τ b_iτ ⊙ x̂_iτ and Σ_τ b_iτ (2d numbers per row), of all rows at once
        P = (b * lc.a).sum(1)
        Pt = P[:n]
        val = Pt @ (Pt.sum(0) if self.self_influence else P[n:].sum(0))
        Pb = None
        if lc.has_bias:
            B = b.sum(1)
            Pb = B[:n]
            if self.bias:
                val = val.addmv_(Pb, Pb.sum(0) if self.self_influence else B[n:].sum(0))
        self._update.append((lc, ("explicit", Pt, Pb)))
        self.forms[lc.name] = "materialise"
        self.nbytes += (Pt.numel() + (0 if Pb is None else Pb.numel())) * Pt.element_size()
        return val

    def _choose(self, T: int, k: int, o: int, elem: int) -> str:
        """The layer's form: forced, or the cheapest by :func:`ghost_form_costs` (materialising only where the
        training rows' G_i fit in ``max_per_sample_bytes``)."""
        form = self._form_vectors if T == 1 else self.form
        fits = self.n * k * o * elem <= self.max_bytes
        if form == "auto":
            costs = ghost_form_costs(self.n, self.m_target, T, T, k, o, self_influence=self.self_influence,
                                     update=self.update)
            if not fits:
                del costs["materialise"]
            form = min(costs, key=costs.__getitem__)
        return "contract" if form == "materialise" and not fits else form

    def _pairs(self, at: torch.Tensor, bt: torch.Tensor, av: torch.Tensor, bv: torch.Tensor,
               bias: bool) -> torch.Tensor:
        """Σ_{v,t,s} ⟨a_it, a_vs⟩⟨b_it, b_vs⟩ (+ Σ_t b_it · Σ_{v,s} b_vs with ``bias``) for every training row i:
        the (rows·T, m·T') products in row chunks within ``max_per_sample_bytes``."""
        n, T, k = at.shape
        o, mv, Tv = bt.shape[2], av.shape[0], av.shape[1]
        A2, B2 = av.reshape(mv * Tv, k), bv.reshape(mv * Tv, o)
        if T == 1 and Tv == 1:  # vectors: Σ_v (⟨a_i, a_v⟩ + 1)⟨b_i, b_v⟩, the bias folded into the input Gram
            A = at.reshape(n, k) @ A2.T
            if bias:
                A = A.add_(1.0)
            return (bt.reshape(n, o) @ B2.T).mul_(A).sum(1)
        step = max(1, self.max_bytes // (2 * T * mv * Tv * at.element_size()))
        parts = []
        for s in range(0, n, step):
            A = at[s : s + step].reshape(-1, k) @ A2.T  # (rows·T, m·T')
            parts.append(A.mul_(bt[s : s + step].reshape(-1, o) @ B2.T).view(-1, T * mv * Tv).sum(1))
        val = parts[0] if len(parts) == 1 else torch.cat(parts)
        if bias:
            val = val.addmv_(bt.sum(1), bv.sum((0, 1)))
        return val

    def _linear(self, lc: LayerCapture) -> torch.Tensor:
        n, si = self.n, self.self_influence
        a, b = lc.a, lc.b  # (m, T, k), (m, T, o)
        T, k, o = a.shape[1], a.shape[2], b.shape[2]
        at, bt = a[:n], b[:n]
        av, bv = (at, bt) if si else (a[n:], b[n:])
        bias = self.bias and lc.has_bias
        form = self.forms[lc.name] = self._choose(T, k, o, b.element_size())
        if form == "pairs":
            self._update.append((lc, ("linear", at, bt)))
            return self._pairs(at, bt, av, bv, bias)
        Bt = None
        if form == "materialise":
            G = torch.bmm(bt.transpose(1, 2), at).view(n, o * k)  # per-sample weight gradients, (n, o·k)
            val = G @ (G.sum(0) if si else torch.mm(bv.reshape(-1, o).T, av.reshape(-1, k)).view(-1))
            if lc.has_bias:
                Bt = bt.sum(1) if T > 1 else bt.reshape(n, o)
            self._update.append((lc, ("explicit", G, Bt)))
            self.nbytes += G.numel() * G.element_size()
        elif T == 1:  # contract, vectors: b_iᵀ Ḡ a_i
            at2, bt2 = at.reshape(n, k), bt.reshape(n, o)
            val = ((bt2 @ torch.mm(bv.reshape(-1, o).T, av.reshape(-1, k))) * at2).sum(1)
            self._update.append((lc, ("linear", at2, bt2)))
            Bt = bt2
        else:  # contract: Σ_t b_itᵀ Ḡ a_it
            val = (torch.matmul(bt, torch.mm(bv.reshape(-1, o).T, av.reshape(-1, k))) * at).sum((1, 2))
            self._update.append((lc, ("linear", at, bt)))
        if bias:
            if Bt is None:
                Bt = bt.sum(1)
            val = val.addmv_(Bt, Bt.sum(0) if si else bv.sum((0, 1)))
        return val

    def _conv(self, lc: LayerCapture) -> torch.Tensor:
        n, mod, si = self.n, lc.module, self.self_influence
        x = lc.inp
        m, C = x.shape[0], x.shape[1]
        o = mod.out_channels
        hw = _conv_out_hw(mod, x)
        kk = mod.weight[0].numel()
        bias = self.bias and lc.has_bias
        form = self.forms[lc.name] = self._choose(hw[0] * hw[1], kk, o, x.element_size())
        if form == "pairs":  # on the unfolded inputs (m, L, C·kh·kw) and output gradients (m, L, o)
            a, b = lc.a, lc.b
            at, bt = a[:n], b[:n]
            self._update.append((lc, ("linear", at, bt)))
            return self._pairs(at, bt, *((at, bt) if si else (a[n:], b[n:])), bias)
        gout = lc.b.transpose(1, 2).reshape(m, o, *hw)  # the native (m, o, H', W')
        xt, gt = x[:n], gout[:n]
        xv, gv = (xt, gt) if si else (x[n:], gout[n:])
        kw = dict(stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
        Bt = gt.sum((2, 3))
        if form == "materialise":
            # per-sample weight gradients: the batch as n groups of one grouped weight-gradient convolution
            G = torch.nn.grad.conv2d_weight(xt.reshape(1, n * C, *xt.shape[2:]), (n * o, *mod.weight.shape[1:]),
                                            gt.reshape(1, n * o, *gt.shape[2:]), groups=n, **kw).reshape(n, -1)
            val = G @ (G.sum(0) if si else torch.nn.grad.conv2d_weight(xv, mod.weight.shape, gv, **kw).reshape(-1))
            self._update.append((lc, ("explicit", G, Bt)))
            self.nbytes += G.numel() * G.element_size()
        else:  # contract: Σ_s b_isᵀ Ḡ a_is = ⟨b_i, conv(x_i; Ḡ)⟩
            gsum = torch.nn.grad.conv2d_weight(xv, mod.weight.shape, gv, **kw)
            val = (gt * F.conv2d(xt, gsum, None, **kw)).sum((1, 2, 3))
            self._update.append((lc, ("conv", xt, gt)))
        if bias:
            val = val.addmv_(Bt, Bt.sum(0) if si else gv.sum((0, 2, 3)))
        return val

    def set_update_grads(self, weights: torch.Tensor | None = None, denom: float | None = None) -> None:
        """Write ∇_θ Σ_{i<n_train} w_i ℓ_i / denom (default denom = n_train) into ``.grad`` of every hooked
        layer's parameters (overwriting), from the pieces the scores used."""
        if self.partial:
            raise ValueError("this GhostStep scored a subset of the layers; the update needs all of them")
        n, z = self.n, self.cap.logits
        w = z.new_ones(n) if weights is None else torch.as_tensor(weights, dtype=z.dtype, device=z.device)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {tuple(w.shape)}")
        wd = w / float(n if denom is None else denom)
        for lc, data in self._update:
            mod = lc.module
            if data is None:  # Embedding: Σ_i w_i Σ_τ e_{idx_iτ} b_iτᵀ by index_add
                b = lc.b[:n]
                mod.weight.grad = b.new_zeros(mod.weight.shape).index_add_(
                    0, lc.a[:n].reshape(-1), (b * wd[:, None, None]).reshape(-1, b.shape[-1]))
                continue
            kind, p, q = data
            if kind == "explicit":  # p: per-sample weight gradients (n, P_w), q: per-sample bias gradients (or None)
                mod.weight.grad = (wd @ p).view(mod.weight.shape)
                if lc.has_bias:
                    mod.bias.grad = wd @ q
            elif kind == "linear":  # p: inputs (n, [L,] k), q: output gradients (n, [L,] o)
                bw = q * wd.view(-1, *([1] * (q.ndim - 1)))
                bw2, a2 = bw.reshape(-1, bw.shape[-1]), p.reshape(-1, p.shape[-1])
                mod.weight.grad = (bw2.T @ a2).view(mod.weight.shape)
                if lc.has_bias:
                    mod.bias.grad = bw2.sum(0)
            else:  # conv: p inputs (n, C, H, W), q output gradients (n, o, H', W')
                gw = q * wd[:, None, None, None]
                mod.weight.grad = torch.nn.grad.conv2d_weight(p, mod.weight.shape, gw, stride=mod.stride,
                                                              padding=mod.padding, dilation=mod.dilation)
                if lc.has_bias:
                    mod.bias.grad = gw.sum((0, 2, 3))


def _conv_out_hw(mod: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    """Spatial size of a convolution's output: ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1 per dimension."""
    return tuple((x.shape[2 + d] + 2 * mod.padding[d] - mod.dilation[d] * (mod.kernel_size[d] - 1) - 1)
                 // mod.stride[d] + 1 for d in (0, 1))


# ---------------------------------------------------------------------------------------------- in-run scores
def _in_run(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    method: str,
    *,
    target_size: int | None,
    seed: int,
    self_influence: bool,
    layers: Any,
    last_layer_only: bool,
    bias: bool,
    l2_term: bool,
    batch_mean: bool,
) -> np.ndarray:
    X, y = prepare(f"in-run {method}", traj, train_data, need_all_steps=True)[:2]
    dtype = traj.thetas.dtype
    if self_influence:
        Xt = yt = None
    else:
        if target_data is None:
            raise ValueError("target_data is required unless self_influence=True")
        Xt, yt = as_tensors(target_data, dtype)
    if target_size is not None and target_size < 1:
        raise ValueError(f"target_size must be >= 1 or None, got {target_size}")
    rng = np.random.default_rng(seed)
    module = traj.model.to_module(traj.thetas[0])
    params = list(module.parameters())
    scores = np.zeros(X.shape[0])
    lrs = traj.lrs()
    for t, S in enumerate(traj.batches()):
        nn.utils.vector_to_parameters(traj.thetas[t], params)
        if self_influence:
            xc, yc = X[S], y[S]
        else:
            if target_size is None or target_size >= Xt.shape[0]:
                V = slice(None)
            else:
                V = torch.as_tensor(rng.choice(Xt.shape[0], size=target_size, replace=False), device=Xt.device)
            xc, yc = torch.cat([X[S], Xt[V]]), torch.cat([y[S], yt[V]])
        cap = capture(module, xc, yc, backward=(method == "ghost"))
        s = batch_scores(cap, len(S), method, self_influence=self_influence, layers=layers,
                         last_layer_only=last_layer_only, bias=bias)
        if l2_term and traj.l2 > 0:
            # ⟨α θ_t, ∇L_V(θ_t)⟩, the L2 part of ∇f_i (the same for every member of the batch)
            rows = slice(0, len(S)) if self_influence else slice(len(S), None)
            mv = cap.logits[rows].shape[0]
            w = cap.logits.new_full((mv,), 1.0 / mv)
            gL = torch.cat([layer_grads(lc, rows, w) for lc in cap.layers])
            s = s + traj.l2 * torch.dot(traj.thetas[t].to(gL), gL)
        scale = lrs[t] / len(S) if batch_mean else lrs[t]
        np.add.at(scores, S, scale * s.detach().cpu().numpy())
    return scores


@register("ghost", suspicious="low", renamed=_IN_RUN)
def in_run_ghost(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    *,
    target_size: int | None = None,
    seed: int = 0,
    self_influence: bool = False,
    bias: bool = True,
    l2_term: bool = True,
    batch_mean: bool = True,
) -> np.ndarray:
    """In-run Ghost influence: the first-order data value of each sample accumulated over the recorded run.

    score_j = Σ_{t: j∈S_t} (η_t/|S_t|) ⟨∇f_j(θ_t), ∇L_{V_t}(θ_t)⟩,  f_j = ℓ_j + (α/2)‖θ‖²,

    with the gradient inner products from the ghost dot product (:func:`ghost_inner`), recomputed from
    ``traj.thetas[t]`` and ``traj.batches()[t]`` (no retraining). This is the first-order expansion of
    removing j from its batches, evaluated step by step (TracIn with every step as checkpoint, restricted
    to j's own steps), so it carries our sign: estimated L(θ^{-j}_T) − L(θ_T), positive = helpful.

    Parameters
    ----------
    traj : run recorded at every step.
    train_data, target_data : ``Dataset`` or (X, y); ``target_data`` may be None with ``self_influence``.
    target_size : size of the fresh random target subset V_t drawn each step (seeded by ``seed``);
        None (default) = the whole target set (the estimand of LOO). Online curation uses 32.
    self_influence : V_t = S_t (the batch scores itself), for runs without a validation set.
    bias : include bias gradients.
    l2_term : include the L2 part α⟨θ_t, ∇L⟩ of ∇f_j (exact first-order term; same for the whole batch).
    batch_mean : scale by η_t/|S_t| (our batch-mean SGD); False gives Wang et al.'s η_t⟨·,·⟩ (sum-SGD).

    Returns
    -------
    np.ndarray (n_train,).

    Notes
    -----
    Per step: one hooked forward + backward over [S_t; V_t] (layer output gradients via
    ``torch.autograd.grad``), then O(|S_t||V_t| Σ_l (k_l + o_l)) for the ghost dot products (Linear
    layers) or a contraction with the mean target gradient (convolutions). No per-sample gradient is
    materialised. The first-order expansion ignores how the removal propagates through later steps
    (contrast SGD-IE), so agreement with LOO degrades as runs get longer.

    References
    ----------
    Wang, J. T., Mittal, P., Song, D., Jia, R. "Data Shapley in One Training Run", ICLR 2025
    (their value is −η_t⟨∇ℓ_val, ∇ℓ_i⟩ as a loss *reduction*; the sign is the same as ours).
    """
    return _in_run(traj, train_data, target_data, "ghost", target_size=target_size, seed=seed,
                   self_influence=self_influence, layers=None, last_layer_only=False, bias=bias,
                   l2_term=l2_term, batch_mean=batch_mean)


@register("lai", suspicious="low", renamed=_IN_RUN)
def in_run_lai(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    *,
    target_size: int | None = None,
    seed: int = 0,
    self_influence: bool = False,
    layers: Any = None,
    last_layer_only: bool = False,
    bias: bool = True,
    batch_mean: bool = True,
) -> np.ndarray:
    """In-run layer-aware influence (LAI), accumulated over the recorded run.

    score_j = Σ_{t: j∈S_t} (η_t/|S_t|) · mean_{v∈V_t} ⟨g_j, g_v⟩ Σ_l (⟨a_j^l, a_v^l⟩ + 1),

    g = ∂ℓ/∂logits (softmax − onehot, or σ(z) − y for one logit), a^l = input of layer l (see
    :func:`lai_inner`). LAI replaces each layer's output gradient by the logit gradient, so it needs
    only a forward pass; it is exact on the last layer. No L2 term (LAI has no gradient vector to
    contract θ with). Sign: as Ghost, positive = helpful.

    Parameters
    ----------
    traj, train_data, target_data, target_size, seed, self_influence, batch_mean : as :func:`in_run_ghost`.
    layers : subset of layers (indices into the Linear/Conv2d layers, or module names); None = all.
    last_layer_only : the last-layer ablation.
    bias : add the bias's constant input 1 to every layer's input inner product.

    Returns
    -------
    np.ndarray (n_train,).

    Notes
    -----
    Per step: hooked forwards only (no backward), then O(|S_t||V_t|(C + Σ_l D_l)). Per layer,
    |Ghost_l − LAI_l| ≤ ‖ã_i‖‖ã_j‖‖g_i‖‖g_j‖‖J_iJ_jᵀ − I‖₂ (checked in :mod:`replication.bounds.lai`); the
    last layer is exact, so for logistic regression LAI equals Ghost without its L2 term.

    References
    ----------
    Yang, Huang, Liu (2025), "Layer-Aware Influence for Online Data Valuation Estimation", arXiv 2510.16007.
    """
    return _in_run(traj, train_data, target_data, "lai", target_size=target_size, seed=seed,
                   self_influence=self_influence, layers=layers, last_layer_only=last_layer_only, bias=bias,
                   l2_term=False, batch_mean=batch_mean)


@register("lai_last_layer", suspicious="low", renamed=_IN_RUN)
def in_run_lai_last_layer(
    traj: Trajectory,
    train_data: Any,
    target_data: Any,
    *,
    target_size: int | None = None,
    seed: int = 0,
    self_influence: bool = False,
    bias: bool = True,
    batch_mean: bool = True,
) -> np.ndarray:
    """LAI restricted to the last layer (ablation): :func:`in_run_lai` with ``last_layer_only=True``.

    score_j = Σ_{t: j∈S_t} (η_t/|S_t|) mean_v ⟨g_j, g_v⟩(⟨a_j^L, a_v^L⟩ + 1), which is exactly the in-run
    gradient inner product of the last Linear layer's weights and bias (TracIn-last-layer at every step).
    """
    return _in_run(traj, train_data, target_data, "lai", target_size=target_size, seed=seed,
                   self_influence=self_influence, layers=None, last_layer_only=True, bias=bias,
                   l2_term=False, batch_mean=batch_mean)
