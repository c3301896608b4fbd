"""CPU benchmark of the full-size Merlin image encoder: fp32 vs bf16, contiguous vs channels-last.

    .venv/bin/python benchmarks/bench_encoder_cpu.py [--repeats 1] [--size 224 224 160] [--json OUT.json]

One volume per forward.  Prints seconds per volume for each variant, the speed-up of bf16
autocast against fp32 measured in the same run, and the cosine similarity of the pooled
2048-d embedding against fp32 (the acceptance bar is > 0.999).  The reference machine of
DESIGN.md (2 cores, AVX-512 with BF16) gives fp32 7.4 s, bf16 3.8 s, cosine 0.99999; on a CPU
without native bf16 (``cpu_has_bf16`` False) bf16 is emulated and slower, which is why
``precision: auto`` uses fp32 there.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ctsurv.imaging.encode import autocast_context, cpu_has_bf16
from ctsurv.imaging.merlin import build_encoder

FLOP_PER_VOLUME = 1.33e12  # full-size I3ResNet-152 at 224 x 224 x 160 (multiply-add = 2 FLOP)


def run(model, x, dtype, repeats):
    with torch.inference_mode(), autocast_context(torch.device("cpu"), dtype):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            pooled, _ = model.encode(x)
            times.append(time.perf_counter() - start)
    return min(times), pooled.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="forwards per variant (the fastest counts)")
    parser.add_argument("--size", type=int, nargs=3, default=[224, 224, 160], help="input X Y Z")
    parser.add_argument("--channels-last", action="store_true", help="also time the channels-last format")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_bf16()}")
    model = build_encoder(None, seed=0)  # full size, random weights: timing and agreement only
    x = torch.rand(1, 1, *args.size, generator=torch.Generator().manual_seed(0))
    variants = [("fp32", None, False), ("bf16", torch.bfloat16, False)]
    if args.channels_last:
        variants += [("fp32 channels-last", None, True), ("bf16 channels-last", torch.bfloat16, True)]
    results, reference = {}, None
    for name, dtype, last in variants:
        model.to(memory_format=torch.channels_last_3d if last else torch.contiguous_format)
        seconds, pooled = run(model, x, dtype, args.repeats)
        if reference is None:
            reference = pooled
        cosine = float(torch.nn.functional.cosine_similarity(pooled, reference, dim=1).min())
        results[name] = {"s_per_volume": seconds, "cosine_vs_fp32": cosine,
                         "tflops": FLOP_PER_VOLUME / seconds / 1e12 if args.size == [224, 224, 160] else None}
        print(f"{name:20s} {seconds:7.2f} s/volume   cosine vs fp32 {cosine:.6f}")
    speedup = results["fp32"]["s_per_volume"] / results["bf16"]["s_per_volume"]
    print(f"bf16 speed-up vs fp32: {speedup:.2f}x (reference machine: 7.4 / 3.8 = 1.95x); "
          f"precision auto would use {'bf16' if cpu_has_bf16() else 'fp32'} here")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"native_bf16": cpu_has_bf16(), "speedup_bf16": speedup, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
