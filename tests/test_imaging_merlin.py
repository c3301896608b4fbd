"""The Merlin image encoder: architecture, checkpoint loading, axis order and token layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctsurv.errors import DataError
from ctsurv.imaging.merlin import (
    CHECKPOINT_PREFIX,
    I3ResNet,
    build_encoder,
    encoder_state_dict,
    init_random,
    load_merlin_checkpoint,
    pool_feature_map,
    token_mode,
)


def merlin_style_checkpoint(model: I3ResNet) -> dict[str, torch.Tensor]:
    """A state dict laid out like Merlin's file: encoder under the prefix, heads, text encoder."""
    state = {CHECKPOINT_PREFIX + k: v for k, v in model.state_dict().items()}
    c = model.out_channels
    state[CHECKPOINT_PREFIX + "classifier.weight"] = torch.randn(1692, c, 1, 1, 1)
    state[CHECKPOINT_PREFIX + "classifier.bias"] = torch.randn(1692)
    state[CHECKPOINT_PREFIX + "contrastive_head.weight"] = torch.randn(512, c, 1, 1, 1)
    state[CHECKPOINT_PREFIX + "contrastive_head.bias"] = torch.randn(512)
    state["encode_text.text_encoder.embeddings.word_embeddings.weight"] = torch.randn(10, 8)
    state["encode_text.linear_layer.weight"] = torch.randn(512, 8)
    return state


def small(seed: int = 0) -> I3ResNet:
    return build_encoder(None, layers=(1, 1, 1, 1), width=8, seed=seed)


# Merlin's published image encoder, written down from its description (ResNet-152 inflated
# to 3D; /work/shared/DESIGN.md "Merlin image encoder"), not from ctsurv's class: stem conv
# (64, 3, 3, 7, 7); bottleneck stages of 3/8/36/3 blocks with widths 64/128/256/512 and
# expansion 4 (1x1x1, 3x3x3, 1x1x1 convolutions; a 1x1x1 downsample in each stage's first
# block); batch-norm keys as in torchvision; no fc (Merlin's heads are separate keys).
MERLIN_PREFIX = "encode_image.i3_resnet."
MERLIN_STAGES = [(64, 3), (128, 8), (256, 36), (512, 3)]


def merlin_architecture() -> dict[str, tuple[int, ...]]:
    """Key -> shape of Merlin's I3ResNet-152 state dict (without the checkpoint prefix)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batch_norm(name, c):
        shapes.update({f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
                       f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()})

    shapes["conv1.weight"] = (64, 3, 3, 7, 7)
    batch_norm("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(MERLIN_STAGES, start=1):
        for b in range(blocks):
            name = f"layer{stage}.{b}"
            shapes[f"{name}.conv1.weight"] = (planes, inplanes, 1, 1, 1)
            batch_norm(f"{name}.bn1", planes)
            shapes[f"{name}.conv2.weight"] = (planes, planes, 3, 3, 3)
            batch_norm(f"{name}.bn2", planes)
            shapes[f"{name}.conv3.weight"] = (4 * planes, planes, 1, 1, 1)
            batch_norm(f"{name}.bn3", 4 * planes)
            if b == 0:
                shapes[f"{name}.downsample.0.weight"] = (4 * planes, inplanes, 1, 1, 1)
                batch_norm(f"{name}.downsample.1", 4 * planes)
            inplanes = 4 * planes
    return shapes


def test_architecture_matches_merlins_published_one():
    spec = merlin_architecture()
    # 6 stem tensors + 18 per bottleneck x 50 + 6 per downsample x 4: the 930 tensors of the
    # released Merlin-derived checkpoints (DESIGN.md).
    assert len(spec) == 6 + 18 * 50 + 6 * 4 == 930
    with torch.device("meta"):
        model = I3ResNet()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) ^ set(spec)) == []
    assert {k: s for k, s in ours.items() if spec[k] != s} == {}
    assert CHECKPOINT_PREFIX == MERLIN_PREFIX


def test_full_size_checkpoint_loads_strictly_and_gives_2048x10x7x7(tmp_path):
    gen = torch.Generator().manual_seed(0)
    weights = {}
    for key, shape in merlin_architecture().items():
        if key.endswith("num_batches_tracked"):
            weights[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            weights[key] = torch.rand(shape, generator=gen) + 0.5
        elif ".bn" in key or key.startswith("bn1") or "downsample.1" in key:
            weights[key] = torch.rand(shape, generator=gen) * 0.2 + (0.9 if key.endswith("weight") else -0.1)
        else:  # conv weights, He-scaled so the 50 blocks keep finite activations
            fan_in = int(np.prod(shape[1:]))
            weights[key] = torch.randn(shape, generator=gen) * (2 / fan_in) ** 0.5
    checkpoint = {MERLIN_PREFIX + k: v for k, v in weights.items()}
    checkpoint[MERLIN_PREFIX + "classifier.weight"] = torch.randn(1692, 2048, 1, 1, 1)
    checkpoint[MERLIN_PREFIX + "classifier.bias"] = torch.randn(1692)
    checkpoint["encode_text.linear_layer.weight"] = torch.randn(512, 8)
    path = tmp_path / "merlin.pt"
    torch.save(checkpoint, path)
    del checkpoint

    target = I3ResNet()
    assert target.out_channels == 2048
    load_merlin_checkpoint(target, path)
    state = target.state_dict()
    for key in ("conv1.weight", "layer3.35.bn2.running_var", "layer4.0.downsample.1.weight", "layer1.0.bn1.num_batches_tracked"):
        assert torch.equal(state[key], weights[key])
    del weights, state

    # The one full-size forward of the test suite (about 7-25 s on a CPU; channels-last is faster there).
    target.eval().to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        fmap = target(torch.rand(1, 1, 224, 224, 160))
    assert fmap.shape == (1, 2048, 10, 7, 7)  # (B, C, Z', X', Y')
    assert torch.isfinite(fmap).all()
    pooled, tokens = pool_feature_map(fmap, "inplane")
    assert pooled.shape == (1, 2048) and tokens.shape == (1, 49, 2048)
    assert pool_feature_map(fmap, "all")[1].shape == (1, 490, 2048)


def test_heads_and_text_encoder_are_dropped():
    model = small()
    state = merlin_style_checkpoint(model)
    kept = encoder_state_dict(state)
    assert set(kept) == set(model.state_dict())


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda s: s.pop(CHECKPOINT_PREFIX + "layer2.0.bn1.weight"), "Missing key"),
        (lambda s: s.__setitem__(CHECKPOINT_PREFIX + "fc.weight", torch.zeros(3, 3)), "Unexpected key"),
        (lambda s: s.__setitem__(CHECKPOINT_PREFIX + "conv1.weight", torch.zeros(8, 3, 1, 7, 7)), "size mismatch"),
    ],
)
def test_loading_is_strict(tmp_path, spoil, message):
    model = small()
    state = merlin_style_checkpoint(model)
    spoil(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(DataError, match=message) as err:
        load_merlin_checkpoint(small(), tmp_path / "bad.pt")
    assert "bad.pt" in str(err.value)


def test_checkpoint_without_the_prefix_is_rejected(tmp_path):
    torch.save(small().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(DataError, match="encode_image.i3_resnet"):
        load_merlin_checkpoint(small(), tmp_path / "plain.pt")


class _NotAWeight:
    pass


def test_checkpoint_loading_is_weights_only(tmp_path):
    path = tmp_path / "pickled.pt"
    # An arbitrary pickled object, as a malicious file would hold.
    torch.save({"payload": _NotAWeight(), CHECKPOINT_PREFIX + "conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(DataError, match="weights-only"):
        load_merlin_checkpoint(small(), path)
    with pytest.raises(DataError, match="not found"):
        load_merlin_checkpoint(small(), tmp_path / "missing.pt")


def test_loaded_small_variant_reproduces_the_source_model(tmp_path):
    source = small(seed=3)
    torch.save(merlin_style_checkpoint(source), tmp_path / "small.pt")
    loaded = build_encoder(tmp_path / "small.pt", layers=(1, 1, 1, 1), width=8)
    x = torch.rand(2, 1, 32, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x), source(x))


def test_input_axes_are_permuted_to_depth_first():
    # x=64, y=32, z=48 -> stem keeps z, halves x and y; the pool and stages 2-4 halve all axes.
    with torch.inference_mode():
        fmap = small()(torch.rand(1, 1, 64, 32, 48))
    assert fmap.shape == (1, 256, 3, 2, 1)  # (B, 32 * width, Z', X', Y')


def test_token_layout():
    b, c, z, x, y = 2, 3, 4, 5, 6
    fmap = torch.arange(b * c * z * x * y, dtype=torch.float32).reshape(b, c, z, x, y)
    pooled, inplane = pool_feature_map(fmap, "inplane")
    _, every = pool_feature_map(fmap, "all")
    assert inplane.shape == (b, x * y, c) and every.shape == (b, z * x * y, c)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3, 4)))
    # in-plane token x * Y' + y is the mean over z; "all" token (z * X' + x) * Y' + y.
    torch.testing.assert_close(inplane[1, 3 * y + 2], fmap[1, :, :, 3, 2].mean(dim=1))
    torch.testing.assert_close(every[1, (2 * x + 3) * y + 4], fmap[1, :, 2, 3, 4])
    assert token_mode(49) == "inplane" and token_mode(490) == "all"
    with pytest.raises(ValueError, match="49"):
        token_mode(50)


def test_random_init_is_deterministic_per_seed():
    a, b, c = small(seed=1).state_dict(), small(seed=1).state_dict(), small(seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layer2.0.conv2.weight"], c["layer2.0.conv2.weight"])
    model = init_random(I3ResNet(layers=(1, 1, 1, 1), width=16), seed=0)
    assert model.out_channels == 512


def test_demo_encoder_features_are_informative_and_fit_float16():
    model = build_encoder(None, layers=(1, 1, 1, 1), width=16, seed=0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 48, 48, 32, generator=gen)
    with torch.inference_mode():
        pooled, tokens = model.encode(x)
    assert pooled.shape == (4, 512) and tokens.shape == (4, 4, 512)  # layer 4: 1 x 2 x 2
    assert float(pooled.std(dim=0).mean()) > 1e-3  # different volumes, different vectors
    assert float(tokens.abs().max()) < 1e3  # far from float16's limit (65504)


def test_bf16_autocast_matches_fp32_and_channels_last_matches_contiguous():
    model = build_encoder(None, layers=(1, 1, 1, 1), width=16, seed=0)
    x = torch.rand(2, 1, 48, 48, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, _ = model.encode(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = model.encode(x)
        model.to(memory_format=torch.channels_last_3d)
        last, _ = model.encode(x)
    cosine = torch.nn.functional.cosine_similarity(ref, low.float(), dim=1)
    assert cosine.min() > 0.999
    np.testing.assert_allclose(last.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
