"""Survival code against references computed independently of ctsurv (issue 12, items 16 and 17).

* CoxPH: the coefficients of a penalised Efron partial likelihood written out here from its
  textbook definition and maximised with scipy (no scikit-survival involved).
* ``cox_nll``: torchsurv's ``neg_partial_log_likelihood``; with tied event times torchsurv's
  ``reduction="mean"`` averages over *distinct event times*, ctsurv over *events*.
* Dispersion: identities that follow from the definition, not a re-run of the code's loop.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ctsurv.survival.losses import cox_nll
from ctsurv.survival.models import CoxPH
from ctsurv.survival.regularizers import dispersion_continuous, dispersion_discrete


def efron_loglik(beta: np.ndarray, x: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Efron's log partial likelihood, term by term as in Efron (1977)."""
    eta = x @ beta
    total = 0.0
    for t in np.unique(time[event]):
        dead = (time == t) & event
        at_risk = time >= t
        d = int(dead.sum())
        risk_sum = np.exp(eta[at_risk]).sum()
        dead_sum = np.exp(eta[dead]).sum()
        total += eta[dead].sum() - sum(math.log(risk_sum - l / d * dead_sum) for l in range(d))
    return total


def tied_table(n=80, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    t_event = rng.exponential(np.exp(-(0.9 * x[:, 0] - 0.6 * x[:, 1])) * 10)
    t_cens = rng.uniform(2, 25, size=n)
    time = np.ceil(np.minimum(t_event, t_cens))  # whole days: many tied event times
    event = t_event <= t_cens
    return x, time, event


@pytest.mark.parametrize("penalizer", [0.0, 2.0])
def test_coxph_matches_an_independent_efron_fit(penalizer):
    from scipy.optimize import minimize

    x, time, event = tied_table()
    assert len(np.unique(time[event])) < event.sum()  # ties present, so Efron matters
    objective = lambda b: -efron_loglik(b, x, time, event) + penalizer / 2 * float(b @ b)  # noqa: E731
    ref = minimize(objective, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    ours = CoxPH(penalizer=penalizer).fit(x, time, event.astype(int))
    np.testing.assert_allclose(ours.model.coef_, ref, atol=1e-5)
    assert abs(ref[0] - 0.9) < 0.5 and abs(ref[1] + 0.6) < 0.5  # and it found the simulated effects


def _torchsurv(h, e, t, reduction, ties="efron"):
    from torchsurv.loss.cox import neg_partial_log_likelihood

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return neg_partial_log_likelihood(h, e, t, ties_method=ties, reduction=reduction).item()


def test_cox_nll_equals_torchsurv_mean_without_ties():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, generator=g, dtype=torch.float64)
    t = torch.rand(50, generator=g, dtype=torch.float64) * 100 + 1  # continuous: no ties
    e = torch.rand(50, generator=g) < 0.6
    assert cox_nll(h, e, t).item() == pytest.approx(_torchsurv(h, e, t, "mean"), rel=1e-6)  # torchsurv computes in float32


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_nll_averages_over_events_where_torchsurv_averages_over_event_times(ties):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(60, generator=g, dtype=torch.float64) * 2
    t = torch.randint(1, 8, (60,), generator=g).double()  # 7 distinct times for ~36 events
    e = torch.rand(60, generator=g) < 0.6
    n_events, n_times = int(e.sum()), len(torch.unique(t[e]))
    total = _torchsurv(h, e, t, "sum", ties)
    assert cox_nll(h, e, t, ties=ties).item() == pytest.approx(total / n_events, rel=1e-6)
    # torchsurv's "mean" is the sum over the distinct event times' terms divided by their number.
    assert _torchsurv(h, e, t, "mean", ties) == pytest.approx(total / n_times, rel=1e-6)
    assert n_times < n_events
    doc = " ".join(cox_nll.__doc__.split())
    assert 'reduction="mean"' not in doc or "without tied event times" in doc


def test_dispersion_continuous_at_equal_times_is_twice_the_total_variance():
    # With equal times every pair weighs 1, and sum_{i != j} |z_i - z_j|^2 = 2 n sum_i |z_i - mean|^2.
    z = torch.tensor([[0.0, 1.0], [2.0, 5.0], [4.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    e = torch.ones(4)
    expected = 2 * float(z.var(dim=0, unbiased=True).sum())
    assert dispersion_continuous(z, torch.full((4,), 7.0), e, scale=1.0).item() == pytest.approx(expected, rel=1e-12)


def test_dispersion_continuous_counts_close_times_and_uncensored_only():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0], [50.0, 50.0], [-9.0, 9.0]], dtype=torch.float64)
    t = torch.tensor([10.0, 10.0, 10.0, 1e4])  # patient 3 is 1e4 days away: weight exp(-huge) = 0
    e = torch.tensor([1, 1, 0, 1])  # patient 2 is censored: left out whatever its latent
    assert dispersion_continuous(z, t, e, scale=1.0).item() == pytest.approx(25.0, rel=1e-12)  # |(3, 4)|^2


def test_dispersion_discrete_from_the_angles_between_bin_means():
    tau = 0.5
    one_bin_each = torch.tensor([0, 1])
    cases = {  # two bins: log mean exp(cos / tau) over the single other bin = cos / tau
        "same direction": ([[1.0, 1.0], [3.0, 3.0]], 1 / tau),
        "orthogonal": ([[2.0, 0.0], [0.0, 5.0]], 0.0),
        "opposite": ([[1.0, 0.0], [-4.0, 0.0]], -1 / tau),
    }
    for name, (z, expected) in cases.items():
        got = dispersion_discrete(torch.tensor(z, dtype=torch.float64), one_bin_each, torch.ones(2), tau=tau).item()
        assert got == pytest.approx(expected, abs=1e-12), name
    # A censored patient does not move its bin's mean: bin 1 stays orthogonal to bin 0.
    z = torch.tensor([[2.0, 0.0], [0.0, 5.0], [100.0, 0.0]], dtype=torch.float64)
    got = dispersion_discrete(z, torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0]), tau=tau).item()
    assert got == pytest.approx(0.0, abs=1e-12)
