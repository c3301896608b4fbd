"""Minibatch training with early stopping on a validation loss.

Kept lean on purpose (pre-built tensors, index slicing, no data loader) because the
baselines and cross-validation train many small networks on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)

# loss(output, *targets) -> scalar; targets are tensors indexed like the rows of x.
LossFn = Callable[..., torch.Tensor]


@dataclass
class TrainConfig:
    """Optimisation settings (the paper's baselines: lr 1e-4, batch 32, AdamW)."""

    lr: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 500
    patience: int = 50
    weight_decay: float = 0.0
    seed: int = 0
    # Small MLPs train fastest on one thread; several threads only add OpenMP
    # synchronisation, which on a busy machine costs more than the arithmetic.  None keeps
    # torch's setting.
    threads: int | None = 1


@dataclass
class History:
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf


@contextlib.contextmanager
def _torch_threads(n: int | None):
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_network(
    net: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    targets: Sequence[torch.Tensor],
    x_val: torch.Tensor | None,
    targets_val: Sequence[torch.Tensor] | None,
    cfg: TrainConfig,
) -> History:
    """Train ``net`` in place with AdamW; restore the weights of the best validation epoch.

    Args:
        net: maps (n, d) -> outputs that ``loss_fn`` accepts.
        loss_fn: ``loss_fn(net(x_batch), *[t[batch] for t in targets])``.
        x: training features, shape (n, d), float32.
        targets: per-row training targets (e.g. time, event), each shape (n,).
        x_val, targets_val: validation data for early stopping; None trains for
            ``max_epochs`` on the training loss alone.
        cfg: optimisation settings.

    Returns:
        The loss history; ``best_epoch`` is the epoch whose weights ``net`` holds.
    """
    with _torch_threads(cfg.threads):
        return _train(net, loss_fn, x, targets, x_val, targets_val, cfg)


def _train(net, loss_fn, x, targets, x_val, targets_val, cfg) -> History:
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = x.shape[0]
    hist = History()
    best_state = copy.deepcopy(net.state_dict())
    waited = 0
    for epoch in range(cfg.max_epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        total, batches = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            rows = perm[start : start + cfg.batch_size]
            if len(rows) < 2 and n > 1:  # batch norm cannot train on one row
                continue
            loss = loss_fn(net(x[rows]), *(t[rows] for t in targets))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        hist.train_loss.append(total / max(batches, 1))
        if x_val is None:
            hist.best_epoch, best_state = epoch, None
            continue
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(x_val), *targets_val))
        hist.val_loss.append(val)
        if val < hist.best_val_loss:
            hist.best_val_loss, hist.best_epoch, waited = val, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    log.debug("trained %d epochs, best epoch %d (val loss %.4g)", len(hist.train_loss), hist.best_epoch, hist.best_val_loss)
    return hist
