"""Merlin's 3D image encoder (I3ResNet), built in ctsurv, and its checkpoint loader.

Merlin's image encoder is an ImageNet ResNet-152 inflated to 3D ("center" inflation).  The
upstream ``merlin`` package downloads weights and a text model when it is constructed, so
ctsurv builds the same network itself and reads a local checkpoint file.

Architecture (full size: ``layers=(3, 8, 36, 3)``, ``width=64``):

* stem: Conv3d 3 -> width, kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3), no bias;
  BatchNorm3d; ReLU; MaxPool3d kernel 3, stride 2, padding 1 (all three axes);
* four stages of bottlenecks (1x1x1 -> 3x3x3 with stride s in all three axes -> 1x1x1, x4
  expansion) with ``width * (1, 2, 4, 8)`` inner channels, strides (1, 2, 2, 2); the first
  block of a stage has a ``downsample`` (1x1x1 conv with stride s, then batch norm);
* layer-4 output: ``width * 32`` channels (2048 at full size).

Parameter names match torchvision's ``resnet152`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...), which is what Merlin's checkpoint stores under the prefix
``encode_image.i3_resnet.``.

Axis order: the encoder takes volumes (B, 1, X, Y, Z) as the preprocessing writes them
(x->R, y->A, z->S), permutes them to (B, 1, Z, X, Y) and repeats the channel three times, as
Merlin does.  The layer-4 map is therefore (B, C, Z', X', Y'): (B, 2048, 10, 7, 7) for a
224 x 224 x 160 input.

Features (:meth:`I3ResNet.encode`):

* ``pooled`` (B, C): global average of the layer-4 map;
* ``tokens`` "inplane" (B, X' * Y', C): mean over the out-of-plane axis Z', token index
  ``x * Y' + y`` (row-major over (X', Y')): the paper's 49 tokens;
* ``tokens`` "all" (B, Z' * X' * Y', C): every position, Z-major (index ``(z * X' + x) * Y' + y``),
  as Merlin's report generator flattens layer 4: 490 tokens.

The demo has no Merlin weights offline.  It loads ``packaged:demo-merlin``: a small variant of
the same class (``layers=(1, 1, 1, 1)``, ``width=16``: 512-d features) pre-trained offline by
``ctsurv pretrain-encoder`` and shipped with ctsurv (its ``CARD.md`` says how), read by the same
strict loader as Merlin's file.  With no checkpoint, :func:`build_encoder` makes the variant
with a deterministic random initialisation from a seed (random convolutional features).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn

from ..errors import DataError, missing

log = logging.getLogger(__name__)

MERLIN_LAYERS = (3, 8, 36, 3)
MERLIN_WIDTH = 64
CHECKPOINT_PREFIX = "encode_image.i3_resnet."
# Heads of Merlin's CLIP/EHR training, not part of the encoder.
DROPPED_HEADS = ("classifier.", "contrastive_head.")

TokenMode = Literal["inplane", "all"]


class Bottleneck3d(nn.Module):
    """Inflated ResNet bottleneck: 1x1x1, 3x3x3 (stride in all axes), 1x1x1, x4 channels."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv3d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class I3ResNet(nn.Module):
    """Merlin's inflated 3D ResNet image encoder (no classification heads).

    Args:
        layers: bottleneck blocks per stage; (3, 8, 36, 3) is Merlin's ResNet-152.
        width: channels of the stem; stage i has ``width * 2**i`` inner channels and
            ``width * 2**i * 4`` outputs.  64 is Merlin's.
    """

    def __init__(self, layers: Sequence[int] = MERLIN_LAYERS, width: int = MERLIN_WIDTH):
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1 or width < 1:
            raise ValueError(f"I3ResNet needs 4 stages of >= 1 block and width >= 1, got layers={layers}, width={width}")
        self.layers = layers
        self.width = int(width)
        self.conv1 = nn.Conv3d(3, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        in_channels = width
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            planes = width * 2**i
            stage = [Bottleneck3d(in_channels, planes, stride)]
            in_channels = planes * Bottleneck3d.expansion
            stage += [Bottleneck3d(in_channels, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.out_channels = in_channels

    def describe(self) -> dict:
        """Settings that identify the architecture (for caches and logs)."""
        return {"class": "I3ResNet", "layers": list(self.layers), "width": self.width, "out_channels": self.out_channels}

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Layer-4 feature map.

        Args:
            volume: (B, 1, X, Y, Z) float, the preprocessed CT in [0, 1].

        Returns:
            (B, C, Z', X', Y'); (B, 2048, 10, 7, 7) for a 224 x 224 x 160 input at full size.
        """
        if volume.ndim != 5 or volume.shape[1] != 1:
            raise ValueError(f"expected a volume batch (B, 1, X, Y, Z), got shape {tuple(volume.shape)}")
        # Merlin's convention: depth first, grey value repeated to ImageNet's three channels.
        x = volume.permute(0, 1, 4, 2, 3).expand(-1, 3, -1, -1, -1)
        # Follow the weights' memory format (channels-last when the model was converted).
        if self.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d) and not self.conv1.weight.is_contiguous():
            x = x.contiguous(memory_format=torch.channels_last_3d)
        else:
            x = x.contiguous()
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def encode(self, volume: torch.Tensor, tokens: TokenMode = "inplane") -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled vector and visual tokens of a batch, in float32.

        Args:
            volume: (B, 1, X, Y, Z).
            tokens: "inplane" (mean over Z', X' * Y' tokens) or "all" (Z' * X' * Y' tokens, Z-major).

        Returns:
            pooled (B, C) and tokens (B, T, C).
        """
        return pool_feature_map(self(volume), tokens)


def pool_feature_map(feature_map: torch.Tensor, tokens: TokenMode = "inplane") -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce a layer-4 map (B, C, Z', X', Y') to ``pooled`` (B, C) and ``tokens`` (B, T, C), float32."""
    fmap = feature_map.float()
    pooled = fmap.mean(dim=(2, 3, 4))
    if tokens == "inplane":
        grid = fmap.mean(dim=2)  # (B, C, X', Y')
    elif tokens == "all":
        grid = fmap  # (B, C, Z', X', Y')
    else:
        raise ValueError(f"tokens must be 'inplane' or 'all', got {tokens!r}")
    return pooled, grid.flatten(2).transpose(1, 2).contiguous()


def token_mode(n_tokens: int) -> TokenMode:
    """Map the config value (49 or 490, the counts at Merlin's grid) to a token mode."""
    if n_tokens == 49:
        return "inplane"
    if n_tokens == 490:
        return "all"
    raise ValueError(f"imaging.encoder.tokens must be 49 (mean over the out-of-plane axis) or 490 (all), got {n_tokens}")


def init_random(model: I3ResNet, seed: int = 0) -> I3ResNet:
    """Deterministic random initialisation (He-normal convs, unit batch norms) from ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            elif isinstance(module, nn.BatchNorm3d):
                module.reset_parameters()
    return model


def encoder_state_dict(checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The I3ResNet weights in a Merlin checkpoint, with the prefix stripped and heads dropped.

    Keys under ``encode_image.i3_resnet.`` are the encoder's, except ``classifier.*`` and
    ``contrastive_head.*`` (training heads), which are dropped.  Every other key
    (``encode_text.*``, and any other ``encode_image.*`` module) is ignored: it is not part
    of the layer-4 encoder.
    """
    out = {}
    for key, value in checkpoint.items():
        if not key.startswith(CHECKPOINT_PREFIX):
            continue
        name = key[len(CHECKPOINT_PREFIX):]
        if name.startswith(DROPPED_HEADS):
            continue
        out[name] = value
    return out


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def checkpoint_file(spec: str | Path) -> Path:
    """The weight file that ``imaging.encoder.checkpoint`` names.

    ``packaged:NAME`` is a model shipped with ctsurv (:func:`ctsurv.resources.resolve_model`,
    e.g. ``packaged:demo-merlin``); a folder (packaged or a user's) stands for its one weight
    file (``.safetensors``, ``.pt`` or ``.pth``); a file is itself.

    Raises:
        ConfigError: an unknown packaged name.
        DataError: the path does not exist, or a folder holds no weight file or several.
    """
    from ..resources import resolve_model

    path = resolve_model(spec)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if len(found) != 1:
            what = "no weight file" if not found else f"{len(found)} weight files ({', '.join(p.name for p in found)})"
            raise DataError(f"encoder checkpoint folder {path} holds {what}; it must hold exactly one "
                            f"{'/'.join(WEIGHT_SUFFIXES)} file, or name the file in imaging.encoder.checkpoint")
        return found[0]
    if not path.is_file():
        raise DataError(f"Merlin checkpoint {path} {missing(path)}; set imaging.encoder.checkpoint to the local .pt or "
                        ".safetensors file, or to packaged:demo-merlin (the demo's encoder)")
    return path


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pt``/``.pth`` (``weights_only=True``) or ``.safetensors`` file
    (or what :func:`checkpoint_file` makes of a folder or ``packaged:NAME``)."""
    path = checkpoint_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise DataError(f"Merlin checkpoint {path} could not be read as safetensors: {err}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types
        raise DataError(f"Merlin checkpoint {path} could not be read as a weights-only state dict: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"Merlin checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_merlin_checkpoint(model: I3ResNet, path: str | Path) -> I3ResNet:
    """Load Merlin's checkpoint file into ``model`` strictly (every encoder weight, no extra).

    Args:
        model: an :class:`I3ResNet` whose ``layers``/``width`` match the checkpoint.
        path: Merlin's state dict (e.g.
            ``i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt``).

    Returns:
        ``model``, with the weights loaded.

    Raises:
        DataError: the file is missing, unreadable, has no encoder weights, or its keys or
            shapes do not match the model.
    """
    weights = encoder_state_dict(read_checkpoint(path))
    if not weights:
        raise DataError(
            f"Merlin checkpoint {path} has no keys starting with '{CHECKPOINT_PREFIX}'; "
            "is it Merlin's image-encoder checkpoint?"
        )
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise DataError(
            f"Merlin checkpoint {path} does not match the encoder (layers={list(model.layers)}, width={model.width}): "
            f"{detail}. A Merlin checkpoint needs imaging.encoder.layers [3, 8, 36, 3] and width 64"
        ) from None
    log.info("loaded %d encoder tensors from %s", len(weights), path)
    return model


def build_encoder(
    checkpoint: str | Path | None = None,
    layers: Sequence[int] = MERLIN_LAYERS,
    width: int = MERLIN_WIDTH,
    seed: int = 0,
) -> I3ResNet:
    """The encoder in eval mode: Merlin's weights from ``checkpoint``, or seeded random ones.

    Args:
        checkpoint: Merlin's checkpoint file, a folder holding one, or ``packaged:NAME`` (the
            demo's ``packaged:demo-merlin``); None builds a randomly initialised encoder
            (random convolutional features).
        layers: blocks per stage.
        width: stem channels.
        seed: seed of the random initialisation (only without a checkpoint).
    """
    model = I3ResNet(layers=layers, width=width)
    if checkpoint is None:
        init_random(model, seed)
        log.info("no Merlin checkpoint: random encoder layers=%s width=%d seed=%d", list(layers), width, seed)
    else:
        load_merlin_checkpoint(model, checkpoint)
    return model.eval().requires_grad_(False)
