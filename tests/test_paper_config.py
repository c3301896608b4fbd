"""config/paper.yaml holds the paper's settings (arXiv 2604.18250), and the workflow hands them to the jobs.

PAPER is the one table of the paper's numbers; every row is checked against the loaded
configuration (config/config.yaml with config/paper.yaml over it, validated by the schema, as
``snakemake --configfile config/paper.yaml`` loads it), and the stage-2 rows against the params
of each stage-2 job of a dry run.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ctsurv.config import load_yaml, validate_config
from ctsurv.vlm.trainer import TrainSettings, cosine_with_warmup

# what the paper says -> the value, and the config keys that must hold it
PAPER = [
    ("lr with a language decoder", 1e-6, ["vlm.stage1.lr", "vlm.stage2.train.lr"]),
    ("local batch of the decoder models", 12, ["vlm.stage1.batch_size", "vlm.stage2.train.batch_size"]),
    ("total batch (12 x 8 accumulation steps)", 96, ["vlm.stage1.total_batch", "vlm.stage2.train.total_batch"]),
    ("warm-up steps (cosine schedule)", 500, ["vlm.stage1.warmup_steps", "vlm.stage2.train.warmup_steps"]),
    ("AdamW betas", [0.9, 0.999], ["vlm.stage1.betas", "vlm.stage2.train.betas"]),
    ("GPUs", 2, ["vlm.stage1.gpus"]),
    ("alpha, weight of the survival loss", 0.5, ["vlm.stage2.loss.alpha"]),
    ("weight of the dispersion term", 1.0, ["vlm.stage2.loss.dispersion"]),
    ("weight of the alignment term", 1.0, ["vlm.stage2.loss.alignment"]),
    ("weight of the language-model loss", 1.0, ["vlm.stage2.lm_weight"]),
    ("projection W", "linear", ["vlm.projector"]),
    ("lr without a language decoder", 1e-4, ["survival.lr"]),
    ("baseline batch", 32, ["survival.batch_size"]),
    ("QA pairs scored by BERTScore", 500, ["vlm.evaluate.max_pairs", "vlm.stage2.bertscore.pairs"]),
    ("BERTScore layer (bert-score's default for roberta-large)", 17, ["vlm.evaluate.bertscore_layers"]),
    ("BERTScore without baseline rescaling", False, ["vlm.evaluate.bertscore_rescale"]),
    ("visual tokens (layer 4 averaged out of plane)", 49, ["imaging.encoder.tokens"]),
    ("Merlin's I3ResNet-152", [3, 8, 36, 3], ["imaging.encoder.layers"]),
    ("resampled spacing (mm)", [1.5, 1.5, 3.0], ["imaging.spacing"]),
    ("input size (voxels)", [224, 224, 160], ["imaging.size"]),
    ("six questions for every patient at prediction", "all", ["vlm.stage2.predict.train_questions"]),
]
STAGE2_RULES = ("train_stage2", "predict_stage2", "evaluate_stage2")


def get(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


@pytest.fixture(scope="module")
def paper():
    from snakemake.utils import update_config

    repo = Path(__file__).resolve().parents[1]
    config = copy.deepcopy(load_yaml(repo / "config/config.yaml"))
    update_config(config, load_yaml(repo / "config/paper.yaml"))
    return validate_config(config, load_yaml(repo / "workflow/schemas/config.schema.yaml"))


@pytest.mark.parametrize("what, value, keys", PAPER, ids=[row[0] for row in PAPER])
def test_every_paper_value_is_in_the_loaded_config(paper, what, value, keys):
    for key in keys:
        assert get(paper, key) == value, f"{key} ({what})"


def test_the_bertscore_model_is_roberta_large(paper):
    assert get(paper, "vlm.evaluate.bertscore_model").rstrip("/").endswith("roberta-large")


@pytest.mark.parametrize("section", ["vlm.stage1", "vlm.stage2.train"])
def test_the_trainer_reads_the_paper_settings(paper, section):
    settings = TrainSettings.from_dict(get(paper, section))
    assert settings.lr == 1e-6 and settings.betas == (0.9, 0.999) and settings.warmup_steps == 500
    assert settings.precision == "bf16" and settings.gradient_checkpointing is True
    assert settings.epochs and settings.max_steps is None
    # cosine after warm-up: half the peak half-way through the decay
    import torch

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    sched = cosine_with_warmup(opt, settings.warmup_steps, 2500)
    for _ in range(1500):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(settings.lr / 2)


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_the_total_batch_stays_96_whatever_the_gpu_count(paper, gpus):
    for section in ("vlm.stage1", "vlm.stage2.train"):
        config = dict(get(paper, section), **({"gpus": gpus} if section == "vlm.stage1" else {}))
        settings = TrainSettings.from_dict(config)
        assert settings.batch_size * settings.accumulation(gpus) * gpus == 96
    assert TrainSettings.from_dict(get(paper, "vlm.stage1")).accumulation(2) == 4  # the paper's 2 GPUs: 12 x 4 each


# paths config/paper.yaml names (the checks of rules/common.smk need them to exist)
MODEL_FOLDERS = ["models/Mistral-7B-Instruct-v0.2", "models/Clinical-Longformer", "models/RadLLaMA-7B", "models/roberta-large"]
FILES = ["models/merlin/i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt",
         "data/ct_rate/dataset/radiology_text_reports/train_reports.csv", "data/ct_rate/dataset/metadata/train_metadata.csv",
         "data/lung_cancer/manifest.csv", "data/inspect/ehr_measurements.parquet", "data/inspect/impressions_20250611.tsv",
         "data/inspect/labels_20250611.tsv", "data/inspect/study_mapping_20250611.tsv"]
FOLDERS = ["data/ct_rate/dataset", "data/inspect"]


@pytest.mark.slow
def test_a_dry_run_gives_every_stage2_job_the_paper_settings(repo, tmp_path, paper):
    """snakemake -n --configfile config/paper.yaml: the stage-2 jobs' params hold the paper's values.

    The raw data and models of config/paper.yaml are empty stand-ins (a dry run reads none)."""
    import shutil

    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "questions.yaml"):
        shutil.copy(repo / "config" / name, tmp_path / "config" / name)
    for folder in MODEL_FOLDERS:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "config.json").write_text("{}", encoding="utf-8")
    for path in FILES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    for folder in FOLDERS:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    targets = [f"results/{d}/stage2/{h}_{p}/metrics.json" for d in ("lung_cancer", "inspect")
               for h in ("deepsurv", "deephit") for p in ("with", "without")]
    run = subprocess.run([sys.executable, str(repo / "tests" / "snakemake_job_params.py"), str(repo / "Snakefile"), str(tmp_path),
                          str(tmp_path / "config/config.yaml"), str(repo / "config/paper.yaml"), "--", *targets],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    jobs = [json.loads(line[4:]) for line in run.stdout.splitlines() if line.startswith("JOB ")]
    stage2 = [job for job in jobs if job["rule"] in STAGE2_RULES]
    assert sorted(job["rule"] for job in stage2) == sorted(STAGE2_RULES * 8)
    stage1 = [job for job in jobs if job["rule"] == "train_stage1"]
    assert len(stage1) == 1 and stage1[0]["params"]["vlm"]["stage1"] == get(paper, "vlm.stage1")
    for job in stage2:
        given = {"train_stage2": lambda p: {"vlm": {**p["vlm"], "stage2": p["stage2"]}},
                 "predict_stage2": lambda p: {"vlm": {"stage2": {"predict": p["predict"]}}},
                 "evaluate_stage2": lambda p: {"vlm": {"stage2": {"bertscore": p["bertscore"]}, "evaluate": p["evaluate"]}},
                 }[job["rule"]](job["params"])
        checked = 0
        for what, value, keys in PAPER:
            for key in keys:
                try:
                    found = get(given, key)
                except (KeyError, TypeError):
                    continue
                assert found == value, f"{job['rule']} {job['wildcards']}: {key} ({what}) is {found!r}"
                checked += 1
        assert checked >= {"train_stage2": 9, "predict_stage2": 1, "evaluate_stage2": 3}[job["rule"]], (job["rule"], checked)
