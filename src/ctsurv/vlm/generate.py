"""Answers from (visual tokens, clinical sentence + question): batched greedy decoding.

Prompts are left-padded so that every row's prompt ends at the last position; the first
pass runs the merged prompt (image tokens included) and fills the KV cache, then each step
feeds one token per row.  Position ids continue from each row's own prompt length, as in
training (:mod:`.merge`).  A row stops at EOS; the batch stops when every row has, or after
``max_new_tokens`` (bounded further by the decoder's context).  The ``<image>`` placeholder
is never generated.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError
from .model import CTVisionLanguageModel
from .prompt import tokenize_example


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) ids and attention mask with the padding on the left."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, length - len(seq):] = 1
    return ids, mask


def _forward_keywords(decoder) -> tuple[str, dict]:
    """The KV-cache argument's name (``cache`` in recent transformers, else ``past_key_values``)
    and ``logits_to_keep=1`` where the decoder supports it."""
    base = decoder.get_base_model() if hasattr(decoder, "get_base_model") else decoder
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), ({"logits_to_keep": 1} if "logits_to_keep" in params else {})


def _cache_of(output):
    keys = output.keys()
    return output["cache"] if "cache" in keys else output["past_key_values"]


@torch.inference_mode()
def _generate_batch(model: CTVisionLanguageModel, features: torch.Tensor, prompts: list[list[int]],
                    max_new_tokens: int) -> list[list[int]]:
    tokenizer = model.tokenizer
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    device = model.device
    embeds, mask, positions, _ = model.embed_inputs(features.to(device), ids.to(device), mask.to(device))
    budget = min(max_new_tokens, model.config.max_length - embeds.shape[1])
    if budget <= 0:
        raise DataError(f"a prompt of {embeds.shape[1]} tokens leaves no room to answer in the decoder's "
                        f"context of {model.config.max_length}")
    eos = tokenizer.eos_token_id
    cache_name, keep_kw = _forward_keywords(model.decoder)
    # Prefill: only the last position's logits are needed (B x L x vocab would be large).
    out = model.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                        return_dict=True, **keep_kw)
    batch = embeds.shape[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    generated: list[torch.Tensor] = []
    for step in range(budget):
        logits = out.logits[:, -1].float()
        logits[:, model.image_token_id] = float("-inf")
        token = logits.argmax(dim=-1)
        token = torch.where(finished, torch.full_like(token, eos), token)
        generated.append(token)
        finished |= token == eos
        if bool(finished.all()) or step == budget - 1:
            break
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
        positions = positions[:, -1:] + 1
        out = model.decoder(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                            use_cache=True, return_dict=True, **{cache_name: _cache_of(out)})
    tokens = torch.stack(generated, dim=1).tolist()
    return [row[: row.index(eos)] if eos in row else row for row in tokens]


def generate_answers(
    model: CTVisionLanguageModel,
    features: torch.Tensor | np.ndarray,
    human_texts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 16,
) -> list[str]:
    """Greedy answers, one per (features row, human text).

    Args:
        model: the vision-language model.
        features: (N, T, C) visual tokens.
        human_texts: N first human turns ("clinical sentence\\n<image>\\nquestion").
        max_new_tokens: at most this many answer tokens (EOS excluded).
        batch_size: prompts per decoding batch.

    Returns:
        N answers (special tokens removed, whitespace stripped).
    """
    features = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    if features.ndim != 3 or features.shape[0] != len(human_texts):
        raise ValueError(f"features must be (N={len(human_texts)}, T, C), got {tuple(features.shape)}")
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    config = model.config
    prompts = [
        tokenize_example(model.tokenizer, text, None, config.prompt_format, config.max_length,
                         image_token=config.image_token, image_tokens=features.shape[1], where=f"prompt {i}")["input_ids"]
        for i, text in enumerate(human_texts)
    ]
    was_training = model.training
    model.eval()
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            rows = _generate_batch(model, features[start:start + batch_size], prompts[start:start + batch_size],
                                   max_new_tokens)
            answers += [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows]
    finally:
        model.train(was_training)
    return answers
