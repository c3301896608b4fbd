"""The seam: <image> placeholder -> T image embeddings, with masks, positions and labels."""

from __future__ import annotations

import pytest
import torch

from ctsurv.vlm.merge import merge_image_tokens

IMG = 9
PAD = 0
T = 3


def _embed(ids: torch.Tensor) -> torch.Tensor:
    """Embedding = (id, 0): recognisable text rows."""
    return torch.stack([ids.float(), torch.zeros_like(ids, dtype=torch.float32)], dim=-1)


def _images(batch: int) -> torch.Tensor:
    """Image token k of row b = (-(10 b + k + 1), 1): recognisable and never equal to text."""
    rows = [[[-(10.0 * b + k + 1), 1.0] for k in range(T)] for b in range(batch)]
    return torch.tensor(rows)




def test_right_padding_positions_masks_labels():
    ids = torch.tensor([[5, IMG, 6, 7, PAD], [IMG, 8, PAD, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    labels = torch.tensor([[-100, -100, -100, 7, -100], [-100, 8, -100, -100, -100]])
    emb, new_mask, pos, new_labels = merge_image_tokens(_embed(ids), ids, mask, labels, _images(2), IMG)

    assert emb.shape == (2, 7, 2)
    assert emb[0, :, 0].tolist() == [5, -1, -2, -3, 6, 7, PAD]
    assert emb[1, :, 0].tolist() == [-11, -12, -13, 8, PAD, PAD, PAD]
    assert new_mask.tolist() == [[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0]]
    assert pos.tolist() == [[0, 1, 2, 3, 4, 5, 1], [0, 1, 2, 3, 1, 1, 1]]
    assert new_labels.tolist() == [[-100, -100, -100, -100, -100, 7, -100], [-100, -100, -100, 8, -100, -100, -100]]


def test_left_padding_positions_masks_labels():
    ids = torch.tensor([[5, IMG, 6, 7], [PAD, PAD, IMG, 8]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    emb, new_mask, pos, new_labels = merge_image_tokens(_embed(ids), ids, mask, None, _images(2), IMG)

    assert new_labels is None
    assert emb[0, :, 0].tolist() == [5, -1, -2, -3, 6, 7]
    assert emb[1, :, 0].tolist() == [PAD, PAD, -11, -12, -13, 8]
    assert new_mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
    assert pos.tolist() == [[0, 1, 2, 3, 4, 5], [1, 1, 0, 1, 2, 3]]


def test_left_and_right_padding_agree_on_real_tokens():
    """The same prompt gets the same embeddings and positions whichever side is padded."""
    right = torch.tensor([[3, 4, IMG, 5, PAD, PAD]])
    left = torch.tensor([[PAD, PAD, 3, 4, IMG, 5]])
    m_right = (right != PAD).long()
    m_left = (left != PAD).long()
    img = _images(1)
    e_r, k_r, p_r, _ = merge_image_tokens(_embed(right), right, m_right, None, img, IMG)
    e_l, k_l, p_l, _ = merge_image_tokens(_embed(left), left, m_left, None, img, IMG)
    assert torch.equal(e_r[k_r.bool()], e_l[k_l.bool()])
    assert torch.equal(p_r[k_r.bool()], p_l[k_l.bool()])
    assert p_r[k_r.bool()].tolist() == list(range(6))


def test_gradients_reach_image_embeddings_only_at_image_positions():
    ids = torch.tensor([[5, IMG, 6]])
    img = _images(1).requires_grad_(True)
    emb, *_ = merge_image_tokens(_embed(ids), ids, torch.ones_like(ids), None, img, IMG)
    emb[0, 1:4].sum().backward()
    assert img.grad.tolist() == [[[1.0, 1.0]] * T]


@pytest.mark.parametrize("row", [[5, 6, 7], [IMG, 6, IMG]])
def test_rows_without_exactly_one_placeholder_are_refused(row):
    ids = torch.tensor([row])
    with pytest.raises(ValueError, match="row 0 holds the image placeholder"):
        merge_image_tokens(_embed(ids), ids, torch.ones_like(ids), None, _images(1), IMG)


def test_placeholder_id_in_padding_is_ignored():
    """Padding may use any id; only real tokens count."""
    ids = torch.tensor([[5, IMG, 6, IMG]])
    mask = torch.tensor([[1, 1, 1, 0]])
    emb, new_mask, *_ = merge_image_tokens(_embed(ids), ids, mask, None, _images(1), IMG)
    assert emb[0, :, 0].tolist() == [5, -1, -2, -3, 6, IMG]
    assert new_mask.tolist() == [[1, 1, 1, 1, 1, 0]]


def test_batch_mismatch_is_refused():
    ids = torch.tensor([[5, IMG]])
    with pytest.raises(ValueError, match="image_embeds must be"):
        merge_image_tokens(_embed(ids), ids, torch.ones_like(ids), None, _images(2), IMG)
