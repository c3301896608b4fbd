"""Instruction records + image feature store -> training items and padded batches.

Records are LLaVA conversations (:mod:`ctsurv.instructions`): ``{id, study_id, conversations:
[{from: human, value: "sentence\\n<image>\\nquestion"}, {from: gpt, value: answer}, ...]}``.
Every record is checked and tokenized when the dataset is made, so a bad record stops the
run before training starts, with its file and id named: a study without features in the
store, a conversation without ``<image>`` or with two, turns that do not alternate, a prompt
longer than the decoder's context.  Features are read from the memory-mapped store per item.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.utils.data import Dataset

from ..errors import DataError, missing
from ..features import FeatureStore
from .prompt import IGNORE_INDEX, IMAGE_TOKEN, tokenize_conversation

log = logging.getLogger(__name__)

SOURCE_KEY = "source_file"
HUMAN_ROLES = ("human", "user")
ANSWER_ROLES = ("gpt", "assistant")


def load_records(paths: str | Path | Iterable[str | Path]) -> list[dict]:
    """Records of one or more instruction JSON files, each tagged with its file (``source_file``)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    records: list[dict] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"instruction file {path} {missing(path)}; run build_instructions first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of conversation records, got {type(data).__name__}")
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DataError(f"{path}, record {i}: expected an object with id, study_id, conversations")
            records.append({**rec, SOURCE_KEY: str(path)})
    return records


def record_where(record: dict, index: int | None = None) -> str:
    """``file, record 'id'`` for error messages."""
    source = record.get(SOURCE_KEY, "instruction data")
    rid = record.get("id", f"#{index}" if index is not None else "?")
    return f"{source}, record '{rid}'"


def conversation_turns(record: dict, where: str) -> list[tuple[str, str]]:
    """(human, answer) pairs of a record; turns must alternate human, gpt."""
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise DataError(f"{where}: no 'conversations' list")
    if len(conv) % 2:
        raise DataError(f"{where}: {len(conv)} turns; a conversation alternates human and gpt turns and ends with an answer")
    turns = []
    for k in range(0, len(conv), 2):
        human, answer = conv[k], conv[k + 1]
        if not (isinstance(human, dict) and isinstance(answer, dict)):
            raise DataError(f"{where}: turn {k + 1} is not an object with 'from' and 'value'")
        if human.get("from") not in HUMAN_ROLES or answer.get("from") not in ANSWER_ROLES:
            raise DataError(f"{where}: turns {k + 1}-{k + 2} are from '{human.get('from')}' and '{answer.get('from')}'; "
                            "expected human then gpt")
        if not isinstance(human.get("value"), str) or not isinstance(answer.get("value"), str):
            raise DataError(f"{where}: turn {k + 1} or {k + 2} has no text 'value'")
        question = human["value"].rsplit(IMAGE_TOKEN, 1)[-1]
        if not question.strip():
            raise DataError(f"{where}: turn {k + 1} asks no question (nothing after the image); fix or drop the record")
        if not answer["value"].strip():
            raise DataError(f"{where}: turn {k + 2}, the reference answer, is empty: the model would learn to answer "
                            "with nothing; fill it in or drop the record (build_instructions leaves empty answers out)")
        turns.append((human["value"], answer["value"]))
    return turns


class InstructionDataset(Dataset):
    """Tokenized conversations with their studies' visual tokens.

    Args:
        records: from :func:`load_records` (or any list of LLaVA records).
        store: the image feature store (``tokens`` (N, T, C)).
        tokenizer: the model's tokenizer (with ``<image>``).
        prompt_format: ``model.config.prompt_format``.
        max_length: ``model.config.max_length``.
        image_token: the placeholder.

    Items: ``features`` (T, C) float32, ``input_ids`` and ``labels`` (lists), ``study_id``, ``id``.
    """

    def __init__(self, records: Sequence[dict], store: FeatureStore, tokenizer, prompt_format: str, max_length: int,
                 image_token: str = IMAGE_TOKEN):
        self.store = store
        tokens = store.array("tokens")
        if tokens.ndim != 3:
            raise DataError(f"feature store {store.path}: 'tokens' has shape {tokens.shape}; expected (N, T, C)")
        self.n_image_tokens = int(tokens.shape[1])
        self.examples: list[dict] = []
        missing: list[str] = []
        for i, rec in enumerate(records):
            where = record_where(rec, i)
            study = rec.get("study_id")
            if study is None:
                raise DataError(f"{where}: no 'study_id'")
            study = str(study)
            if study not in store:
                missing.append(f"{where}: study '{study}'")
                continue
            ids = tokenize_conversation(tokenizer, conversation_turns(rec, where), prompt_format, max_length,
                                        image_token=image_token, image_tokens=self.n_image_tokens, where=where)
            self.examples.append({"id": str(rec.get("id", i)), "study_id": study, **ids})
        if missing:
            raise DataError(f"{missing[0]} has no features in the feature store {store.path} ({len(missing)} records "
                            "without features in all); re-run encode_images for those studies, or drop them from the "
                            "instruction data")
        store.check_finite([ex["study_id"] for ex in self.examples], "tokens")  # a NaN token makes every weight NaN
        log.info("%d conversations, %d visual tokens each", len(self.examples), self.n_image_tokens)

    @classmethod
    def for_model(cls, records: Sequence[dict], store: FeatureStore, model) -> "InstructionDataset":
        """A dataset with the tokenizer and prompt settings of ``model``; refuses another encoder's store."""
        from .io import check_fingerprint, store_fingerprint

        check_fingerprint(model.config, model.folder, store_fingerprint(store), f"the feature store {store.path}")
        config = model.config
        dataset = cls(records, store, model.tokenizer, config.prompt_format, config.max_length, config.image_token)
        if dataset.n_image_tokens != config.tokens:
            raise DataError(f"feature store {store.path} has {dataset.n_image_tokens} visual tokens per study; "
                            f"the model was built for {config.tokens}")
        return dataset

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        ex = self.examples[i]
        features = torch.from_numpy(self.store.get([ex["study_id"]], name="tokens")[0])
        return {"features": features, "input_ids": ex["input_ids"], "labels": ex["labels"], "study_id": ex["study_id"],
                "id": ex["id"]}


#: per-example follow-up keys (stage 2) and their batch dtypes
FOLLOWUP_KEYS = {"time": torch.float32, "event": torch.float32, "idx": torch.long}
#: per-example labels kept as lists in the batch: item key -> batch key
ID_KEYS = {"id": "ids", "study_id": "study_ids", "question_id": "question_ids"}


def collate(items: Sequence[dict], pad_id: int) -> dict:
    """Right-padded batch: features (B, T, C), input_ids, attention_mask, labels (-100 on padding);
    the items' follow-up (``time``, ``event``, ``idx``: stage 2) as tensors, and their ids
    (``id``, ``study_id``, ``question_id``) as lists ``ids``, ``study_ids``, ``question_ids``."""
    length = max(len(it["input_ids"]) for it in items)
    batch = len(items)
    input_ids = torch.full((batch, length), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    for b, it in enumerate(items):
        n = len(it["input_ids"])
        input_ids[b, :n] = torch.as_tensor(it["input_ids"], dtype=torch.long)
        attention_mask[b, :n] = 1
        labels[b, :n] = torch.as_tensor(it["labels"], dtype=torch.long)
    out = {
        "features": torch.stack([torch.as_tensor(it["features"], dtype=torch.float32) for it in items]),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
    }
    for key, dtype in FOLLOWUP_KEYS.items():
        if key in items[0]:
            out[key] = torch.tensor([it[key] for it in items], dtype=dtype)
    for key, name in ID_KEYS.items():
        if key in items[0]:
            out[name] = [it[key] for it in items]
    return out
