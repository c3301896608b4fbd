"""Pre-train the small I3ResNet the way Merlin was trained: phenotype codes + report text.

The demo has no Merlin weights.  Random convolutions see body shape and little else
(emphysema and tumour size are unreadable from their pooled features), so the demo trains
its stand-in on the pretrain cohort with Merlin's two signals:

* a multi-label loss on a phenotype table (``study_id`` plus one column per code): binary
  0/1 columns get a binary cross-entropy (Merlin's EHR phenotype codes); other numeric
  columns, if a table has them, a mean squared error on standardised values;
* a CLIP-style contrastive loss between the pooled image features (through a projection
  head) and a fixed embedding of each report (the packaged MiniLM, mean pooled; computed
  once before training).

Only the cohort's training split is trained on; the validation split's loss picks the best
epoch and stops training early.  Augmentations are intensity jitter and small shifts only:
the encoder is orientation-sensitive, so no flips or rotations.

The result is saved in Merlin's key layout (:data:`ctsurv.imaging.merlin.CHECKPOINT_PREFIX`
on every encoder key, the heads under ``classifier.*`` and ``contrastive_head.*``, the text
projection under ``encode_text.*``) as safetensors, so that
:func:`ctsurv.imaging.merlin.load_merlin_checkpoint`, the strict loader of a real
checkpoint, reads it and ``encode_images`` needs no special case.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_write
from ..errors import DataError
from ..errors import missing as file_missing
from .merlin import CHECKPOINT_PREFIX, I3ResNet, build_encoder

log = logging.getLogger(__name__)

TEXT_PREFIX = "encode_text."


@dataclass
class PretrainSettings:
    """Training settings (config ``imaging.pretrain``; descriptions in the schema)."""

    epochs: int = 12
    patience: int = 3
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 8
    phenotype_weight: float = 1.0
    contrastive_weight: float = 1.0
    temperature: float = 0.1
    projection_dim: int = 128
    frozen_stages: int = 2
    shift_voxels: int = 3
    intensity_jitter: float = 0.05
    max_minutes: float | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, section: dict) -> "PretrainSettings":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in section.items() if k in names})


class PretrainHeads(nn.Module):
    """The training heads: phenotype classifier and the two contrastive projections."""

    def __init__(self, features: int, n_targets: int, text_dim: int, projection_dim: int):
        super().__init__()
        self.classifier = nn.Linear(features, n_targets)
        self.contrastive_head = nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, projection_dim))
        self.text_projection = nn.Linear(text_dim, projection_dim)
        # CLIP's learnable temperature, as a log scale; starts at 1 / temperature.
        self.logit_scale = nn.Parameter(torch.zeros(()))


# ----------------------------------------------------------------------------- inputs


def read_phenotypes(path: str | Path, study_ids: Sequence[str]) -> pd.DataFrame:
    """The phenotype table's rows for ``study_ids`` (in that order), target columns only.

    Args:
        path: CSV or Parquet with ``study_id`` and one numeric column per phenotype.
        study_ids: studies that need targets.

    Raises:
        DataError: no ``study_id`` column, a non-numeric or missing value, or a study
            without a row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"phenotype table {path} {file_missing(path)}; the demo generator writes it (rule demo_cohort)")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"study_id": str})
    if "study_id" not in table.columns:
        raise DataError(f"{path}: no 'study_id' column (columns: {', '.join(map(str, table.columns))})")
    table["study_id"] = table["study_id"].astype(str)
    if table["study_id"].duplicated().any():
        dup = table.loc[table["study_id"].duplicated(), "study_id"].iloc[0]
        raise DataError(f"{path}: study '{dup}' has more than one row")
    targets = [c for c in table.columns if c != "study_id"]
    if not targets:
        raise DataError(f"{path}: no phenotype columns besides study_id")
    for col in targets:
        values = pd.to_numeric(table[col].astype("object").replace({True: 1, False: 0}), errors="coerce")
        bad = values.isna() & table[col].notna() | table[col].isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}, row {row + 2}, column '{col}': value {table[col].iloc[row]!r} is not a number; "
                "phenotype columns hold 0/1 codes (or numbers)"
            )
        table[col] = values.astype("float64")
    indexed = table.set_index("study_id")
    missing = [s for s in study_ids if s not in indexed.index]
    if missing:
        raise DataError(f"{path}: no phenotype row for {len(missing)} studies, e.g. study '{missing[0]}'; regenerate the table")
    return indexed.loc[list(study_ids), targets]


def is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


@dataclass
class TargetCoding:
    """Which phenotype columns are binary (BCE) and how the others are standardised (MSE)."""

    columns: list[str]
    binary: list[bool]
    mean: list[float]
    scale: list[float]
    pos_weight: list[float]

    @classmethod
    def fit(cls, train: pd.DataFrame) -> "TargetCoding":
        binary, mean, scale, pos_weight = [], [], [], []
        for col in train.columns:
            v = train[col].to_numpy(dtype=np.float64)
            b = is_binary(v)
            binary.append(b)
            mean.append(0.0 if b else float(v.mean()))
            scale.append(1.0 if b else float(v.std() or 1.0))
            pos = float(v.sum()) if b else 0.0
            # Rare codes weigh more (capped): without it, a 3 % code is learned as "never".
            pos_weight.append(float(np.clip((len(v) - pos) / max(pos, 1.0), 1.0, 10.0)) if b else 1.0)
        return cls(list(train.columns), binary, mean, scale, pos_weight)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[self.columns].to_numpy(dtype=np.float32)
        return ((values - np.asarray(self.mean, np.float32)) / np.asarray(self.scale, np.float32)).astype(np.float32)


def phenotype_loss(logits: torch.Tensor, targets: torch.Tensor, coding: TargetCoding) -> torch.Tensor:
    """Mean over columns of BCE (binary codes, positive-weighted) or MSE (standardised numbers)."""
    binary = torch.tensor(coding.binary, device=logits.device)
    pos_weight = torch.tensor(coding.pos_weight, device=logits.device, dtype=logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    mse = (logits - targets) ** 2
    return torch.where(binary, bce, mse).mean()


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of a batch of (image, report) pairs (CLIP), cosine similarities."""
    image = F.normalize(image, dim=-1)
    text = F.normalize(text, dim=-1)
    scale = (logit_scale.clamp(-3.0, 3.0).exp()) / temperature
    logits = scale * image @ text.T
    labels = torch.arange(len(image), device=image.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def augment(batch: torch.Tensor, gen: torch.Generator, shift_voxels: int, jitter: float, offset: bool = True) -> torch.Tensor:
    """Intensity jitter (gain, and offset for volumes) and a small random shift per item; no flips.

    Shifts move a volume (or a frozen stage's map) inside its zero-padded field (the edge is
    filled with 0, the padding value of the preprocessing), by up to ``shift_voxels`` in the
    plane and half that along z.  ``offset`` False (feature maps (C, Z', X', Y')): gain only,
    no clamp.
    """
    out = torch.empty_like(batch)
    for i, vol in enumerate(batch):
        if jitter > 0:
            gain = 1.0 + jitter * (2 * torch.rand((), generator=gen) - 1)
            if offset:
                shift = 0.5 * jitter * (2 * torch.rand((), generator=gen) - 1)
                vol = (vol * gain + shift * (vol > 0)).clamp(0.0, 1.0)
            else:
                vol = vol * gain
        if shift_voxels > 0:
            half = shift_voxels // 2
            # volumes are (1, X, Y, Z); the encoder's maps (C, Z', X', Y'): less along z either way
            limits = (shift_voxels, shift_voxels, half) if offset else (half, shift_voxels, shift_voxels)
            shifts = [int(torch.randint(-m, m + 1, (), generator=gen)) if m else 0 for m in limits]
            vol = _shift(vol, shifts)
        out[i] = vol
    return out


def _shift(vol: torch.Tensor, shifts: Sequence[int]) -> torch.Tensor:
    """Translate (1, X, Y, Z) by whole voxels, filling with zeros."""
    out = torch.zeros_like(vol)
    src, dst = [slice(None)], [slice(None)]
    for s, n in zip(shifts, vol.shape[1:]):
        if s >= 0:
            src.append(slice(0, n - s))
            dst.append(slice(s, n))
        else:
            src.append(slice(-s, n))
            dst.append(slice(0, n + s))
    out[tuple(dst)] = vol[tuple(src)]
    return out


# ----------------------------------------------------------------------------- training


@dataclass
class Split:
    """One split's studies, targets and report embeddings."""

    study_ids: list[str]
    targets: np.ndarray  # (N, K) coded
    text: np.ndarray  # (N, D)

    def __len__(self) -> int:
        return len(self.study_ids)


def _batches(n: int, batch_size: int, gen: torch.Generator | None) -> list[np.ndarray]:
    order = torch.randperm(n, generator=gen).numpy() if gen is not None else np.arange(n)
    # Contrastive and batch-norm statistics need >= 2 per batch: fold a last single into the previous.
    out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) < 2:
        out[-2] = np.concatenate([out[-2], out.pop()])
    return out


class Conv3dFastGrad(torch.autograd.Function):
    """A bias-free Conv3d whose weight gradient is computed as a convolution with batch and
    channels swapped (or a matrix product for 1x1x1 kernels).

    Why: on CPUs without AVX-512, oneDNN's 3D weight-gradient kernel runs at about a tenth
    of its forward speed (measured: 0.75 vs 12 GFLOP/s on 2 AVX2 cores; 11x faster this way
    for the 3x3x3 convolutions of layer 1).  The values equal autograd's to float rounding.
    """

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = tuple(stride), tuple(padding)
        return F.conv3d(x, weight, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(stride), list(padding), [1, 1, 1], False, [0, 0, 0], 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            kernel = tuple(weight.shape[2:])
            if kernel == (1, 1, 1):
                strided = x[:, :, ::stride[0], ::stride[1], ::stride[2]]
                grad_w = torch.einsum("bo...,bi...->oi", grad, strided)[..., None, None, None]
            else:
                grad_w = F.conv3d(x.transpose(0, 1), grad.transpose(0, 1), padding=padding, dilation=stride).transpose(0, 1)
                grad_w = grad_w[..., : kernel[0], : kernel[1], : kernel[2]]
            grad_w = grad_w.contiguous()
        return grad_x, grad_w, None, None


def cosine_schedule(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over half an epoch, then cosine decay to 0 at the last step."""
    total = steps_per_epoch * epochs
    warmup = max(1, steps_per_epoch // 2)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


def _fast_conv_forward(self, x):
    return Conv3dFastGrad.apply(x, self.weight, self.stride, self.padding)


def use_fast_weight_gradients(model: nn.Module) -> None:
    """Route every bias-free, ungrouped Conv3d of ``model`` through :class:`Conv3dFastGrad`."""
    import types

    for module in model.modules():
        if isinstance(module, nn.Conv3d) and module.bias is None and module.groups == 1 and module.dilation == (1, 1, 1):
            module.forward = types.MethodType(_fast_conv_forward, module)


def restore_forward(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            module.__dict__.pop("forward", None)


#: the encoder's parts, in order; the first ``frozen_stages`` (0-2) stay at their random weights
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def _stem(encoder: I3ResNet, volume: torch.Tensor) -> torch.Tensor:
    x = volume.permute(0, 1, 4, 2, 3).expand(-1, 3, -1, -1, -1).contiguous()
    return encoder.maxpool(encoder.relu(encoder.bn1(encoder.conv1(x))))


def run_stages(encoder: I3ResNet, x: torch.Tensor, first: int, last: int = len(STAGES)) -> torch.Tensor:
    """Stages ``first`` .. ``last - 1`` of the encoder (0 = stem on the volume batch)."""
    for i in range(first, last):
        x = _stem(encoder, x) if i == 0 else getattr(encoder, STAGES[i])(x)
    return x


def _frozen_modules(encoder: I3ResNet, frozen_stages: int) -> list[nn.Module]:
    mods = [encoder.conv1, encoder.bn1] if frozen_stages >= 1 else []
    return mods + [getattr(encoder, STAGES[i]) for i in range(1, frozen_stages)]


def _losses(encoder, heads, inputs, targets, text, coding, settings) -> tuple[torch.Tensor, torch.Tensor]:
    pooled = run_stages(encoder, inputs, settings.frozen_stages).mean(dim=(2, 3, 4))
    ph = phenotype_loss(heads.classifier(pooled), targets, coding)
    cl = clip_loss(heads.contrastive_head(pooled), heads.text_projection(text), heads.logit_scale, settings.temperature)
    return ph, cl


class FrozenFeatures:
    """The frozen stages' output of each study, computed once (float16 in memory).

    With ``frozen_stages`` 0 the volumes themselves are returned (read on demand).
    Gain jitter is exact on these maps: the frozen stages (bias-free convolutions, batch
    norm at its initial identity statistics, ReLU, max-pool) are positively homogeneous.
    """

    def __init__(self, encoder: I3ResNet, frozen_stages: int, load_volume: Callable[[str], np.ndarray],
                 batch_size: int, progress: bool):
        self.encoder, self.frozen_stages, self.load_volume = encoder, frozen_stages, load_volume
        self.batch_size, self.progress = batch_size, progress
        self.maps: dict[str, torch.Tensor] = {}

    def _volumes(self, ids: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.load_volume(s) for s in ids]))[:, None]

    def precompute(self, study_ids: Sequence[str]) -> None:
        from tqdm.auto import tqdm

        if self.frozen_stages == 0:
            return
        todo = [s for s in study_ids if s not in self.maps]
        with torch.no_grad():
            for start in tqdm(range(0, len(todo), self.batch_size), desc="frozen stages", unit="batch", disable=not self.progress):
                ids = todo[start:start + self.batch_size]
                maps = run_stages(self.encoder, self._volumes(ids), 0, self.frozen_stages)
                for sid, m in zip(ids, maps):
                    self.maps[sid] = m.to(torch.float16).clone()

    def batch(self, ids: Sequence[str]) -> torch.Tensor:
        if self.frozen_stages == 0:
            return self._volumes(ids)
        return torch.stack([self.maps[s] for s in ids]).float()


def train_encoder(
    train: Split,
    val: Split,
    load_volume: Callable[[str], np.ndarray],
    coding: TargetCoding,
    layers: Sequence[int],
    width: int,
    init_seed: int,
    settings: PretrainSettings,
    progress: bool = True,
) -> tuple[I3ResNet, PretrainHeads, dict]:
    """Train the encoder and heads; return the best epoch's weights (by validation loss).

    The first ``settings.frozen_stages`` stages keep their seeded random weights (their
    output is computed once per study); the rest train.

    Args:
        train, val: the splits (``val`` may be empty: then the last epoch is kept).
        load_volume: ``study_id -> (X, Y, Z) float32`` preprocessed volume.
        coding: phenotype coding fitted on ``train``.
        layers, width, init_seed: the encoder's architecture and random initialisation
            (the same as the random-weights encoder of ``imaging.encoder``).
        settings: see :class:`PretrainSettings`.

    Returns:
        encoder (eval mode, frozen), heads, and a history dict (per-epoch losses, seconds).
    """
    from tqdm.auto import tqdm

    if len(train) < 2:
        raise DataError(f"pretraining needs at least 2 training studies, got {len(train)}")
    if not 0 <= settings.frozen_stages <= 2:
        raise ValueError(f"frozen_stages must be 0, 1 or 2, got {settings.frozen_stages}")
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    encoder = build_encoder(None, layers, width, init_seed)
    frozen = _frozen_modules(encoder, settings.frozen_stages)
    started = time.perf_counter()
    features = FrozenFeatures(encoder, settings.frozen_stages, load_volume, settings.batch_size, progress)
    features.precompute(train.study_ids + val.study_ids)
    frozen_seconds = time.perf_counter() - started
    encoder.requires_grad_(True)
    for module in frozen:
        module.requires_grad_(False)
    use_fast_weight_gradients(encoder)
    heads = PretrainHeads(encoder.out_channels, len(coding.columns), train.text.shape[1], settings.projection_dim)
    params = [p for p in encoder.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = cosine_schedule(optimizer, len(_batches(len(train), settings.batch_size, None)), settings.epochs)
    # Shifts on a frozen stage's map move it by whole map voxels (4 input voxels in-plane).
    shift = settings.shift_voxels if settings.frozen_stages == 0 else int(settings.shift_voxels > 0)

    def batch_tensors(split: Split, idx: np.ndarray):
        ids = [split.study_ids[i] for i in idx]
        return features.batch(ids), torch.from_numpy(split.targets[idx]), torch.from_numpy(split.text[idx])

    def set_train(on: bool) -> None:
        encoder.train(on)
        heads.train(on)
        for module in frozen:  # frozen batch norms keep their statistics (eval mode)
            module.eval()

    history: list[dict] = []
    best = (math.inf, -1, None)
    bar = tqdm(total=len(_batches(len(train), settings.batch_size, None)) * settings.epochs, desc="pretrain encoder", unit="step", disable=not progress)
    for epoch in range(1, settings.epochs + 1):
        set_train(True)
        sums = np.zeros(2)
        for idx in _batches(len(train), settings.batch_size, gen):
            inputs, targets, text = batch_tensors(train, idx)
            inputs = augment(inputs, gen, shift, settings.intensity_jitter, offset=settings.frozen_stages == 0)
            ph, cl = _losses(encoder, heads, inputs, targets, text, coding, settings)
            loss = settings.phenotype_weight * ph + settings.contrastive_weight * cl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            sums += [ph.item() * len(idx), cl.item() * len(idx)]
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        row = {"epoch": epoch, "train_phenotype": sums[0] / len(train), "train_contrastive": sums[1] / len(train)}
        row["train_loss"] = settings.phenotype_weight * row["train_phenotype"] + settings.contrastive_weight * row["train_contrastive"]
        if len(val) >= 2:
            set_train(False)
            row.update(evaluate(encoder, heads, val, batch_tensors, coding, settings))
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
        # Without a validation split every epoch counts as better: the last one is kept.
        score = row.get("val_loss", -float(epoch))
        if score < best[0]:
            best = (score, epoch, (copy.deepcopy(encoder.state_dict()), copy.deepcopy(heads.state_dict())))
        elif epoch - best[1] >= settings.patience:
            log.info("early stop: no better validation loss for %d epochs (best epoch %d)", settings.patience, best[1])
            break
        if settings.max_minutes is not None and row["seconds"] > 60 * settings.max_minutes:
            log.info("stopping after epoch %d: max_minutes %.1f reached", epoch, settings.max_minutes)
            break
    bar.close()
    restore_forward(encoder)
    encoder.load_state_dict(best[2][0])
    heads.load_state_dict(best[2][1])
    summary = {"best_epoch": best[1], "best_score": best[0], "epochs_run": len(history),
               "frozen_seconds": frozen_seconds, "seconds": time.perf_counter() - started, "history": history}
    return encoder.eval().requires_grad_(False), heads.eval().requires_grad_(False), summary


def evaluate(encoder, heads, split: Split, batch_tensors, coding, settings) -> dict:
    """Validation losses (no augmentation; batch norm in eval mode)."""
    sums = np.zeros(2)
    with torch.no_grad():
        for idx in _batches(len(split), settings.batch_size, None):
            inputs, targets, text = batch_tensors(split, idx)
            ph, cl = _losses(encoder, heads, inputs, targets, text, coding, settings)
            sums += [ph.item() * len(idx), cl.item() * len(idx)]
    ph, cl = sums / len(split)
    return {"val_phenotype": ph, "val_contrastive": cl,
            "val_loss": settings.phenotype_weight * ph + settings.contrastive_weight * cl}


# ----------------------------------------------------------------------------- saving


def merlin_state_dict(encoder: I3ResNet, heads: PretrainHeads | None = None) -> dict[str, torch.Tensor]:
    """Weights in Merlin's key layout: ``encode_image.i3_resnet.`` + encoder key, heads and text projection."""
    out = {CHECKPOINT_PREFIX + k: v for k, v in encoder.state_dict().items()}
    if heads is not None:
        for k, v in heads.state_dict().items():
            prefix = TEXT_PREFIX if k.startswith("text_projection") or k == "logit_scale" else CHECKPOINT_PREFIX
            out[prefix + k] = v
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def save_checkpoint(path: str | Path, encoder: I3ResNet, heads: PretrainHeads | None = None,
                    metadata: dict | None = None) -> Path:
    """Write the weights (safetensors, Merlin's key layout) atomically."""
    from safetensors.torch import save

    path = Path(path)
    meta = {"format": "merlin-i3resnet", **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    blob = save(merlin_state_dict(encoder, heads), metadata=meta)
    atomic_write(path, lambda fh: fh.write(blob))
    return path


# ----------------------------------------------------------------------------- a cohort


def report_embeddings(study_ids: Sequence[str], reports: Sequence[str], text_model: str | Path | None) -> dict[str, np.ndarray]:
    """Each report's fixed MiniLM embedding, computed once before training (CPU).

    Reports are encoded in order of length so that a batch pads to similar lengths.
    """
    from ..text_encoder import encode_texts

    order = np.argsort([len(r) for r in reports], kind="stable")
    vectors = encode_texts([reports[i] for i in order], model_path=text_model, batch_size=32, device="cpu")
    out = np.empty_like(vectors)
    out[order] = vectors
    return dict(zip(study_ids, out))


def pretrain_cohort(
    cohort_table: str | Path,
    qc_table: str | Path,
    phenotypes: str | Path,
    checkpoint_out: str | Path,
    encoder: dict,
    settings: dict | PretrainSettings,
    text_model: str | Path | None = "minilm",
    summary_out: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Pre-train on a cohort's preprocessed volumes and write the checkpoint and a summary.

    Args:
        cohort_table: ``results/{dataset}/cohort.parquet`` (``study_id``, ``split``, ``report``).
        qc_table: ``results/{dataset}/ct/qc.parquet``; the preprocessed cache is its folder.
        phenotypes: the phenotype table (``study_id`` + code columns).
        checkpoint_out: the ``.safetensors`` file to write.
        encoder: config ``imaging.encoder`` (``layers``, ``width``, ``seed``).
        settings: config ``imaging.pretrain`` or :class:`PretrainSettings`.
        text_model: report encoder (``"minilm"`` or a local folder).
        summary_out: JSON with settings, phenotype columns, history and timings.

    Returns:
        the summary dict.
    """
    from .cache import load_preprocessed
    from .encode import usable_study_ids

    if not isinstance(settings, PretrainSettings):
        settings = PretrainSettings.from_config(settings)
    cohort = pd.read_parquet(cohort_table, columns=["study_id", "split", "report"])
    cohort["study_id"] = cohort["study_id"].astype(str)
    usable = set(usable_study_ids(qc_table))
    no_report = cohort["report"].isna() | (cohort["report"].astype(str).str.strip() == "")
    if no_report.any():
        log.info("%d studies without a report are left out of pretraining", int(no_report.sum()))
    cohort = cohort[cohort["study_id"].isin(usable) & ~no_report]
    parts = {name: cohort[cohort["split"] == name] for name in ("train", "val")}
    if len(parts["train"]) < 2:
        raise DataError(f"{cohort_table}: fewer than 2 usable training studies with a report; nothing to pretrain on")
    log.info("pretraining on %d training studies, validating on %d", len(parts["train"]), len(parts["val"]))

    started = time.perf_counter()
    used = pd.concat(parts.values())
    text_of = report_embeddings(used["study_id"].tolist(), used["report"].tolist(), text_model)
    text = np.stack(list(text_of.values()))
    text_seconds = time.perf_counter() - started

    train_targets = read_phenotypes(phenotypes, parts["train"]["study_id"].tolist())
    coding = TargetCoding.fit(train_targets)
    log.info("phenotype columns: %s", ", ".join(f"{c} ({'binary' if b else 'numeric'})" for c, b in zip(coding.columns, coding.binary)))
    splits = {}
    for name, frame in parts.items():
        ids = frame["study_id"].tolist()
        coded = coding.encode(read_phenotypes(phenotypes, ids)) if ids else np.zeros((0, len(coding.columns)), np.float32)
        splits[name] = Split(ids, coded, np.stack([text_of[s] for s in ids]) if ids else np.zeros((0, text.shape[1]), np.float32))

    cache_dir = Path(qc_table).parent
    model, heads, summary = train_encoder(
        splits["train"], splits["val"], lambda sid: load_preprocessed(cache_dir, sid),
        coding, encoder["layers"], encoder["width"], encoder["seed"], settings, progress=progress)
    summary.update({"text_seconds": text_seconds, "n_train": len(splits["train"]), "n_val": len(splits["val"]),
                    "phenotypes": dict(zip(coding.columns, ["binary" if b else "numeric" for b in coding.binary])),
                    "settings": asdict(settings), "architecture": model.describe()})
    save_checkpoint(checkpoint_out, model, heads, {"best_epoch": summary["best_epoch"], "architecture": model.describe()})
    log.info("wrote %s (best epoch %d of %d, %.0f s)", checkpoint_out, summary["best_epoch"], summary["epochs_run"], summary["seconds"])
    if summary_out is not None:
        atomic_write(Path(summary_out), lambda fh: fh.write(json.dumps(summary, indent=1).encode()))
    return summary
