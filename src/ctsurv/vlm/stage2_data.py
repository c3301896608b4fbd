"""Stage-2 data: (patient, question) examples with follow-up, and how batches are composed.

Instruction records are split into one row per (study, question) (:func:`question_table`);
:class:`SurvivalExamples` pairs each row with the study's visual tokens and follow-up
(batches: :func:`ctsurv.vlm.data.collate`).  A Cox loss needs risk sets, so a training batch
holds distinct patients, one question each, the question cycling over epochs
(:func:`patient_batches`); validation asks each patient one question (:func:`one_question_each`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..survival.discretize import discretize
from .prompt import IMAGE_TOKEN, tokenize_example


def split_turns(record: Mapping, where: str = "") -> list[tuple[str, str, str]]:
    """(question_id, human text, reference answer) per question of an instruction record.

    Single-turn records give one; multi-turn records (``per_study``) give one per turn, each
    with the first turn's clinical sentence and image placeholder before its question.
    """
    conv = record.get("conversations") or []
    humans = [c["value"] for c in conv if c.get("from") == "human"]
    answers = [c["value"] for c in conv if c.get("from") == "gpt"]
    qids = list(record.get("question_ids") or [])
    if not humans or len(humans) != len(answers):
        raise DataError(f"{where}record {record.get('id')}: needs human/gpt turn pairs, got {len(humans)} human and "
                        f"{len(answers)} gpt turns")
    if len(qids) != len(humans):
        qids = [f"q{i + 1}" for i in range(len(humans))]
    first = humans[0]
    if first.count(IMAGE_TOKEN) != 1:
        raise DataError(f"{where}record {record.get('id')}: the first human turn needs exactly one {IMAGE_TOKEN}")
    prefix = first[: first.index(IMAGE_TOKEN) + len(IMAGE_TOKEN)]
    out = [(qids[0], first, answers[0])]
    for qid, human, answer in zip(qids[1:], humans[1:], answers[1:]):
        out.append((qid, f"{prefix}\n{human}", answer))
    return out


def question_table(records: Sequence[Mapping], where: str = "") -> pd.DataFrame:
    """One row per (study, question): study_id, question_id, human, answer."""
    rows = []
    for rec in records:
        for qid, human, answer in split_turns(rec, where):
            rows.append({"study_id": str(rec["study_id"]), "question_id": str(qid), "human": human, "answer": answer})
    return pd.DataFrame(rows, columns=["study_id", "question_id", "human", "answer"])


class SurvivalExamples(torch.utils.data.Dataset):
    """(patient, question) examples with follow-up: the stage-2 training and prediction data.

    Args:
        questions: :func:`question_table` rows (answers may be None for generation prompts).
        followup: study_id, time, event (the cohort).
        features: (N, T, C) visual tokens in the order of ``feature_ids``.
        feature_ids: study ids of ``features``.
        tokenizer, prompt_format, max_length: as in :mod:`.prompt`.
        cuts: DeepHit cuts (bin index per row), or None.
    """

    def __init__(self, questions: pd.DataFrame, followup: pd.DataFrame, features: np.ndarray, feature_ids: Sequence[str],
                 tokenizer, prompt_format: str, max_length: int, cuts: np.ndarray | None = None, where: str = ""):
        fu = followup.assign(study_id=followup["study_id"].astype(str)).set_index("study_id")
        missing = sorted(set(questions["study_id"]) - set(fu.index))
        if missing:
            raise DataError(f"{where}: studies {missing[:5]} have instruction records but no follow-up in the cohort")
        pos = {sid: i for i, sid in enumerate(map(str, feature_ids))}
        lost = sorted(set(questions["study_id"]) - set(pos))
        if lost:
            raise DataError(f"{where}: studies {lost[:5]} have no image features; re-run encode_images")
        self.questions = questions.reset_index(drop=True)
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.rows = [pos[s] for s in self.questions["study_id"]]
        self.time = fu.loc[self.questions["study_id"], "time"].to_numpy(float)
        self.event = fu.loc[self.questions["study_id"], "event"].to_numpy(float)
        self.idx = discretize(self.time, self.event, cuts)[0] if cuts is not None else np.zeros(len(self.time), np.int64)
        tokens = self.features.shape[1]
        self.encoded = [
            tokenize_example(tokenizer, r.human, None if r.answer is None or pd.isna(r.answer) else r.answer,
                             prompt_format, max_length, image_tokens=tokens, where=f"{where} study {r.study_id}")
            for r in self.questions.itertuples()
        ]

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> dict:
        enc = self.encoded[i]
        return {"features": self.features[self.rows[i]], "input_ids": enc["input_ids"], "labels": enc["labels"],
                "time": float(self.time[i]), "event": float(self.event[i]), "idx": int(self.idx[i]),
                "study_id": self.questions.at[i, "study_id"], "question_id": self.questions.at[i, "question_id"]}


def patient_batches(study_ids: Sequence[str], batch_size: int, seed: int):
    """Batch sampler: batches of distinct patients, one question each, the question cycling per epoch.

    Returns ``epoch -> list of batches of example indices`` (the trainer's ``batch_sampler``).
    An epoch shows each patient once; over six epochs each patient is seen with each question.
    """
    by_patient: dict[str, list[int]] = {}
    for i, sid in enumerate(study_ids):
        by_patient.setdefault(str(sid), []).append(i)
    patients = sorted(by_patient)

    def batches(epoch: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(patients), generator=gen).tolist()
        picks = []
        for p in order:
            rows = by_patient[patients[p]]
            picks.append(rows[(epoch + p) % len(rows)])
        return [picks[i : i + batch_size] for i in range(0, len(picks), batch_size)]

    return batches


def one_question_each(table: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, the question cycling over patients: a validation set six times
    cheaper than every (patient, question) that still asks every question."""
    if table.empty:
        return table
    rank = table.groupby("study_id", sort=False).ngroup()
    within = table.groupby("study_id", sort=False).cumcount()
    size = table.groupby("study_id", sort=False)["study_id"].transform("size")
    return table[within == rank % size].reset_index(drop=True)


def load_split_data(instructions: Mapping[str, str | Path], cohort: pd.DataFrame, store_path: str | Path):
    """Question tables per split, the follow-up table and the visual tokens they need."""
    from ..features import FeatureStore
    from ..survival.baselines import survival_rows

    followup = survival_rows(cohort)[["study_id", "split", "time", "event"]].assign(
        study_id=lambda d: d["study_id"].astype(str))
    tables = {}
    for split, path in instructions.items():
        records = json.loads(Path(path).read_text(encoding="utf-8"))
        table = question_table(records, where=f"{path}: ")
        tables[split] = table[table["study_id"].isin(followup["study_id"])].reset_index(drop=True)
    ids = sorted({s for t in tables.values() for s in t["study_id"]})
    store = FeatureStore(store_path)
    missing = [s for s in ids if s not in store]
    if missing:
        raise DataError(f"feature store {store_path} lacks {len(missing)} studies of the instruction data "
                        f"(e.g. {missing[:3]}); re-run encode_images")
    return tables, followup, store.get(ids, name="tokens"), ids
