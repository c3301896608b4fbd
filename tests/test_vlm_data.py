"""Instruction data -> dataset and batches; bad records are named by file and id."""

from __future__ import annotations

import json

import pytest
import torch
from vlm_fixtures import ANSWERS, cached_decoder, tiny_records, tiny_store

from ctsurv.errors import DataError
from ctsurv.features import FeatureStore
from ctsurv.vlm import build
from ctsurv.vlm.data import InstructionDataset, collate, load_records
from ctsurv.vlm.prompt import IGNORE_INDEX

torch.set_num_threads(1)
STUDIES = ["p1", "p2", "p3"]


@pytest.fixture(scope="module")
def model():
    return build(cached_decoder(pad_token=False), feature_dim=8, tokens=4, feature_fingerprint="enc-A")


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tiny_store(tmp_path / "features", STUDIES, tokens=4, dim=8, fingerprint="enc-A"))


def _write(tmp_path, records, name="train.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_items_and_right_padded_batches(tmp_path, model, store):
    records = load_records([_write(tmp_path, tiny_records(STUDIES[:2])), _write(tmp_path, tiny_records(STUDIES[2:]), "b.json")])
    data = InstructionDataset.for_model(records, store, model)
    assert len(data) == 3 and data[2]["study_id"] == "p3" and data[2]["id"] == "p3-q1"
    assert torch.equal(data[1]["features"], torch.from_numpy(store.get(["p2"], name="tokens")[0]))
    records[1]["conversations"][1]["value"] = ANSWERS[0] + " and more words"
    data = InstructionDataset.for_model(records, store, model)
    batch = collate([data[0], data[1]], model.tokenizer.pad_token_id)
    n0, n1 = len(data[0]["input_ids"]), len(data[1]["input_ids"])
    assert n1 > n0 and batch["input_ids"].shape == (2, n1)
    assert batch["attention_mask"].tolist() == [[1] * n0 + [0] * (n1 - n0), [1] * n1]
    assert (batch["labels"][0, n0:] == IGNORE_INDEX).all()
    assert batch["features"].shape == (2, 4, 8) and batch["features"].dtype == torch.float32
    assert batch["ids"] == ["p1-q1", "p2-q1"] and batch["study_ids"] == ["p1", "p2"]


def test_study_without_features_is_named(tmp_path, model, store):
    path = _write(tmp_path, tiny_records(["p1", "ghost", "ghost2"]))
    with pytest.raises(DataError, match=rf"{path}, record 'ghost-q1': study 'ghost' has no features in the feature "
                                         r"store .*features \(2 records without features in all\)"):
        InstructionDataset.for_model(load_records(path), store, model)


@pytest.mark.parametrize("value, count", [("no placeholder here\nWhere?", 0), ("<image>\nfirst\n<image>\nWhere?", 2)])
def test_placeholder_count_is_named(tmp_path, model, store, value, count):
    records = tiny_records(STUDIES)
    records[1]["conversations"][0]["value"] = value
    path = _write(tmp_path, records)
    with pytest.raises(DataError, match=rf"{path}, record 'p2-q1': the conversation has {count} '<image>' placeholders"):
        InstructionDataset.for_model(load_records(path), store, model)


def test_prompt_longer_than_the_context_is_named(tmp_path, model):
    store = FeatureStore(tiny_store(tmp_path / "wide", STUDIES, tokens=126, dim=8))
    path = _write(tmp_path, tiny_records(STUDIES))
    with pytest.raises(DataError, match=rf"{path}, record 'p1-q1': the prompt is \d+ tokens \(126 of them image tokens\), "
                                         r"longer than the decoder's context of 128"):
        InstructionDataset(load_records(path), store, model.tokenizer, "plain", model.config.max_length)


def test_turns_must_alternate(tmp_path, model, store):
    records = tiny_records(STUDIES)
    records[0]["conversations"] = records[0]["conversations"][::-1]
    path = _write(tmp_path, records)
    with pytest.raises(DataError, match=rf"{path}, record 'p1-q1': turns 1-2 are from 'gpt' and 'human'"):
        InstructionDataset.for_model(load_records(path), store, model)
    records[0]["conversations"] = records[0]["conversations"][:1]
    with pytest.raises(DataError, match="record 'p1-q1': 1 turns"):
        InstructionDataset.for_model(load_records(_write(tmp_path, records)), store, model)


def test_other_encoder_or_token_count_is_refused(tmp_path, model):
    other = FeatureStore(tiny_store(tmp_path / "other", STUDIES, tokens=4, dim=8, fingerprint="enc-B"))
    with pytest.raises(DataError, match="encoder fingerprint enc-A, but the feature store .*other has enc-B"):
        InstructionDataset.for_model(tiny_records(STUDIES), other, model)
    more = FeatureStore(tiny_store(tmp_path / "more", STUDIES, tokens=6, dim=8, fingerprint="enc-A"))
    with pytest.raises(DataError, match="has 6 visual tokens per study; the model was built for 4"):
        InstructionDataset.for_model(tiny_records(STUDIES), more, model)


def test_load_records_errors(tmp_path):
    with pytest.raises(DataError, match="not found; run build_instructions"):
        load_records(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="bad.json: not valid JSON"):
        load_records(bad)
    bad.write_text('{"id": 1}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list"):
        load_records(bad)
