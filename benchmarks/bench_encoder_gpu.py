"""GPU benchmark of the full-size Merlin image encoder and of the image-encoding pipeline.

    python benchmarks/bench_encoder_gpu.py --batch-sizes 1 2 4 8 16 --seconds 20 [--json OUT.json]

Reports, at 224 x 224 x 160 (the paper's grid):

1. encoder alone (random weights, inputs already on the GPU): volumes/s and achieved
   TFLOP/s for fp32 (cuDNN may use TF32), bf16 autocast, and bf16 autocast + channels-last,
   per batch size;
2. ``encode_cohort`` from a preprocessed uint16 cache (the workflow's path: preprocess_ct
   once, then encode_images), with DataLoader workers and pinned memory;
3. end-to-end from raw ``.nii.gz`` files: reading and Merlin's preprocessing chain in the
   DataLoader workers, then the encoder; plus the preprocessing rate alone, to show whether
   it starves the encoder.

The target on one H100 is >= 150 volumes/s for the encoder alone.  Exits with a message when
no CUDA device is visible.  ``--cpu-smoke`` runs every code path on the CPU with a tiny encoder,
tiny volumes and short timings (a check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZE = (224, 224, 160)
SPACING = (1.5, 1.5, 3.0)


def conv_flops(size=SIZE, layers=(3, 8, 36, 3), width=64) -> float:
    """FLOP (2 per multiply-add) of the convolutions for one volume, counted on the meta device."""
    from ctsurv.imaging.merlin import I3ResNet

    with torch.device("meta"):
        model = I3ResNet(layers, width)
    total = 0.0

    def hook(module, _inputs, output):
        nonlocal total
        kernel = module.in_channels // module.groups * int(np.prod(module.kernel_size))
        total += 2.0 * output.numel() * kernel

    for m in model.modules():
        if isinstance(m, torch.nn.Conv3d):
            m.register_forward_hook(hook)
    model(torch.empty(1, 1, *size, device="meta"))
    return total


def bench_encoder(model, batch_sizes, seconds, flop_per_volume, device, size=SIZE):
    from ctsurv.imaging.encode import autocast_context

    variants = [("fp32", None, False), ("bf16", torch.bfloat16, False), ("bf16+channels-last", torch.bfloat16, True)]
    rows = []
    for name, dtype, last in variants:
        model.to(memory_format=torch.channels_last_3d if last else torch.contiguous_format)
        for bs in batch_sizes:
            try:
                x = torch.rand(bs, 1, *size, device=device)
                with torch.inference_mode(), autocast_context(device, dtype):
                    for _ in range(2):  # warm-up: cuDNN autotuning
                        model.encode(x)
                    _sync(device)
                    n, start = 0, time.perf_counter()
                    while time.perf_counter() - start < seconds:
                        model.encode(x)
                        n += 1
                        if n % 4 == 0:
                            _sync(device)
                    _sync(device)
                    elapsed = time.perf_counter() - start
                vps = n * bs / elapsed
                peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
                row = {"variant": name, "batch": bs, "volumes_per_s": vps, "tflops": vps * flop_per_volume / 1e12,
                       "peak_mem_gb": peak}
            except torch.cuda.OutOfMemoryError:
                row = {"variant": name, "batch": bs, "error": "out of memory"}
            finally:
                x = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
            rows.append(row)
            if "error" in row:
                print(f"  {name:20s} batch {bs:3d}: out of memory", flush=True)
            else:
                print(f"  {name:20s} batch {bs:3d}: {row['volumes_per_s']:8.1f} volumes/s  {row['tflops']:6.1f} TFLOP/s  "
                      f"peak {row['peak_mem_gb']:.1f} GiB", flush=True)
    model.to(memory_format=torch.contiguous_format)
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def phantom(seed: int, shape=(512, 512, 120), spacing=(0.7, 0.7, 2.5)):
    """A chest-CT-like int16 volume (air, body, lungs, noise) as a SimpleITK image."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[2], : shape[1], : shape[0]]
    cx, cy, r = shape[0] / 2, shape[1] / 2, shape[0] / 512  # sizes in voxels of a 512-wide slice
    body = ((x - cx) / (220 * r)) ** 2 + ((y - cy) / (160 * r)) ** 2 < 1
    lung = lambda side: ((x - cx + side * 100 * r) / (70 * r)) ** 2 + ((y - cy) / (100 * r)) ** 2 < 1  # noqa: E731
    lungs = lung(1) | lung(-1)
    vol = np.full((shape[2], shape[1], shape[0]), -1000, np.int16)
    vol[np.broadcast_to(body, vol.shape)] = 40
    vol[np.broadcast_to(lungs, vol.shape)] = -850
    vol += rng.normal(0, 20, vol.shape).astype(np.int16)
    image = sitk.GetImageFromArray(vol)
    image.SetSpacing(spacing)
    return image


def _write_phantom(args):
    import SimpleITK as sitk

    seed, path, shape = args
    sitk.WriteImage(phantom(seed, shape), str(path), useCompression=True)
    return str(path)


class RawLoader:
    """Worker-side loader: read a raw file and run Merlin's chain (id 'path#k' -> path)."""

    def __init__(self, size=SIZE):
        self.size = tuple(size)

    def __call__(self, study_id: str) -> np.ndarray:
        from ctsurv.imaging.io import read_ct
        from ctsurv.imaging.preprocess import preprocess_volume

        return preprocess_volume(read_ct(study_id.split("#")[0]), SPACING, self.size).array


def bench_pipeline(model, n_files, n_volumes, workers, batch_size, tmp: Path, device, size=SIZE,
                   raw_shape=(512, 512, 120)):
    from concurrent.futures import ProcessPoolExecutor

    from ctsurv.imaging.cache import write_entry
    from ctsurv.imaging.encode import VolumeDataset, collate_volumes, encode_cohort

    raw = tmp / "raw"
    raw.mkdir()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        files = list(pool.map(_write_phantom, [(i, raw / f"ct{i:03d}.nii.gz", raw_shape) for i in range(n_files)]))
    print(f"  wrote {n_files} raw {'x'.join(map(str, raw_shape))} .nii.gz phantoms in {time.perf_counter() - start:.1f} s", flush=True)
    ids = [f"{files[i % n_files]}#{i}" for i in range(n_volumes)]
    out = {}

    # Preprocessing alone: the rate the DataLoader workers can feed.
    loader = torch.utils.data.DataLoader(VolumeDataset(ids, RawLoader(size)), batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_volumes, prefetch_factor=4)
    start, n = time.perf_counter(), 0
    first = None
    for batch_ids, batch in loader:
        n += len(batch_ids)
        first = first if first is not None else batch[0, 0].numpy()
    out["preprocess_only_volumes_per_s"] = n / (time.perf_counter() - start)
    print(f"  raw -> preprocessed ({workers} workers): {out['preprocess_only_volumes_per_s']:.1f} volumes/s", flush=True)

    # End-to-end from raw files through encode_cohort.
    start = time.perf_counter()
    encode_cohort(ids, None, tmp / "store_raw", model, tokens=49, batch_size=batch_size, device=device,
                  precision="bf16", channels_last="auto", num_workers=workers, loader=RawLoader(size))
    out["raw_end_to_end_volumes_per_s"] = n_volumes / (time.perf_counter() - start)
    print(f"  raw files -> features (encode_cohort): {out['raw_end_to_end_volumes_per_s']:.1f} volumes/s", flush=True)

    # From the preprocessed uint16 cache (what rule encode_images reads).
    cache = tmp / "ct"
    for i in range(n_volumes):
        write_entry(cache, f"s{i:04d}", first, key={"i": i}, precision="uint16")
    cached = [f"s{i:04d}" for i in range(n_volumes)]
    start = time.perf_counter()
    encode_cohort(cached, cache, tmp / "store_cache", model, tokens=49, batch_size=batch_size, device=device,
                  precision="bf16", channels_last="auto", num_workers=workers)
    out["cache_end_to_end_volumes_per_s"] = n_volumes / (time.perf_counter() - start)
    print(f"  uint16 cache -> features (encode_cohort): {out['cache_end_to_end_volumes_per_s']:.1f} volumes/s "
          "(includes the fingerprint and store assembly)", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per variant and batch size")
    parser.add_argument("--pipeline-volumes", type=int, default=128, help="volumes for the pipeline runs (0: skip)")
    parser.add_argument("--pipeline-files", type=int, default=16, help="distinct raw files (reused cyclically)")
    parser.add_argument("--pipeline-batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--json", default=None, help="write all figures to this file")
    parser.add_argument("--cpu-smoke", action="store_true", help="check the script on a CPU (tiny sizes; no figures)")
    args = parser.parse_args()
    if args.cpu_smoke:
        return smoke(args)
    if not torch.cuda.is_available():
        print("bench_encoder_gpu: no CUDA device visible (torch.cuda.is_available() is False); "
              "run it on a GPU machine, or use benchmarks/bench_encoder_cpu.py", file=sys.stderr)
        return 2
    from ctsurv.imaging.merlin import build_encoder

    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    flop = conv_flops()
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, cuDNN TF32 allowed: "
          f"{torch.backends.cudnn.allow_tf32}; {flop / 1e12:.3f} TFLOP per 224x224x160 volume (convolutions)", flush=True)
    model = build_encoder(None, seed=0).cuda()
    report = {"device": torch.cuda.get_device_name(0), "tflop_per_volume": flop / 1e12}
    print("encoder alone:", flush=True)
    report["encoder"] = bench_encoder(model, args.batch_sizes, args.seconds, flop, device)
    best = max((r for r in report["encoder"] if "error" not in r), key=lambda r: r["volumes_per_s"])
    print(f"best: {best['variant']} batch {best['batch']}: {best['volumes_per_s']:.1f} volumes/s "
          f"({best['volumes_per_s'] / 150:.2f}x the 150 volumes/s target)", flush=True)
    if args.pipeline_volumes > 0:
        print("pipeline:", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            report["pipeline"] = bench_pipeline(model, args.pipeline_files, args.pipeline_volumes, args.workers,
                                                args.pipeline_batch, Path(tmp), device)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def smoke(args) -> int:
    from ctsurv.imaging.merlin import build_encoder

    device, size, layers, width = torch.device("cpu"), (48, 48, 32), (1, 1, 1, 1), 8
    flop = conv_flops(size, layers, width)
    model = build_encoder(None, layers, width, seed=0)
    rows = bench_encoder(model, [1, 2], 0.2, flop, device, size)
    assert all("error" not in r and r["volumes_per_s"] > 0 for r in rows), rows
    with tempfile.TemporaryDirectory() as tmp:
        out = bench_pipeline(model, 2, 4, 2, 2, Path(tmp), device, size, raw_shape=(96, 96, 30))
    assert all(v > 0 for v in out.values()), out
    print("cpu smoke run: every code path ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
