"""Snakemake: demo_decoder (opt-in: vlm.decoder null) -> train_stage1 -> evaluate_stage1 on a tiny pretrain dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from vlm_fixtures import tiny_records, tiny_store

pytestmark = pytest.mark.slow

STUDIES = [f"s{i}" for i in range(12)]


def _workdir(tmp: Path, repo: Path) -> Path:
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["datasets"] = {"demo_pretrain": {"adapter": "demo", "role": "pretrain", "path": "raw/demo_pretrain"}}
    config["vlm"]["decoder"] = None  # opt-in: the decoder is built in the run by rule demo_decoder
    config["vlm"]["demo_decoder"] = {"vocab_size": 300, "hidden_size": 32, "layers": 1, "heads": 2,
                                     "intermediate_size": 64, "steps": 5, "batch_size": 4, "block_size": 32}
    config["vlm"]["stage1"].update(max_steps=4, epochs=None, batch_size=4, eval_every=2, checkpoint_every=2, gpus=0,
                                   precision="fp32", gradient_checkpointing=False)
    config["vlm"]["evaluate"].update(max_new_tokens=4, batch_size=8)
    (tmp / "config").mkdir()
    (tmp / "config" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    for name in ("questions.yaml",):
        (tmp / "config" / name).write_text((repo / "config" / name).read_text(encoding="utf-8"), encoding="utf-8")
    results = tmp / "results" / "demo_pretrain"
    results.mkdir(parents=True)
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    reports = [f"Findings: A mass in the left upper lobe measures {i} cm. No pleural effusion." for i in range(12)]
    pd.DataFrame({"study_id": STUDIES, "patient_id": STUDIES, "split": splits, "report": reports}).to_parquet(
        results / "cohort.parquet")
    store = tiny_store(results / "features" / "image", STUDIES, tokens=4, dim=8)
    pd.read_parquet(store / "index.parquet")  # the rule's input file exists
    (results / "instructions").mkdir()
    for split in ("train", "val", "test"):
        ids = [s for s, sp in zip(STUDIES, splits) if sp == split]
        (results / "instructions" / f"{split}.json").write_text(json.dumps(tiny_records(ids)), encoding="utf-8")
    return tmp


def test_stage1_rules_run_in_snakemake(tmp_path, repo):
    work = _workdir(tmp_path, repo)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [str(snakemake), "-s", str(repo / "Snakefile"), "--directory", str(work), "--cores", "1",
           "--allowed-rules", "demo_decoder", "train_stage1", "evaluate_stage1", "--",
           "results/demo_pretrain/stage1/metrics.json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((work / "results/demo_pretrain/stage1/metrics.json").read_text(encoding="utf-8"))
    assert metrics["pairs"] == 2
    assert (work / "results/models/demo_decoder/config.json").exists()
    assert pd.read_csv(work / "results/models/stage1/metrics.csv")["step"].tolist() == [1, 2, 3, 4]
    for tsv in ("demo_decoder/demo_decoder", "train_stage1/train_stage1", "evaluate_stage1/demo_pretrain"):
        assert (work / "results/benchmarks" / f"{tsv}.tsv").is_file(), tsv
