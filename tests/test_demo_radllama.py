"""The shipped demo decoder (packaged:demo-radllama): its files match its card, its corpus is not the demo's."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ctsurv.resources import resolve_model
from ctsurv.vlm.demo_decoder import file_sha256

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder():
    return resolve_model("packaged:demo-radllama")


def test_shipped_files_match_the_card(folder):
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(card["sha256"])
    for name, digest in card["sha256"].items():
        assert file_sha256(folder / name) == digest, name
    shipped = {p.name for p in folder.iterdir() if p.is_file()} - {"card.json", "CARD.md"}
    assert shipped == set(card["sha256"])  # nothing unlisted ships


def test_corpus_seed_is_not_the_demo_seed(folder, repo):
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text(encoding="utf-8"))
    assert card["corpus_seed"] != config["demo"]["seed"]
    assert card["heldout"]["seed"] not in (config["demo"]["seed"], card["corpus_seed"])
    assert card["corpus"]["reports"] >= 10000
    assert config["vlm"]["decoder"] == "packaged:demo-radllama"


def test_it_loads_through_the_users_path_and_knows_the_report_language(folder):
    from ctsurv.vlm.model import load_decoder

    tokenizer, decoder = load_decoder(folder)
    assert type(decoder).__name__ == "LlamaForCausalLM" and decoder.dtype == torch.float32
    text = "Findings: Small bilateral pleural effusions. No mediastinal or hilar lymphadenopathy."
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        loss = float(decoder(input_ids=ids, labels=ids).loss)
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert loss < 2.0 < card["summary"]["val_loss_before"]  # far below the untrained model's held-out loss
