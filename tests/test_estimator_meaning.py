"""The meaning contract: on a tiny convex run, every estimator's scores mean what it says they mean.

test_estimator_contract.py checks hygiene (shapes, determinism, errors); this file checks meaning, for every
registered estimator, on one seeded binary L2-logistic-regression run (60 samples, 8 planted flipped labels,
4 epochs of SGD, float64) whose trajectory leave-one-out is computed exactly (:func:`trajectory_loo`):

1. a **loss-change estimator** (scores estimate L(θ^{-j}) − L(θ) on the target set, the package's sign) must
   rank the samples like trajectory LOO: Spearman(scores, LOO) > RHO_MIN;
2. **every** estimator's suspicion (:func:`estimators.suspicion`, "higher = more suspicious" by its declared
   end) must rank the planted mislabels above chance: AUROC > AUROC_MIN.

Both checks live in one plain function, :func:`meaning_failures`, and negative controls run through it: a
sign-flipped estimator, an all-zero estimator and ``random`` (the chance control) must be reported as failing.

Thresholds (measured on this run; the planted flips are ones the ground truth can find: AUROC(−LOO) = 0.99):
* RHO_MIN = 0.3: under chance, Spearman over n = 60 has sd 1/√59 ≈ 0.13, so 0.3 is 2.3 sd (one-sided p ≈ 0.01);
  the passing loss-change estimators measure ≥ 0.47 here (Ghost / LAI, the weakest), so a sign flip (≤ −0.47)
  cannot pass.
* AUROC_MIN = 0.7: under chance, AUROC with 8 of 60 flagged has sd √(61 / (12·8·52)) ≈ 0.11, so 0.7 is 1.8 sd
  (p ≈ 0.04); the passing estimators measure ≥ 0.78 here (DVEmb, the weakest).
The run is fixed, not drawn: over 12 data seeds of this setting the medians are Spearman ≥ 0.64 and AUROC ≥ 0.88
for the passing estimators, but on the worst seeds the flips fall near the boundary and even −LOO reaches 0.61.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_problem
from test_estimator_contract import HPARAMS

from influence import estimators
from influence.data import Dataset
from influence.loo import trajectory_loo
from influence.metrics import auroc, spearman
from influence.models import logistic_regression
from influence.train import Schedule, train

N, N_FLIPPED, D = 60, 8, 4
RHO_MIN = 0.3
AUROC_MIN = 0.7

LOSS_CHANGE, SUSPICION, CHANCE = "loss-change", "suspicion", "chance"
# Every registered estimator, placed by what its docstring says the scores estimate. A new estimator must be
# placed here (test_every_registered_estimator_is_classified). LOSS_CHANGE gets both checks, SUSPICION the
# detection check; CHANCE is the control that must fail both.
KIND: dict[str, tuple[str, str]] = {
    "sgd_ie": (LOSS_CHANGE, "SGD-IE: the recorded run unrolled to first order, estimates L(θ^{-j}_T) − L(θ_T)"),
    "metagradient": (LOSS_CHANGE, "MAGIC's exact metagradient −∂L(θ_T(w))/∂w_j (= SGD-IE on plain SGD), removal sign"),
    "acc_sgd_ie": (LOSS_CHANGE, "ACC-SGD-IE: SGD-IE with j's own curvature removed at its steps, same quantity"),
    "diffin": (LOSS_CHANGE, "Diff-In full form: first- plus second-order telescoped LOO target-loss change"),
    "diffin_paper": (LOSS_CHANGE, "Diff-In as published: the second-order term of that change, in the package sign"),
    "dvemb": (LOSS_CHANGE, "DVEmb: ⟨∇L(θ_T), K_t ∇f_j⟩ over j's steps, first-order all-epoch removal change"),
    "ghost": (LOSS_CHANGE, "in-run Ghost: first-order removal change of the target loss over j's steps"),
    "lai": (LOSS_CHANGE, "in-run LAI: Ghost with logit gradients for layer-output gradients (exact on logreg)"),
    "lai_last_layer": (LOSS_CHANGE, "LAI on the last layer only (the whole model for logistic regression)"),
    "tracin": (LOSS_CHANGE, "TracIn-CP: Σ_c η_c ⟨∇ℓ_j, ∇L⟩ at epoch checkpoints, first-order removal change"),
    "grad_dot": (LOSS_CHANGE, "Grad-Dot: ⟨∇ℓ_j, ∇L⟩ at θ_T, TracIn at one checkpoint without η, same sign"),
    "influence_function": (LOSS_CHANGE, "(1/n) ∇Lᵀ H⁻¹ ∇f_j at θ_T: LOO-to-optimum change, approximates the run's"),
    "cg_score": (SUSPICION, "complexity gap, training-free: high = hard to fit given the others"),
    "loss": (SUSPICION, "final training loss: high = not fitted"),
    "el2n": (SUSPICION, "‖p − onehot(y)‖ at an early epoch: high = hard"),
    "grand": (SUSPICION, "per-sample gradient norm at an early epoch: high = hard"),
    "forgetting": (SUSPICION, "forgetting events (never learned = K): high = unstable"),
    "self_influence": (SUSPICION, "TracIn self-influence Σ η‖∇ℓ_j‖²: rise of j's own loss, high = memorised"),
    "diffin_self": (SUSPICION, "Diff-In self-influence I(z, z): rise of z's own loss on removal, declared high"),
    "diffin_self_negated": (SUSPICION, "−diffin_self: the paper form's low end, declared high (supplementary)"),
    "diffin_paper_negated": (SUSPICION, "−diffin_paper: the other sign of Eq. 9, not the package's; declared high"),
    "random": (CHANCE, "U(0, 1), seeded: the chance control, must fail both checks"),
}
# Measured failures on this run (strict: if one starts passing, the mark must go). Not hidden, not fixed here.
KNOWN_FAILURES: dict[str, str] = {
    "diffin_paper": "Spearman with LOO −0.26, AUROC 0.00: the second-order term alone opposes the first-order "
    "term (documented in diffin's Notes, 'Sign'), so it is anti-correlated with LOO",
    "diffin_self": "AUROC 0.00: the paper form's second-order self term puts flipped labels at its low end "
    "(documented in diffin_self), the opposite of the declared 'high'",
    "diffin_paper_negated": "AUROC 0.00: declared 'high', but as −(a loss-change term) its high end holds the "
    "most helpful samples; the flipped labels sit at its low end",
}


def meaning_failures(name: str, scores, loo, mislabeled, hparams=None) -> list[str]:
    """What estimator ``name``'s ``scores`` fail of the meaning contract (empty = passes), judged by the
    kind in :data:`KIND` and the suspicious end ``name`` declares. Any scores can be passed under a name:
    the negative controls are sign-flipped / all-zero scores judged as the estimator they impersonate."""
    s = np.asarray(scores, dtype=np.float64)
    kind = KIND[name][0]
    failures = []
    if kind in (LOSS_CHANGE, CHANCE):
        rho = spearman(s, loo) if np.ptp(s) > 0 else float("nan")  # constant scores: undefined, a failure
        if not rho > RHO_MIN:
            failures.append(f"{name}: Spearman with trajectory LOO {rho:+.2f}, needs > {RHO_MIN}")
    a = auroc(estimators.suspicion(name, s, hparams=hparams), mislabeled)
    if not a > AUROC_MIN:
        failures.append(f"{name}: AUROC of the planted mislabels {a:.2f}, needs > {AUROC_MIN}")
    return failures


@pytest.fixture(scope="module")
def run():
    """The tiny convex run, its trajectory LOO and every estimator's scores (computed once)."""
    (X, y), (Xt, yt) = make_problem(n=N, n_target=30, d=D, seed=0)
    flipped = np.random.default_rng(0).choice(N, N_FLIPPED, replace=False)
    y = y.clone()
    y[flipped] = 1 - y[flipped]
    mislabeled = np.zeros(N, dtype=bool)
    mislabeled[flipped] = True
    model = logistic_regression(D)
    traj = train(model, model.init(0), (X, y), Schedule(N, 10, 4, 0.3, seed=1), l2=0.01)
    train_ds, target_ds = Dataset(X.numpy(), y.numpy(), 2, "train"), Dataset(Xt.numpy(), yt.numpy(), 2, "target")
    loo = trajectory_loo(traj, train_ds, target_ds).loss_change
    scores = {
        name: np.asarray(estimators.get(name)(traj, train_ds, target_ds, **HPARAMS.get(name, {})), dtype=np.float64)
        for name in estimators.names()
    }
    return {"traj": traj, "train": train_ds, "target": target_ds, "loo": loo, "mislabeled": mislabeled,
            "scores": scores}


def _failures(run, name: str, scores=None) -> list[str]:
    scores = run["scores"][name] if scores is None else scores
    return meaning_failures(name, scores, run["loo"], run["mislabeled"], HPARAMS.get(name))


def test_every_registered_estimator_is_classified():
    assert set(KIND) == set(estimators.names()), "place every estimator in KIND (and no stale names)"
    assert set(KNOWN_FAILURES) <= set(KIND)
    assert all(len(reason) > 20 for _, reason in KIND.values())


@pytest.mark.parametrize("name", sorted(KIND))
def test_the_classification_agrees_with_the_declared_suspicious_end(name):
    # a loss-change estimate flags its most negative (most harmful) end; the others their high end
    assert estimators.suspicious(name, HPARAMS.get(name)) == ("low" if KIND[name][0] == LOSS_CHANGE else "high")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[name]))
    if name in KNOWN_FAILURES else name
    for name in sorted(KIND) if KIND[name][0] != CHANCE
])
def test_scores_mean_what_the_estimator_says(name, run):
    assert _failures(run, name) == []


def test_the_ground_truth_passes_so_the_run_can_be_passed(run):
    assert _failures(run, "sgd_ie", run["loo"]) == []  # Spearman 1, AUROC(−LOO) 0.99


@pytest.mark.parametrize("name", ["tracin", "sgd_ie"])
def test_a_sign_flipped_estimator_fails(name, run):
    assert _failures(run, name) == []
    failures = _failures(run, name, -run["scores"][name])
    assert len(failures) == 2 and "Spearman" in failures[0] and "AUROC" in failures[1], failures


@pytest.mark.parametrize("name", ["sgd_ie", "loss"])
def test_an_all_zero_estimator_fails(name, run):
    failures = _failures(run, name, np.zeros(N))
    expected = ["Spearman", "AUROC"] if KIND[name][0] == LOSS_CHANGE else ["AUROC"]
    assert [next(w for w in ("Spearman", "AUROC") if w in f) for f in failures] == expected, failures


def test_random_the_chance_control_fails_both_checks(run):
    failures = _failures(run, "random")
    assert len(failures) == 2 and "Spearman" in failures[0] and "AUROC" in failures[1], failures
    # and judged as a loss-change estimator (its −scores as suspicion) it fails too
    assert len(_failures(run, "tracin", run["scores"]["random"])) == 2


@pytest.mark.parametrize("name", estimators.names())
def test_a_traj_that_is_not_a_recorded_run_is_an_error_naming_traj(name, run):
    fn = estimators.get(name)
    with pytest.raises((TypeError, ValueError), match="traj"):
        fn(torch.nn.Linear(D, 1).double(), run["train"], run["target"], **HPARAMS.get(name, {}))
