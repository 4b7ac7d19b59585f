"""Benchmark: your own loop recorded, and trajectory LOO replaying it, on any device.

Two user-style runs (the cases of ``tests/test_record.py``, larger):

``cnn``  a CNN (conv 1→16 → GELU → pool → conv 16→32 → GELU → pool → LayerNorm → linear), 28×28 inputs, 10 classes,
         ``torch.optim.SGD`` with lr 0.01, momentum 0.9 and weight decay 1e-4, batch 32;
``gpt``  TinyGPT (vocabulary 67, context 32, width 32, 2 layers), ``torch.optim.AdamW``, batch 16.

Per case: the median time of a plain training step and of the same step inside a :class:`influence.record.Recorder`
(every step's θ kept), the replay check, and trajectory LOO of ``--points`` removed samples, vectorised
(``chunk`` = all points) and one replay at a time (``chunk`` = 1), as seconds per removed sample. Everything runs on
``--device`` (``cuda`` where available) in float32 for the loop and float64 for the LOO replays (the library's
ground-truth dtype); peak memory is the process's peak RSS (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA).

    python experiments/benchmarks/bench_recorded.py --out results/benchmarks/recorded.csv [--device cuda]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from influence.io import atomic_write
from influence.loo import trajectory_loo
from influence.models import TinyGPT
from influence.record import Recorder

log = logging.getLogger("bench_recorded")


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.GELU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.GELU(), nn.MaxPool2d(2), nn.Flatten(), nn.LayerNorm(32 * 49), nn.Linear(32 * 49, 10))


def _case(name: str, n: int, device: str):
    g = torch.Generator().manual_seed(0)
    if name == "cnn":
        X, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
        Xt, yt = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
        torch.manual_seed(0)
        net = _cnn()
        return net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4), 32, (X, y), (Xt, yt)
    S, St = torch.randint(0, 67, (n, 33), generator=g), torch.randint(0, 67, (64, 33), generator=g)
    torch.manual_seed(0)
    net = TinyGPT(67, context=32, d_model=32, n_layers=2, n_heads=4)
    return net, torch.optim.AdamW(net.parameters(), lr=1e-3), 16, (S[:, :-1], S[:, 1:]), (St[:, :-1], St[:, 1:])


def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = net(x)
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_step(net: nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                device: str, rec: Recorder | None = None) -> float:
    """Seconds of one training step on the batch ``idx`` (declared to ``rec`` first when recording)."""
    _sync(device)
    t0 = time.perf_counter()
    if rec is not None:
        rec.batch(idx)
    loss = _loss(net, X[idx], y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    _sync(device)
    return time.perf_counter() - t0


def run_case(name: str, n: int, epochs: int, points: int, device: str) -> dict:
    net, opt, b, (X, y), target = _case(name, n, device)
    net.to(device)
    X, y = X.to(device), y.to(device)
    target = tuple(t.to(device) for t in target)
    gen = torch.Generator().manual_seed(1)
    order = [idx for _ in range(epochs) for idx in torch.randperm(n, generator=gen).split(b)]
    probe, probe_opt = _case(name, n, device)[:2]  # a plain run on a separate copy: the recorded run starts fresh
    probe.to(device)
    plain = [_timed_step(probe, probe_opt, X, y, idx, device) for idx in order[: min(len(order), 20)]]
    with Recorder(net, opt, n=n) as rec:
        recorded = [_timed_step(net, opt, X, y, idx, device, rec) for idx in order]
    t0 = time.perf_counter()
    run = rec.trajectory((X, y))
    check_s = time.perf_counter() - t0
    pts = list(range(points))
    out = {"case": name, "device": str(device), "n": n, "steps": len(order), "params": run.model.n_params,
           "step_plain_ms": 1e3 * statistics.median(plain), "step_recorded_ms": 1e3 * statistics.median(recorded),
           "replay_check_s": check_s}
    for label, chunk in (("vectorised", points), ("loop", 1)):
        _sync(device)
        t0 = time.perf_counter()
        res = trajectory_loo(run, (X, y), target, indices=pts, chunk=chunk)
        _sync(device)
        out[f"loo_{label}_s_per_sample"] = (time.perf_counter() - t0) / points
        out[f"loo_{label}_mean_abs_change"] = float(abs(res.loss_change).mean())
    out["loo_speedup"] = out["loo_loop_s_per_sample"] / out["loo_vectorised_s_per_sample"]
    out["peak_mb"] = _peak_mb(device)
    log.info("%s", out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/benchmarks/recorded.csv")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", nargs="*", default=["cnn", "gpt"])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    rows = [run_case(c, a.n, a.epochs, a.points, a.device) for c in a.cases]
    df = pd.DataFrame(rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, df.to_csv(index=False).encode())
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
