"""Stage-2 prediction: risks per (patient, question), from the examples' text or generated answers.

The six questions of each patient give six risks (and for DeepHit six survival curves); the
patient's prediction is their mean (:mod:`.ensemble`).  Each test question's answer is
generated; the pooled state is then taken over prompt plus generated answer, as in training
over prompt plus reference answer.  Training and validation patients (needed for Breslow's
baseline hazard, the Kaplan-Meier threshold and the validation c-index) are scored on their
reference answers, without generation, which keeps prediction cheap.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .data import collate
from .stage2_data import SurvivalExamples
from .stage2_model import CTSurvivalVLM


@torch.no_grad()
def forward_examples(model, data: SurvivalExamples, batch_size: int = 32, device=None):
    """The model's outputs (:meth:`CTSurvivalVLM.forward`) per batch of examples, in order:
    eval mode, no gradient, teacher-forced on the examples' text.  ``model`` may be wrapped
    (DDP); ``device`` defaults to the decoder's."""
    core = getattr(model, "module", model)
    model.eval()
    pad = core.vlm.tokenizer.pad_token_id
    device = device if device is not None else core.vlm.device
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))], pad)
        yield model({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})


@torch.no_grad()
def score_examples(model: CTSurvivalVLM, data: SurvivalExamples, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """Risk (and DeepHit S(c_k)) per example, teacher-forced on the examples' text."""
    risks, survs = [], []
    for out in forward_examples(model, data, batch_size):
        r, s = model.risks(out["out"])
        risks.append(r)
        if s is not None:
            survs.append(s)
    return np.concatenate(risks), (np.concatenate(survs) if survs else None)


def predict_questions(model: CTSurvivalVLM, tables: Mapping[str, pd.DataFrame], followup: pd.DataFrame,
                      features: np.ndarray, feature_ids: Sequence[str], generate_splits=("test",),
                      batch_size: int = 32, max_new_tokens: int = 48) -> pd.DataFrame:
    """Per-question predictions: risk, generated answer (``generate_splits``), reference answer.

    For generated splits the pooled state covers prompt plus generated answer; other splits
    are scored on their reference answers (module docstring).  DeepHit rows carry S(c_k) in
    ``surv_at_cuts``.
    """
    from .generate import generate_answers

    tok, cfg = model.vlm.tokenizer, model.vlm.config
    pos = {sid: i for i, sid in enumerate(feature_ids)}
    frames = []
    for split, table in tables.items():
        if table.empty:
            continue
        table = table.copy()
        table["reference"] = table["answer"]
        if split in generate_splits:
            feats = torch.as_tensor(np.asarray(features[[pos[s] for s in table["study_id"]]], dtype=np.float32))
            model.eval()
            table["generated"] = generate_answers(model.vlm, feats, table["human"].tolist(), max_new_tokens=max_new_tokens,
                                                  batch_size=batch_size)
            table["answer"] = table["generated"]
        else:
            table["generated"] = None
        data = SurvivalExamples(table, followup, features, feature_ids, tok, cfg.prompt_format, cfg.max_length,
                                model.cuts, where=f"{split} predictions")
        risk, surv = score_examples(model, data, batch_size)
        table["split"], table["risk"] = split, risk
        table["time"], table["event"] = data.time, data.event.astype(int)
        if surv is not None:
            table["surv_at_cuts"] = list(surv)
        frames.append(table.drop(columns=["answer"]))
    return pd.concat(frames, ignore_index=True)
