"""Prompts and token labels: one place that decides what the decoder reads and what it learns.

Prompt format
    ``chat_template``: the decoder's own chat template (``tokenizer.apply_chat_template`` with
    one user message and the generation prompt), used whenever the tokenizer has one.
    ``plain``: for base models without a template (LLaMA-2, RadLLaMA)::

        <bos>USER: {human text}\\nASSISTANT:{answer}<eos>

    The human text is LLaVA's first turn: clinical sentence, ``<image>``, question.

Sequence layout of a conversation of k turns (multi-turn records: each later turn is
rendered the same way, without a second BOS)::

    [bos] prompt_1 answer_1 eos prompt_2 answer_2 eos ...

Prompt and answer are tokenized separately and concatenated, so the boundary between
what is masked and what is learned is exact by construction (no re-tokenizing rounds with
hand-tuned offsets as in LLaVA's ``preprocess_*``).  Labels are -100 on BOS and every prompt
token (clinical sentence, ``<image>`` placeholder, question, template text); answer tokens
and the closing EOS keep their ids.  Generation stops at EOS.

``<image>`` is a special token of the tokenizer (added by :func:`ensure_image_token` only if
missing), so it is always exactly one id; :func:`ctsurv.vlm.merge.merge_image_tokens`
replaces it by the T projected visual tokens.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ..errors import DataError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
IMAGE_TOKEN = "<image>"
PLAIN_TEMPLATE = "USER: {human}\nASSISTANT:"


def choose_prompt_format(tokenizer) -> str:
    """"chat_template" when the tokenizer carries one, else "plain"."""
    return "chat_template" if getattr(tokenizer, "chat_template", None) else "plain"


def ensure_image_token(tokenizer, image_token: str = IMAGE_TOKEN) -> bool:
    """Add ``image_token`` as a special token unless the vocabulary has it; True when added."""
    if image_token in tokenizer.get_vocab():
        return False
    tokenizer.add_tokens([image_token], special_tokens=True)
    return True


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a pad token one (LLaMA's has none): ``unk``, else ``eos``.

    Padding positions are masked by the attention mask and labelled -100 from the sequence
    lengths, never by comparing ids, so reusing an existing token is safe and keeps the
    vocabulary (and the decoder's embedding matrix) unchanged.
    """
    if tokenizer.pad_token is not None:
        return
    if tokenizer.unk_token is not None:
        tokenizer.pad_token = tokenizer.unk_token
    elif tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    else:
        raise DataError("the decoder's tokenizer has no pad, unk or eos token; add an eos token to it")


def render_prompt(tokenizer, human_text: str, prompt_format: str) -> str:
    """The text the decoder reads before it answers (BOS included when the template writes it)."""
    if prompt_format == "chat_template":
        return tokenizer.apply_chat_template([{"role": "user", "content": human_text}], tokenize=False,
                                             add_generation_prompt=True)
    if prompt_format == "plain":
        return PLAIN_TEMPLATE.format(human=human_text)
    raise ValueError(f"prompt_format must be 'chat_template' or 'plain', got {prompt_format!r}")


def _prompt_ids(tokenizer, human_text: str, prompt_format: str, first: bool) -> list[int]:
    text = render_prompt(tokenizer, human_text, prompt_format)
    bos = tokenizer.bos_token
    if prompt_format == "chat_template":
        has_bos = bool(bos) and text.startswith(bos)
        if has_bos:
            text = text[len(bos):]
    else:
        has_bos = tokenizer.bos_token_id is not None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ([tokenizer.bos_token_id] if first and has_bos else []) + list(ids)


def tokenize_conversation(
    tokenizer,
    turns: Sequence[tuple[str, str | None]],
    prompt_format: str,
    max_length: int,
    image_token: str = IMAGE_TOKEN,
    image_tokens: int = 1,
    where: str = "",
) -> dict[str, list[int]]:
    """Token ids and labels of a conversation.

    Args:
        tokenizer: the decoder's tokenizer, with ``image_token`` in its vocabulary.
        turns: (human text, answer) pairs; the last answer may be None (a generation prompt).
        prompt_format: "chat_template" or "plain" (module docstring).
        max_length: the decoder's context; the placeholder counts as ``image_tokens``.
        image_token: the placeholder; exactly one in the whole conversation.
        image_tokens: T, how many positions the placeholder becomes after merging.
        where: prefix of error messages (file and record id).

    Returns:
        ``input_ids`` and ``labels`` (same length; -100 on every prompt token).

    Raises:
        DataError: no placeholder or more than one; a prompt that does not fit the context.
    """
    prefix = f"{where}: " if where else ""
    count = sum(human.count(image_token) for human, _ in turns)
    if count != 1:
        raise DataError(f"{prefix}the conversation has {count} '{image_token}' placeholders; it needs exactly one "
                        "(in the first human turn, between the clinical sentence and the question)")
    image_id = tokenizer.convert_tokens_to_ids(image_token)
    input_ids: list[int] = []
    labels: list[int] = []
    prompt_end = 0
    for i, (human, answer) in enumerate(turns):
        prompt = _prompt_ids(tokenizer, human, prompt_format, first=(i == 0))
        input_ids += prompt
        labels += [IGNORE_INDEX] * len(prompt)
        if i == 0:
            prompt_end = len(input_ids)
        if answer is None:
            if i != len(turns) - 1:
                raise ValueError("only the last turn may lack an answer")
            break
        target = list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
        input_ids += target
        labels += target
    if input_ids.count(image_id) != 1:
        raise DataError(f"{prefix}the tokenizer split '{image_token}' or the template added one; "
                        "it must be a single special token of the tokenizer")
    extra = image_tokens - 1
    if prompt_end + extra >= max_length:
        raise DataError(f"{prefix}the prompt is {prompt_end + extra} tokens ({image_tokens} of them image tokens), "
                        f"longer than the decoder's context of {max_length}; shorten the clinical sentence or question, "
                        "or use fewer visual tokens")
    if len(input_ids) + extra > max_length:
        keep = max_length - extra
        log.warning("%sconversation truncated from %d to %d tokens (decoder context %d)", prefix,
                    len(input_ids) + extra, max_length, max_length)
        input_ids, labels = input_ids[:keep], labels[:keep]
    return {"input_ids": input_ids, "labels": labels}


def tokenize_example(tokenizer, human_text: str, answer: str | None, prompt_format: str, max_length: int,
                     image_token: str = IMAGE_TOKEN, image_tokens: int = 1, where: str = "") -> dict[str, list[int]]:
    """One turn: :func:`tokenize_conversation` with ``[(human_text, answer)]``."""
    return tokenize_conversation(tokenizer, [(human_text, answer)], prompt_format, max_length,
                                 image_token=image_token, image_tokens=image_tokens, where=where)
