"""A CT-RATE-sized rehearsal on one CPU machine (issue 22, item 2).

1. Ingest and DAG: N synthetic studies (default 50,000; tiny identical NIfTI volumes, one file
   each, reports of CT-RATE length) through ``build_cohort`` (rule ingest's work), then the
   time of ``snakemake -n`` for the whole workflow on that cohort (imaging and extraction in
   8 shards each).  Reference in the same run: pandas reading the manifest.
2. A feature store of N x 49 x 2048 float16 (about 10 GB at 50,000; memory-mapped, written in
   chunks; ``--store-dir``, default a temporary folder, deleted at the end).
3. The stage-1 data loader's throughput from that store: the trainer's own path
   (``InstructionDataset.__getitem__`` reading a study's tokens from the memory map, then
   ``collate`` into batches of 12, the paper's local batch), conversations in store order and
   shuffled, each from a cold page cache (the store's pages dropped with
   ``posix_fadvise(DONTNEED)``) and warm.  Against it: what one GPU consumes at stage 1,
   ESTIMATED (no GPU measurement exists yet): LLaMA-2-7B with LoRA at the model-FLOP
   utilisation ``bench_stage1_gpu.py`` aims for (35% of an H100's 989 TFLOP/s bf16), 6 N
   FLOPs per token over 49 visual + 128 text tokens.  ``--gpu-samples-per-s`` replaces the
   estimate with a measured figure (bench_stage1_gpu.py's tokens/s / 177).

    flock /tmp/ctsurv-heavy.lock .venv/bin/python benchmarks/bench_scale.py [--studies 50000]

Prints each figure and the ratio loader / GPU (the target: at least 2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPORT = ("Findings: The trachea and both main bronchi are open. Mediastinal structures are normal. "
          "There is a 14 mm nodule in the right upper lobe. No pleural effusion. " * 4).strip()
QUESTION = "What is the location and size of the primary lung tumor?"
ANSWER = "A 14 mm nodule in the right upper lobe."
# 7B decoder: the weights that multiply activations (32 layers x (4 x 4096^2 + 3 x 4096 x 11008)
# + LM head 4096 x 32000) and the W projection 2048 x 4096
DECODER_PARAMS = 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 4096 * 32000 + 2048 * 4096
TOKENS_PER_SAMPLE = 49 + 128
H100_BF16 = 989.4e12
MFU = 0.35


def tiny_nifti(path: Path) -> bytes:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.full((4, 4, 4), -1000, dtype=np.int16))
    image.SetSpacing((0.7, 0.7, 1.5))
    sitk.WriteImage(image, str(path))
    return path.read_bytes()


def ingest_and_dag(root: Path, n: int, repo: Path) -> dict:
    images = root / "images"
    images.mkdir(parents=True)
    data = tiny_nifti(root / "template.nii.gz")
    t0 = time.perf_counter()
    for i in range(n):
        (images / f"s{i:06d}.nii.gz").write_bytes(data)
    t_files = time.perf_counter() - t0
    rows = pd.DataFrame({"study_id": [f"s{i:06d}" for i in range(n)], "patient_id": [f"p{i // 2:06d}" for i in range(n)],
                         "image": [f"images/s{i:06d}.nii.gz" for i in range(n)], "report": REPORT})
    rows.to_csv(root / "manifest.csv", index=False)
    spec = {"adapter": "manifest", "role": "pretrain", "path": str(root / "manifest.csv"), "clinical": {},
            "clinical_sentence": ""}
    from ctsurv.data.cohort import build_cohort

    t0 = time.perf_counter()
    pd.read_csv(root / "manifest.csv", dtype=str)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    cohort = build_cohort("scale", spec, {"splits": {"seed": 42, "train": 0.8, "val": 0.1, "test": 0.1}})
    t_ingest = time.perf_counter() - t0
    assert len(cohort) == n

    import yaml

    config = {"datasets": {"scale": spec}, "imaging": {"shards": 8}, "extraction": {"shards": 8},
              "splits": {"seed": 42, "train": 0.8, "val": 0.1, "test": 0.1}}
    (root / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (root / "config").mkdir()
    shutil.copy(repo / "config" / "questions.yaml", root / "config" / "questions.yaml")
    (root / "results" / "scale").mkdir(parents=True)
    cohort.to_parquet(root / "results" / "scale" / "cohort.parquet", index=False)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(repo / "Snakefile"), "--configfile",
                          str(root / "config.yaml"), "--directory", str(root), "--quiet", "rules"],
                         cwd=root, capture_output=True, text=True)
    t_dag = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{res.stderr[-3000:]}")
    jobs = [line.split() for line in res.stdout.splitlines() if line.strip() and line.split()[-1].isdigit()]
    total = next((int(j[-1]) for j in jobs if j[0] == "total"), None)
    return {"files_s": t_files, "read_csv_s": t_ref, "ingest_s": t_ingest, "dag_s": t_dag, "jobs": total}


def write_store(folder: Path, n: int, tokens: int = 49, dim: int = 2048, chunk: int = 1000) -> float:
    from ctsurv.features import FeatureStore

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    pd.DataFrame({"study_id": [f"s{i:06d}" for i in range(n)]}).to_parquet(folder / "index.parquet", index=False)
    toks = np.lib.format.open_memmap(folder / "tokens.npy", mode="w+", dtype=np.float16, shape=(n, tokens, dim))
    pooled = np.lib.format.open_memmap(folder / "pooled.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    block = rng.standard_normal((chunk, tokens, dim), dtype=np.float32).astype(np.float16)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        toks[start:stop] = block[: stop - start]
        toks[start:stop, 0, :8] = (np.arange(start, stop) % 1000).astype(np.float16)[:, None] / 100  # rows differ
        pooled[start:stop] = block[: stop - start].mean(axis=1)
    toks.flush()
    pooled.flush()
    del toks, pooled
    os.sync()
    seconds = time.perf_counter() - t0
    assert len(FeatureStore(folder)) == n
    return seconds


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def loader_throughput(store_dir: Path, samples: int, batch: int = 12) -> dict:
    import torch

    from ctsurv.features import FeatureStore
    from ctsurv.vlm.data import InstructionDataset, collate
    from ctsurv.vlm.demo_decoder import train_tokenizer

    torch.set_num_threads(1)
    store = FeatureStore(store_dir)
    tokenizer = train_tokenizer([REPORT, QUESTION, ANSWER] * 20, vocab_size=400)
    rng = np.random.default_rng(1)
    studies = np.sort(rng.choice(len(store), size=samples, replace=False))  # spread over the whole 10 GB
    records = [{"id": f"c{i}", "study_id": store.study_ids[s], "image": store.study_ids[s],
                "conversations": [{"from": "human", "value": f"<image>\n{QUESTION}"}, {"from": "gpt", "value": ANSWER}]}
               for i, s in enumerate(studies)]
    t0 = time.perf_counter()
    data = InstructionDataset(records, store, tokenizer, "plain", 256)
    t_tokenize = time.perf_counter() - t0
    out = {"tokenize_s": t_tokenize, "samples": samples}
    for order in ("in store order", "shuffled"):
        index = np.arange(len(data)) if order == "in store order" else rng.permutation(len(data))
        for cache in ("cold", "warm"):
            if cache == "cold":
                drop_cache(store_dir / "tokens.npy")
            t0 = time.perf_counter()
            for start in range(0, len(index), batch):
                got = collate([data[int(i)] for i in index[start:start + batch]], tokenizer.pad_token_id)
            seconds = time.perf_counter() - t0
            assert got["features"].shape[1:] == (49, 2048)
            out[f"{order}, {cache} cache"] = samples / seconds
    return out


def gpu_samples_per_s() -> float:
    flops = 6 * DECODER_PARAMS * TOKENS_PER_SAMPLE + 12 * 32 * 4096 * TOKENS_PER_SAMPLE * TOKENS_PER_SAMPLE
    return MFU * H100_BF16 / flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=50000)
    parser.add_argument("--samples", type=int, default=20000, help="conversations read by the loader per measurement")
    parser.add_argument("--store-dir", type=Path, default=None, help="where the feature store is written (deleted after)")
    parser.add_argument("--gpu-samples-per-s", type=float, default=None, help="a measured stage-1 speed of one GPU")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="ctsurv-scale-"))
    store_dir = (args.store_dir or work) / "store"
    try:
        dag = ingest_and_dag(work / "ingest", args.studies, repo)
        print(f"{args.studies} studies: writing the files {dag['files_s']:.1f} s; pandas read_csv (reference) "
              f"{dag['read_csv_s']:.2f} s; ingest (build_cohort) {dag['ingest_s']:.1f} s "
              f"({dag['ingest_s'] / dag['read_csv_s']:.1f}x the reference)")
        print(f"snakemake -n of the whole workflow (imaging and extraction 8 shards each): {dag['dag_s']:.1f} s, "
              f"{dag['jobs']} jobs")
        shutil.rmtree(work / "ingest")
        seconds = write_store(store_dir, args.studies)
        size = sum(f.stat().st_size for f in store_dir.iterdir())
        print(f"feature store {args.studies} x 49 x 2048 float16: {size / 1e9:.2f} GB written in {seconds:.1f} s "
              f"({size / 1e6 / seconds:.0f} MB/s)")
        loader = loader_throughput(store_dir, min(args.samples, args.studies))
        gpu = args.gpu_samples_per_s or gpu_samples_per_s()
        source = "measured (--gpu-samples-per-s)" if args.gpu_samples_per_s else \
            f"estimated: 7B LoRA at {MFU:.0%} MFU of an H100 ({TOKENS_PER_SAMPLE} tokens/sample)"
        print(f"stage-1 loader ({loader['samples']} conversations over the whole store, batches of 12, one process; "
              f"tokenizing them {loader['tokenize_s']:.1f} s):")
        for key, rate in loader.items():
            if key not in ("tokenize_s", "samples"):
                print(f"  {key:28s} {rate:8.0f} samples/s  {rate / gpu:6.1f}x one GPU")
        print(f"one GPU at stage 1 consumes {gpu:.0f} samples/s ({source}); target: the loader feeds >= 2x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(store_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
