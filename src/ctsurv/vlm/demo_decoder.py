"""The demo's stand-in for RadLLaMA-7B: a small LlamaForCausalLM that already reads reports.

RadLLaMA is LLaMA-2 adapted to radiology text.  The demo cannot ship or train a 7B model, so
rule ``demo_decoder`` builds the same class at toy size on the pretrain cohort's training
reports:

1. a byte-level BPE tokenizer trained with ``tokenizers`` (byte-level, so every report
   round-trips exactly; no ``<unk>`` in practice), wrapped as ``PreTrainedTokenizerFast`` with
   ``<s>``, ``</s>``, ``<pad>``, ``<unk>`` and the ``<image>`` placeholder, adding ``<s>`` and a
   prefix space in front like LLaMA's;
2. a ``LlamaForCausalLM`` from a ``LlamaConfig`` (a few layers, hidden 128 by default);
3. a short language-model warm-up on the reports (packed into fixed-length blocks), so that
   stage 1 starts, as in the paper, from a decoder that knows the report language.

The folder is written with ``save_pretrained`` and loads like any real model from a path.
Only the training split's reports are read: validation reports give the held-out loss in
``warmup.json`` and test reports stay unseen.

The same function makes the shipped ``demo-radllama`` (``ctsurv pretrain-decoder``) on a
large generated corpus (:func:`ctsurv.demo.corpus.report_corpus`): with a working folder
(``work``) the warm-up checkpoints every ``checkpoint_every`` steps and an interrupted run
resumes there with the same tokenizer, weights, optimizer, schedule and data order.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..atomic import atomic_folder
from ..errors import DataError
from ..hashing import file_sha256

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
SUMMARY_FILE = "warmup.json"
CARD_JSON = "card.json"
CARD_MD = "CARD.md"


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
    warmup_steps: int | None = None  # None: a tenth of the steps
    checkpoint_every: int = 200      # with a working folder
    curve_points: int = 20           # validation losses recorded along the way (0: none)
    save_dtype: str = "float32"      # float32 or float16 (the saved weights; loading upcasts)

    @classmethod
    def from_dict(cls, values: dict | None) -> "DemoDecoderSettings":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """Byte-level BPE on ``texts`` as a ``PreTrainedTokenizerFast`` (bos added in front)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # A space in front of every text, as LLaMA's tokenizer does (its dummy prefix), and taken off
    # again when decoding: an answer tokenized on its own ("No pleural effusion.") gets the same
    # tokens as the sentence inside a report (" No pleural effusion."), so what the language model
    # learned from reports carries over to answers.  Without it the first word of every answer is
    # a string-initial form that reports never contain, cut into single characters.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
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
                       val_reports: Sequence[str] = (), work: str | Path | None = None) -> dict:
    """Train tokenizer and model on ``train_reports`` and write the folder ``out``.

    Args:
        train_reports: the language-model corpus.
        out: the model folder to write (``save_pretrained``: weights, config, tokenizer).
        settings: size and warm-up.
        val_reports: held-out reports for the validation losses (curve, before/after).
        work: a working folder for checkpoints (resume after a kill); deleted when done.

    Returns the warm-up summary (also written to ``out/warmup.json``): settings, parameter
    count, token counts, first/last training loss, validation loss before and after (and with
    the saved fp16 weights), the loss curve, wall and CPU seconds.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = settings or DemoDecoderSettings()
    if settings.save_dtype not in ("float32", "float16"):
        raise DataError(f"save_dtype must be float32 or float16, got {settings.save_dtype!r}")
    reports = [r for r in train_reports if isinstance(r, str) and r.strip()]
    if len(reports) < 2:
        raise DataError(f"the demo decoder needs training reports; got {len(reports)} non-empty ones "
                        "(is the pretrain cohort's report column empty?)")
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(settings.seed)
    work = Path(work) if work is not None else None
    tokenizer = _work_tokenizer(work, reports, settings)
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
    losses, curve, resumed = _warm_up(model, blocks, settings, val_blocks, work)
    val_after = _mean_loss(model, val_blocks, settings.batch_size)
    val_saved = val_after
    if settings.save_dtype == "float16":
        model = model.half()
        val_saved = _mean_loss(model.float(), val_blocks, settings.batch_size)  # fp16-rounded weights
        model = model.half()
    summary = {
        "settings": asdict(settings),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab": len(tokenizer),
        "train_reports": len(reports),
        "train_tokens": int(blocks.numel()),
        "val_reports": len(val),
        "val_tokens": int(val_blocks.numel()) if val_blocks is not None else 0,
        "first_loss": losses[0],
        "last_loss": float(sum(losses[-10:]) / len(losses[-10:])),
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "val_loss_saved": val_saved,
        "curve": curve,
        "resumed_at_step": resumed,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
    }
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _save(model, tokenizer, summary, Path(out))
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    log.info("demo decoder: %d parameters, vocab %d, LM loss %.2f -> %.2f (val %.2f -> %.2f) in %.0f s",
             summary["parameters"], summary["vocab"], summary["first_loss"], summary["last_loss"],
             val_before or math.nan, val_after or math.nan, summary["seconds"])
    return summary


def _work_tokenizer(work: Path | None, reports: Sequence[str], settings: DemoDecoderSettings):
    """The tokenizer: trained afresh, or the one an interrupted run saved in ``work``."""
    from transformers import PreTrainedTokenizerFast

    folder = work / "tokenizer" if work is not None else None
    if folder is not None and (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder, local_files_only=True)
    tokenizer = train_tokenizer(reports, settings.vocab_size)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(folder)
    return tokenizer


def _run_key(settings: DemoDecoderSettings, blocks: torch.Tensor) -> str:
    """What a checkpoint must match to be resumed: the settings and the packed corpus."""
    import hashlib

    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    digest.update(str(tuple(blocks.shape)).encode())
    digest.update(blocks[:: max(1, len(blocks) // 64)].numpy().tobytes())
    return digest.hexdigest()[:16]


def _warm_up(model, blocks: torch.Tensor, settings: DemoDecoderSettings, val_blocks: torch.Tensor | None = None,
             work: Path | None = None) -> tuple[list[float], list[dict], int]:
    """AdamW with a linear warm-up and cosine decay over ``settings.steps`` steps.

    Returns the per-step training losses, the curve (step, mean training loss since the last
    point, validation loss on up to 64 blocks) and the step it resumed at (0: a fresh start).
    """
    from .trainer import cosine_with_warmup

    gen = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.999), weight_decay=0.01)
    warmup = settings.warmup_steps if settings.warmup_steps is not None else max(1, settings.steps // 10)
    scheduler = cosine_with_warmup(optimizer, warmup, settings.steps)
    losses: list[float] = []
    curve: list[dict] = []
    order = torch.randperm(len(blocks), generator=gen)
    pos, step = 0, 0
    key = _run_key(settings, blocks)
    state_file = work / "state.pt" if work is not None else None
    if state_file is not None and state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state["key"] != key:
            raise DataError(f"{state_file} belongs to another run (other settings or corpus); delete {work} "
                            "to start afresh")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        order, pos, step = state["order"], int(state["pos"]), int(state["step"])
        losses, curve = state["losses"].tolist(), json.loads(state["curve"])
        log.info("demo decoder: resumed at step %d of %d from %s", step, settings.steps, state_file)
    resumed = step
    every = max(1, settings.steps // settings.curve_points) if settings.curve_points else 0
    val_sample = val_blocks[:64] if val_blocks is not None else None
    model.train()
    while step < settings.steps:
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
        step += 1
        if every and (step % every == 0 or step == settings.steps):
            since = losses[-(step - (curve[-1]["step"] if curve else 0)):]
            curve.append({"step": step, "train_loss": round(sum(since) / len(since), 4),
                          "val_loss": _mean_loss(model, val_sample, settings.batch_size)})
            model.train()
        if state_file is not None and settings.checkpoint_every and step % settings.checkpoint_every == 0 \
                and step < settings.steps:
            tmp = state_file.with_suffix(".tmp")
            torch.save({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "generator": gen.get_state(), "order": order,
                        "pos": pos, "step": step, "losses": torch.tensor(losses, dtype=torch.float64),
                        "curve": json.dumps(curve)}, tmp)
            os.replace(tmp, state_file)
    model.eval()
    return losses, curve, resumed


@torch.no_grad()
def _mean_loss(model, blocks: torch.Tensor | None, batch_size: int) -> float | None:
    if blocks is None:
        return None
    model.eval()
    total = sum(float(model(input_ids=b, labels=b).loss) * len(b) for b in blocks.split(batch_size))
    return round(total / len(blocks), 4)


def _save(model, tokenizer, summary: dict, out: Path) -> None:
    """``save_pretrained`` into a hidden folder, then rename: the folder is whole or absent."""
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
        for path in tmp.iterdir():
            os.chmod(path, 0o644)


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


# --------------------------------------------------------------------------- model card


def machine() -> dict:
    """The CPU model (``/proc/cpuinfo``), whether it has native bf16, the torch threads."""
    model, flags = "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    return {"cpu_model": model, "avx512_bf16": "avx512_bf16" in flags.split(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def write_card(out: str | Path, card: dict, notes: str = "") -> dict:
    """``card.json`` (``card`` plus the sha256 of every weight and tokenizer file) and ``CARD.md``.

    ``card`` holds at least ``name``, ``corpus_seed`` and ``summary`` (:func:`build_demo_decoder`'s);
    ``notes`` (Markdown) is appended to CARD.md: what was tried and what each try measured.
    """
    out = Path(out)
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name not in (CARD_JSON, CARD_MD))
    card = {**card, "sha256": {name: file_sha256(out / name) for name in files}}
    (out / CARD_JSON).write_text(json.dumps(card, indent=1), encoding="utf-8")
    (out / CARD_MD).write_text(card_markdown(card) + (("\n" + notes.strip() + "\n") if notes.strip() else ""),
                               encoding="utf-8")
    return card


def card_markdown(card: dict) -> str:
    s = card["summary"]
    st = s["settings"]
    m = card.get("machine", {})
    heldout = card.get("heldout", {})
    corpus = card.get("corpus", {})
    lines = [
        f"# {card['name']}: model card", "",
        card.get("description", ""), "",
        "## How it was made", "",
        f"- command: `{card.get('command', '')}`",
        f"- commit: `{card.get('commit', 'unknown')}`",
        f"- corpus: {s['train_reports']:,} generated reports (seed {card['corpus_seed']}; kinds {corpus.get('mix')}), "
        f"{s['train_tokens']:,} tokens in blocks of {st['block_size']}",
        f"- held-out set: {s['val_reports']:,} freshly generated reports (seed {heldout.get('seed')}), "
        f"{s['val_tokens']:,} tokens",
        f"- model: LlamaForCausalLM, hidden {st['hidden_size']}, {st['layers']} layers, {st['heads']} heads, "
        f"MLP {st['intermediate_size']}, context {st['max_positions']}, {s['parameters']:,} parameters; "
        f"byte-level BPE vocabulary {s['vocab']:,}",
        f"- training: {st['steps']} steps of {st['batch_size']} x {st['block_size']} tokens, AdamW lr {st['lr']}, "
        f"cosine with warm-up, seed {st['seed']}; weights saved as {st['save_dtype']}",
        f"- time: {s['seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU on {m.get('cpu_model', 'unknown')} "
        f"(native bf16: {m.get('avx512_bf16')}, {m.get('torch_threads')} torch thread(s), fp32 training)"
        + (f"; resumed at step {s['resumed_at_step']}" if s.get("resumed_at_step") else ""),
        "",
        "## Held-out language-model loss", "",
        "| | loss (nats/token) | perplexity |", "|---|---|---|",
    ]
    for label, key in (("random init", "val_loss_before"), ("trained (fp32)", "val_loss_after"),
                       (f"saved ({st['save_dtype']})", "val_loss_saved")):
        if s.get(key) is not None:
            lines.append(f"| {label} | {s[key]:.4f} | {math.exp(s[key]):.2f} |")
    lines += ["", "## Training curve", "", "| step | training loss | held-out loss (64 blocks) |", "|---|---|---|"]
    lines += [f"| {c['step']} | {c['train_loss']:.4f} | {c['val_loss']:.4f} |" for c in s.get("curve", [])
              if c.get("val_loss") is not None]
    lines += ["", "## Files (sha256)", ""] + [f"- `{k}`: `{v}`" for k, v in card["sha256"].items()]
    return "\n".join(lines) + "\n"
