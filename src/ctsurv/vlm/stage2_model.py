"""The stage-2 model: the vision-language model with its survival branch on the pooled state."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from ..survival.models import deephit_risk
from .prompt import IGNORE_INDEX
from .survival import SurvivalBranch, pool_hidden

POOLS = ("all", "prompt")


class CTSurvivalVLM(nn.Module):
    """A :class:`~.model.CTVisionLanguageModel` with a :class:`~.survival.SurvivalBranch`.

    Args:
        vlm: the vision-language model.
        branch: the survival branch on its pooled last hidden state.
        cuts: DeepHit's time cuts (None for DeepSurv).
        pool: ``prompt`` (sentence, image and question only: the default) or ``all`` (every
            non-padding token, the paper); how each is scored: :mod:`.stage2_predict`.
    """

    def __init__(self, vlm: nn.Module, branch: SurvivalBranch, cuts: np.ndarray | None = None, pool: str = "prompt"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.vlm, self.branch, self.pool = vlm, branch, pool
        self.cuts = None if cuts is None else np.asarray(cuts, dtype=float)

    @property
    def head(self) -> str:
        return self.branch.head_name

    def forward(self, batch: Mapping) -> dict:
        """LM loss (when labels are given), pooled state, adapted z_surv and the head output.

        ``pooled`` is the decoder's mean state as is; ``z`` the same in the branch's standardised
        coordinates (what the adaptor starts from and the alignment compares z_surv with).

        The visual tokens are detached: the image encoder is frozen in both stages, so no loss
        term may reach it even when the features arrive with a gradient path.
        """
        out = self.vlm(batch["features"].detach(), batch["input_ids"], batch["attention_mask"], batch.get("labels"))
        mask = out.attention_mask
        if self.pool == "prompt" and out.labels is not None:
            mask = mask * (out.labels == IGNORE_INDEX).to(mask.dtype)
        pooled = pool_hidden(out.last_hidden_state.float(), mask)
        z_surv, head_out = self.branch(pooled)
        return {"lm": out.loss, "pooled": pooled, "z": self.branch.standardize(pooled), "z_surv": z_surv, "out": head_out}

    def gradient_checkpointing_enable(self) -> None:
        """Recompute the decoder's activations in the backward pass (the trainer calls it)."""
        self.vlm.gradient_checkpointing_enable()

    def risks(self, head_out: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Risk per row (higher = earlier event) and, for DeepHit, S(c_k) (n, K)."""
        if self.head == "deepsurv":
            return head_out.reshape(-1).detach().double().cpu().numpy(), None
        pmf = torch.softmax(head_out.detach().double(), dim=1).cpu().numpy()
        surv = 1.0 - np.cumsum(pmf, axis=1)[:, :-1]
        return deephit_risk(surv, self.cuts), surv


def trainable_summary(model: nn.Module) -> dict[str, int]:
    """Trainable parameter counts by part (projector, decoder, branch)."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            part = name.split(".")[1] if name.startswith("vlm.") else name.split(".")[0]
            counts[part] = counts.get(part, 0) + p.numel()
    return counts
