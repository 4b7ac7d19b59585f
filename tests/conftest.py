"""Shared fixtures: tiny, well-conditioned problems that run in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

from influence.models import logistic_regression, mlp
from influence.train import Schedule, train

torch.set_num_threads(1)
# one BLAS thread: small LAPACK calls slow down ~100x when BLAS threads compete for 2 cores
threadpool_limits(1)
# property tests draw the same examples on every run (reproducible CI)
settings.register_profile("repro", derandomize=True, deadline=None)
settings.load_profile("repro")


def make_problem(n: int = 60, n_target: int = 30, d: int = 5, n_classes: int = 2, seed: int = 0):
    """Gaussian blobs, float64: (X, y) train and (Xt, yt) target tensors."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, d, generator=g, dtype=torch.float64) * 1.5

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, n_classes, (m,), generator=g)
        X = centers[y] + torch.randn(m, d, generator=g, dtype=torch.float64)
        return X, y

    return draw(n), draw(n_target)


@pytest.fixture
def tiny_binary():
    return make_problem()


@pytest.fixture
def tiny_multiclass():
    return make_problem(n=48, n_target=24, d=4, n_classes=3, seed=1)


@pytest.fixture
def tiny_logreg_run(tiny_binary):
    """Binary L2-logistic regression, 60 samples, batch 16, 5 epochs, recorded at every step."""
    (X, y), target = tiny_binary
    model = logistic_regression(X.shape[1])
    sched = Schedule(n=len(y), batch_size=16, epochs=5, lr=0.5, seed=3)
    traj = train(model, model.init(0), (X, y), sched, l2=0.01)
    return traj, (X, y), target


@pytest.fixture
def tiny_mlp_run(tiny_multiclass):
    """MLP 4-6-3 on 3 blobs, batch 12, 4 epochs."""
    (X, y), target = tiny_multiclass
    model = mlp(X.shape[1], (6,), 3)
    sched = Schedule(n=len(y), batch_size=12, epochs=4, lr=0.2, seed=5)
    traj = train(model, model.init(1), (X, y), sched, l2=1e-3)
    return traj, (X, y), target


@pytest.fixture
def rng():
    return np.random.default_rng(0)
