r"""Representation regularisers of the joint model (uncensored patients only).

* Continuous dispersion pulls together patients with similar event times:
  :math:`\sum_{i \ne j} w_{ij} \lVert z_i - z_j \rVert^2 / \sum_{i \ne j} w_{ij}`,
  :math:`w_{ij} = \exp(-(t_i - t_j)^2 / (2 s^2))`.
* Discrete dispersion pushes time bins apart: with :math:`\mu_b` the mean latent of bin b,
  :math:`\frac{1}{B}\sum_b \log \frac{1}{B-1}\sum_{c \ne b} \exp(\cos(\mu_b, \mu_c) / \tau)`.
  The paper writes a dot product; on raw dot products the loss falls without limit as the
  latents grow (-1, -100, -10000 at scales 1, 10, 100), so any optimiser inflates the norms
  instead of separating the bins.  Cosine similarity keeps the intent (bins pushed apart in
  direction) and bounds the loss to [-1/tau, 1/tau].
* Alignment keeps the adapted latent near the pooled one.  The paper writes an L2 norm over
  all patients, :math:`\frac{1}{n}\sum_i \lVert z^{surv}_i - z^{pooled}_i \rVert_2`
  (:func:`alignment_l2`); :func:`alignment` is the squared form over uncensored patients,
  :math:`\frac{1}{n_u}\sum_{i: \delta_i = 1} \lVert z^{surv}_i - z^{pooled}_i \rVert^2`.

Each returns 0 (with a gradient path) when too few uncensored patients or bins exist.
"""

from __future__ import annotations

import math

import torch


def _uncensored(z: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    return z[event.reshape(-1).to(torch.bool)]


def dispersion_continuous(
    z: torch.Tensor, time: torch.Tensor, event: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Time-weighted mean squared distance between uncensored latents.

    Args:
        z: latents, shape (n, d).
        time, event: shape (n,).
        scale: s in the weight; None uses the standard deviation of the uncensored times
            (1 if they are all equal).
    """
    ev = event.reshape(-1).to(torch.bool)
    zu, tu = z[ev], time.reshape(-1)[ev].to(z.dtype)
    if len(zu) < 2:
        return z.sum() * 0.0
    if scale is None:
        scale = float(tu.std()) if float(tu.std()) > 0 else 1.0
    w = torch.exp(-((tu[:, None] - tu[None, :]) ** 2) / (2 * scale**2))
    w = w * (1 - torch.eye(len(zu), dtype=z.dtype, device=z.device))
    dist = torch.cdist(zu, zu).pow(2)
    return (w * dist).sum() / w.sum()


def dispersion_discrete(z: torch.Tensor, idx: torch.Tensor, event: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Log mean exp-cosine-similarity of each occupied time bin's mean latent to the other bins'.

    Bounded in [-1/tau, 1/tau] whatever the latents' scale (see the module docstring).

    Args:
        z: latents, shape (n, d).
        idx: time-bin index per patient, shape (n,).
        event: shape (n,).
        tau: temperature (> 0).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    ev = event.reshape(-1).to(torch.bool)
    zu, bins = z[ev], idx.reshape(-1)[ev].long()
    occupied, inverse = torch.unique(bins, return_inverse=True)
    n_bins = len(occupied)
    if n_bins < 2:
        return z.sum() * 0.0
    sums = torch.zeros(n_bins, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, inverse, zu)
    counts = torch.bincount(inverse, minlength=n_bins).to(z.dtype)
    mu = torch.nn.functional.normalize(sums / counts[:, None], dim=1, eps=1e-8)  # (B, d), unit length
    sim = (mu @ mu.T) / tau
    sim = sim.masked_fill(torch.eye(n_bins, dtype=torch.bool, device=z.device), float("-inf"))
    return (torch.logsumexp(sim, dim=1) - math.log(n_bins - 1)).mean()


def alignment(z_surv: torch.Tensor, z_pooled: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between adapted and pooled latents of uncensored patients.

    Shapes: z_surv, z_pooled (n, d); event (n,).
    """
    a, b = _uncensored(z_surv, event), _uncensored(z_pooled, event)
    if len(a) == 0:
        return z_surv.sum() * 0.0
    return (a - b).pow(2).sum(dim=1).mean()


def alignment_l2(z_surv: torch.Tensor, z_pooled: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean Euclidean distance between adapted and pooled latents over all patients (the paper).

    The norm's gradient at a zero distance is taken as 0 (``eps`` inside the square root), so
    the term is finite when the adaptor starts at the identity.

    Shapes: z_surv, z_pooled (n, d).
    """
    if len(z_surv) == 0:
        return z_surv.sum() * 0.0
    return ((z_surv - z_pooled).pow(2).sum(dim=1) + eps).sqrt().mean()

