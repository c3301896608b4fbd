r"""Stage 2: joint survival fine-tuning of the vision-language model, and its predictions
(the workflow steps ``train_stage2`` and ``predict_stage2``).

Each training example is one patient with one of the six questions: clinical sentence,
image tokens, question, reference answer.  The loss is

.. math:: L = \lambda_{LM} L_{LM} + \alpha L_{surv} + \lambda_d L_{dispersion} + \lambda_a L_{alignment}

(:mod:`.survival`; the paper: all weights 1 and alpha 0.5).  The parts, one module each:

* :mod:`.stage2_data`: (patient, question) examples with follow-up, batch composition;
* :mod:`.stage2_model`: :class:`~.stage2_model.CTSurvivalVLM`, the model with its branch;
* :mod:`.stage2_loss`: the trainer's loss (LM + branch terms, the DeepSurv risk memory);
* :mod:`.stage2_io`: saving and loading stage-2 model folders;
* :mod:`.stage2_train`: settings, the model with the right parts frozen, one training run;
* :mod:`.stage2_predict`: risks per question, generated answers;
* this module: the workflow steps (train and publish; predict and write the tables).
"""

from __future__ import annotations

import json
import logging
import time as _time
from pathlib import Path
from typing import Mapping

import pandas as pd
import torch

from ..errors import DataError
from .io import store_fingerprint
from .stage2_data import fixed_questions, load_split_data, one_question_each, question_list
from .stage2_io import load_stage2
from .stage2_predict import predict_questions
from .stage2_train import Stage2Settings, train_stage2

log = logging.getLogger(__name__)


def run_stage2(instructions: Mapping[str, str | Path], cohort: pd.DataFrame, store_path: str | Path, head: str,
               pretrain: str, stage2: Mapping, vlm: Mapping, out: str | Path, stage1_dir=None, decoder_path=None,
               restart: bool = False, questions=None, imaging: Mapping | None = None,
               reference: Mapping | None = None) -> dict:
    """Train one stage-2 model and publish it to ``out`` (as stage 1 does).

    The checkpoints live in ``out.train/`` beside the model, so that Snakemake (which deletes
    a rule's outputs before re-running it) never deletes an interrupted run's checkpoints;
    they are deleted once the run completes.

    Args:
        stage2: the config's ``vlm.stage2`` section (:class:`Stage2Settings` keys and ``train``,
            whose ``branch_lr`` is the survival branch's learning rate).
        vlm: the config's ``vlm`` section (projector, weights, stage1's LoRA settings for
            ``without``).
        questions: the configured question list (every patient asked each; None: the
            instruction data's questions).
        imaging: :func:`.locate.imaging_params`: the encoder recorded in the folder (a model
            without pre-training has none from stage 1).
        reference: :func:`.survival_model.reference_params`: how the training patients are
            scored for ``reference.json`` (None: not written).
    """
    import shutil

    from .stage1 import publish, training_dir
    from .trainer import TrainSettings

    out = Path(out)
    work = training_dir(out)
    settings = Stage2Settings.from_config(stage2)
    train_settings = TrainSettings.from_dict(stage2["train"])
    stage1 = vlm.get("stage1", {})
    options = {"projector": vlm.get("projector", "linear"), "feature_norm": vlm.get("feature_norm", "none"),
               "lora": None if stage1.get("full_finetune") else stage1.get("lora")}
    summary = train_stage2(instructions, cohort, store_path, head, pretrain, settings, train_settings, work,
                           stage1_dir=stage1_dir, decoder_path=decoder_path, vlm_options=options,
                           restart=restart or bool(stage2.get("restart")), branch_lr=stage2["train"].get("branch_lr"),
                           max_new_tokens=int((stage2.get("predict") or {}).get("max_new_tokens", 48)),
                           weights=vlm.get("weights", "auto"), questions=questions)
    publish(work, out)
    from .locate import add_encoder_record
    from .survival_model import write_reference

    if imaging is not None:
        add_encoder_record(out, imaging, store_path)
    if reference is not None:  # what ctsurv predict needs: the questions, training risks, horizons
        write_reference(out, instructions["train"], cohort, store_path, questions, reference)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return summary


def cohort_sentences(cohort: pd.DataFrame, spec: Mapping) -> dict[str, str | None]:
    """Each study's clinical sentence from the cohort table and the dataset's config entry (as
    ``build_instructions`` writes it; None without a template): who :func:`predict_stage2` asks."""
    if not spec.get("clinical_sentence"):
        return {str(s): None for s in cohort["study_id"]}
    from ..data.sentences import clinical_sentence

    return {str(row["study_id"]): clinical_sentence(row, spec) for _, row in cohort.iterrows()}


def predict_stage2(model_dir: str | Path, instructions: Mapping[str, str | Path], cohort: pd.DataFrame,
                   store_path: str | Path, out_questions: str | Path, out_predictions: str | Path,
                   out_survival: str | Path, batch_size: int = 32, max_new_tokens: int = 48,
                   generate_splits=("test",), train_questions: str = "all", questions=None,
                   sentences=None, weights: str = "auto") -> dict:
    """Six questions per patient -> per-question and per-patient predictions (see the module docstring).

    ``train_questions="one"`` scores each training patient on one question (cycling) instead of
    all six: their risks only set Breslow's baseline hazard and the Kaplan-Meier threshold, and
    on a CPU demo this saves five sixths of the largest split.

    Every patient is asked every question of ``questions`` (the configured list; None: every
    question of the instruction data), whether or not a reference answer exists
    (:func:`~.stage2_data.fixed_questions`).  ``sentences`` (study id -> clinical sentence)
    names the patients to ask, those without any instruction record included; default: the
    patients of the instruction data.  ``weights``: the decoder's dtype (``vlm.weights``).

    Writes ``out_questions`` (study_id, question_id, split, time, event, risk, generated,
    reference, human, and DeepHit's surv_at_cuts), ``out_predictions`` (one row per patient:
    the mean risk) and ``out_survival`` (per-patient curves on a time grid).
    """
    from .ensemble import patient_tables
    from .stage1 import weights_dtype

    started = _time.perf_counter()
    model = load_stage2(model_dir, feature_fingerprint=store_fingerprint(store_path), dtype=weights_dtype(weights))
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    tables, followup, feats, ids = load_split_data(instructions, cohort, store_path, extra=list(sentences or ()))
    asked = question_list(tables) if questions is None else questions
    readable = set(ids)
    tables = {s: fixed_questions(t, asked, None if sentences is None else
                                 {sid: sentences[sid] for sid in followup.loc[followup["split"] == s, "study_id"]
                                  if sid in sentences and sid in readable},
                                 where=f"{instructions[s]}: ") for s, t in tables.items()}
    if train_questions == "one" and "train" in tables:
        tables["train"] = one_question_each(tables["train"])
    elif train_questions != "all":
        raise ValueError(f"train_questions must be 'all' or 'one', got {train_questions!r}")
    per_q = predict_questions(model, tables, followup, feats, ids, generate_splits, batch_size, max_new_tokens)
    patients, survival = patient_tables(per_q, model.head, model.cuts, expected=None)
    full = patients if train_questions == "all" else patients[patients["split"] != "train"]
    short = full[full["n_questions"] != len(asked)]
    if len(short):  # fixed_questions asks every question: anything else is a bug, not data
        raise DataError(f"{len(short)} patients were asked {sorted(set(short['n_questions']))} questions instead of "
                        f"{len(asked)} (e.g. study '{short['study_id'].iat[0]}')")
    for path in (out_questions, out_predictions, out_survival):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    per_q.to_parquet(out_questions, index=False)
    patients.to_parquet(out_predictions, index=False)
    survival.to_parquet(out_survival, index=False)
    summary = {"patients": len(patients), "questions": len(per_q), "generated": int(per_q["generated"].notna().sum()),
               "seconds": round(_time.perf_counter() - started, 2)}
    log.info("stage-2 predictions: %s", summary)
    return summary
