"""The seam between image and text: the ``<image>`` placeholder becomes T visual embeddings.

This is what LLaVA's ``prepare_inputs_labels_for_multimodal`` (``llava_arch.py``) does, for
the one case ctsurv needs (exactly one image per sequence, placed once in the first prompt),
vectorised and documented.

Given a batch of embedded prompts (B, L, H) where each row holds the placeholder id exactly
once among its real (attention-mask 1) tokens, and that row's projected image (B, T, H), row
b becomes::

    text[:p_b]  image_b[0..T-1]  text[p_b + 1:]          (length L + T - 1)

Every row grows by the same T - 1 positions, so padding stays where it was:

* right padding (training; ``collate`` pads on the right): real tokens first, pads last;
* left padding (generation; the prompt must end at the last position so that the first
  generated token follows it): pads first, real tokens last.

Both work because nothing here depends on the padding side: positions are counted from the
attention mask.  Outputs:

* ``attention_mask``: the text mask carried over, 1 on the image positions;
* ``position_ids``: ``cumsum(attention_mask) - 1`` (0 at the first real token, whichever the
  padding side), 1 on padding as Hugging Face's ``generate`` does, so that training
  (right-padded) and generation (left-padded) give the same prompt the same positions;
* ``labels``: the text labels carried over (the caller already set -100 on the clinical
  sentence, question, template text and padding; see :mod:`.prompt`), -100 on all T image
  positions.
"""

from __future__ import annotations

import torch

from .prompt import IGNORE_INDEX


def merge_image_tokens(
    inputs_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    image_embeds: torch.Tensor,
    image_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Replace each row's ``<image>`` position by its T image embeddings.

    Args:
        inputs_embeds: (B, L, H) token embeddings of ``input_ids`` (the placeholder's row of
            the embedding matrix is never used).
        input_ids: (B, L) with ``image_token_id`` exactly once per row among real tokens.
        attention_mask: (B, L), 1 on real tokens, 0 on padding (either side).
        labels: (B, L) or None.
        image_embeds: (B, T, H) projected visual tokens, same dtype as ``inputs_embeds``.
        image_token_id: the placeholder's id.

    Returns:
        ``(inputs_embeds (B, L+T-1, H), attention_mask (B, L+T-1), position_ids (B, L+T-1),
        labels (B, L+T-1) or None)``.

    Raises:
        ValueError: a row without exactly one placeholder, or mismatched batch sizes.
    """
    batch, length, hidden = inputs_embeds.shape
    if image_embeds.ndim != 3 or image_embeds.shape[0] != batch or image_embeds.shape[2] != hidden:
        raise ValueError(f"image_embeds must be (B={batch}, T, H={hidden}), got {tuple(image_embeds.shape)}")
    n_image = image_embeds.shape[1]
    is_placeholder = (input_ids == image_token_id) & attention_mask.bool()
    counts = is_placeholder.sum(dim=1)
    if not bool((counts == 1).all()):
        bad = int(torch.nonzero(counts != 1)[0, 0])
        raise ValueError(f"row {bad} holds the image placeholder {int(counts[bad])} times; each row needs exactly one")
    place = is_placeholder.int().argmax(dim=1)  # (B,) position of the placeholder

    device = inputs_embeds.device
    new_length = length + n_image - 1
    j = torch.arange(new_length, device=device).unsqueeze(0)  # (1, L')
    p = place.unsqueeze(1)  # (B, 1)
    in_image = (j >= p) & (j < p + n_image)  # (B, L')
    # Source index of each new position: text j before the image, text j - T + 1 after it.
    text_src = torch.where(j < p, j, j - n_image + 1).clamp(0, length - 1)
    image_src = (j - p).clamp(0, n_image - 1)

    text_part = torch.gather(inputs_embeds, 1, text_src.unsqueeze(-1).expand(-1, -1, hidden))
    image_part = torch.gather(image_embeds, 1, image_src.unsqueeze(-1).expand(-1, -1, hidden))
    embeds = torch.where(in_image.unsqueeze(-1), image_part.to(inputs_embeds.dtype), text_part)

    mask = torch.where(in_image, torch.ones_like(text_src), torch.gather(attention_mask.long(), 1, text_src))
    mask = mask.to(attention_mask.dtype)
    position_ids = (mask.long().cumsum(dim=1) - 1).masked_fill(mask == 0, 1)

    new_labels = None
    if labels is not None:
        new_labels = torch.where(in_image, torch.full_like(text_src, IGNORE_INDEX), torch.gather(labels, 1, text_src))
    return embeds, mask, position_ids, new_labels
