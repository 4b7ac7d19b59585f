"""Cost of online scoring per training step (claim LAI-4): plain SGD vs LAI vs Ghost vs vmap per-sample grads.

Every method takes one full training step on a batch of 32 (+ a target batch of 32 for the scored ones),
with curation weights w_i = 1[score_i ≥ 0] and the batch loss Σ w_i ℓ_i / 32. The scored methods run
``influence.curation.curated_step``, the code the training loops use:

``plain``  forward + backward on the batch, SGD update.
``plain_fwd`` a plain step plus a no-grad forward of the target batch: the floor of any method that
           scores against a target batch it has to push through the network (reference only).
``plain_cat`` a plain step on the 64 rows [batch; target] (reference only): the floor of exact Ghost, which
           needs the target batch's gradient, i.e. a forward and a backward of the target rows as well.
``lai``    hooked forwards of the batch (autograd on) and of the target batch (no_grad), LAI scores from
           the captured layer inputs and closed-form logit gradients (``lai_scores``), then backward of
           the weighted loss.
``ghost``  one hooked forward + backward over [batch; target] (output gradients of every layer), Ghost
           scores and the update gradient from the same pieces (``GhostStep``: per layer the token-pair
           form, the materialised per-sample weight gradients or the contraction with the target gradient,
           whichever needs the fewest multiply-adds, ``ghost_form_costs``; no second pass).
``ghost_pairs``, ``ghost_materialise``, ``ghost_contract`` (not run by default): the ``ghost`` step with every
           Linear / Conv2d layer forced into that form (``GhostStep(form=...)``).
``lai_self``, ``ghost_self``: the self-influence variants (the batch scores itself; no target batch).
``ghost_flat``, ``ghost_flat_self``: the position-aligned Ghost (sequence models).
``lai_ref``, ``ghost_ref`` (and ``lai_self_ref``, ``ghost_self_ref``): the same steps by the reference
           path (``capture_split`` / ``capture`` + ``batch_scores`` + ``set_update_grads``): the same
           keep masks, for the speed-up of the fast path in the same run.
``vmap``   explicit per-sample gradients of the batch (``vmap(grad)``) and the target gradient, their dot
           products, update = weighted sum of the per-sample gradients.

Models: MLP 784-128-10, MLP 784-512-512-10, SmallCNN (two 3×3 conv layers, 28×28 input), and the
transformers of E8 / E9 (``gpt``: TinyGPT, 67 characters, context 64, width 64, 2 layers; ``encoder``:
TextClassifier, 2000 words, 32 tokens, width 32, 1 layer; the row loss of the GPT is the mean token
cross-entropy of a sequence). Each
model's methods are timed interleaved step by step (round robin, each on its own copy of the model) so
that the load of a shared machine hits them alike; time = median over ``--steps`` steps after
``--warmup``, as wall time and as the thread's CPU time (``time.thread_time``: robust to a loaded
machine, where a step can wait for a core; exact with ``--threads 1``); each row records the load
average. Memory: each (model, method) runs in a fresh subprocess so that its peak RSS is its own,
reported as the rise of the process's peak RSS over a plain step (CPU), or of
``torch.cuda.max_memory_allocated`` on CUDA. The scoring's own tensor footprint (captured
activations / output gradients / per-sample gradients) is reported too (``scoring_mb``).

Usage::

    python experiments/benchmarks/bench_online.py --out results/bench/online.json [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

log = logging.getLogger("bench_online")

MODELS = ("mlp-784-128-10", "mlp-784-512-512-10", "cnn-small", "gpt", "encoder")
METHODS = ("plain", "plain_fwd", "plain_cat", "lai", "ghost", "lai_self", "ghost_self", "ghost_flat", "ghost_flat_self",
           "lai_ref", "ghost_ref", "vmap")
GHOST_FORCED = ("ghost_pairs", "ghost_materialise", "ghost_contract")  # GhostStep with one form for every layer
EXTRA = ("lai_self_ref", "ghost_self_ref", *GHOST_FORCED)  # not run by default
CURATED = ("lai", "ghost", "ghost_flat", "lai_self", "ghost_self", "ghost_flat_self")  # run through curated_step
TRANSFORMERS = {  # the default sizes of E8 (gpt) and E9 (encoder)
    "gpt": {"vocab_size": 67, "context": 64, "d_model": 64, "n_layers": 2, "n_heads": 4},
    "encoder": {"vocab_size": 2000, "context": 32, "d_model": 32, "n_layers": 1, "n_heads": 2, "n_classes": 2},
}


def build(name: str, dtype: torch.dtype) -> nn.Module:
    from influence.models import SmallCNN, mlp

    torch.manual_seed(0)
    if name == "mlp-784-128-10":
        m = mlp(784, (128,), 10)
        return m.to_module(m.init(0, dtype=dtype))
    if name == "mlp-784-512-512-10":
        m = mlp(784, (512, 512), 10)
        return m.to_module(m.init(0, dtype=dtype))
    if name == "cnn-small":
        return SmallCNN(1, 28, 10, width=16, dtype=dtype)
    if name in TRANSFORMERS:
        from replication.tasks.online_cost import build_model

        return build_model(name, seed=0, **TRANSFORMERS[name]).to(dtype)
    raise ValueError(f"unknown model {name!r}; use one of {MODELS}")


def make_step(method: str, module: nn.Module, lr: float = 0.05):
    """A closure performing one training step of ``method`` on (xb, yb, xv, yv); returns scoring bytes."""
    from influence.capture import capture, capture_split, set_update_grads
    from influence.curation import curated_step
    from influence.estimators.online import batch_scores
    from influence.models import example_losses

    params = list(module.parameters())

    def sgd() -> None:
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad

    if method == "plain":
        def step(xb, yb, xv, yv) -> int:
            for p in params:
                p.grad = None
            example_losses(module(xb), yb).mean().backward()
            sgd()
            return 0
    elif method == "plain_cat":
        def step(xb, yb, xv, yv) -> int:
            for p in params:
                p.grad = None
            example_losses(module(torch.cat([xb, xv])), torch.cat([yb, yv])).mean().backward()
            sgd()
            return 0
    elif method == "plain_fwd":
        def step(xb, yb, xv, yv) -> int:
            for p in params:
                p.grad = None
            example_losses(module(xb), yb).mean().backward()
            with torch.no_grad():
                module(xv)
            sgd()
            return 0
    elif method in ("lai_ref", "lai_self_ref"):
        self_inf = method == "lai_self_ref"

        def step(xb, yb, xv, yv) -> int:
            for p in params:
                p.grad = None
            b = xb.shape[0]
            cap = (capture(module, xb, yb, backward=False, keep_graph=True) if self_inf
                   else capture_split(module, xb, yb, xv, yv))
            w = (batch_scores(cap, b, "lai", self_influence=self_inf) >= 0).to(params[0].dtype)
            ((w * cap.losses[:b]).sum() / b).backward()
            sgd()
            return cap.nbytes()
    elif method in ("ghost_ref", "ghost_self_ref"):
        self_inf = method == "ghost_self_ref"

        def step(xb, yb, xv, yv) -> int:
            b = xb.shape[0]
            cap = (capture(module, xb, yb, backward=True) if self_inf
                   else capture(module, torch.cat([xb, xv]), torch.cat([yb, yv]), backward=True))
            w = (batch_scores(cap, b, "ghost", self_influence=self_inf) >= 0).to(params[0].dtype)
            set_update_grads(cap, b, w)
            sgd()
            return cap.nbytes()
    elif method in GHOST_FORCED:
        from influence.estimators.online import GhostStep

        form = method.removeprefix("ghost_")

        def step(xb, yb, xv, yv) -> int:
            b = xb.shape[0]
            cap = capture(module, torch.cat([xb, xv]), torch.cat([yb, yv]), backward=True)
            gs = GhostStep(cap, b, form=form)
            gs.set_update_grads((gs.scores >= 0).to(params[0].dtype))
            sgd()
            return cap.nbytes() + gs.nbytes
    elif method == "vmap":
        names = [n for n, _ in module.named_parameters()]

        def li(pr, xi, yi):
            return example_losses(functional_call(module, pr, (xi[None],)), yi[None]).sum()

        def lv(pr, x, y):
            return example_losses(functional_call(module, pr, (x,)), y).mean()

        def step(xb, yb, xv, yv) -> int:
            pr = {n: p.detach() for n, p in zip(names, params, strict=True)}
            G = vmap(grad(li), in_dims=(None, 0, 0))(pr, xb, yb)
            gv = grad(lv)(pr, xv, yv)
            s = sum((G[n].reshape(xb.shape[0], -1) @ gv[n].reshape(-1)) for n in names)
            w = (s >= 0).to(params[0].dtype)
            for n, p in zip(names, params, strict=True):
                p.grad = torch.einsum("b,b...->...", w, G[n]) / xb.shape[0]
            sgd()
            return int(sum(G[n].numel() * G[n].element_size() for n in names))
    elif method in CURATED:
        self_inf = method.endswith("_self")

        def step(xb, yb, xv, yv) -> int:
            for p in params:
                p.grad = None
            _, _, _, nbytes = curated_step(module, method, xb, yb, None if self_inf else (xv, yv))
            sgd()
            return nbytes
    else:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    return step


def _data(model_name: str, batch: int, target: int, device: str, dtype: torch.dtype, k: int = 8) -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    shape = (1, 28, 28) if model_name.startswith("cnn") else (784,)
    if model_name in TRANSFORMERS:
        sz = TRANSFORMERS[model_name]
        V, T = sz["vocab_size"], sz["context"]

        def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randint(2, V, (m, T), generator=g)
            y = (torch.randint(0, V, (m, T), generator=g) if model_name == "gpt"
                 else torch.randint(0, sz["n_classes"], (m,), generator=g))
            return x.to(device), y.to(device)

        return [(*draw(batch), *draw(target)) for _ in range(k)]

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.rand(m, *shape, generator=g, dtype=dtype).to(device),
                torch.randint(0, 10, (m,), generator=g).to(device))

    return [(*draw(batch), *draw(target)) for _ in range(k)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(model_name: str, methods: list[str], *, batch: int, target: int, steps: int, warmup: int,
                     device: str, dtype: torch.dtype) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-step wall times and thread CPU times (s) of every method, interleaved step by step (round
    robin) in one process, so that a drifting machine load hits all methods alike. Each method trains
    its own copy of the model."""
    data = _data(model_name, batch, target, device, dtype)
    fns = {m: make_step(m, build(model_name, dtype).to(device)) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    for k in range(warmup + steps):
        for m in methods:
            _sync(device)
            t0, c0 = time.perf_counter(), time.thread_time()
            fns[m](*data[k % len(data)])
            _sync(device)
            if k >= warmup:
                times[m].append(time.perf_counter() - t0)
                cpu[m].append(time.thread_time() - c0)
    return times, cpu


def _hwm_kb() -> float:
    """Peak RSS of this process in KiB: VmHWM from /proc (ru_maxrss can carry the parent's peak over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_memory(model_name: str, method: str, *, batch: int, target: int, steps: int, device: str,
                dtype: torch.dtype) -> dict:
    """Peak memory of ``method`` over that of a plain step (meant to run in its own process): rise of the
    process's peak RSS (CPU) or of ``torch.cuda.max_memory_allocated`` (CUDA); plus the scoring bytes."""
    module = build(model_name, dtype).to(device)
    data = _data(model_name, batch, target, device, dtype)
    plain = make_step("plain", module)
    for k in range(3):
        plain(*data[k % len(data)])
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated()
    else:
        base = _hwm_kb()
    step = make_step(method, module)
    nbytes = 0
    for k in range(steps):
        nbytes = step(*data[k % len(data)])
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mb = (_hwm_kb() - base) / 1024.0
    return {"extra_peak_mb": peak_mb, "scoring_mb": nbytes / 2**20,
            "n_params": sum(p.numel() for p in module.parameters())}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + EXTRA)
    ap.add_argument("--no-memory", action="store_true", help="skip the per-method peak-memory subprocesses")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--target", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--single", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.single:
        print(json.dumps(peak_memory(*args.single, batch=args.batch, target=args.target, steps=5,
                                     device=args.device, dtype=dtype)))
        return []
    rows = []
    base_cmd = [sys.executable, __file__, "--batch", str(args.batch), "--target", str(args.target),
                "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for model_name in args.models:
        load0 = os.getloadavg()[0]
        times, cpu = time_interleaved(model_name, args.methods, batch=args.batch, target=args.target,
                                      steps=args.steps, warmup=args.warmup, device=args.device, dtype=dtype)
        load1 = os.getloadavg()[0]
        med = {m: statistics.median(t) for m, t in times.items()}
        cmed = {m: statistics.median(t) for m, t in cpu.items()}
        for method in args.methods:
            if args.no_memory:
                mem = {}
            else:
                out = subprocess.run([*base_cmd, "--single", model_name, method], capture_output=True, text=True,
                                     env=env, check=True)
                mem = json.loads(out.stdout.strip().splitlines()[-1])
            r = {"model": model_name, "method": method, "step_ms_median": 1e3 * med[method],
                 "step_ms_q25": 1e3 * statistics.quantiles(times[method], n=4)[0],
                 "step_ms_q75": 1e3 * statistics.quantiles(times[method], n=4)[2],
                 "step_cpu_ms_median": 1e3 * cmed[method], **mem,
                 "batch": args.batch, "target": args.target, "device": args.device, "dtype": args.dtype,
                 "threads": args.threads, "steps": args.steps, "loadavg_start": load0, "loadavg_end": load1}
            for ref in ("plain", "plain_fwd", "plain_cat"):
                if ref in med:
                    r[f"time_ratio_vs_{ref}"] = med[method] / med[ref]
                    r[f"cpu_ratio_vs_{ref}"] = cmed[method] / cmed[ref]
            rows.append(r)
            log.info("%-20s %-15s %9.3f ms  x%5.2f  cpu %9.3f ms  x%5.2f  +%6.1f MB peak  scoring %.2f MB",
                     model_name, method, r["step_ms_median"], r.get("time_ratio_vs_plain", float("nan")),
                     r["step_cpu_ms_median"], r.get("cpu_ratio_vs_plain", float("nan")),
                     r.get("extra_peak_mb", float("nan")), r.get("scoring_mb", float("nan")))
    if args.out is not None:
        from influence.io import save_json

        save_json(args.out, rows, sort_keys=False)
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
