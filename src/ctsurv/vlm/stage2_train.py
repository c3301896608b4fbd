"""Stage-2 training set-up: settings, the model with the right parts frozen, the branch's
standardiser, and one training run through :mod:`.trainer`.

What trains: the decoder (its LoRA adapter, or all of it without LoRA), the residual adaptor
and the head; the image features are inputs (the encoder never trains) and W is frozen when
the model comes from stage 1 (``pretrain="with"``).  Without pre-training (``"without"``) W is
fresh, so it trains here: nothing else would.

Before the first step the branch's standardiser is fitted on the training patients' pooled
states (one question each, no gradient; ``stage2.standardize``), and the branch trains at its
own learning rate (``stage2.train.branch_lr``): why, in :mod:`.survival`.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..survival.discretize import make_cuts
from .data import collate
from .io import store_fingerprint
from .stage2_data import SurvivalExamples, fixed_questions, load_split_data, one_question_each, patient_batches, question_list
from .stage2_io import save_stage2
from .stage2_loss import Stage2Loss
from .stage2_model import CTSurvivalVLM, trainable_summary
from .stage2_predict import forward_examples, validation_cindex
from .survival import RiskMemory, SurvivalBranch, SurvivalLossWeights

log = logging.getLogger(__name__)

#: how stage 2 picks its checkpoint: the validation c-index of the six-question ensemble (the
#: validation loss breaking ties), or the validation loss alone
SELECTIONS = ("cindex", "loss")


@dataclass
class Stage2Settings:
    """Config section ``stage2`` (besides the trainer's settings under ``stage2.train``)."""

    pool: str = "prompt"
    bottleneck: int = 64
    head_hidden: tuple = ()
    num_durations: int = 10
    cuts: str = "quantile"
    lm_weight: float = 1.0
    loss: dict = field(default_factory=dict)
    risk_memory: int = 64
    standardize: bool = True
    selection: str = "cindex"

    def __post_init__(self):
        if self.selection not in SELECTIONS:
            raise ValueError(f"stage2.selection must be one of {SELECTIONS}, got {self.selection!r}")

    @classmethod
    def from_config(cls, section: Mapping) -> "Stage2Settings":
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in section.items() if k in names}
        if "head_hidden" in values:
            values["head_hidden"] = tuple(values["head_hidden"])
        return cls(**values)


def build_stage2_model(head: str, pretrain: str, settings: Stage2Settings, stage1_dir=None, decoder_path=None,
                       vlm_options: Mapping | None = None, feature_dim: int = 0, tokens: int = 0,
                       feature_fingerprint: str | None = None, cuts=None, weights: str = "auto") -> CTSurvivalVLM:
    """The model before stage 2, with the right parts frozen.

    ``with``: W and decoder from the stage-1 folder, W frozen, decoder (LoRA) trainable.
    ``without``: a fresh W on the untouched decoder; W and decoder (LoRA) trainable.
    ``weights`` (config ``vlm.weights``): the decoder's dtype, as in stage 1 (auto: bf16 on a
    GPU); a W that trains, the LoRA adapter and the branch stay float32.
    """
    from .stage1 import weights_dtype

    dtype = weights_dtype(weights)
    from . import model as vlm_model
    from .io import load

    if pretrain == "with":
        if stage1_dir is None:
            raise DataError("pretrain 'with' needs the stage-1 model folder")
        vlm = load(stage1_dir, feature_fingerprint=feature_fingerprint, trainable=True, dtype=dtype)
        vlm.freeze(projector=True, decoder=False)
    elif pretrain == "without":
        opts = dict(vlm_options or {})
        torch.manual_seed(0)  # W and LoRA start the same in every process, as the branch does below
        vlm = vlm_model.build(decoder_path, feature_dim, tokens, projector=opts.get("projector", "linear"),
                              feature_norm=opts.get("feature_norm", "none"), lora=opts.get("lora"),
                              feature_fingerprint=feature_fingerprint, dtype=dtype)
        vlm.projector.float()  # W trains in fp32 even when the decoder is bf16 (as in stage 1)
        vlm.freeze(projector=False, decoder=False)
    else:
        raise ValueError(f"pretrain must be 'with' or 'without', got {pretrain!r}")
    torch.manual_seed(0)
    branch = SurvivalBranch(vlm.config.hidden_size, head, None if cuts is None else len(cuts), settings.bottleneck,
                            settings.head_hidden)
    return CTSurvivalVLM(vlm, branch, cuts, settings.pool)


def fit_standardizer(model, data: SurvivalExamples, batch_size: int = 32, device=None) -> dict:
    """Fit the branch's standardiser on the pooled states of ``data`` (one no-grad pass).

    Stage 2 calls it before the first step on one question per training patient (the
    patient's pooled state barely depends on the question); see :mod:`.survival` for why.
    Returns the fit's summary plus its wall time in seconds.
    """
    started = _time.perf_counter()
    core = getattr(model, "module", model)
    pooled = torch.cat([out["pooled"].detach().float() for out in forward_examples(model, data, batch_size, device)])
    info = core.branch.fit_standardizer(pooled)
    info["seconds"] = round(_time.perf_counter() - started, 2)
    return info


def train_stage2(instructions: Mapping[str, str | Path], cohort: pd.DataFrame, store_path: str | Path, head: str,
                 pretrain: str, settings: Stage2Settings, train_settings, out_dir: str | Path, stage1_dir=None,
                 decoder_path=None, vlm_options: Mapping | None = None, restart: bool = False,
                 branch_lr: float | None = None, max_new_tokens: int = 48, weights: str = "auto",
                 questions=None) -> dict:
    """Train one stage-2 model; the best lands in ``out_dir/best``.

    The checkpoint is picked by the validation c-index of the six-question ensemble, scored
    as the test patients will be (:func:`~.stage2_predict.validation_cindex`), the validation
    loss (one question per patient) breaking ties; ``settings.selection: loss`` picks by the
    loss alone.

    Before the first step of a fresh run (not on resume: the buffers are in the checkpoint) the
    branch's standardiser is fitted on one question per training patient
    (``settings.standardize``; :func:`fit_standardizer`).

    Args:
        instructions: instruction JSON per split (``train``, ``val``).
        cohort: the survival cohort (follow-up).
        store_path: image feature store (``tokens``).
        head, pretrain: ``deepsurv``/``deephit``, ``with``/``without``.
        settings: :class:`Stage2Settings`; train_settings: ``ctsurv.vlm.trainer.TrainSettings``.
        stage1_dir: the stage-1 model (``with``); decoder_path, vlm_options: the decoder and
            projector/LoRA settings (``without``).
        restart: drop existing checkpoints (see the trainer).
        branch_lr: learning rate of the survival branch (adaptor and head), None: the
            trainer's ``lr``.  The fresh head needs a larger one than the pre-trained decoder:
            at 2e-3, 40 demo steps moved its weights by less than their initial scale.
        max_new_tokens: answer length when validation is scored on generated answers
            (``pool: all``).
        weights: the decoder's dtype (config ``vlm.weights``; :func:`build_stage2_model`).
        questions: the question list every patient is asked (``Question`` objects or (id, text)
            pairs; :func:`~.stage2_data.fixed_questions`); None: every question of the
            instruction data.  A question without a reference answer trains the survival
            terms only (no language-model target).

    Returns:
        Summary: steps, best step, its validation loss and c-index, trainable parameters, seconds.
    """
    from .trainer import train

    started = _time.perf_counter()
    tables, followup, feats, ids = load_split_data({k: instructions[k] for k in ("train", "val")}, cohort, store_path)
    fu_train = followup[followup["split"] == "train"]
    cuts = None
    if head == "deephit":
        cuts = make_cuts(fu_train["time"].to_numpy(float), fu_train["event"].to_numpy(bool), settings.num_durations,
                         settings.cuts)
    fingerprint = store_fingerprint(store_path)
    model = build_stage2_model(head, pretrain, settings, stage1_dir, decoder_path, vlm_options, feats.shape[2],
                               feats.shape[1], fingerprint, cuts, weights)
    if pretrain == "without":  # a fresh W: its visual-token standardiser comes from this dataset's training patients
        pos = {sid: i for i, sid in enumerate(ids)}
        model.vlm.fit_feature_norm(feats.chunks([pos[s] for s in dict.fromkeys(tables["train"]["study_id"])])
                                   if hasattr(feats, "chunks") else
                                   [np.asarray(feats[[pos[s] for s in dict.fromkeys(tables["train"]["study_id"])]])])
    asked = question_list(tables) if questions is None else questions
    tables = {s: fixed_questions(t, asked, where=f"{instructions[s]}: ") for s, t in tables.items()}
    tok, cfg = model.vlm.tokenizer, model.vlm.config
    val_questions = tables["val"]  # every question: the c-index of the ensemble
    tables["val"] = one_question_each(tables["val"])
    data = {s: SurvivalExamples(tables[s], followup, feats, ids, tok, cfg.prompt_format, cfg.max_length, cuts,
                                where=str(instructions[s])) for s in ("train", "val")}
    loss_fn = Stage2Loss(SurvivalLossWeights.from_config(settings.loss), settings.lm_weight, RiskMemory(settings.risk_memory))
    sampler = patient_batches(data["train"].questions["study_id"], train_settings.batch_size, train_settings.seed)
    pad = tok.pad_token_id
    run_config = {"head": head, "pretrain": pretrain, "stage2": asdict(settings), "stage1": str(stage1_dir),
                  "decoder": str(decoder_path), "branch_lr": branch_lr,
                  "feature_norm": model.vlm.config.feature_norm, "weights": weights,
                  "questions": [q.id if hasattr(q, "id") else q[0] for q in asked]}
    fitted: dict = {}

    def val_cindex(wrapped, accelerator) -> float:
        with accelerator.autocast():
            return validation_cindex(wrapped, val_questions, followup, feats, ids, train_settings.batch_size,
                                     max_new_tokens, accelerator.device)

    def on_start(wrapped, accelerator) -> None:
        if not settings.standardize:
            return
        fit_data = SurvivalExamples(one_question_each(tables["train"]), followup, feats, ids, tok, cfg.prompt_format,
                                    cfg.max_length, cuts, where=str(instructions["train"]))
        with accelerator.autocast():
            fitted.update(fit_standardizer(wrapped, fit_data, train_settings.batch_size, accelerator.device))
        log.info("stage 2 standardiser fitted: %s", fitted)

    result = train(model, data["train"], data["val"] if len(data["val"]) else None, loss_fn, train_settings, out_dir,
                   lambda items: collate(items, pad), save_stage2, run_config=run_config, restart=restart,
                   batch_sampler=sampler, lr_groups=None if branch_lr is None else {"branch.": float(branch_lr)},
                   on_start=on_start, score_fn=val_cindex if settings.selection == "cindex" else None,
                   score_name="cindex")
    summary = {"head": head, "pretrain": pretrain, "steps": result.steps, "best_step": result.best_step,
               "best_val_loss": result.best_val_loss, "best_val_cindex": result.best_score, "trainable": trainable_summary(model),
               "train_examples": len(data["train"]), "val_examples": len(data["val"]),
               "risk_memory": settings.risk_memory, "branch_lr": branch_lr, "standardizer": fitted or None,
               "seconds": round(_time.perf_counter() - started, 2)}
    log.info("stage 2 %s/%s: %s", head, pretrain, summary)
    return summary
