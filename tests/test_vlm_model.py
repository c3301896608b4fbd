"""Building the model: decoder loading, tokens, prompt formats, label masking, freezing."""

from __future__ import annotations

import json

import pytest
import torch
from vlm_fixtures import ANSWERS, LORA, QUESTIONS, SENTENCES, cached_decoder

from ctsurv.errors import DataError
from ctsurv.vlm import build
from ctsurv.vlm.prompt import IGNORE_INDEX, tokenize_conversation, tokenize_example

torch.set_num_threads(1)
HUMAN = f"{SENTENCES[0]}\n<image>\n{QUESTIONS[0]}"


@pytest.fixture(scope="module")
def plain_model():
    torch.manual_seed(0)
    return build(cached_decoder(pad_token=False), feature_dim=8, tokens=4)


@pytest.fixture(scope="module")
def chat_model():
    torch.manual_seed(0)
    return build(cached_decoder(chat_template=True), feature_dim=8, tokens=4, lora=LORA)


def _answer_part(tokenizer, example):
    kept = [t for t, lab in zip(example["input_ids"], example["labels"]) if lab != IGNORE_INDEX]
    assert kept == [lab for lab in example["labels"] if lab != IGNORE_INDEX]
    return kept


@pytest.mark.parametrize("which", ["plain_model", "chat_model"])
def test_label_masking_keeps_only_answer_and_eos(which, request):
    model = request.getfixturevalue(which)
    tok = model.tokenizer
    answer = ANSWERS[0]
    ex = tokenize_example(tok, HUMAN, answer, model.config.prompt_format, model.config.max_length, image_tokens=4)
    kept = _answer_part(tok, ex)
    assert kept[-1] == tok.eos_token_id
    assert tok.decode(kept[:-1]) == answer
    assert kept == tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # Labelled tokens are the last ones, contiguous: nothing of the prompt leaks in.
    n = len(kept)
    assert all(lab == IGNORE_INDEX for lab in ex["labels"][:-n])
    assert ex["labels"][-n:] == ex["input_ids"][-n:]
    assert ex["input_ids"].count(model.image_token_id) == 1
    assert ex["input_ids"][0] == tok.bos_token_id and ex["input_ids"].count(tok.bos_token_id) == 1


def test_prompt_formats_follow_the_tokenizer(plain_model, chat_model):
    assert plain_model.config.prompt_format == "plain"
    assert chat_model.config.prompt_format == "chat_template"
    plain = tokenize_example(plain_model.tokenizer, HUMAN, None, "plain", 128)
    text = plain_model.tokenizer.decode(plain["input_ids"])
    assert text.startswith("<s>") and "USER:" in text and text.endswith("ASSISTANT:")
    chat = tokenize_example(chat_model.tokenizer, HUMAN, None, "chat_template", 128)
    assert "<|assistant|>" in chat_model.tokenizer.decode(chat["input_ids"])
    assert all(lab == IGNORE_INDEX for lab in chat["labels"])


def test_multi_turn_labels_every_answer(plain_model):
    tok = plain_model.tokenizer
    turns = [(HUMAN, ANSWERS[0]), (QUESTIONS[1], ANSWERS[3])]
    ex = tokenize_conversation(tok, turns, "plain", 128, image_tokens=4)
    kept = _answer_part(tok, ex)
    eos = tok.eos_token_id
    first = tok(ANSWERS[0], add_special_tokens=False)["input_ids"]
    second = tok(ANSWERS[3], add_special_tokens=False)["input_ids"]
    assert kept == first + [eos] + second + [eos]
    assert ex["input_ids"].count(tok.bos_token_id) == 1


@pytest.mark.parametrize("text, count", [(f"{SENTENCES[0]}\n{QUESTIONS[0]}", 0), ("<image>\n<image>\nq", 2)])
def test_placeholder_count_is_checked(plain_model, text, count):
    with pytest.raises(DataError, match=f"train.json, record 'p1-q1': the conversation has {count} '<image>'"):
        tokenize_example(plain_model.tokenizer, text, "a", "plain", 128, where="train.json, record 'p1-q1'")


def test_prompt_longer_than_context_is_refused(plain_model):
    with pytest.raises(DataError, match=r"x.json, record 'r': the prompt is \d+ tokens \(120 of them image tokens\), longer "
                                         r"than the decoder's context of 128"):
        tokenize_example(plain_model.tokenizer, HUMAN, "a", "plain", 128, image_tokens=120, where="x.json, record 'r'")


def test_long_answer_is_truncated_to_the_context(plain_model):
    tok = plain_model.tokenizer
    prompt = len(tokenize_example(tok, HUMAN, None, "plain", 128)["input_ids"])
    ex = tokenize_example(tok, HUMAN, " ".join(ANSWERS), "plain", prompt + 5, image_tokens=1)
    assert len(ex["input_ids"]) == prompt + 5
    assert sum(lab != IGNORE_INDEX for lab in ex["labels"]) == 5


def test_tokenizer_without_pad_token_gets_one_and_image_token_is_added(plain_model):
    tok = plain_model.tokenizer
    assert tok.pad_token == tok.unk_token
    base = json.loads((cached_decoder(pad_token=False) / "config.json").read_text())["vocab_size"]
    assert len(tok) == base + 1
    assert plain_model.decoder.get_input_embeddings().weight.shape[0] == base + 1
    # The new row is zero, so rebuilding gives the same logits (LoRA folders rely on it).
    assert float(plain_model.decoder.get_output_embeddings().weight[-1].detach().abs().sum()) == 0.0


def test_image_token_already_in_the_vocabulary_is_not_added_again():
    folder = cached_decoder(image_token=True)
    model = build(folder, feature_dim=8, tokens=4)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    assert len(model.tokenizer) == vocab
    assert model.decoder.get_input_embeddings().weight.shape[0] == vocab


def test_forward_shapes_merged_labels_and_hidden_state(plain_model):
    tok = plain_model.tokenizer
    ex = tokenize_example(tok, HUMAN, ANSWERS[1], "plain", 128, image_tokens=4)
    ids = torch.tensor([ex["input_ids"]])
    labels = torch.tensor([ex["labels"]])
    features = torch.randn(1, 4, 8)
    out = plain_model(features, ids, torch.ones_like(ids), labels)
    length = ids.shape[1] + 3
    assert out.logits.shape == (1, length, len(tok))
    assert out.last_hidden_state.shape == (1, length, 32)
    assert out.attention_mask.shape == (1, length)
    assert out.n_label_tokens == sum(lab != IGNORE_INDEX for lab in ex["labels"])
    place = ex["input_ids"].index(plain_model.image_token_id)
    assert (out.labels[0, place:place + 4] == IGNORE_INDEX).all()
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    # The loss is the mean cross-entropy over answer tokens (+ EOS), computed independently here.
    logp = torch.log_softmax(out.logits[0, :-1].float(), dim=-1)
    target = out.labels[0, 1:]
    keep = target != IGNORE_INDEX
    manual = -logp[keep].gather(1, target[keep, None]).mean()
    assert torch.allclose(out.loss, manual, atol=1e-6)


def test_features_change_the_logits(plain_model):
    ex = tokenize_example(plain_model.tokenizer, HUMAN, None, "plain", 128)
    ids = torch.tensor([ex["input_ids"]])
    a = plain_model(torch.zeros(1, 4, 8), ids, torch.ones_like(ids)).logits[0, -1]
    b = plain_model(torch.ones(1, 4, 8), ids, torch.ones_like(ids)).logits[0, -1]
    assert (a - b).abs().max() > 1e-4


def test_freeze_lora_trains_projector_and_adapter_only(chat_model):
    chat_model.freeze(projector=False, decoder=False)
    trainable = {n for n, p in chat_model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("projector.")} == {"projector.weight", "projector.bias"}
    decoder_names = {n for n in trainable if n.startswith("decoder.")}
    assert decoder_names and all("lora_" in n for n in decoder_names)
    chat_model.freeze(projector=True, decoder=False)
    assert not any(p.requires_grad for p in chat_model.projector.parameters())
    chat_model.freeze(projector=True, decoder=True)
    assert not any(p.requires_grad for p in chat_model.parameters())


def test_full_fine_tuning_trains_every_decoder_weight(plain_model):
    plain_model.freeze(projector=False, decoder=False)
    assert all(p.requires_grad for p in plain_model.parameters())


def test_mlp_projector_option():
    model = build(cached_decoder(), feature_dim=8, tokens=4, projector="mlp2x_gelu")
    assert model.projector(torch.zeros(2, 4, 8)).shape == (2, 4, 32)
    assert isinstance(model.projector[1], torch.nn.GELU)


def test_decoder_folder_errors(tmp_path):
    with pytest.raises(DataError, match="decoder folder .*missing.* not found"):
        build(tmp_path / "missing", feature_dim=8, tokens=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no config.json"):
        build(tmp_path / "empty", feature_dim=8, tokens=4)
    from transformers import ViTConfig

    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(tmp_path / "vit")
    with pytest.raises(DataError, match="holds a 'vit' model, which is not a causal language model"):
        build(tmp_path / "vit", feature_dim=8, tokens=4)


@pytest.mark.parametrize("lora", [None, LORA])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(lora):
    """Recomputing activations in the backward pass changes memory, never the numbers."""
    tokenizer = build(cached_decoder(), feature_dim=8, tokens=4).tokenizer
    ex = tokenize_example(tokenizer, HUMAN, ANSWERS[1], "plain", 128, image_tokens=4)
    ids, labels = torch.tensor([ex["input_ids"]]), torch.tensor([ex["labels"]])
    features = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(3))
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build(cached_decoder(), feature_dim=8, tokens=4, lora=lora, gradient_checkpointing=checkpointing)
        model.train()
        out = model(features, ids, torch.ones_like(ids), labels)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 2
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5), name


@pytest.mark.parametrize("which", ["plain_model", "chat_model"])
def test_only_the_last_hidden_state_is_kept_and_it_is_the_decoders(which, request):
    """The forward keeps the LM head's input, which is the decoder's final (normed) hidden state:
    the same tensor output_hidden_states=True ends with, without every other layer's."""
    model = request.getfixturevalue(which)
    ex = tokenize_example(model.tokenizer, HUMAN, ANSWERS[0], model.config.prompt_format, 128, image_tokens=4)
    ids = torch.tensor([ex["input_ids"]])
    features = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1))
    calls = []
    original = model.decoder.forward

    def spy(*args, **kwargs):
        calls.append(kwargs.get("output_hidden_states"))
        return original(*args, **kwargs)

    model.decoder.forward = spy
    try:
        with torch.no_grad():
            out = model(features, ids, torch.ones_like(ids))
    finally:
        del model.decoder.forward
    assert calls == [None]
    embeds, mask, positions, _ = model.embed_inputs(features, ids, torch.ones_like(ids))
    with torch.no_grad():
        ref = model.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_hidden_states=True,
                            use_cache=False, return_dict=True)
    assert torch.equal(out.last_hidden_state, ref.hidden_states[-1])
    assert torch.equal(out.logits, ref.logits)


@pytest.mark.parametrize("lora", [None, LORA])
def test_gradient_checkpointing_is_a_method_of_the_model(lora):
    """The trainer calls model.gradient_checkpointing_enable(); the model finds its decoder."""
    model = build(cached_decoder(), feature_dim=8, tokens=4, lora=lora)
    base = model.decoder.get_base_model() if lora else model.decoder
    name = "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing") else "is_gradient_checkpointing"
    assert not getattr(base, name)
    model.gradient_checkpointing_enable()
    assert getattr(base, name) and base.config.use_cache is False
