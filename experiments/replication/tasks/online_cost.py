"""Cost of one curated training step on the transformers (claim LAI-4 in the LAI paper's own setting).

Every policy takes one full AdamW step on a batch (+ a clean validation batch for the policies that score
against one) through :func:`influence.curation.curated_step`, the code the E8 / E9 runs use:

``vanilla``                plain forward + backward on the batch.
``lai`` / ``lai_self``     hooked forwards (no backward for scoring), LAI scores, backward of the
                           weighted loss.
``ghost`` / ``ghost_self`` one hooked forward + backward over [batch; targets] (output gradients of
                           every layer), exact Ghost scores (all token pairs), update from the capture.
``ghost_flat[_self]``      the same pass, position-aligned Ghost (the LAI authors' Ghost baseline).

**Time**: the policies run interleaved step by step (round robin, each on its own copy of the model), so
that a drifting machine load hits them alike; ``repeats`` timed steps after ``warmup`` untimed ones, one
row per timed step, numbered ``rep`` (the round). The order rotates by one from round to round (round k
starts with policy k mod the number of policies; the step's place is ``slot``), so that no policy always
runs first or always after the same one. Each step records its wall time ``step_time_s`` and the CPU time
of the process ``step_cpu_s`` (``time.process_time``; with one torch thread it does not count the time the
process waits for a loaded machine's cores). The steps run on **one torch thread** (``threads=1``, restored
after): on a batch of 32 short sequences the intra-op parallelism of each kernel, not the method, would set
a multi-threaded time, and CPU time would count idle worker threads spinning. The workflow rule
(``online_cost``) takes all local cores so that no other job shares the machine meanwhile. Claim LAI-4
compares policies *within* a round: the paired ratio ``t_LAI(k) / t_Ghost(k)`` of round ``k`` cancels a
load shared by the round, and its median over the rounds, with the spread of the per-round ratios, decides
(:mod:`replication.claims`, ``paired_by``).

**Equal care**: every policy is the code the E8 / E9 runs train with (:func:`influence.curation.curated_step`),
each in its fastest exact form: LAI scores from forward-only captures (the targets without autograd) and
one backward for the update; exact Ghost (:class:`influence.estimators.online.GhostStep`) from one hooked
forward and a backward to the layer outputs, choosing per layer the cheapest exact form (pair Gram,
contraction with the mean target gradient, or per-sample weight gradients by one batched matmul) and
taking the update from the same pieces (no second backward); position-aligned Ghost from the same pass
with the flattened Grams LAI itself uses (:func:`influence.estimators.online.ghost_flat_inner`) and the
update from the capture.

**Memory**: the step's tensor footprint, counted exactly rather than sampled: bytes of the tensors
autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``, each storage once) plus
the bytes the capture holds (layer inputs, output gradients, logits). It does not depend on the machine's
load, and it is what sets the activation memory on an accelerator, the paper's measure; the peak RSS
of a process, which a CPU allocator blurs, is in ``experiments/benchmarks/bench_online.py``.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
import torch

from influence.curation import MODULE_POLICIES, curated_step, needs_target
from influence.models import TextClassifier, TinyGPT
from replication.tasks.e6_cost import torch_threads

__all__ = ["POLICIES", "build_model", "step_costs"]

log = logging.getLogger(__name__)

POLICIES = ("vanilla", "lai", "ghost", "ghost_flat", "lai_self", "ghost_self", "ghost_flat_self")


def build_model(kind: str, *, vocab_size: int, context: int, d_model: int, n_layers: int, n_heads: int,
                n_classes: int = 2, seed: int = 0) -> torch.nn.Module:
    """``kind="gpt"``: :class:`~influence.models.TinyGPT`; ``"encoder"``: :class:`~influence.models.TextClassifier`."""
    if kind == "gpt":
        return TinyGPT(vocab_size, context, d_model, n_layers, n_heads, seed=seed)
    if kind == "encoder":
        return TextClassifier(vocab_size, n_classes, context, d_model, n_layers, n_heads, seed=seed)
    raise ValueError(f"model kind must be 'gpt' or 'encoder', got {kind!r}")


def _batches(kind: str, module: torch.nn.Module, batch: int, target: int, k: int, seed: int) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    V, T = module.vocab_size, module.context
    out = []
    for _ in range(k):
        if kind == "gpt":
            seq = torch.randint(0, V, (batch + target, T + 1), generator=g)
            x, y = seq[:, :-1], seq[:, 1:]
        else:
            x = torch.randint(2, V, (batch + target, T), generator=g)
            y = torch.randint(0, module.head.out_features, (batch + target,), generator=g)
        out.append((x[:batch], y[:batch], (x[batch:], y[batch:])))
    return out


def _footprint(module: torch.nn.Module, policy: str, xb: torch.Tensor, yb: torch.Tensor,
               target: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """(bytes saved for backward, bytes held by the capture) of one step, in MiB; each storage counted once."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    module.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, _, _, nbytes = curated_step(module, policy, xb, yb, _target_for(policy, target))
    return sum(seen.values()) / 2**20, nbytes / 2**20


def _target_for(policy: str, target: tuple) -> tuple | None:
    return target if needs_target(policy) else None


def step_costs(
    kind: str,
    *,
    model: dict[str, Any],
    batch_size: int = 32,
    target_size: int = 32,
    policies: tuple[str, ...] = POLICIES,
    repeats: int = 15,
    warmup: int = 3,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Per-step wall time and tensor footprint of each curation policy on a transformer (see module doc).

    ``model``: keyword arguments of :func:`build_model` (vocab_size, context, d_model, n_layers, n_heads,
    n_classes). ``threads``: torch threads while timing (None: as set). Rows: one per (policy, timed step) with
    ``rep`` (the round), ``slot`` (the step's place in its round), ``step_time_s`` (wall),
    ``step_cpu_s`` (process CPU time), ``saved_mb``, ``capture_mb``,
    ``footprint_mb`` = saved + capture, ``ratio_to_vanilla`` (this step's time over the median vanilla
    step; NaN without a vanilla policy) and the sizes.
    """
    unknown = [p for p in policies if p not in MODULE_POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; use {tuple(MODULE_POLICIES)}")
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 (the claims use the spread; LAI-4 needs >= 5), got {repeats}")
    base = build_model(kind, seed=seed, **model)
    data = _batches(kind, base, batch_size, target_size, k=4, seed=seed + 1)
    mods = {p: copy.deepcopy(base) for p in policies}
    opts = {p: torch.optim.AdamW(mods[p].parameters(), lr=lr) for p in policies}
    times: dict[str, list[float]] = {p: [] for p in policies}
    cpu: dict[str, list[float]] = {p: [] for p in policies}
    slots: dict[str, list[int]] = {p: [] for p in policies}
    with torch_threads(threads):
        for k in range(warmup + repeats):
            xb, yb, tgt = data[k % len(data)]
            for j in range(len(policies)):
                p = policies[(j + k) % len(policies)]
                t0, c0 = time.perf_counter(), time.process_time()
                opts[p].zero_grad(set_to_none=True)
                curated_step(mods[p], p, xb, yb, _target_for(p, tgt))
                opts[p].step()
                if k >= warmup:
                    times[p].append(time.perf_counter() - t0)
                    cpu[p].append(time.process_time() - c0)
                    slots[p].append(j)
        xb, yb, tgt = data[0]
        foot = {p: _footprint(copy.deepcopy(base), p, xb, yb, tgt) for p in policies}
    plain = float(np.median(times["vanilla"])) if "vanilla" in times else float("nan")
    n_params = sum(p.numel() for p in base.parameters())
    rows = []
    for p in policies:
        spec = MODULE_POLICIES[p]
        saved, cap = foot[p]
        for r, (t, c, j) in enumerate(zip(times[p], cpu[p], slots[p], strict=True)):
            rows.append({"model": kind, "policy": p, "self_influence": bool(spec is not None and spec[1]),
                         "rep": r, "slot": j, "step_time_s": t, "step_cpu_s": c, "ratio_to_vanilla": t / plain,
                         "saved_mb": saved, "capture_mb": cap, "footprint_mb": saved + cap, "batch_size": batch_size,
                         "target_size": target_size, "n_params": n_params, **model})
        log.info("%s %-16s median %.4f s (%.2fx vanilla), footprint %.1f MiB", kind, p, np.median(times[p]),
                 np.median(times[p]) / plain, saved + cap)
    return rows
