"""Tiny decoders, feature stores and instruction records for the vision-language model tests.

Shared by the vlm tests (core, trainer, stage 2): import with ``from vlm_fixtures import ...``
(pytest puts ``tests/`` on ``sys.path``).  Everything is built offline in a tmp folder:

* :func:`tiny_decoder` saves a randomly initialised ``LlamaForCausalLM`` (hidden 32, 2 layers,
  4 heads) and a BPE tokenizer trained with ``tokenizers`` on the demo-like corpus below,
  exactly as ``save_pretrained`` writes a real model, so ``ctsurv.vlm.build`` loads it by path.
* :func:`tiny_store` writes a feature store with ``tokens`` (N, T, C), ``pooled`` and an
  ``encoder.json`` fingerprint.
* :func:`tiny_records` makes LLaVA-style records (clinical sentence, ``<image>``, question).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

ANSWERS = [
    "tumor in the left upper lobe, 3 cm",
    "tumor in the right lower lobe, 5 cm",
    "no tumor",
    "enlarged hilar lymph nodes",
    "small left pleural effusion",
    "no effusion",
    "bone lesion in the spine",
    "not mentioned",
]
QUESTIONS = [
    "Where is the primary tumor and what size?",
    "Which lymph nodes are involved?",
    "Is there pleural effusion?",
]
SENTENCES = ["64 year-old male, stage 1.", "A 61-year-old female."]

# A plain chat template (ChatML-like) for the "decoder has a chat template" case.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>\n{{ m['content'] }}\n"
    "{% else %}<|assistant|>\n{{ m['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _corpus() -> list[str]:
    lines = ANSWERS + QUESTIONS + SENTENCES + ["USER: ASSISTANT:", "<|user|> <|assistant|>"]
    return lines * 4


def tiny_tokenizer(pad_token: bool = True, image_token: bool = False, chat_template: bool = False,
                   vocab_size: int = 160):
    """A BPE tokenizer (Metaspace, like LLaMA's) as ``PreTrainedTokenizerFast``.

    Args:
        pad_token: give it a ``<pad>`` token (LLaMA's own tokenizer has none).
        image_token: already contain ``<image>`` (otherwise ``build`` must add it).
        chat_template: carry :data:`CHAT_TEMPLATE`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"] + (["<pad>"] if pad_token else [])
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?:;!-'\n<>|_")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    kwargs = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if pad_token:
        kwargs["pad_token"] = "<pad>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if image_token:
        tokenizer.add_tokens(["<image>"], special_tokens=True)
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_decoder(folder: str | Path, pad_token: bool = True, image_token: bool = False, chat_template: bool = False,
                 hidden: int = 32, layers: int = 2, heads: int = 4, max_positions: int = 128, seed: int = 0) -> Path:
    """Save a random tiny ``LlamaForCausalLM`` and its tokenizer to ``folder``; return the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = tiny_tokenizer(pad_token=pad_token, image_token=image_token, chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_store(folder: str | Path, study_ids: Sequence[str], tokens: int = 4, dim: int = 8, seed: int = 0,
               fingerprint: str = "tiny-encoder") -> Path:
    """A feature store with random ``tokens`` (N, T, C), their mean as ``pooled``, and ``encoder.json``."""
    from ctsurv.features import write_features

    rng = np.random.default_rng(seed)
    toks = rng.standard_normal((len(study_ids), tokens, dim)).astype(np.float32)
    folder = write_features(folder, list(study_ids), {"tokens": toks, "pooled": toks.mean(axis=1)})
    meta = {"fingerprint": fingerprint, "class": "I3ResNet", "tokens": tokens, "n_tokens": tokens}
    (folder / "encoder.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def tiny_records(study_ids: Sequence[str], answers: Sequence[str] | None = None, question: str = QUESTIONS[0],
                 sentence: str | None = SENTENCES[0]) -> list[dict]:
    """One single-turn LLaVA-style record per study; answer i for study i (cycled)."""
    answers = list(answers or ANSWERS)
    records = []
    for i, sid in enumerate(study_ids):
        prompt = f"{sentence}\n<image>\n{question}" if sentence else f"<image>\n{question}"
        records.append({
            "id": f"{sid}-q1", "image": f"{sid}.nii.gz", "study_id": sid, "question_ids": ["q1"],
            "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answers[i % len(answers)]}],
        })
    return records



def question_records(study_ids: Sequence[str], sentence: str = SENTENCES[0]) -> list[dict]:
    """One record per (study, question of QUESTIONS), ids ``{study}-{q}``; answer (i + q) for study i (cycled)."""
    return [{"id": f"{sid}-{q}", "image": f"{sid}.nii.gz", "study_id": sid, "question_ids": [f"q{q}"],
             "conversations": [{"from": "human", "value": f"{sentence}\n<image>\n{QUESTIONS[q]}"},
                               {"from": "gpt", "value": ANSWERS[(i + q) % len(ANSWERS)]}]}
            for i, sid in enumerate(study_ids) for q in range(len(QUESTIONS))]


_CACHE_ROOT: list[Path] = []


def cached_decoder(pad_token: bool = True, image_token: bool = False, chat_template: bool = False, seed: int = 0) -> Path:
    """:func:`tiny_decoder` built once per test process (read-only: do not write into it)."""
    import atexit
    import shutil
    import tempfile

    if not _CACHE_ROOT:
        root = Path(tempfile.mkdtemp(prefix="ctsurv-vlm-decoders-"))
        atexit.register(shutil.rmtree, root, True)
        _CACHE_ROOT.append(root)
    folder = _CACHE_ROOT[0] / f"pad{int(pad_token)}-img{int(image_token)}-chat{int(chat_template)}-seed{seed}"
    if not (folder / "config.json").exists():
        tiny_decoder(folder, pad_token=pad_token, image_token=image_token, chat_template=chat_template, seed=seed)
    return folder


LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
