"""Effect of the Cox risk-set composition on stage 2: batch alone vs a memory of recent risks.

    python benchmarks/bench_stage2_riskset.py --results results --dataset demo_pe [--memory 0 64] [--head deepsurv]

Trains the same stage-2 model (config ``vlm.stage2``, pre-training ``--pretrain``) once per memory
size from a finished workflow's files (instructions, cohort, image features, stage-1 model),
then scores the validation and test patients as the workflow does (``pool: prompt``: on the
prompt, no generation; ``pool: all``: on generated answers) and prints Harrell's c-index of each
with CPU and wall seconds.  Writes nothing under ``--results``: models go to a temporary folder.
Over several seeds: ``bench_stage2_seeds.py --ours mem0:with:risk_memory=0 ...``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml


def run(results: Path, dataset: str, head: str, memory: int, config: dict, out: Path, pretrain: str = "with",
        decoder: str | None = None) -> dict:
    from ctsurv.survival.metrics import harrell_cindex
    from ctsurv.vlm.ensemble import ensemble_risks
    from ctsurv.vlm.stage2 import run_stage2
    from ctsurv.vlm.stage2_data import load_split_data
    from ctsurv.vlm.stage2_io import load_stage2
    from ctsurv.vlm.stage2_predict import predict_questions

    stage2 = copy.deepcopy(config["vlm"]["stage2"])
    stage2["risk_memory"] = memory
    stage2["train"] = dict(stage2["train"], progress=False)
    inst = {s: results / dataset / "instructions" / f"{s}.json" for s in ("train", "val", "test")}
    cohort = pd.read_parquet(results / dataset / "cohort.parquet")
    store = results / dataset / "features" / "image"
    wall, cpu = time.perf_counter(), time.process_time()
    run_stage2({k: inst[k] for k in ("train", "val")}, cohort, store, head, pretrain, stage2, config["vlm"], out,
               stage1_dir=results / "models" / "stage1", decoder_path=decoder or results / "models" / "demo_decoder")
    model = load_stage2(out)
    tables, followup, feats, ids = load_split_data({k: inst[k] for k in ("val", "test")}, cohort, store)
    patients = ensemble_risks(predict_questions(model, tables, followup, feats, ids, generate_splits=()))
    row = {"memory": memory, "train_wall_s": round(time.perf_counter() - wall, 1), "train_cpu_s": round(time.process_time() - cpu, 1)}
    for split in ("val", "test"):
        p = patients[patients["split"] == split]
        row[f"{split}_cindex"] = round(harrell_cindex(p["time"], p["event"], p["risk"], n_boot=0).cindex, 4)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished workflow's results folder")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--dataset", default="demo_pe")
    parser.add_argument("--head", default="deepsurv")
    parser.add_argument("--memory", type=int, nargs="+", default=[0, 64])
    parser.add_argument("--pretrain", default="with", choices=["with", "without"])
    parser.add_argument("--decoder", help="decoder folder for --pretrain without (default: the demo decoder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.memory:
            rows.append(run(Path(args.results), args.dataset, args.head, m, config, Path(tmp) / f"m{m}" / "model",
                            args.pretrain, args.decoder))
            print(json.dumps(rows[-1]), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
