"""GPU benchmark of stage 2: a LLaMA-2-7B-shaped decoder with LoRA plus the survival branch.

    python benchmarks/bench_stage2_gpu.py [--batch 12] [--steps 10] [--json OUT.json]
    python benchmarks/bench_stage2_gpu.py --cpu-smoke      # every code path, tiny shapes, on the CPU

Random weights (hidden 4096, 32 layers, 32 heads, MLP 11008, vocab 32000) are built directly on
the device in bf16, so nothing is read from disk; W (2048 -> 4096) and the adaptor/head train in
fp32.  One example: the 49 visual tokens, a clinical sentence + question prompt and an answer
(``--prompt-tokens`` + ``--answer-tokens``).  Reports:

* training (local batch ``--batch``, the paper's 12) through ctsurv's trainer (bf16 autocast,
  gradient checkpointing via the model's own method, AdamW, as rule train_stage2 runs it): the
  stage-2 loss (LM + Cox + dispersion + alignment) forward and backward on LoRA + adaptor + head:
  tokens/s, peak memory, and
  MFU = 6 N tokens/s / peak FLOP/s (N the decoder's parameters; the usual 6N convention, which
  overstates the work of a LoRA backward that skips the frozen weights' gradients);
* inference: patients/s for risk scoring (six questions per patient, one teacher-forced pass)
  and for generating the six answers (``--new-tokens`` greedy tokens with the KV cache).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

SEVEN_B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=512)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense bf16


def tokenizer_with_image_token(tmp: Path, vocab: int):
    """A small BPE tokenizer (offline) with pad, eos and ``<image>``; ids stay below the decoder's vocab."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = ["tumor in the left upper lobe, 3 cm", "no pleural effusion", "enlarged hilar lymph nodes",
              "A 61-year-old female, acute pulmonary embolism, pulse 65 bpm.", "Is there pleural effusion?"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=min(vocab, 300), special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                                        show_progress=False))
    t = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    t.add_tokens(["<image>"], special_tokens=True)
    return t


def build_model(shape: dict, device: str, dtype, feature_dim: int, tokens: int, tmp: Path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from ctsurv.vlm.config import VLMConfig
    from ctsurv.vlm.model import CTVisionLanguageModel, apply_lora
    from ctsurv.vlm.projector import build_projector
    from ctsurv.vlm.stage2_model import CTSurvivalVLM
    from ctsurv.vlm.survival import SurvivalBranch

    tokenizer = tokenizer_with_image_token(tmp, shape["vocab_size"])
    cfg = LlamaConfig(**shape, num_key_value_heads=shape["num_attention_heads"], max_position_embeddings=4096,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        decoder = LlamaForCausalLM(cfg).to(dtype)
    n_params = sum(p.numel() for p in decoder.parameters())
    decoder = apply_lora(decoder, {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    for name, p in decoder.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
    config = VLMConfig(decoder="random", decoder_hash="random", feature_dim=feature_dim, tokens=tokens,
                       hidden_size=shape["hidden_size"], prompt_format="plain", max_length=4096,
                       lora={"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    vlm = CTVisionLanguageModel(decoder, build_projector("linear", feature_dim, shape["hidden_size"]).to(device, dtype),
                                tokenizer, config)
    vlm.freeze(projector=True, decoder=False)
    branch = SurvivalBranch(shape["hidden_size"], "deepsurv", bottleneck=256).to(device)
    return CTSurvivalVLM(vlm, branch), n_params


def make_batch(model, batch: int, tokens: int, feature_dim: int, prompt_tokens: int, answer_tokens: int, device: str):
    tok = model.vlm.tokenizer
    image = tok.convert_tokens_to_ids("<image>")
    gen = torch.Generator().manual_seed(0)
    body = torch.randint(5, len(tok) - 1, (batch, prompt_tokens + answer_tokens), generator=gen)
    body[:, 1] = image
    labels = body.clone()
    labels[:, :prompt_tokens] = -100
    return {"features": torch.randn(batch, tokens, feature_dim, generator=gen).to(device),
            "input_ids": body.to(device), "attention_mask": torch.ones_like(body).to(device), "labels": labels.to(device),
            "time": torch.rand(batch, generator=gen).to(device) * 100 + 1,
            "event": (torch.rand(batch, generator=gen) < 0.6).float().to(device),
            "idx": torch.zeros(batch, dtype=torch.long).to(device)}


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def bench_train(model, batch, steps: int, precision: str, out_dir: Path) -> dict:
    """``steps`` timed optimizer steps (after two warm-up steps) of ctsurv's trainer on ``batch``:
    the stage-2 loss, AdamW, bf16 autocast, gradient checkpointing through the model's own
    method, as rule train_stage2 runs it.  Step times come from the trainer's metrics.csv."""
    import pandas as pd

    from ctsurv.vlm.data import collate
    from ctsurv.vlm.stage2_loss import Stage2Loss
    from ctsurv.vlm.survival import RiskMemory
    from ctsurv.vlm.trainer import TrainSettings, train

    n = batch["input_ids"].shape[0]
    items = [{"features": batch["features"][i].cpu(), "input_ids": batch["input_ids"][i].tolist(),
              "labels": batch["labels"][i].tolist(), "time": float(batch["time"][i]), "event": float(batch["event"][i]),
              "idx": 0} for i in range(n)]
    settings = TrainSettings(lr=1e-6, batch_size=n, grad_accum=1, max_steps=steps + 2, warmup_steps=0, precision=precision,
                             gradient_checkpointing=True, checkpoint_every=10**6, eval_every=10**6, progress=False)
    pad = model.vlm.tokenizer.pad_token_id
    train(model, items, None, Stage2Loss(memory=RiskMemory(64)), settings, out_dir, lambda b: collate(b, pad),
          lambda m, folder: folder.mkdir(parents=True), batch_sampler=lambda epoch: [list(range(n))])
    metrics = pd.read_csv(out_dir / "metrics.csv").iloc[2:]
    text_tokens = int(batch["attention_mask"].sum())
    step_s = float(np.median(text_tokens / metrics["tokens_per_s"]))
    merged_len = batch["input_ids"].shape[1] + batch["features"].shape[1] - 1
    tokens = n * merged_len
    decoder = model.vlm.decoder.get_base_model()
    checkpointing = getattr(decoder, "is_activation_checkpointing", None)
    return {"step_s": step_s, "tokens_per_step": tokens, "tokens_per_s": tokens / step_s,
            "loss": float(metrics["loss"].iloc[-1]), "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "gradient_checkpointing": bool(checkpointing if checkpointing is not None else decoder.is_gradient_checkpointing),
            "through": "ctsurv.vlm.trainer.train"}


@torch.no_grad()
def bench_infer(model, batch, device: str, autocast_dtype, new_tokens: int) -> dict:
    from ctsurv.vlm.generate import generate_answers

    model.eval()
    n = batch["input_ids"].shape[0]
    prompt = {k: v for k, v in batch.items() if k != "labels"}
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            model.risks(model(prompt)["out"].float())
        sync(device)
        score_s = time.perf_counter() - t0
    texts = ["A 61-year-old female, acute pulmonary embolism.\n<image>\nIs there pleural effusion?"] * n
    sync(device)
    t0 = time.perf_counter()
    with torch.autocast(device_type=device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        generate_answers(model.vlm, batch["features"], texts, max_new_tokens=new_tokens, batch_size=n)
    sync(device)
    gen_s = time.perf_counter() - t0
    return {"score_patients_per_s": n / 6 / score_s, "generate_patients_per_s": n / 6 / gen_s,
            "generate_tokens_per_s": n * new_tokens / gen_s}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=12, help="local batch (the paper: 12)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--infer-batch", type=int, default=72, help="prompts per inference batch (12 patients x 6)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU: a check of the script")
    args = parser.parse_args(argv)
    import tempfile

    if args.cpu_smoke:
        device, shape, dtype, autocast, feature_dim = "cpu", TINY, torch.float32, None, 32
        args.steps, args.batch, args.infer_batch, args.new_tokens = 2, 4, 6, 4
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("no CUDA device visible; use --cpu-smoke for a CPU check", file=sys.stderr)
            return 2
        device, shape, dtype, autocast, feature_dim = "cuda", SEVEN_B, torch.bfloat16, torch.bfloat16, 2048
    with tempfile.TemporaryDirectory() as tmp:
        model, n_params = build_model(shape, device, dtype, feature_dim, 49, Path(tmp))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batch = make_batch(model, args.batch, 49, feature_dim, args.prompt_tokens, args.answer_tokens, device)
    with tempfile.TemporaryDirectory() as tmp:
        train = bench_train(model, batch, args.steps, "fp32" if device == "cpu" else "bf16", Path(tmp))
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "decoder_params": n_params,
              "batch": args.batch, **train}
    if device == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        name = result["device"]
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        result["mfu"] = 6 * n_params * train["tokens_per_s"] / (peak * 1e12) if peak else None
    infer_batch = make_batch(model, args.infer_batch, 49, feature_dim, args.prompt_tokens, 0, device)
    result.update(bench_infer(model, infer_batch, device, autocast, args.new_tokens))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
