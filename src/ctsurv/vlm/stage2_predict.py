"""Stage-2 prediction: risks per (patient, question), and the validation c-index that picks a checkpoint.

One scoring path (:func:`scoring_text`): a patient's risk comes from the same inputs in
training, validation and test.

* ``pool: prompt`` (the default): the branch reads the clinical sentence, the image and the
  question only.  The decoder is causal, so the prompt's hidden states do not depend on the
  answer that follows in training; at prediction every split is scored on the prompt alone,
  and a patient's risk is the same whether or not a reference answer exists.  Answers are
  still generated for the test questions (BERTScore, the answers a clinician reads).
* ``pool: all`` (the paper's mean over all tokens): every split is scored on the model's own
  generated answers (training, for Breslow's baseline and the Kaplan-Meier threshold,
  validation and test alike), never on reference answers it will not have at test time.

The six questions of each patient give six risks (and for DeepHit six survival curves); the
patient's prediction is their mean (:mod:`.ensemble`).
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


def scoring_text(model: CTSurvivalVLM, table: pd.DataFrame, generated) -> pd.Series:
    """The answer each question is scored with (module docstring): none (``pool: prompt``) or
    the generated one (``pool: all``)."""
    if model.pool == "prompt":
        return pd.Series([None] * len(table), index=table.index, dtype=object)
    if generated is None:
        raise ValueError("pool 'all' scores every split on generated answers; none were generated")
    return pd.Series(list(generated), index=table.index, dtype=object)


def generate_for(model: CTSurvivalVLM, table: pd.DataFrame, features: np.ndarray, feature_ids: Sequence[str],
                 batch_size: int, max_new_tokens: int) -> list[str]:
    """Greedy answers to ``table``'s prompts (eval mode); the visual tokens are read one chunk
    of prompts at a time (a 20,000-patient cohort's would not fit in memory at once)."""
    from .generate import generate_answers

    pos = {sid: i for i, sid in enumerate(feature_ids)}
    rows = [pos[s] for s in table["study_id"]]
    humans = table["human"].tolist()
    model.eval()
    answers: list[str] = []
    chunk = 8 * batch_size
    for start in range(0, len(rows), chunk):
        feats = torch.as_tensor(np.asarray(features[rows[start:start + chunk]], dtype=np.float32))
        answers += generate_answers(model.vlm, feats, humans[start:start + chunk], max_new_tokens=max_new_tokens,
                                    batch_size=batch_size)
    return answers


def predict_questions(model: CTSurvivalVLM, tables: Mapping[str, pd.DataFrame], followup: pd.DataFrame,
                      features: np.ndarray, feature_ids: Sequence[str], generate_splits=("test",),
                      batch_size: int = 32, max_new_tokens: int = 48) -> pd.DataFrame:
    """Per-question predictions: risk, generated answer, reference answer.

    Answers are generated for ``generate_splits`` (and, with ``pool: all``, for every split,
    which is then scored on them); the risk follows :func:`scoring_text`.  DeepHit rows carry
    S(c_k) in ``surv_at_cuts``.
    """
    tok, cfg = model.vlm.tokenizer, model.vlm.config
    frames = []
    for split, table in tables.items():
        if table.empty:
            continue
        table = table.copy()
        table["reference"] = table["answer"]
        generated = None
        if split in generate_splits or model.pool == "all":
            generated = generate_for(model, table, features, feature_ids, batch_size, max_new_tokens)
        table["generated"] = generated
        table["answer"] = scoring_text(model, table, generated)
        data = SurvivalExamples(table, followup, features, feature_ids, tok, cfg.prompt_format, cfg.max_length,
                                model.cuts, where=f"{split} predictions")
        risk, surv = score_examples(model, data, batch_size)
        table["split"], table["risk"] = split, risk
        table["time"], table["event"] = data.time, data.event.astype(int)
        if surv is not None:
            table["surv_at_cuts"] = list(surv)
        frames.append(table.drop(columns=["answer"]))
    return pd.concat(frames, ignore_index=True)


def validation_cindex(model, table: pd.DataFrame, followup: pd.DataFrame, features: np.ndarray,
                      feature_ids: Sequence[str], batch_size: int = 32, max_new_tokens: int = 48,
                      device=None) -> float:
    """Harrell's c-index of the six-question ensemble on ``table`` (the validation patients'
    questions), scored as at test time (:func:`scoring_text`): what picks stage 2's checkpoint.

    ``model`` may be wrapped (DDP); NaN when the patients hold no comparable pair.
    """
    from ..survival.metrics import concordance_sums

    core = getattr(model, "module", model)
    if table.empty:
        return float("nan")
    table = table.copy()
    generated = generate_for(core, table, features, feature_ids, batch_size, max_new_tokens) if core.pool == "all" else None
    table["answer"] = scoring_text(core, table, generated)
    cfg = core.vlm.config
    data = SurvivalExamples(table, followup, features, feature_ids, core.vlm.tokenizer, cfg.prompt_format,
                            cfg.max_length, core.cuts, where="validation c-index")
    risks = np.concatenate([core.risks(out["out"])[0] for out in forward_examples(model, data, batch_size, device)])
    per_patient = pd.DataFrame({"study_id": table["study_id"].to_numpy(), "time": data.time, "event": data.event,
                                "risk": risks}).groupby("study_id", sort=False).mean()
    num, den = concordance_sums(per_patient["time"].to_numpy(float), per_patient["event"].to_numpy(bool),
                                per_patient["risk"].to_numpy(float), np.ones((1, len(per_patient))))
    return float(num[0] / den[0]) if den[0] > 0 else float("nan")
