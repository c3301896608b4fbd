"""The demo's stand-in for RadLLaMA-7B: a small LlamaForCausalLM that already reads reports.

RadLLaMA is LLaMA-2 adapted to radiology text.  The demo cannot ship or train a 7B model, so
rule ``demo_decoder`` builds the same class at toy size on the pretrain cohort's training
reports:

1. a byte-level BPE tokenizer trained with ``tokenizers`` (byte-level, so every report
   round-trips exactly; no ``<unk>`` in practice), wrapped as ``PreTrainedTokenizerFast`` with
   ``<s>``, ``</s>``, ``<pad>``, ``<unk>`` and the ``<image>`` placeholder, adding ``<s>`` in
   front like LLaMA's;
2. a ``LlamaForCausalLM`` from a ``LlamaConfig`` (a few layers, hidden 128 by default);
3. a short language-model warm-up on the reports (packed into fixed-length blocks), so that
   stage 1 starts, as in the paper, from a decoder that knows the report language.

The folder is written with ``save_pretrained`` and loads like any real model from a path.
Only the training split's reports are read: validation reports give the held-out loss in
``warmup.json`` and test reports stay unseen.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..errors import DataError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
SUMMARY_FILE = "warmup.json"


@dataclass
class DemoDecoderSettings:
    """Size and warm-up of the demo decoder (config ``vlm.demo_decoder``)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 1024
    steps: int = 150
    batch_size: int = 8
    block_size: int = 128
    lr: float = 3e-3
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict | None) -> "DemoDecoderSettings":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """Byte-level BPE on ``texts`` as a ``PreTrainedTokenizerFast`` (bos added in front)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", additional_special_tokens=["<image>"],
                                        clean_up_tokenization_spaces=False)
    return tokenizer


def pack_blocks(tokenizer, texts: Sequence[str], block_size: int) -> torch.Tensor:
    """``<s> report </s>`` streams concatenated and cut into (n, block_size) blocks."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    n = len(stream) // block_size
    if n == 0:
        raise DataError(f"the reports hold {len(stream)} tokens, fewer than one block of {block_size}")
    return torch.tensor(stream[: n * block_size], dtype=torch.long).view(n, block_size)


def build_demo_decoder(train_reports: Sequence[str], out: str | Path, settings: DemoDecoderSettings | None = None,
                       val_reports: Sequence[str] = ()) -> dict:
    """Train tokenizer and model on ``train_reports`` and write the folder ``out``.

    Returns the warm-up summary (also written to ``out/warmup.json``): settings, parameter
    count, token counts, first/last training loss, validation loss before and after.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = settings or DemoDecoderSettings()
    reports = [r for r in train_reports if isinstance(r, str) and r.strip()]
    if len(reports) < 2:
        raise DataError(f"the demo decoder needs training reports; got {len(reports)} non-empty ones "
                        "(is the pretrain cohort's report column empty?)")
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    tokenizer = train_tokenizer(reports, settings.vocab_size)
    blocks = pack_blocks(tokenizer, reports, settings.block_size)
    val = [r for r in val_reports if isinstance(r, str) and r.strip()]
    val_blocks = pack_blocks(tokenizer, val, settings.block_size) if val else None
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=settings.hidden_size, intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers, num_attention_heads=settings.heads, num_key_value_heads=settings.heads,
        max_position_embeddings=settings.max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).float()
    val_before = _mean_loss(model, val_blocks, settings.batch_size)
    losses = _warm_up(model, blocks, settings)
    val_after = _mean_loss(model, val_blocks, settings.batch_size)
    summary = {
        "settings": asdict(settings),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab": len(tokenizer),
        "train_reports": len(reports),
        "train_tokens": int(blocks.numel()),
        "val_reports": len(val),
        "first_loss": losses[0],
        "last_loss": float(sum(losses[-10:]) / len(losses[-10:])),
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "seconds": round(time.perf_counter() - started, 1),
    }
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _save(model, tokenizer, summary, Path(out))
    log.info("demo decoder: %d parameters, vocab %d, LM loss %.2f -> %.2f (val %.2f -> %.2f) in %.0f s",
             summary["parameters"], summary["vocab"], summary["first_loss"], summary["last_loss"],
             val_before or math.nan, val_after or math.nan, summary["seconds"])
    return summary


def _warm_up(model, blocks: torch.Tensor, settings: DemoDecoderSettings) -> list[float]:
    """AdamW with a linear warm-up and cosine decay over ``settings.steps`` steps."""
    from .trainer import cosine_with_warmup

    gen = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.999), weight_decay=0.01)
    scheduler = cosine_with_warmup(optimizer, max(1, settings.steps // 10), settings.steps)
    model.train()
    losses: list[float] = []
    order = torch.randperm(len(blocks), generator=gen)
    pos = 0
    for _ in range(settings.steps):
        if pos + settings.batch_size > len(order):
            order, pos = torch.randperm(len(blocks), generator=gen), 0
        batch = blocks[order[pos : pos + settings.batch_size]]
        pos += settings.batch_size
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def _mean_loss(model, blocks: torch.Tensor | None, batch_size: int) -> float | None:
    if blocks is None:
        return None
    model.eval()
    total = sum(float(model(input_ids=b, labels=b).loss) * len(b) for b in blocks.split(batch_size))
    return round(total / len(blocks), 4)


def _save(model, tokenizer, summary: dict, out: Path) -> None:
    """``save_pretrained`` into a hidden folder, then rename: the folder is whole or absent."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o755)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cohort_reports(cohort_paths: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Training and validation reports of the pretrain cohorts (column ``report``, ``split``)."""
    import pandas as pd

    train, val = [], []
    for path in cohort_paths:
        table = pd.read_parquet(path, columns=["split", "report"])
        for report, split in zip(table["report"].tolist(), table["split"].tolist()):
            if isinstance(report, str) and report.strip():
                {"train": train, "val": val}.get(split, []).append(report)
    return train, val
