"""Stage-2 data: (patient, question) examples with follow-up, and how batches are composed.

Instruction records are split into one row per (study, question) (:func:`question_table`);
:class:`SurvivalExamples` pairs each row with the study's visual tokens and follow-up
(batches: :func:`ctsurv.vlm.data.collate`).  A Cox loss needs risk sets, so a training batch
holds distinct patients, one question each, the question cycling over epochs
(:func:`patient_batches`); validation asks each patient one question (:func:`one_question_each`).

Every patient is asked the same questions (:func:`fixed_questions`): the configured list (or,
without one, every question the instruction data asks), whether or not their report gave an
answer.  A failed or rejected extraction leaves the question without a reference answer: in
training that removes only its language-model target (the survival terms still see the
patient with that question); at prediction no reference is needed.

Memory at full size (INSPECT: 20,000 studies x 49 x 2048, 4 GB of float16): the visual tokens
stay on disk.  :class:`StudyTokens` reads the rows a batch needs from the store's
``tokens.npy`` (positioned reads, not a memory map whose touched pages would stay resident)
and casts them to float32 for that batch only; tokenized examples are kept as int32 arrays.
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..survival.discretize import discretize
from .prompt import IMAGE_TOKEN, tokenize_example

log = logging.getLogger(__name__)


class StudyTokens:
    """The visual tokens of ``study_ids`` (N, T, C), read from a feature store on request.

    Behaves as the (N, T, C) float32 array it stands for where stage 2 uses one: ``shape``,
    ``len`` and indexing with a row position or a list of positions (``tokens[[3, 7]]`` reads
    two studies).  Each read opens ``tokens.npy`` and reads the rows' bytes at their offsets,
    so only what a batch needs is ever in memory, in float32 for that batch.

    Args:
        store: the :class:`~ctsurv.features.FeatureStore` (its ``tokens`` array).
        study_ids: the studies, in the order of the positions.
    """

    def __init__(self, store, study_ids: Sequence[str]):
        mapped = store.array("tokens")  # a memory map: only the header is read here
        if mapped.ndim != 3:
            raise DataError(f"feature store {store.path}: 'tokens' has shape {mapped.shape}; expected (N, T, C)")
        self.path = Path(mapped.filename)
        self.offset = int(mapped.offset)
        self.disk_dtype = mapped.dtype
        self.token_shape = tuple(int(n) for n in mapped.shape[1:])
        self.row_bytes = int(np.prod(self.token_shape)) * mapped.dtype.itemsize
        self.ids = [str(s) for s in study_ids]
        missing = [s for s in self.ids if s not in store]
        if missing:
            raise DataError(f"feature store {store.path} lacks {len(missing)} studies (e.g. {missing[:3]}); re-run encode_images")
        self.rows = np.fromiter((store._row[s] for s in self.ids), dtype=np.int64, count=len(self.ids))
        del mapped
        # NaN tokens give a NaN loss, then NaN weights; small chunks: the check's peak stays ~16 MB
        store.check_finite(self.ids, "tokens", chunk_rows=32)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.ids), *self.token_shape)

    @property
    def nbytes(self) -> int:
        """Bytes of all these studies' tokens on disk."""
        return len(self.ids) * self.row_bytes

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index) -> np.ndarray:
        positions = np.asarray(index, dtype=np.int64)
        single = positions.ndim == 0
        positions = positions.reshape(-1)
        out = np.empty((len(positions), *self.token_shape), dtype=np.float32)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for k, pos in enumerate(positions):
                start = self.offset + int(self.rows[pos]) * self.row_bytes
                raw = os.pread(fd, self.row_bytes, start)
                if len(raw) != self.row_bytes:
                    raise DataError(f"{self.path}: cut short at study '{self.ids[pos]}' (re-run encode_images)")
                out[k] = np.frombuffer(raw, dtype=self.disk_dtype).reshape(self.token_shape)
        finally:
            os.close(fd)
        return out[0] if single else out

    def chunks(self, positions: Sequence[int], size: int = 256):
        """The tokens of ``positions`` in chunks of ``size`` studies (a streamed fit)."""
        positions = list(positions)
        for start in range(0, len(positions), size):
            yield self[positions[start:start + size]]


def iter_records(path: str | Path):
    """The records of an instruction JSON file (a JSON array), decoded one at a time.

    ``json.loads`` of a 20,000-patient cohort's training file makes its 84,000 conversations
    Python objects all at once (about 200 MB for a moment); decoding record by record keeps
    only the file's text and the current record.
    """
    import re

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    space = re.compile(r"\s*")
    decoder = json.JSONDecoder()

    def expect(pos: int, what: str) -> None:
        found = text[pos:pos + 20] or "the end of the file"
        raise DataError(f"{path}: not a JSON array of conversation records ({what} expected at character {pos}, "
                        f"found {found!r}); rebuild it with rule build_instructions")

    pos = space.match(text, 0).end()
    if not text.startswith("[", pos):
        expect(pos, "'['")
    pos = space.match(text, pos + 1).end()
    if text.startswith("]", pos):
        return
    while True:
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno} ({err.msg})") from None
        yield record
        pos = space.match(text, pos).end()
        if text.startswith("]", pos):
            return
        if not text.startswith(",", pos):
            expect(pos, "',' or ']'")
        pos = space.match(text, pos + 1).end()


def split_turns(record: Mapping, where: str = "") -> list[tuple[str, str, str]]:
    """(question_id, human text, reference answer) per question of an instruction record.

    Single-turn records give one; multi-turn records (``per_study``) give one per turn, each
    with the first turn's clinical sentence and image placeholder before its question.
    """
    from .data import conversation_turns

    conversation_turns(record, f"{where}record '{record.get('id')}'")  # roles, empty questions and answers
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


def question_table(records: Iterable[Mapping], where: str = "") -> pd.DataFrame:
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
        questions = questions.reset_index(drop=True)
        self.features = features  # an array or :class:`StudyTokens`: rows are read per item
        self.rows = np.fromiter((pos[s] for s in questions["study_id"]), dtype=np.int64, count=len(questions))
        self.time = fu.loc[questions["study_id"], "time"].to_numpy(float)
        self.event = fu.loc[questions["study_id"], "event"].to_numpy(float)
        self.idx = discretize(self.time, self.event, cuts)[0] if cuts is not None else np.zeros(len(self.time), np.int64)
        tokens = int(features.shape[1])
        # one flat int32 buffer each for the ids and labels, cut by offsets: a 20,000-patient cohort's
        # 120,000 examples as Python int lists would take GBs, as separate arrays ~100 MB of headers
        ids_buf, labels_buf, offsets = array("i"), array("i"), [0]
        for r in questions.itertuples():
            enc = tokenize_example(tokenizer, r.human, None if r.answer is None or pd.isna(r.answer) else r.answer,
                                   prompt_format, max_length, image_tokens=tokens, where=f"{where} study {r.study_id}")
            ids_buf.extend(enc["input_ids"])
            labels_buf.extend(enc["labels"])
            offsets.append(len(ids_buf))
        self._ids = np.frombuffer(ids_buf, dtype=np.int32) if len(ids_buf) else np.zeros(0, np.int32)
        self._labels = np.frombuffer(labels_buf, dtype=np.int32) if len(labels_buf) else np.zeros(0, np.int32)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self.questions = questions[["study_id", "question_id"]]

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> dict:
        start, end = self._offsets[i], self._offsets[i + 1]
        input_ids, labels = self._ids[start:end], self._labels[start:end]
        features = torch.from_numpy(np.asarray(self.features[int(self.rows[i])], dtype=np.float32))
        return {"features": features, "input_ids": input_ids, "labels": labels,
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


def load_split_data(instructions: Mapping[str, str | Path], cohort: pd.DataFrame, store_path: str | Path,
                    extra: Sequence[str] = ()):
    """Question tables per split, the follow-up table and the visual tokens they need
    (:class:`StudyTokens`: read per batch).  ``extra``: more studies to read tokens of (those
    with follow-up and features; a study the store lacks is left out with a warning)."""
    from ..features import FeatureStore
    from ..survival.baselines import survival_rows

    followup = survival_rows(cohort)[["study_id", "split", "time", "event"]].assign(
        study_id=lambda d: d["study_id"].astype(str))
    tables = {}
    for split, path in instructions.items():
        table = question_table(iter_records(path), where=f"{path}: ")
        tables[split] = table[table["study_id"].isin(followup["study_id"])].reset_index(drop=True)
    ids = sorted({s for t in tables.values() for s in t["study_id"]})
    store = FeatureStore(store_path)
    missing = [s for s in ids if s not in store]
    if missing:
        raise DataError(f"feature store {store_path} lacks {len(missing)} studies of the instruction data "
                        f"(e.g. {missing[:3]}); re-run encode_images")
    more = set(map(str, extra)) & set(followup["study_id"]) - set(ids)
    lacking = sorted(s for s in more if s not in store)
    if lacking:
        log.warning("%d studies without instruction records have no image features and are not asked (e.g. %s)",
                    len(lacking), lacking[:3])
    ids = sorted(set(ids) | (more - set(lacking)))
    return tables, followup, StudyTokens(store, ids), ids


def question_list(tables: Mapping[str, pd.DataFrame]) -> list[tuple[str, str]]:
    """(question id, question text) of every question the instruction data asks, first seen first."""
    seen: dict[str, str] = {}
    for table in tables.values():
        for qid, human in zip(table["question_id"], table["human"]):
            if qid not in seen:
                seen[qid] = human.split(IMAGE_TOKEN, 1)[1].lstrip("\n")
    return list(seen.items())


def fixed_questions(table: pd.DataFrame, questions: Sequence, sentences: Mapping[str, str | None] | None = None,
                    where: str = "") -> pd.DataFrame:
    """Every study asked every question: one row per (study, question) in the questions' order.

    Args:
        table: :func:`question_table` rows of a split (the reference answers there are).
        questions: the question list: ``Question`` objects (``id``, ``text``, as
            ``extraction.questions.load_questions`` gives) or (id, text) pairs.
        sentences: study id -> clinical sentence (None: no sentence) for the studies to ask;
            default: the studies of ``table``, each with the sentence of its own records.

    Returns:
        study_id, question_id, human (clinical sentence, ``<image>``, question, as
        ``build_instructions`` writes it), answer (the reference, or None where the
        extraction gave none).
    """
    from ..instructions import first_prompt

    pairs = [(str(q.id), str(q.text)) if hasattr(q, "id") else (str(q[0]), str(q[1])) for q in questions]
    known = {qid for qid, _ in pairs}
    unknown = sorted(set(table["question_id"]) - known)
    if unknown:
        raise DataError(f"{where}instruction records ask questions {unknown} that are not in the question list "
                        f"({sorted(known)}); rebuild the instructions with the current questions file")
    reference = {(s, q): a for s, q, a in zip(table["study_id"], table["question_id"], table["answer"])}
    own: dict[str, str | None] = {}
    for sid, human in zip(table["study_id"], table["human"]):
        if sid not in own:
            own[sid] = human.split(IMAGE_TOKEN, 1)[0].rstrip("\n") or None
    studies = dict(own) if sentences is None else dict(sentences)
    rows = [{"study_id": sid, "question_id": qid, "human": first_prompt(sentence, text),
             "answer": reference.get((sid, qid))}
            for sid, sentence in studies.items() for qid, text in pairs]
    asked = pd.DataFrame(rows, columns=["study_id", "question_id", "human", "answer"])
    added = int(asked["answer"].isna().sum() - table["answer"].isna().sum())
    if added:
        log.info("%s%d of %d (study, question) pairs have no reference answer (asked all the same)", where, added,
                 len(asked))
    return asked
