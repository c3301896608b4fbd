r"""The survival branch of the joint model (stage 2).

The decoder's last hidden state is mean-pooled over every non-padding token (clinical
sentence, image tokens, question and answer) into z; a residual adaptor gives
:math:`z_{surv} = z + \mathrm{MLP}(z)` and a head turns it into a log-risk (DeepSurv) or K+1
bin logits (DeepHit).  The loss reuses :mod:`ctsurv.survival`:

.. math:: L_{surv\,branch} = \alpha L_{surv} + \lambda_d L_{dispersion} + \lambda_a L_{alignment}

with the Cox partial likelihood (DeepSurv) or DeepHit's loss, the continuous dispersion on
event times (DeepSurv) or the discrete one on time bins (DeepHit), and the alignment as the
paper writes it, an L2 norm over all patients, :math:`\frac{1}{n}\sum_i \lVert z_{surv,i} -
z_i \rVert_2 / \sqrt{H}` (``alignment_form: l2``; ``squared`` is the former
:math:`\lVert z_{surv} - z \rVert^2 / H` over uncensored patients); stage 2 adds the
language-model loss.  All weights are the paper's by default (alpha 0.5, the regularisers 1).

The risk memory's gradient scale (DeepSurv, :class:`RiskMemory`): the Cox term sums over the
events of the batch *and* of the memory (the memory's risks are detached, so its events only
act through the batch patients in their risk sets) and is divided by the batch's events
:math:`D_b`, not by :math:`D_b + D_m`.  Divided by all events, as :func:`~ctsurv.survival.losses.cox_nll`
does, a memory of 64 patients would shrink the batch's gradient by about
:math:`D_b / (D_b + D_m)` (a third with a batch of 32) against the same batch without memory;
divided by :math:`D_b` the gradient has the scale of the batch-only loss, and equals it when the
memory is empty.

Why the branch standardises z and starts its head at zero (issue 11, measured on demo_pe):
the pooled states of different patients differ very little (norm ~3.7, per-dimension spread
across patients ~0.07), so a randomly initialised head mostly outputs noise that a few dozen
steps at the decoder's learning rate cannot undo (test c-index 0.60 although a ridge-Cox on the
same frozen states reaches 0.74).  Hence:

* a *fixed* standardiser (per-dimension mean and std of the training patients' pooled states,
  fitted once in a no-grad pass before training, :meth:`SurvivalBranch.fit_standardizer`)
  maps z to unit spread before the adaptor.  It is a pair of buffers, not batch norm: batch
  statistics of a dozen patients made the dispersion term blow up;
* the head's output layer starts at zero: every patient has risk 0 (the Cox null model) and
  training moves away from it instead of from noise;
* the continuous dispersion and the alignment are per-dimension means (divided by H): in
  standardised coordinates a squared distance grows like H, so with a sum their weights
  would have to be re-tuned for each decoder size.  The discrete dispersion compares cosines,
  already free of scale and H, and is left as is.

The regularisers (and the adaptor) work in the standardised coordinates: ``z`` passed to
:func:`survival_branch_loss` is the *standardised* pooled state, the one the adaptor starts from,
so that the alignment measures how far the adaptor moved, on the same scale as z_surv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import logging

import torch
from torch import nn

from ..survival.heads import ResidualAdaptor, deephit_head, deepsurv_head
from ..survival.losses import cox_nll, deephit_loss
from ..survival.regularizers import alignment, alignment_l2, dispersion_continuous, dispersion_discrete

log = logging.getLogger(__name__)

HEADS = ("deepsurv", "deephit")
ALIGNMENT_FORMS = ("l2", "squared")


def pool_hidden(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the last hidden state over non-padding tokens.

    Shapes: (B, L, H), (B, L) -> (B, H).  A row without tokens gives zeros, never NaN.
    """
    mask = attention_mask.to(last_hidden_state.dtype).unsqueeze(-1)
    return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class SurvivalBranch(nn.Module):
    """Residual adaptor plus survival head on the pooled decoder state.

    Args:
        hidden: decoder hidden size H.
        head: ``deepsurv`` (one log-risk) or ``deephit`` (``num_bins`` + 1 logits).
        num_bins: number of cuts K (DeepHit only).
        bottleneck: hidden width of the adaptor's MLP.
        head_hidden: hidden widths of the head's MLP (empty: linear head).
        dropout: dropout in the head's hidden blocks.

    Buffers ``z_mean`` and ``z_std`` (H,) standardise z before the adaptor; they default to 0 and 1
    (the identity), so a branch saved before they existed loads and predicts as it did, and are
    set once by :meth:`fit_standardizer`.  They are saved with the weights (``state_dict``).
    The head's output layer starts at zero (every risk 0: the Cox null model).

    Shapes: forward (B, H) -> (z_surv (B, H), out (B, 1) or (B, K + 1)); z_surv lives in the
    standardised coordinates.
    """

    #: the standardiser's buffers: a branch saved before they existed lacks them (loaded as the
    #: identity); the trainer's checkpoints carry them (they are set before the first step only)
    STANDARDIZER = checkpoint_buffers = ("z_mean", "z_std")

    def __init__(self, hidden: int, head: str = "deepsurv", num_bins: int | None = None, bottleneck: int = 64,
                 head_hidden: Sequence[int] = (), dropout: float = 0.0, zero_head: bool = True):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if head == "deephit" and (num_bins is None or num_bins < 2):
            raise ValueError("the DeepHit head needs num_bins >= 2 (the number of time cuts)")
        self.head_name, self.hidden, self.num_bins, self.bottleneck = head, hidden, num_bins, bottleneck
        self.adaptor = ResidualAdaptor(hidden, bottleneck)
        # No batch norm: stage-2 batches are small and the head sees one pooled state per row.
        kwargs = dict(hidden=tuple(head_hidden), dropout=dropout, batch_norm=False)
        self.head = deepsurv_head(hidden, **kwargs) if head == "deepsurv" else deephit_head(hidden, num_bins, **kwargs)
        if zero_head:
            last = self.head.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.register_buffer("z_mean", torch.zeros(hidden))
        self.register_buffer("z_std", torch.ones(hidden))

    @torch.no_grad()
    def fit_standardizer(self, z: torch.Tensor, eps: float = 1e-6) -> dict:
        """Set ``z_mean``/``z_std`` to the per-dimension mean and std of ``z`` (n, H).

        A dimension that does not vary gets std 1 (it is only centred), never a division by ~0.
        Returns a summary (patients, mean norm of z, median per-dimension std) for the log.
        """
        z = z.detach().to(self.z_mean.device, torch.float32)
        if z.ndim != 2 or z.shape[1] != self.hidden or len(z) < 2:
            raise ValueError(f"fit_standardizer needs (n >= 2, {self.hidden}) pooled states, got {tuple(z.shape)}")
        mean, std = z.mean(dim=0), z.std(dim=0)
        std = torch.where(std > eps, std, torch.ones_like(std))
        self.z_mean.copy_(mean)
        self.z_std.copy_(std)
        return {"patients": len(z), "mean_norm": round(float(z.norm(dim=1).mean()), 4),
                "median_std": round(float(std.median()), 6)}

    def standardize(self, z: torch.Tensor) -> torch.Tensor:
        """``(z - z_mean) / z_std`` (the identity until :meth:`fit_standardizer`)."""
        return (z - self.z_mean.to(z.dtype)) / self.z_std.to(z.dtype)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_surv = self.adaptor(self.standardize(z))
        return z_surv, self.head(z_surv)

    def load_weights(self, state: dict, where: str = "") -> None:
        """Load a saved ``state_dict``; one without the standardiser's buffers (saved before they
        existed) keeps the identity standardiser, which is what it was trained with."""
        expected = set(self.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        other = [k for k in missing if k not in self.STANDARDIZER]
        if other or unexpected:
            raise RuntimeError(f"{where}survival branch weights do not fit its settings: missing {other}, "
                               f"unexpected {list(unexpected)}")
        if missing:
            if len(missing) != len(self.STANDARDIZER):
                raise RuntimeError(f"{where}survival branch weights hold only part of the standardiser: missing {missing}")
            log.info("%ssurvival branch saved without a standardiser: z is used unstandardised", where)
        self.load_state_dict(state, strict=False)

    def spec(self) -> dict:
        """Constructor arguments (saved next to the weights)."""
        return {"hidden": self.hidden, "head": self.head_name, "num_bins": self.num_bins, "bottleneck": self.bottleneck,
                "head_hidden": [m.out_features for m in self.head.net if isinstance(m, nn.Linear)][:-1]}


@dataclass
class SurvivalLossWeights:
    """Weights of the survival-branch terms (config ``stage2.loss``).

    alpha: weight of the survival loss (the paper: 0.5); dispersion, alignment: weights of the
    regularisers (the paper: 1); tau: temperature of the discrete dispersion; deephit_alpha,
    sigma: DeepHit's own nll/ranking mix and ranking temperature (pycox's defaults);
    alignment_form: ``l2`` (the paper: mean L2 norm over all patients) or ``squared`` (mean
    squared distance over uncensored patients).
    """

    alpha: float = 0.5
    dispersion: float = 1.0
    alignment: float = 1.0
    tau: float = 0.5
    deephit_alpha: float = 0.2
    sigma: float = 0.1
    alignment_form: str = "l2"

    def __post_init__(self):
        if self.alignment_form not in ALIGNMENT_FORMS:
            raise ValueError(f"stage2.loss.alignment_form must be one of {ALIGNMENT_FORMS}, got {self.alignment_form!r}")

    @classmethod
    def from_config(cls, loss: dict) -> "SurvivalLossWeights":
        return cls(**{k: (str(v) if k == "alignment_form" else float(v)) for k, v in loss.items()
                      if k in cls.__dataclass_fields__})


def survival_branch_loss(head: str, z: torch.Tensor, z_surv: torch.Tensor, out: torch.Tensor, time: torch.Tensor,
                         event: torch.Tensor, idx: torch.Tensor | None = None,
                         weights: SurvivalLossWeights | None = None, memory: tuple | None = None) -> dict:
    """The survival terms of one batch.

    Args:
        head: ``deepsurv`` or ``deephit``.
        z: pooled decoder states in the branch's standardised coordinates (B, H)
            (:meth:`SurvivalBranch.standardize`); z_surv: adapted states (B, H); out: head output.
        time, event: follow-up (B,); idx: DeepHit bin per row (B,) (DeepHit only).
        weights: term weights.
        memory: optional ``(log_risk, time, event)`` of recent patients, detached (DeepSurv):
            they join the Cox risk sets of this batch and their events its sum, which is
            divided by the batch's events only (the gradient scale, module docstring).

    Returns:
        dict with ``surv``, ``dispersion``, ``alignment`` (unweighted) and ``total``
        (``alpha*surv + dispersion_w*dispersion + alignment_w*alignment``).  The continuous
        dispersion and the squared alignment are divided by H, the L2 alignment by sqrt(H)
        (per-dimension scales, module docstring).
    """
    hidden = z_surv.shape[-1]
    w = weights or SurvivalLossWeights()
    if head == "deepsurv":
        log_hz = out.reshape(-1)
        if memory is not None and len(memory[0]):
            m_risk, m_time, m_event = memory
            all_event = torch.cat([event.reshape(-1), m_event.to(event.dtype)])
            surv = cox_nll(torch.cat([log_hz, m_risk.to(log_hz)]), all_event,
                           torch.cat([time.reshape(-1), m_time.to(time.dtype)]))
            # cox_nll divides by all events; the batch's own set the scale (module docstring)
            batch_events = max(float(event.reshape(-1).to(torch.bool).sum()), 1.0)
            surv = surv * (float(all_event.to(torch.bool).sum()) / batch_events)
        else:
            surv = cox_nll(log_hz, event, time)
        disp = dispersion_continuous(z_surv, time, event) / hidden
    elif head == "deephit":
        if idx is None:
            raise ValueError("the DeepHit loss needs the time-bin index of each row")
        surv = deephit_loss(out, idx, event, alpha=w.deephit_alpha, sigma=w.sigma)
        disp = dispersion_discrete(z_surv, idx, event, tau=w.tau)
    else:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if w.alignment_form == "l2":
        align = alignment_l2(z_surv, z) / hidden ** 0.5
    else:
        align = alignment(z_surv, z, event) / hidden
    total = w.alpha * surv + w.dispersion * disp + w.alignment * align
    return {"surv": surv, "dispersion": disp, "alignment": align, "total": total}


@dataclass
class RiskMemory:
    """A first-in-first-out bank of recent (detached) log-risks with their follow-up.

    Cox's partial likelihood compares each event with everyone still at risk; a batch of 12
    patients holds few events and tiny risk sets, so its gradient is noisy.  The bank adds the
    last ``size`` patients' risks (computed a few steps earlier, no gradient) to each batch's
    risk sets, the way contrastive learning uses a memory of negatives.

    The bank is not part of the trainer's checkpoints: a run resumed after a kill starts with
    an empty bank, so its curve departs slightly from an uninterrupted run's (with ``size=0``
    the two agree to float precision).  With several GPUs each process keeps its own bank.

    Attributes:
        size: patients kept (0 disables the bank).
    """

    size: int = 0
    risk: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    time: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    event: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    def get(self) -> tuple | None:
        return (self.risk, self.time, self.event) if self.size and len(self.risk) else None

    def push(self, risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> None:
        if not self.size:
            return
        self.risk = torch.cat([risk.detach().reshape(-1).float().cpu(), self.risk])[: self.size]
        self.time = torch.cat([time.detach().reshape(-1).float().cpu(), self.time])[: self.size]
        self.event = torch.cat([event.detach().reshape(-1).float().cpu(), self.event])[: self.size]
