"""The shipped demo encoder (src/ctsurv/models/demo-merlin): its files match its card, it was
made from a corpus the demo never uses, and the demo config loads it by its packaged name
through the same strict loader as a real Merlin checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ctsurv.hashing import file_sha256
from ctsurv.imaging.merlin import CHECKPOINT_PREFIX, build_encoder, checkpoint_file, read_checkpoint
from ctsurv.resources import DEMO_CONFIG, packaged, resolve_model

FOLDER = resolve_model("packaged:demo-merlin")
CARD = json.loads((FOLDER / "card.json").read_text(encoding="utf-8"))


def test_shipped_files_match_the_card():
    assert CARD["files"], "card.json lists no files"
    for name, digest in CARD["files"].items():
        assert file_sha256(FOLDER / name) == digest, f"{name} differs from its card's sha256"
    weights = sorted(p.name for p in FOLDER.iterdir() if p.suffix == ".safetensors")
    assert weights == ["demo-merlin.safetensors"] and "demo-merlin.safetensors" in CARD["files"]


def test_the_corpus_is_not_a_demo_cohort():
    demo_seed = yaml.safe_load(packaged(DEMO_CONFIG).read_text(encoding="utf-8"))["demo"]["seed"]
    assert CARD["corpus_seed"] != demo_seed and CARD["heldout_seed"] != demo_seed
    assert CARD["corpus_size"] >= 1000


def test_the_demo_config_loads_it_strictly_in_fp32():
    config = yaml.safe_load(packaged(DEMO_CONFIG).read_text(encoding="utf-8"))
    encoder = config["imaging"]["encoder"]
    assert encoder["checkpoint"] == "packaged:demo-merlin" and encoder["pretrain"] is False
    assert encoder["precision"] == "fp32"  # figures must not depend on the CPU's bf16 support
    assert [encoder["layers"], encoder["width"]] == [CARD["architecture"]["layers"], CARD["architecture"]["width"]]
    assert checkpoint_file(encoder["checkpoint"]) == FOLDER / "demo-merlin.safetensors"
    state = read_checkpoint(encoder["checkpoint"])
    assert all(k.startswith(CHECKPOINT_PREFIX) for k in state)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    model = build_encoder(encoder["checkpoint"], encoder["layers"], encoder["width"])
    random = build_encoder(None, encoder["layers"], encoder["width"], encoder["seed"])
    assert not torch.equal(model.conv1.weight, random.conv1.weight)
    with pytest.raises(Exception, match="does not match the encoder"):
        build_encoder(encoder["checkpoint"], encoder["layers"], encoder["width"] * 2)


def test_models_fit_the_wheel_budget():
    models = FOLDER.parent
    total = sum(p.stat().st_size for p in models.rglob("*") if p.is_file())
    assert total <= 25 * 2**20, f"packaged models take {total / 2**20:.1f} MB, more than the 25 MB budget"
