"""Generation: a tiny model overfits 8 examples, then answers them exactly, from the image."""

from __future__ import annotations

import pytest
import torch
from vlm_fixtures import ANSWERS, SENTENCES, cached_decoder, tiny_records, tiny_store

from ctsurv.features import FeatureStore
from ctsurv.vlm import build, generate_answers
from ctsurv.vlm.data import InstructionDataset, collate

STUDIES = [f"s{i}" for i in range(8)]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """Full fine-tuning of a 2-layer LLaMA on 8 (features, question) -> answer pairs, fp32, seeded."""
    torch.set_num_threads(1)
    store = FeatureStore(tiny_store(tmp_path_factory.mktemp("store") / "features", STUDIES, tokens=4, dim=8))
    # Half the prompts carry a clinical sentence: prompts of two lengths, so padding is exercised.
    records = tiny_records(STUDIES[:4], ANSWERS[:4], sentence=SENTENCES[0]) + tiny_records(
        STUDIES[4:], ANSWERS[4:], sentence=None)
    torch.manual_seed(0)
    model = build(cached_decoder(pad_token=False), feature_dim=8, tokens=4)
    data = InstructionDataset.for_model(records, store, model)
    batch = collate([data[i] for i in range(len(data))], model.tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(60):
        loss = model(batch["features"], batch["input_ids"], batch["attention_mask"], batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    humans = [r["conversations"][0]["value"] for r in records]
    return model, batch["features"], humans, loss.item()


def test_overfit_model_generates_the_answers_exactly(overfit):
    model, features, humans, loss = overfit
    assert loss < 0.2
    assert generate_answers(model, features, humans, max_new_tokens=24, batch_size=8) == ANSWERS


def test_batch_size_and_left_padding_do_not_change_answers(overfit):
    model, features, humans, _ = overfit
    assert generate_answers(model, features, humans, max_new_tokens=24, batch_size=3) == ANSWERS
    assert generate_answers(model, features[5:6], humans[5:6], max_new_tokens=24, batch_size=1) == [ANSWERS[5]]


def test_swapping_two_patients_features_swaps_their_answers(overfit):
    model, features, humans, _ = overfit
    swapped = features.clone()
    swapped[[4, 6]] = features[[6, 4]]  # same prompt, different image
    answers = generate_answers(model, swapped, humans, max_new_tokens=24)
    assert answers[4] == ANSWERS[6] and answers[6] == ANSWERS[4]
    assert answers[:4] == ANSWERS[:4] and answers[5] == ANSWERS[5] and answers[7] == ANSWERS[7]


def test_max_new_tokens_bounds_the_answer(overfit):
    model, features, humans, _ = overfit
    tok = model.tokenizer
    short = generate_answers(model, features[:1], humans[:1], max_new_tokens=2)[0]
    assert short == tok.decode(tok(ANSWERS[0], add_special_tokens=False)["input_ids"][:2]).strip()
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_answers(model, features[:1], humans[:1], max_new_tokens=0)


def test_generation_leaves_the_training_mode_alone(overfit):
    model, features, humans, _ = overfit
    model.train()
    generate_answers(model, features[:1], humans[:1], max_new_tokens=1)
    assert model.training
