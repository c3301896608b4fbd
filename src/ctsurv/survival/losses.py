r"""Survival losses: Cox partial likelihood (Efron ties) and DeepHit (single event).

Conventions: ``log_hz`` is a log relative hazard (higher = earlier event); ``event`` is a
bool/0-1 tensor; DeepHit ``logits`` have K+1 columns, one per time bin plus one for "beyond
the last cut", and ``idx`` is the bin of each patient from :func:`ctsurv.survival.discretize.discretize`.
"""

from __future__ import annotations

import math

import torch

# Floor of a log-probability when a censored patient sits in the last bin (no mass after it);
# pycox uses the same epsilon, so the losses agree.
_EPS = 1e-7


def cox_nll(log_hz: torch.Tensor, event: torch.Tensor, time: torch.Tensor, ties: str = "efron") -> torch.Tensor:
    r"""Negative Cox partial log-likelihood, averaged over events.

    .. math::
        -\frac{1}{D}\sum_k \Big[\sum_{i \in D_k} h_i - \sum_{l=0}^{d_k-1}
        \log\big(\sum_{j \in R_k} e^{h_j} - \tfrac{l}{d_k}\sum_{i \in D_k} e^{h_i}\big)\Big]

    with :math:`D_k` the events at the k-th distinct event time, :math:`R_k` its risk set
    (time >= t_k) and :math:`D` the number of events.  ``ties="breslow"`` drops the
    :math:`l/d_k` correction.  Averaged over events (as DeepSurv and pycox do), so a batch's
    loss does not depend on how its events tie: it equals torchsurv's
    ``neg_partial_log_likelihood(..., reduction="sum")`` divided by the number of events.
    torchsurv's ``reduction="mean"`` agrees only without tied event times: with ties it
    averages over distinct event times instead (one term per time), a larger number.
    Computed in O(n log n) and stable for large log-hazards.

    Args:
        log_hz: shape (n,) or (n, 1).
        event: shape (n,), bool or 0/1.
        time: shape (n,).
        ties: "efron" or "breslow".

    Returns:
        Scalar tensor.  A batch without events gives 0 (with a gradient of 0), never NaN.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    log_hz = log_hz.reshape(-1)
    event = event.reshape(-1).to(torch.bool)
    time = time.reshape(-1)
    n_events = int(event.sum())
    if n_events == 0:
        return log_hz.sum() * 0.0
    order = torch.argsort(time, stable=True)
    h, ev, t = log_hz[order], event[order], time[order]
    # Groups of equal times (ascending); the risk set of a group starts at its first member.
    if not bool((t[1:] == t[:-1]).any()):
        # No tied times (the usual minibatch of continuous times): every patient is its own
        # group, Efron equals Breslow, and the risk set of i is simply j >= i in time order.
        log_risk = torch.logcumsumexp(h.flip(0), 0).flip(0)
        return -(h - log_risk)[ev].sum() / n_events
    _, group, counts = torch.unique_consecutive(t, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    log_risk = torch.logcumsumexp(h.flip(0), 0).flip(0)[first]  # (groups,) log sum_{t_j >= t_k} e^h
    h_ev, g_ev = h[ev], group[ev]
    log_r = log_risk[g_ev]  # (events,)
    if ties == "breslow":
        return -(h_ev - log_r).sum() / n_events
    # Efron: l-th of d tied events subtracts l/d of the tied events' hazard from the risk set.
    d = torch.zeros_like(log_risk).index_add_(0, g_ev, torch.ones_like(h_ev))
    ratio = torch.zeros_like(log_risk).index_add_(0, g_ev, torch.exp(h_ev - log_r))  # sum_{D_k} e^h / R_k <= 1
    ev_rank = torch.cumsum(ev.to(h.dtype), 0)[ev] - 1  # events before this one (time order)
    events_before_group = (torch.cumsum(ev.to(h.dtype), 0) - ev.to(h.dtype))[first][g_ev]
    l = ev_rank - events_before_group  # 0..d_k-1 within the group
    frac = (l / d[g_ev]) * ratio[g_ev]
    return -(h_ev - log_r - torch.log1p(-frac.clamp(max=1 - 1e-12))).sum() / n_events


def deephit_nll(logits: torch.Tensor, idx: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    r"""DeepHit negative log-likelihood for one event type, averaged over patients.

    Event at bin k: :math:`-\log p_k`; censored in bin k: :math:`-\log \sum_{j>k} p_j`
    (the mass after the censoring bin), with p = softmax(logits).

    Args:
        logits: shape (n, K + 1).
        idx: bin index per patient, shape (n,), int64 in [0, K].
        event: shape (n,), bool or 0/1.
    """
    idx = idx.reshape(-1, 1).long()
    event = event.reshape(-1).to(logits.dtype)
    log_p = torch.log_softmax(logits, dim=1)
    log_event = log_p.gather(1, idx).squeeze(1)
    after = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0) > idx
    log_after = torch.logsumexp(log_p.masked_fill(~after, float("-inf")), dim=1)
    # pycox's epsilon: keeps an empty tail finite (log 1e-7) and matches its numbers.
    log_after = torch.logaddexp(log_after, torch.full_like(log_after, math.log(_EPS)))
    return -(event * log_event + (1 - event) * log_after).mean()


def deephit_ranking(logits: torch.Tensor, idx: torch.Tensor, event: torch.Tensor, sigma: float = 0.1) -> torch.Tensor:
    r"""DeepHit's ranking term for one event type.

    .. math::
        \frac{1}{n^2}\sum_{i,j} A_{ij}\exp\big(-(F_i(T_i) - F_j(T_i))/\sigma\big)

    with F the cumulative incidence (cumsum of the pmf) and :math:`A_{ij} = 1` when i had an
    event and either T_i < T_j, or T_i = T_j (same bin) and j is censored.  Same pairs and
    mean as pycox's ``rank_loss_deephit_single``.

    Args:
        logits: shape (n, K + 1).
        idx: shape (n,), bin indices.
        event: shape (n,).
        sigma: temperature of the exponential.
    """
    idx = idx.reshape(-1).long()
    ev = event.reshape(-1).to(torch.bool)
    cdf = torch.softmax(logits, dim=1).cumsum(1)  # (n, K+1)
    f_at_ti = cdf[:, idx]  # (n_j, n_i): F_j(T_i)
    diff = torch.diagonal(f_at_ti).unsqueeze(1) - f_at_ti.T  # (i, j): F_i(T_i) - F_j(T_i)
    earlier = idx.unsqueeze(1) < idx.unsqueeze(0)
    same_vs_censored = (idx.unsqueeze(1) == idx.unsqueeze(0)) & ~ev.unsqueeze(0)
    pairs = ev.unsqueeze(1) & (earlier | same_vs_censored)
    return (pairs.to(logits.dtype) * torch.exp(-diff / sigma)).mean()


def deephit_loss(
    logits: torch.Tensor, idx: torch.Tensor, event: torch.Tensor, alpha: float = 0.2, sigma: float = 0.1
) -> torch.Tensor:
    """DeepHit loss as pycox weighs it: ``alpha * nll + (1 - alpha) * ranking``.

    The default alpha=0.2, sigma=0.1 are pycox's, for comparable results.  Shapes as in
    :func:`deephit_nll`.
    """
    return alpha * deephit_nll(logits, idx, event) + (1 - alpha) * deephit_ranking(logits, idx, event, sigma)
