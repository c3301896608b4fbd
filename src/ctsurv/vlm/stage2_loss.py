"""The stage-2 training loss: language model plus the survival branch's terms (:mod:`.survival`).

DeepSurv batches also draw on a :class:`~.survival.RiskMemory` of the last patients' detached
risks, so that an event's risk set is not limited to the handful of patients of its batch
(``stage2.risk_memory``; 0 turns it off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .stage2_model import CTSurvivalVLM
from .survival import RiskMemory, SurvivalLossWeights, survival_branch_loss


@dataclass
class Stage2Loss:
    """The trainer's ``loss_fn``: LM + survival branch terms, with the DeepSurv risk memory."""

    weights: SurvivalLossWeights = field(default_factory=SurvivalLossWeights)
    lm_weight: float = 1.0
    memory: RiskMemory = field(default_factory=RiskMemory)

    def __call__(self, model: CTSurvivalVLM, batch: Mapping) -> dict:
        res = model(batch)
        head = getattr(model, "module", model).head  # DDP wraps the model on several GPUs
        use_memory = model.training and head == "deepsurv"
        parts = survival_branch_loss(head, res["z"], res["z_surv"], res["out"], batch["time"], batch["event"],
                                     batch["idx"], self.weights, memory=self.memory.get() if use_memory else None)
        if use_memory:
            self.memory.push(res["out"], batch["time"], batch["event"])
        lm = res["lm"] if res["lm"] is not None else res["z"].sum() * 0.0
        loss = self.lm_weight * lm + parts["total"]
        return {"loss": loss, "lm": lm.detach(), "surv": parts["surv"].detach(),
                "dispersion": parts["dispersion"].detach(), "alignment": parts["alignment"].detach()}
