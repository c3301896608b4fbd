"""Stage-1 throughput at the paper's scale: a LLaMA-2-7B-shaped decoder with LoRA on one GPU.

Training: ctsurv's CTVisionLanguageModel (linear W 2048 -> 4096, the <image> merge seam, peft
LoRA r 16 on q/k/v/o) over a LlamaForCausalLM with LLaMA-2-7B's shape (hidden 4096, 32
layers, 32 heads, MLP 11008, vocab 32000; random weights from a LlamaConfig: speed does not
depend on the values), bf16 weights with fp32 adapters, bf16 autocast, gradient
checkpointing, local batch 12 of 49 visual + 128 text tokens, AdamW.

Prints tokens/s, peak GPU memory and model FLOP utilisation.  FLOPs are counted the usual
way (PaLM appendix B): 6 N per token for the N decoder weights that multiply activations
(every linear layer and the LM head, not the embedding lookup), plus 12 * layers * hidden *
sequence per token for attention scores; the W projection is included.  This is *model*
FLOPs: LoRA skips the frozen weights' gradient (about a third less real work) and gradient
checkpointing recomputes the forward (about a third more), so hardware FLOPs differ.

Generation: greedy decoding with the KV cache (ctsurv.vlm.generate_answers), batches of 64
prompts, six questions per patient, ``--new-tokens`` answer tokens (random weights rarely
stop early, so every answer runs to the limit): patients/s.

    python benchmarks/bench_stage1_gpu.py                 # on a GPU (H100-class aims: MFU >= 35%, >= 50 patients/s)
    python benchmarks/bench_stage1_gpu.py --cpu-smoke     # tiny shapes on the CPU, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: dense bf16 peak (TFLOP/s) by device name fragment; --peak-tflops overrides
PEAKS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A6000": 154.8}

SMOKE = dict(hidden=64, layers=2, heads=4, intermediate=172, vocab=512, feature_dim=32, batch=2, visual=4, text=16,
             steps=2, warmup=1, patients=2, gen_batch=4, new_tokens=4, lora_r=4)
SEVEN_B = dict(hidden=4096, layers=32, heads=32, intermediate=11008, vocab=32000, feature_dim=2048, batch=12, visual=49,
               text=128, steps=10, warmup=3, patients=128, gen_batch=64, new_tokens=64, lora_r=16)
QUESTIONS = [
    "What is the location and size of the primary lung tumor?",
    "Which lymph nodes are involved, and what are their size and location?",
    "Is there pleural involvement or pleural effusion?",
    "Are there metastases or involvement of other organs?",
    "Are major vessels involved or compressed?",
    "Are there skeletal or bone changes?",
]


def build_model(s: dict, device, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ctsurv.vlm import CTVisionLanguageModel, VLMConfig
    from ctsurv.vlm.demo_decoder import train_tokenizer
    from ctsurv.vlm.model import apply_lora, prepare_tokenizer_and_embeddings
    from ctsurv.vlm.projector import build_projector

    corpus = [f"A {60 + i}-year-old patient.\n{q}\nNo pleural effusion. Mass in the left upper lobe, 3 cm." for i, q in
              enumerate(QUESTIONS * 4)]
    tokenizer = train_tokenizer(corpus, vocab_size=300)
    config = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                         num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["heads"],
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            decoder = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    prepare_tokenizer_and_embeddings(tokenizer, decoder)
    decoder = apply_lora(decoder, {"r": s["lora_r"], "alpha": 2 * s["lora_r"], "dropout": 0.05,
                                   "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    projector = build_projector("linear", s["feature_dim"], s["hidden"]).to(device)
    vlm_config = VLMConfig(decoder="(random LLaMA config)", decoder_hash="random", feature_dim=s["feature_dim"],
                           tokens=s["visual"], hidden_size=s["hidden"], prompt_format="plain", max_length=4096,
                           lora={"r": s["lora_r"]})
    return CTVisionLanguageModel(decoder, projector, tokenizer, vlm_config)


def model_flops_per_token(s: dict, seq: int) -> float:
    h, layers, inter = s["hidden"], s["layers"], s["intermediate"]
    per_layer = 4 * h * h + 3 * h * inter  # q, k, v, o + gate, up, down
    n = layers * per_layer + h * s["vocab"] + s["feature_dim"] * h  # + LM head + W
    return 6 * n + 12 * layers * h * seq


def train_throughput(model, s: dict, precision: str, out_dir) -> dict:
    """Timed optimizer steps of ctsurv's trainer (as rule train_stage1 runs it: the answer loss,
    AdamW, bf16 autocast, gradient checkpointing through the model's own method) on one batch."""
    import pandas as pd
    import torch

    from ctsurv.vlm.data import collate
    from ctsurv.vlm.model import IGNORE_INDEX
    from ctsurv.vlm.stage1 import lm_loss
    from ctsurv.vlm.trainer import TrainSettings, train

    gen = torch.Generator().manual_seed(0)
    image_id = model.image_token_id
    ids = torch.randint(10, 250, (s["batch"], s["text"] + 1), generator=gen)
    ids[:, 8] = image_id  # clinical sentence, then the placeholder, then question + answer
    labels = ids.clone()
    labels[:, : s["text"] // 2] = IGNORE_INDEX
    features = torch.randn(s["batch"], s["visual"], s["feature_dim"], generator=gen)
    items = [{"features": features[i], "input_ids": ids[i].tolist(), "labels": labels[i].tolist(), "study_id": str(i),
              "id": str(i)} for i in range(s["batch"])]
    settings = TrainSettings(lr=1e-5, betas=(0.9, 0.999), batch_size=s["batch"], grad_accum=1,
                             max_steps=s["warmup"] + s["steps"], warmup_steps=0, precision=precision,
                             gradient_checkpointing=True, checkpoint_every=10**6, eval_every=10**6, progress=False)
    pad = model.tokenizer.pad_token_id
    train(model, items, None, lm_loss, settings, out_dir, lambda b: collate(b, pad), lambda m, folder: folder.mkdir(parents=True),
          batch_sampler=lambda epoch: [list(range(s["batch"]))])
    metrics = pd.read_csv(Path(out_dir) / "metrics.csv").iloc[s["warmup"]:]
    seq = s["visual"] + s["text"]
    tokens = s["batch"] * seq
    tokens_per_s = float(metrics["tokens_per_s"].median())  # the merged sequence: visual + text tokens
    decoder = model.decoder.get_base_model()
    flag = getattr(decoder, "is_activation_checkpointing", None)
    return {"step_s": tokens / tokens_per_s, "tokens_per_s": tokens_per_s, "seq": seq,
            "flops_per_s": model_flops_per_token(s, seq) * tokens_per_s, "loss": float(metrics["loss"].iloc[-1]),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "gradient_checkpointing": bool(flag if flag is not None else decoder.is_gradient_checkpointing)}


def generation_throughput(model, s: dict, device) -> dict:
    import torch

    from ctsurv.vlm import generate_answers

    n = s["patients"]
    features = torch.randn(n, s["visual"], s["feature_dim"], generator=torch.Generator().manual_seed(1))
    features = features.repeat_interleave(len(QUESTIONS), dim=0)
    prompts = [f"A {60 + i % 30}-year-old male former smoker lung cancer patient, stage 2.\n<image>\n{q}"
               for i in range(n) for q in QUESTIONS]
    generate_answers(model, features[: s["gen_batch"]], prompts[: s["gen_batch"]], max_new_tokens=2,
                     batch_size=s["gen_batch"])  # warm-up
    _sync(device)
    start = time.perf_counter()
    answers = generate_answers(model, features, prompts, max_new_tokens=s["new_tokens"], batch_size=s["gen_batch"])
    _sync(device)
    seconds = time.perf_counter() - start
    return {"patients": n, "answers": len(answers), "seconds": seconds, "patients_per_s": n / seconds}


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU in fp32 (seconds; for CI)")
    parser.add_argument("--steps", type=int, help="timed training steps")
    parser.add_argument("--patients", type=int, help="patients to generate answers for")
    parser.add_argument("--new-tokens", type=int, help="answer tokens per question")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: from its name)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    if args.cpu_smoke:
        s, device, dtype = dict(SMOKE), "cpu", torch.float32
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --cpu-smoke, or on a GPU machine", file=sys.stderr)
            return 2
        s, device, dtype = dict(SEVEN_B), "cuda", torch.bfloat16
    for key in ("steps", "patients", "new_tokens"):
        if getattr(args, key):
            s[key] = getattr(args, key)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = args.peak_tflops or next((v for k, v in PEAKS.items() if k in name), None)

    model = build_model(s, device, dtype)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        train = train_throughput(model, s, "fp32" if device == "cpu" else "bf16", tmp)
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    gen = generation_throughput(model, s, device)

    print(f"device: {name}; decoder hidden {s['hidden']} x {s['layers']} layers, vocab {s['vocab']}, LoRA r {s['lora_r']} "
          f"({train['trainable'] / 1e6:.1f} M trainable incl. W); {'fp32' if dtype == torch.float32 else 'bf16'}, "
          "gradient checkpointing")
    print(f"training: batch {s['batch']} x ({s['visual']} visual + {s['text']} text) tokens, "
          f"{train['step_s'] * 1000:.0f} ms/step, {train['tokens_per_s']:.0f} tokens/s, loss {train['loss']:.3f}")
    print(f"peak GPU memory: {peak_mem:.1f} GiB")
    if peak:
        print(f"MFU: {100 * train['flops_per_s'] / (peak * 1e12):.1f}% of {peak:.0f} TFLOP/s "
              f"({train['flops_per_s'] / 1e12:.1f} model TFLOP/s; 6 N + attention per token, see the docstring)")
    else:
        print(f"MFU: n/a (unknown peak for {name}; give --peak-tflops); {train['flops_per_s'] / 1e12:.3f} model TFLOP/s")
    print(f"generation: {gen['patients']} patients x 6 answers, batch {s['gen_batch']}, {s['new_tokens']} new tokens: "
          f"{gen['seconds']:.2f} s, {gen['patients_per_s']:.1f} patients/s")
    if args.json:
        figures = {"device": name, "shape": s, "precision": "fp32" if dtype == torch.float32 else "bf16",
                   "through": "ctsurv.vlm.trainer.train", **train, "peak_memory_gib": peak_mem,
                   "mfu": train["flops_per_s"] / (peak * 1e12) if peak else None, "generation": gen}
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
