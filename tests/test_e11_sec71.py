"""E11 (the ACC-SGD-IE authors' Sec. 7.1 protocol): our replay of their batch order and decayed step sizes against an
independent numpy loop of their train.py, their init, data cleaning, split and metric definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from influence.models import logistic_regression, mlp
from influence.train import Schedule, train
from replication.tasks.e11_sec71 import (
    jaccard_ends,
    sec71_agreement,
    sec71_init,
    sec71_schedule,
    sec71_splits,
    sec71_train,
)


def authors_sgd_loop(X, y, theta0, *, hidden, lr, decay, epochs, batch_size, alpha, skip=-1):
    """train.py's loop in numpy, float64: np.random.seed(epoch); np.array_split(permutation(n), ceil(n/b));
    loss = mean over the batch without `skip` of the logistic loss + (α/2)‖θ‖², gradient times |S \\ skip|/b;
    after every step c = 1, 2, …: lr *= sqrt(c/(c+1)) when decaying. Returns (θ_T, [(idx, lr) per step])."""
    n, d = X.shape
    widths = [d, *hidden, 1]
    shapes = []
    for k in range(len(widths) - 1):
        shapes += [(widths[k + 1], widths[k]), (widths[k + 1],)]
    sizes = [int(np.prod(s)) for s in shapes]
    theta = theta0.copy()
    steps = int(np.ceil(n / batch_size))
    info, lr_n, c = [], lr, 0

    def unpack(th):
        out, o = [], 0
        for s, m in zip(shapes, sizes, strict=True):
            out.append(th[o:o + m].reshape(s))
            o += m
        return out

    for epoch in range(epochs):
        np.random.seed(epoch)
        idx_list = np.array_split(np.random.permutation(n), steps)
        for i in range(steps):
            info.append((idx_list[i], lr_n))
            c += 1
            idx = np.setdiff1d(idx_list[i], [skip])
            b = idx_list[i].size
            P = unpack(theta)
            hs, masks, h = [X[idx]], [], X[idx]
            L = len(widths) - 1
            for k in range(L):
                z = h @ P[2 * k].T + P[2 * k + 1]
                if k < L - 1:
                    masks.append(z > 0)
                    h = z * masks[-1]
                    hs.append(h)
            g_out = (1 / (1 + np.exp(-z[:, 0])) - y[idx])[:, None] / idx.size
            grads = [None] * (2 * L)
            delta = g_out
            for k in range(L - 1, -1, -1):
                grads[2 * k] = delta.T @ hs[k]
                grads[2 * k + 1] = delta.sum(0)
                if k:
                    delta = (delta @ P[2 * k]) * masks[k - 1]
            g = np.concatenate([q.ravel() for q in grads]) + alpha * theta
            theta = theta - lr_n * g * (idx.size / b)
            if decay:
                lr_n *= np.sqrt(c / (c + 1))
    return theta, info


@pytest.mark.parametrize("n,b,hidden,decay,alpha", [(23, 5, (4, 3), True, 0.0), (20, 5, (), False, 0.03)])
def test_replay_of_their_batch_order_and_decayed_rates_matches_their_loop_step_by_step(n, b, hidden, decay, alpha):
    g = np.random.default_rng(0)
    X, y = g.normal(size=(n, 3)), (g.random(n) < 0.4).astype(np.int64)
    epochs = 3
    sched = sec71_schedule(n, b, epochs, 0.1, decay)
    model = mlp(3, hidden, 2) if hidden else logistic_regression(3)
    theta0 = sec71_init(model, 1)
    _, info = authors_sgd_loop(X, y, theta0.numpy(), hidden=hidden, lr=0.1, decay=decay, epochs=epochs,
                               batch_size=b, alpha=alpha)
    batches, lrs = sched.batches(), sched.lrs()
    assert len(batches) == len(info) == epochs * int(np.ceil(n / b))
    for t, (idx, lr) in enumerate(info):
        np.testing.assert_array_equal(batches[t], idx)
        assert abs(lrs[t] - lr) <= 1e-14 * lr
    assert len(batches[0]) >= len(batches[-1])  # np.array_split: the first parts are the larger ones
    # the whole run, and a leave-one-out replay, step for step the same parameters
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    for skip in (-1, 7):
        w = None if skip < 0 else np.where(np.arange(n) == skip, 0.0, 1.0)
        traj = train(model, theta0, (X_t, y_t), sched, l2=alpha, weights=w, record="final")
        ref, _ = authors_sgd_loop(X, y, theta0.numpy(), hidden=hidden, lr=0.1, decay=decay, epochs=epochs,
                                  batch_size=b, alpha=alpha, skip=skip)
        np.testing.assert_allclose(traj.final.numpy(), ref, rtol=1e-12, atol=1e-14)


def test_their_order_ignores_the_seed_and_differs_from_ours():
    a, b = Schedule(400, 100, 2, 0.1, seed=0, order="np_seed_epoch"), Schedule(400, 100, 2, 0.1, seed=5,
                                                                              order="np_seed_epoch")
    assert all(np.array_equal(p, q) for p, q in zip(a.batches(), b.batches(), strict=True))
    assert not np.array_equal(Schedule(400, 100, 2, 0.1).batches()[0], a.batches()[0])
    assert a.with_epochs(3).order == "np_seed_epoch"
    with pytest.raises(ValueError, match="order"):
        Schedule(4, 2, 1, 0.1, order="bogus")


def test_init_is_pytorch_default_after_manual_seed():
    model = mlp(5, (8, 8), 2)
    torch.manual_seed(3)
    ref = [torch.nn.Linear(5, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 1)]
    theta = sec71_init(model, 3)
    P = model.unflatten(theta)
    for k, lin in enumerate(ref):
        torch.testing.assert_close(P[f"W{k}"], lin.weight.detach().double(), rtol=0, atol=0)
        torch.testing.assert_close(P[f"b{k}"], lin.bias.detach().double(), rtol=0, atol=0)


def test_splits_follow_train_test_split_and_flip_their_labels():
    from sklearn.model_selection import train_test_split

    g = np.random.default_rng(1)
    X, y = g.normal(size=(60, 4)) * 5 + 2, (g.random(60) < 0.3).astype(np.int64)
    sp = sec71_splits(X, y, n_train=20, n_val=20, n_test=20, seed=4, noise="label", rate=0.25)
    x_tr, _, y_tr, _ = train_test_split(X, y, train_size=20, test_size=40, random_state=4)
    np.random.seed(4)
    flip = np.random.choice(20, 5, replace=False)
    y_ref = y_tr.copy()
    y_ref[flip] = 1 - y_ref[flip]
    np.testing.assert_array_equal(sp["train"][1], y_ref)
    assert sp["noise_mask"].sum() == 5
    np.testing.assert_allclose(sp["train"][0], (x_tr - x_tr.mean(0)) / x_tr.std(0), atol=1e-12)
    assert abs(sp["target"][0].mean()) > 1e-3  # scaled with the training split's statistics only


def test_jaccard_is_their_lowest_and_highest_ends():
    truth = np.arange(40.0)
    est = truth.copy()
    est[[0, 39]] = est[[20, 21]]
    est[20], est[21] = 0.0, 39.0  # swap two samples from each end into the middle
    # k = 4: ends {0, 1, 38, 39} vs {20, 1, 38, 21}: 2 shared of 6
    assert jaccard_ends(est, truth, 10) == pytest.approx(2 / 6)
    m = sec71_agreement(truth * 2, truth)
    assert m["kendall"] == pytest.approx(1.0) and m["jaccard10"] == 1.0 and m["rmse"] == pytest.approx(
        np.sqrt(np.mean(truth**2)))


def test_sec71_train_uses_their_order_decay_and_no_l2_for_the_dnn():
    g = np.random.default_rng(2)
    X = g.normal(size=(100, 6))
    y = (X[:, 0] + 0.5 * g.normal(size=100) > 0.8).astype(np.int64)
    traj = sec71_train({"hidden": [8, 8], "lr": 0.1, "decay": True, "l2": 0.0}, (X, y), 2, 0, batch_size=25)
    assert traj.l2 == 0.0 and traj.schedule.order == "np_seed_epoch" and traj.schedule.decay == "inv_sqrt"
    assert np.allclose(traj.lrs(), 0.1 / np.sqrt(np.arange(1, 9)))
