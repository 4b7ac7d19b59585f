"""DVEmb (data value embedding) against a naive unrolled product of the K_t and against dattri's DVEmbAttributor."""

import numpy as np
import pytest
import torch

from influence.autodiff import per_sample_grads
from influence.data import as_tensors
from influence.estimators.dvemb import dvemb
from influence.models import logistic_regression
from influence.train import Schedule, train


def naive(traj, data, target, epoch=None):
    """Σ_{t ∋ j} η'_t ∇L(θ_T)ᵀ K_t ∇f_j(θ_t) with every K_t = Π_{k>t} (I − η_k H̃_k) formed as a p × p matrix."""
    X, y = as_tensors(data, torch.float64)
    Xt, yt = as_tensors(target, torch.float64)
    model, l2, T = traj.model, traj.l2, traj.n_steps
    p = model.n_params
    gL = torch.func.grad(lambda th: model.loss(th, Xt, yt))(traj.thetas[T])
    H = []
    for t, S in enumerate(traj.batches()):
        G = per_sample_grads(model, traj.thetas[t], X[S], y[S])
        H.append(G.T @ G / len(S) + l2 * torch.eye(p, dtype=torch.float64))
    out = np.zeros(len(y))
    spe = traj.schedule.steps_per_epoch
    for t, S in enumerate(traj.batches()):
        if epoch is not None and t // spe != epoch % traj.schedule.epochs:
            continue
        K = torch.eye(p, dtype=torch.float64)
        for k in range(t + 1, T):
            K = (torch.eye(p, dtype=torch.float64) - traj.lrs()[k] * H[k]) @ K
        Gf = per_sample_grads(model, traj.thetas[t], X[S], y[S], l2=l2)
        np.add.at(out, S, (traj.lrs()[t] / len(S) * (Gf @ (K.T @ gL))).numpy())
    return out


@pytest.mark.parametrize("epoch", [None, -1, 0])
def test_dvemb_equals_the_naive_unrolled_product(tiny_logreg_run, epoch):
    traj, data, target = tiny_logreg_run
    ours, ref = dvemb(traj, data, target, epoch=epoch), naive(traj, data, target, epoch)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_dvemb_on_an_mlp_equals_the_naive_product(tiny_mlp_run):
    traj, data, target = tiny_mlp_run
    ref = naive(traj, data, target)
    np.testing.assert_allclose(dvemb(traj, data, target), ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())


def test_single_epoch_values_sum_to_the_all_epoch_value(tiny_logreg_run):
    traj, data, target = tiny_logreg_run
    per_epoch = sum(dvemb(traj, data, target, epoch=e) for e in range(traj.schedule.epochs))
    np.testing.assert_allclose(per_epoch, dvemb(traj, data, target), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="epoch"):
        dvemb(traj, data, target, epoch=traj.schedule.epochs)


def test_dvemb_equals_dattris_embeddings_where_the_definitions_coincide():
    """Plain SGD without L2 (DVEmb's setting): dattri's DVEmbAttributor fed the same per-step parameters."""
    pytest.importorskip("dattri", reason="dattri is a [peers] extra")
    from dattri.algorithm.dvemb import DVEmbAttributor
    from dattri.task import AttributionTask

    g = torch.Generator().manual_seed(0)
    X = torch.randn(36, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (36,), generator=g)
    Xt, yt = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
    model = logistic_regression(4, 3)
    sched = Schedule(36, batch_size=9, epochs=3, lr=0.3, seed=1)
    traj = train(model, model.init(0) + 0.1, (X, y), sched)
    module = model.to_module(traj.thetas[0])

    def f(params, data):
        x, label = data
        z = torch.func.functional_call(module, params, (x,))
        return torch.nn.functional.cross_entropy(z, label)

    task = AttributionTask(loss_func=f, model=module,
                           checkpoints={k: v.clone() for k, v in module.state_dict().items()})
    att = DVEmbAttributor(task)
    for t, S in enumerate(traj.batches()):
        torch.nn.utils.vector_to_parameters(traj.thetas[t], module.parameters())  # dattri reads the live model
        idx = torch.as_tensor(S)
        att.cache_gradients(t // sched.steps_per_epoch, (X[idx], y[idx]), idx, float(traj.lrs()[t]))
    att.cache()
    torch.nn.utils.vector_to_parameters(traj.thetas[-1], module.parameters())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xt, yt), batch_size=10)
    theirs_all = att.attribute(loader).detach().double().numpy().mean(1)
    theirs_last = att.attribute(loader, epoch=2).detach().double().numpy().mean(1)
    np.testing.assert_allclose(dvemb(traj, (X, y), (Xt, yt)), theirs_all, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dvemb(traj, (X, y), (Xt, yt), epoch=-1), theirs_last, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("epoch", [None, -1])
def test_the_embeddings_dotted_with_the_target_gradient_give_the_scores(tiny_mlp_run, epoch):
    """Forward form (embeddings of a subset) vs the backward adjoint, all- and single-epoch."""
    from influence.estimators.dvemb import dvemb_params

    traj, data, target = tiny_mlp_run
    idx = np.array([7, 0, 33, 12])
    E = dvemb_params(traj, data, idx, epoch=epoch)
    assert E.shape == (len(idx), traj.model.n_params)
    Xt, yt = as_tensors(target, torch.float64)
    gL = torch.func.grad(lambda th: traj.model.loss(th, Xt, yt))(traj.thetas[-1]).numpy()
    np.testing.assert_allclose(E @ gL, dvemb(traj, data, target, epoch=epoch)[idx], rtol=1e-10, atol=1e-13)


def test_projected_dvemb_is_exact_with_an_orthogonal_full_rank_projection(tiny_logreg_run, monkeypatch):
    """With P orthogonal (k = p) the projected recursion is a change of basis: the exact scores come back;
    with a small random k it is an approximation (correlated, not equal)."""
    import influence.estimators.dvemb as mod

    traj, data, target = tiny_logreg_run
    p = traj.model.n_params
    Q, _ = torch.linalg.qr(torch.randn(p, p, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    monkeypatch.setattr(mod, "_projection", lambda p_, k, seed, dtype: Q if k else None)
    np.testing.assert_allclose(mod.dvemb(traj, data, target, proj_dim=p), dvemb(traj, data, target),
                               rtol=1e-9, atol=1e-12)
    monkeypatch.undo()
    exact = dvemb(traj, data, target)
    approx = mod.dvemb(traj, data, target, proj_dim=3, proj_seed=1)
    assert not np.allclose(approx, exact)
    with pytest.raises(ValueError, match="proj_dim"):
        mod.dvemb(traj, data, target, proj_dim=0)
