"""Losses and regularisers: hand-computed cases (ties included), torchsurv and pycox."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ctsurv.survival.heads import ResidualAdaptor, deephit_head, deepsurv_head
from ctsurv.survival.losses import cox_nll, deephit_loss, deephit_nll, deephit_ranking
from ctsurv.survival.regularizers import alignment, dispersion_continuous, dispersion_discrete

# exp(h) = 1, 2, 3, 4; times 1, 1, 2, 3; events 1, 1, 0, 1
H = torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
T = torch.tensor([1.0, 1.0, 2.0, 3.0], dtype=torch.float64)
E = torch.tensor([1, 1, 0, 1])


def test_cox_efron_hand_computed_with_ties():
    # t=1: two tied events, risk set sum 10, tied sum 3 -> log 10 + log(10 - 3/2); t=3: log 4.
    loglik = (0 + math.log(2) - math.log(10) - math.log(8.5)) + (math.log(4) - math.log(4))
    assert cox_nll(H, E, T).item() == pytest.approx(-loglik / 3, abs=1e-12)


def test_cox_breslow_hand_computed_with_ties():
    loglik = math.log(2) - 2 * math.log(10)
    assert cox_nll(H, E, T, ties="breslow").item() == pytest.approx(-loglik / 3, abs=1e-12)


def test_cox_without_ties_equals_hand_sum():
    t = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
    h = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    e = torch.tensor([1, 1, 0])
    # order 1(t=1), 2(t=2), 0(t=3); events at t=1 (risk all) and t=3 (risk {0})
    expected = -((-1.0 - math.log(math.exp(0.5) + math.exp(-1) + math.exp(2))) + 0.0) / 2
    assert cox_nll(h, e, t).item() == pytest.approx(expected, abs=1e-12)


def test_cox_batch_without_events_is_zero_not_nan():
    h = torch.randn(6, requires_grad=True)
    loss = cox_nll(h, torch.zeros(6), torch.rand(6) + 0.1)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(h.grad).all() and (h.grad == 0).all()


def test_cox_stable_for_large_log_hazards():
    h = torch.tensor([500.0, -500.0, 300.0, 0.0])
    loss = cox_nll(h, torch.tensor([1, 1, 1, 0]), torch.tensor([1.0, 1.0, 2.0, 3.0]))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("n", [8, 64, 300])
def test_cox_matches_torchsurv_on_random_inputs(ties, n):
    from torchsurv.loss.cox import neg_partial_log_likelihood

    g = torch.Generator().manual_seed(n)
    h = torch.randn(n, generator=g, dtype=torch.float64) * 2
    t = torch.randint(1, max(3, n // 4), (n,), generator=g).double()  # many ties
    e = torch.rand(n, generator=g) < 0.6
    e[0] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = neg_partial_log_likelihood(h, e, t, ties_method=ties, reduction="sum")
    assert (cox_nll(h, e, t, ties=ties) * e.sum()).item() == pytest.approx(ref.item(), rel=1e-6)


def test_cox_gradient_matches_torchsurv():
    from torchsurv.loss.cox import neg_partial_log_likelihood

    g = torch.Generator().manual_seed(1)
    h1 = torch.randn(40, generator=g, dtype=torch.float64, requires_grad=True)
    h2 = h1.detach().clone().requires_grad_(True)
    t = torch.randint(1, 10, (40,), generator=g).double()
    e = torch.rand(40, generator=g) < 0.5
    (cox_nll(h1, e, t) * e.sum()).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neg_partial_log_likelihood(h2, e, t, reduction="sum").backward()
    assert torch.allclose(h1.grad, h2.grad.double(), atol=1e-6)


def test_deephit_nll_hand_computed():
    logits = torch.zeros(3, 3, dtype=torch.float64)  # p = 1/3 per bin
    idx = torch.tensor([0, 1, 0])
    ev = torch.tensor([1.0, 0.0, 0.0])
    # event in bin 0: -log 1/3; censored in bin 1: -log p_2; censored in bin 0: -log(p_1 + p_2)
    expected = (math.log(3) + math.log(3) - math.log(2 / 3)) / 3
    assert deephit_nll(logits, idx, ev).item() == pytest.approx(expected, abs=1e-6)


def test_deephit_ranking_hand_computed():
    pmf = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]], dtype=torch.float64)
    idx, ev = torch.tensor([0, 1]), torch.tensor([1.0, 0.0])
    # only pair (0, 1): F_0(T_0) - F_1(T_0) = 0.5 - 0.2; mean over the 2 x 2 matrix
    expected = math.exp(-0.3 / 0.1) / 4
    assert deephit_ranking(torch.log(pmf), idx, ev, sigma=0.1).item() == pytest.approx(expected, rel=1e-9)


def test_deephit_ranking_tied_bin_counts_censored_partner_only():
    pmf = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7]], dtype=torch.float64)
    idx, ev = torch.tensor([0, 0, 0]), torch.tensor([1.0, 0.0, 1.0])
    # event 0 vs censored 1 (same bin) and event 2 vs censored 1; events 0 and 2 are not a pair
    expected = (math.exp(-(0.6 - 0.1) / 0.5) + math.exp(-(0.3 - 0.1) / 0.5)) / 9
    assert deephit_ranking(torch.log(pmf), idx, ev, sigma=0.5).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [5, 40, 200])
def test_deephit_terms_match_pycox(n):
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import DeepHitSingleLoss, nll_pmf, rank_loss_deephit_single

    g = torch.Generator().manual_seed(n)
    k = 7
    phi = torch.randn(n, k, generator=g) * 2
    idx = torch.randint(0, k, (n,), generator=g)
    ev = (torch.rand(n, generator=g) < 0.5).float()
    logits = torch.cat([phi, torch.zeros(n, 1)], dim=1)  # pycox pads a zero "beyond" logit
    rank = torch.tensor(pair_rank_mat(idx.numpy(), ev.numpy())).float()
    assert deephit_nll(logits, idx, ev).item() == pytest.approx(nll_pmf(phi, idx, ev).item(), rel=1e-5)
    assert deephit_ranking(logits, idx, ev, 0.1).item() == pytest.approx(
        rank_loss_deephit_single(phi, idx, ev, rank, 0.1).item(), rel=1e-5
    )
    ref = DeepHitSingleLoss(alpha=0.2, sigma=0.1)(phi, idx, ev, rank)
    assert deephit_loss(logits, idx, ev, alpha=0.2, sigma=0.1).item() == pytest.approx(ref.item(), rel=1e-5)


def test_deephit_censored_in_last_bin_is_finite():
    logits = torch.randn(2, 4, requires_grad=True)
    loss = deephit_nll(logits, torch.tensor([3, 3]), torch.tensor([0.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# Dispersion values from their definition (not a re-run of the code's loop): test_survival_references.py.


def test_dispersion_discrete_is_bounded_under_scaling():
    # Raw dot products fell as -1, -100, -10000 with the latents scaled by 1, 10, 100.
    torch.manual_seed(0)
    z = torch.randn(40, 8, dtype=torch.float64)
    idx, e, tau = torch.arange(40) % 5, torch.ones(40), 0.5
    values = [dispersion_discrete(z * scale, idx, e, tau=tau).item() for scale in (1.0, 10.0, 100.0, 1e4)]
    assert values == pytest.approx([values[0]] * 4, rel=1e-9)
    assert all(-1 / tau <= v <= 1 / tau for v in values)
    # Pushing bins apart still lowers it: opposite bin means score the minimum -1/tau.
    apart = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert dispersion_discrete(apart, torch.tensor([0, 1]), torch.ones(2), tau=tau).item() == pytest.approx(-1 / tau)
    # Gradient descent on the latents cannot run away: the loss stays above -1/tau.
    w = z.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=10.0)
    for _ in range(50):
        opt.zero_grad()
        loss = dispersion_discrete(w, idx, e, tau=tau)
        loss.backward()
        opt.step()
    assert loss.item() >= -1 / tau - 1e-9


def test_regularisers_zero_without_enough_uncensored():
    z = torch.randn(3, 4, requires_grad=True)
    e = torch.tensor([1, 0, 0])
    assert dispersion_continuous(z, torch.rand(3), e).item() == 0.0
    assert dispersion_discrete(z, torch.tensor([0, 1, 2]), e).item() == 0.0
    assert alignment(z, z.detach() * 0, torch.zeros(3)).item() == 0.0


def test_alignment_uncensored_only():
    zs = torch.tensor([[1.0, 1.0], [0.0, 0.0], [9.0, 9.0]])
    zp = torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    assert alignment(zs, zp, torch.tensor([1, 1, 0])).item() == pytest.approx((2.0 + 4.0) / 2)


def test_heads_and_adaptor_shapes():
    x = torch.randn(5, 12)
    assert deepsurv_head(12)(x).shape == (5, 1)
    assert deephit_head(12, num_cuts=10)(x).shape == (5, 11)
    adaptor = ResidualAdaptor(12, bottleneck=4)
    assert torch.equal(adaptor(x), x)  # identity at initialisation
    adaptor.up.weight.data.fill_(0.1)
    assert not torch.equal(adaptor(x), x)
