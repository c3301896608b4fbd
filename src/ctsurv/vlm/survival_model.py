"""A trained stage-2 model scoring one new patient: ``load_survival_model`` and ``predict_patient``.

A stage-2 model folder (:mod:`.stage2_io`) holds the vision-language model and the survival
branch; stage 2 adds ``reference.json`` (:func:`write_reference`) so that the folder alone can
put a new patient's risk in context:

* ``questions``: the question list every patient is asked (the six questions);
* ``train``: each training patient's ensemble risk, follow-up time and event, scored as the
  workflow's ``predict_stage2`` scores them (``vlm.stage2.predict.train_questions``: all six
  questions, or one each); they give the risk's percentile and, for DeepSurv, Breslow's
  baseline hazard (as ``predict_stage2``'s survival curves);
* ``horizons``: the times the survival curve is reported at (``vlm.stage2.predict.horizons``,
  default the quartiles of the training patients' event times).

:func:`predict_patient` asks the questions exactly as ``predict_stage2`` does (the same
prompts, scoring text and batching code), so a patient gets the same risk from both.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

REFERENCE_FILE = "reference.json"


def load_survival_model(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                        decoder: str | Path | None = None, feature_fingerprint: str | None = None):
    """A saved stage-2 model, ready to score (eval mode).

    Args:
        folder: the stage-2 model folder (rule train_stage2's ``results/{dataset}/models/...``).
        device: where to put it ("cpu", "cuda", ...).
        dtype: the decoder weights' dtype (default float32; bf16 on a GPU halves its memory);
            the survival branch stays float32.
        decoder: the base decoder folder, if the folder cannot find it (:func:`.locate.find_decoder`).
        feature_fingerprint: the fingerprint of the features it will read (refused if another).

    Returns:
        :class:`~.stage2_model.CTSurvivalVLM` with ``reference`` (the ``reference.json`` dict,
        or None for folders saved before it) and ``folder``.
    """
    from .stage2_io import load_stage2

    folder = Path(folder)
    model = load_stage2(folder, feature_fingerprint=feature_fingerprint, dtype=dtype, decoder=decoder)
    model.to(device).eval()
    ref = folder / REFERENCE_FILE
    model.reference = json.loads(ref.read_text(encoding="utf-8")) if ref.is_file() else None
    model.folder = str(folder)
    return model


def default_horizons(time, event) -> list[float]:
    """The 25th, 50th and 75th percentiles of the event times (of all times without events)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    times = time[event] if event.any() else time
    return [float(np.round(q, 6)) for q in np.quantile(times, [0.25, 0.5, 0.75])]


def reference_params(predict: Mapping) -> dict:
    """The ``vlm.stage2.predict`` keys :func:`write_reference` reads (rule train_stage2's params)."""
    return {k: predict.get(k) for k in ("batch_size", "train_questions", "horizons")}


def write_reference(folder: str | Path, train_instructions: str | Path, cohort: pd.DataFrame, store_path: str | Path,
                    questions: Sequence | None = None, predict: Mapping | None = None) -> dict:
    """Score the training patients with the saved model and write ``folder/reference.json``.

    Args:
        folder: the published stage-2 model folder.
        train_instructions: the training split's instruction JSON.
        cohort: the cohort table (follow-up).
        store_path: the dataset's image feature store.
        questions: the question list (None: the instruction data's questions).
        predict: config ``vlm.stage2.predict`` (``batch_size``, ``train_questions``, ``horizons``).
    """
    import torch

    from ..atomic import atomic_write
    from .ensemble import ensemble_risks
    from .io import store_fingerprint
    from .stage2_data import fixed_questions, load_split_data, one_question_each, question_list
    from .stage2_predict import predict_questions

    predict = dict(predict or {})
    folder = Path(folder)
    model = load_survival_model(folder, feature_fingerprint=store_fingerprint(store_path),
                                device="cuda" if torch.cuda.is_available() else "cpu")
    tables, followup, feats, ids = load_split_data({"train": train_instructions}, cohort, store_path)
    asked = question_list(tables) if questions is None else questions
    pairs = [(str(q.id), str(q.text)) if hasattr(q, "id") else (str(q[0]), str(q[1])) for q in asked]
    table = fixed_questions(tables["train"], pairs, where=f"{train_instructions}: ")
    mode = predict.get("train_questions", "all")
    if mode == "one":
        table = one_question_each(table)
    per_q = predict_questions(model, {"train": table}, followup, feats, ids, generate_splits=(),
                              batch_size=int(predict.get("batch_size", 32)))
    patients = ensemble_risks(per_q)
    horizons = predict.get("horizons") or default_horizons(patients["time"], patients["event"])
    reference = {
        "questions": [{"id": q, "text": t} for q, t in pairs],
        "train_questions": mode,
        "horizons": [float(h) for h in horizons],
        "train": {"study_id": patients["study_id"].astype(str).tolist(), "risk": patients["risk"].astype(float).tolist(),
                  "time": patients["time"].astype(float).tolist(), "event": patients["event"].astype(int).tolist()},
    }
    atomic_write(folder / REFERENCE_FILE, lambda fh: fh.write(json.dumps(reference, indent=1).encode()))
    log.info("%s: %d training patients' risks (%s), horizons %s", folder / REFERENCE_FILE, len(patients),
             "one question each" if mode == "one" else f"{len(pairs)} questions each", horizons)
    return reference


def predict_patient(model, features: np.ndarray, clinical: str | None, questions: Sequence | None = None,
                    horizons: Sequence[float] | None = None, batch_size: int = 32, max_new_tokens: int = 48,
                    study_id: str = "patient") -> dict:
    """One patient's risk, percentile, survival at the horizons and answers to the questions.

    Args:
        model: :func:`load_survival_model`'s model.
        features: (1, T, C) visual tokens of the patient's CT (a feature store row, or
            :func:`.image_tokens.image_tokens`).
        clinical: the clinical sentence (as the dataset's template writes it), or None.
        questions: (id, text) pairs or ``Question`` objects (default: the folder's reference list).
        horizons: times for the survival curve (default: the folder's).

    Returns:
        {head, risk, percentile (among the training patients, or None), horizons, survival
        (S(t) at the horizons; None for DeepSurv without training patients), answers: [{id,
        question, answer, risk}]}.
    """
    from .ensemble import step_survival
    from .stage2_data import fixed_questions
    from .stage2_predict import predict_questions

    ref = getattr(model, "reference", None) or {}
    if questions is None:
        if not ref.get("questions"):
            raise DataError(f"model {getattr(model, 'folder', '')} holds no question list ({REFERENCE_FILE} is missing: "
                            "it was trained before ctsurv wrote one); give the questions")
        questions = [(q["id"], q["text"]) for q in ref["questions"]]
    pairs = [(str(q.id), str(q.text)) if hasattr(q, "id") else (str(q[0]), str(q[1])) for q in questions]
    empty = pd.DataFrame(columns=["study_id", "question_id", "human", "answer"])
    table = fixed_questions(empty, pairs, {study_id: clinical})
    followup = pd.DataFrame({"study_id": [study_id], "split": ["test"], "time": [1.0], "event": [0]})
    per_q = predict_questions(model, {"test": table}, followup, np.asarray(features, np.float32), [study_id],
                              generate_splits=("test",), batch_size=batch_size, max_new_tokens=max_new_tokens)
    risk = float(per_q["risk"].mean())
    horizons = [float(h) for h in (horizons if horizons is not None else ref.get("horizons") or [])]
    train = ref.get("train")
    percentile = None
    if train and train["risk"]:
        train_risk = np.asarray(train["risk"], float)
        percentile = float(100.0 * (np.sum(train_risk < risk) + 0.5 * np.sum(train_risk == risk)) / len(train_risk))
    survival = None
    if horizons and model.head == "deephit":
        curve = np.mean(np.stack(per_q["surv_at_cuts"].to_numpy()), axis=0)[None]
        survival = [float(x) for x in np.ravel(step_survival(curve, model.cuts, horizons)[0])]
    elif horizons and model.head == "deepsurv" and train and any(train["event"]):
        from ..survival.evaluation import breslow_survival

        curve = breslow_survival(train["risk"], train["time"], train["event"], [risk], horizons)
        survival = [float(x) for x in np.ravel(curve)]  # one patient: (1, horizons)
    answers = [{"id": q, "question": t, "answer": str(a), "risk": float(r)}
               for (q, t), a, r in zip(pairs, per_q["generated"], per_q["risk"])]
    return {"head": model.head, "risk": risk, "percentile": percentile, "n_train": len(train["risk"]) if train else 0,
            "train_questions": ref.get("train_questions"), "horizons": horizons, "survival": survival,
            "answers": answers}
