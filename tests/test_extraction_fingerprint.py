"""Model fingerprints for the answer cache: a model folder's config and weights, not its path."""

from __future__ import annotations

import json
import shutil

from ctsurv.extraction.fingerprint import HEAD_BYTES, folder_fingerprint
from ctsurv.extraction.rules import RulesBackend


def model_folder(path, weights: bytes, config: dict | None = None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config or {"hidden_size": 16}), encoding="utf-8")
    (path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}), encoding="utf-8")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_folder_fingerprint_follows_config_and_weights_not_the_path(tmp_path):
    weights = bytes(range(256)) * 40
    base = folder_fingerprint(model_folder(tmp_path / "a" / "llm", weights))
    assert folder_fingerprint(model_folder(tmp_path / "b" / "other-name", weights)) == base  # copied elsewhere
    assert folder_fingerprint(model_folder(tmp_path / "c" / "llm", weights[::-1])) != base  # retrained, same size
    assert folder_fingerprint(model_folder(tmp_path / "d" / "llm", weights + b"\0")) != base  # other size
    assert folder_fingerprint(model_folder(tmp_path / "e" / "llm", weights, {"hidden_size": 32})) != base
    chat = model_folder(tmp_path / "f" / "llm", weights)
    (chat / "tokenizer_config.json").write_text(json.dumps({"chat_template": "other"}), encoding="utf-8")
    assert folder_fingerprint(chat) != base  # another chat template is another prompt


def test_large_weights_are_hashed_by_size_head_and_tail(tmp_path):
    big = bytearray(3 * HEAD_BYTES)
    folder = model_folder(tmp_path / "m", bytes(big))
    base = folder_fingerprint(folder)
    big[-1] = 1  # the last tensor changed
    (folder / "model.safetensors").write_bytes(bytes(big))
    assert folder_fingerprint(folder) != base


def test_a_gguf_folder_is_fingerprinted_by_the_chosen_file(tmp_path):
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "q4.gguf").write_bytes(b"GGUF-q4")
    (folder / "q8.gguf").write_bytes(b"GGUF-q8")
    q4 = folder_fingerprint(folder, "q4.gguf")
    assert q4 != folder_fingerprint(folder, "q8.gguf")
    (folder / "q8.gguf").write_bytes(b"GGUF-q8-requantised")
    assert folder_fingerprint(folder, "q4.gguf") == q4
    shutil.copy(folder / "q8.gguf", folder / "q4.gguf")
    assert folder_fingerprint(folder, "q4.gguf") != q4


def test_rules_fingerprint_is_its_source_code():
    assert RulesBackend().fingerprint == RulesBackend().fingerprint
    assert RulesBackend().fingerprint.startswith("rules-source:") and len(RulesBackend().fingerprint) > 20
