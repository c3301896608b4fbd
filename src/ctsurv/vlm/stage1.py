"""Stage 1, visual instruction tuning: train W and the decoder on the pretrain datasets' QA.

The image encoder stays frozen: its visual tokens come from the feature stores (never
re-encoded).  W (the projector) and the decoder are trained with the answer-only language
model loss, through LoRA by default (``vlm.stage1.lora``) or fully (``full_finetune``), by
the generic trainer (:mod:`ctsurv.vlm.trainer`).

Folders (``out`` = ``results/models/stage1``)::

    out/                 the model with the lowest validation loss (ctsurv.vlm.save), plus
                         copies of metrics.csv and tensorboard/ from its training
    out.train/           the training's working folder: metrics.csv, tensorboard/,
                         checkpoints/ (resume after a kill), best/

The working folder sits beside the model (not in it) so that Snakemake, which deletes a
rule's outputs before re-running it, never deletes the checkpoints of an interrupted run.
After a run completes its checkpoints are deleted: a later run (new data, new settings)
starts afresh, and only an interrupted run resumes (refused if the settings changed since,
unless ``restart``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..atomic import atomic_folder
from ..errors import ConfigError, DataError
from ..features import FeatureStore
from .io import store_fingerprint
from .trainer import TrainResult, TrainSettings, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage1Data:
    """One pretrain dataset: its instruction folder (train.json, val.json) and feature store."""

    instructions: Path
    features: Path


def training_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".train")


def weights_dtype(name: str) -> torch.dtype:
    """``vlm.weights``: fp32, bf16, or auto (bf16 on a GPU: a 7B decoder in 14 GB)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def build_stage1_model(decoder: str | Path, stores: Sequence[FeatureStore], vlm: Mapping, imaging: Mapping | None = None):
    """A new model sized for the stores' visual tokens, with LoRA or full fine-tuning.

    ``imaging``: :func:`.locate.imaging_params` of the config; the model folder then records
    the encoder and preprocessing that made the stores (``ctsurv ask --image`` needs no flag).
    """
    from ..imaging.stamps import read_store_meta
    from . import build
    from .locate import encoder_record_for

    shapes = {tuple(s.array("tokens").shape[1:]) for s in stores}
    prints = {store_fingerprint(s) for s in stores}
    if len(shapes) > 1 or len(prints) > 1:
        raise DataError(f"the pretrain feature stores {[str(s.path) for s in stores]} come from different encoders "
                        f"(token shapes {sorted(shapes)}); encode every pretrain dataset with the same encoder")
    tokens, dim = shapes.pop()
    stage = vlm["stage1"]
    lora = None if stage["full_finetune"] else dict(stage["lora"])
    model = build(decoder, feature_dim=dim, tokens=tokens, projector=vlm["projector"],
                  feature_norm=vlm.get("feature_norm", "none"), lora=lora,
                  feature_fingerprint=prints.pop(), dtype=weights_dtype(vlm["weights"]),
                  prompt_format=vlm.get("prompt_format"),
                  encoder=encoder_record_for(imaging, read_store_meta(stores[0].path), "stage-1 model"))
    model.projector.float()  # W trains in fp32 even when the frozen decoder is bf16
    model.freeze(projector=False, decoder=False)
    return model


def study_tokens(parts, chunk: int = 256):
    """Each study's visual tokens once per instruction dataset, in chunks (the standardiser's fit)."""
    for part in parts:
        ids = list(dict.fromkeys(example["study_id"] for example in part.examples))
        for start in range(0, len(ids), chunk):
            yield part.store.get(ids[start:start + chunk], name="tokens")


class ZeroImages(torch.utils.data.Dataset):
    """The same examples with every visual token set to 0 (the 'no image' control)."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.data[i])
        item["features"] = torch.zeros_like(torch.as_tensor(item["features"]))
        return item


def instruction_parts(model, data: Sequence[Stage1Data], split: str) -> list:
    """The split's conversations, tokenized for ``model``: one ``InstructionDataset`` per dataset with any."""
    from .data import InstructionDataset, load_records

    parts = []
    for d in data:
        records = load_records(Path(d.instructions) / f"{split}.json")
        if records:
            parts.append(InstructionDataset.for_model(records, FeatureStore(d.features), model))
    return parts


def instruction_datasets(model, data: Sequence[Stage1Data], split: str, zero_images: bool = False, parts=None):
    """The split's conversations of every dataset, tokenized for ``model`` (one dataset; None if there are none).

    ``parts``: the split's :func:`instruction_parts`, when already made.
    """
    parts = instruction_parts(model, data, split) if parts is None else parts
    if not parts:
        return None
    dataset = parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
    return ZeroImages(dataset) if zero_images else dataset


def lm_loss(model, batch: dict) -> dict:
    """The answer-token cross-entropy; tokens/s counts the merged sequence (image tokens too)."""
    out = model(batch["features"], batch["input_ids"], batch["attention_mask"], batch["labels"])
    return {"loss": out.loss, "tokens": out.attention_mask.sum()}


def train_stage1(data: Sequence[Stage1Data], decoder: str | Path, out: str | Path, vlm: Mapping,
                 restart: bool = False, zero_images: bool = False, imaging: Mapping | None = None) -> TrainResult:
    """Train stage 1 and write the best model to ``out`` (see the module docstring).

    Args:
        data: the pretrain datasets.
        decoder: the decoder folder (the demo decoder, or RadLLaMA-7B's).
        out: the model folder to write.
        vlm: the config's ``vlm`` section (``projector``, ``weights``, ``stage1``).
        restart: delete an interrupted run's checkpoints instead of resuming it.
        zero_images: train (and validate) with every visual token zeroed, the control of
            ``benchmarks/bench_stage1_images.py``.
        imaging: the encoder and preprocessing to record in the model folder
            (:func:`.locate.imaging_params`; None records none).
    """
    from functools import partial

    from . import save
    from .data import collate

    if not data:
        raise ConfigError("stage 1 needs at least one dataset with role: pretrain in the config")
    out = Path(out)
    work = training_dir(out)
    stage = vlm["stage1"]
    settings = TrainSettings.from_dict({**stage, "epochs": None} if stage.get("max_steps") else stage)
    torch.manual_seed(settings.seed)  # LoRA and W initialisation
    stores = [FeatureStore(d.features) for d in data]
    model = build_stage1_model(decoder, stores, vlm, imaging)
    train_parts = instruction_parts(model, data, "train")  # checks every study has features
    train_data = instruction_datasets(model, data, "train", zero_images, parts=train_parts)
    val_data = instruction_datasets(model, data, "val", zero_images)
    if train_data is None:
        raise DataError(f"no training conversations in {[str(Path(d.instructions) / 'train.json') for d in data]}")
    model.fit_feature_norm(study_tokens(train_parts))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("stage 1: %d training and %d validation conversations, %d trainable parameters",
             len(train_data), len(val_data or ()), trainable)
    run_config = {
        "decoder": model.config.decoder_hash,
        "projector": vlm["projector"],
        "feature_norm": model.config.feature_norm,
        "weights": vlm["weights"],
        "lora": None if stage["full_finetune"] else dict(stage["lora"]),
        "features": model.config.feature_fingerprint,
        "data": [_file_hash(Path(d.instructions) / f"{s}.json") for d in data for s in ("train", "val")],
        "zero_images": zero_images,
    }
    # W may learn at its own rate: a fresh projection next to a pre-trained decoder
    projector_lr = stage.get("projector_lr")
    lr_groups = {"projector.": float(projector_lr)} if projector_lr else None
    if lr_groups:
        run_config["projector_lr"] = float(projector_lr)
    result = train(model, train_data, val_data, lm_loss, settings, work, partial(collate, pad_id=model.tokenizer.pad_token_id),
                   save, run_config=run_config, restart=restart or bool(stage.get("restart")), lr_groups=lr_groups)
    from accelerate import PartialState

    if PartialState().is_main_process:
        publish(work, out)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    log.info("stage 1 done: %d steps, best validation loss %s at step %s -> %s", result.steps,
             f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a", result.best_step, out)
    return result


def publish(work: Path, out: Path) -> None:
    """Copy ``work/best`` plus metrics.csv and tensorboard/ to ``out``, replacing it whole."""
    with atomic_folder(out) as tmp:
        shutil.copytree(work / "best", tmp, dirs_exist_ok=True)
        shutil.copy2(work / "metrics.csv", tmp / "metrics.csv")
        if (work / "tensorboard").is_dir():
            shutil.copytree(work / "tensorboard", tmp / "tensorboard")
        os.chmod(tmp, 0o755)  # copytree gave it work/best's mode
    from .locate import relocate

    relocate(out)  # paths relative to the published folder, not to work/best


def _file_hash(path: Path) -> str:
    if not path.is_file():
        return f"{path.name}:absent"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- evaluation


def evaluate_stage1(model_dir: str | Path, test_json: str | Path, features: str | Path, settings: Mapping,
                    zero_images: bool = False, model=None):
    """Answers for the test split's questions, scored against the reference answers.

    Args:
        model_dir: the stage-1 model folder.
        test_json: the dataset's ``instructions/test.json``.
        features: the dataset's image feature store.
        settings: config ``vlm.evaluate`` (bertscore_model, bertscore_layers, bertscore_rescale,
            bertscore_baseline, max_new_tokens, batch_size, max_pairs, seed).
        zero_images: generate from zeroed visual tokens (the control).
        model: an already loaded model (default: loaded from ``model_dir``).

    Returns:
        (scored pairs table, per-question summary table, metrics dict).
    """
    from . import generate_answers, load
    from ..report.bertscore import BertScoreModel, sample_pairs
    from .answer_eval import qa_pairs, score_answers, summarize
    from .data import load_records

    store = FeatureStore(features)
    if model is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load(model_dir, feature_fingerprint=store_fingerprint(store), device=device,
                     dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    pairs = sample_pairs(qa_pairs(load_records(test_json)), settings["max_pairs"], settings["seed"])
    if pairs.empty:
        raise DataError(f"{test_json} holds no test conversations to evaluate")
    store.check_finite(pairs["study_id"].tolist(), "tokens")
    feats = store.get(pairs["study_id"].tolist(), name="tokens")
    if zero_images:
        feats[:] = 0.0
    generated = generate_answers(model, feats, pairs["human"].tolist(), max_new_tokens=settings["max_new_tokens"],
                                 batch_size=settings["batch_size"])
    scorer = BertScoreModel.from_config(settings)
    scored = score_answers(pairs, generated, scorer)
    summary = summarize(scored)
    overall = summary.iloc[-1]
    metrics = {
        "pairs": int(overall["pairs"]),
        "bertscore_f1": float(overall["bertscore_f1"]),
        "presence_agreement": float(overall["presence_agreement"]),
        "exact_match": float(overall["exact_match"]),
        "per_question": {r["question_id"]: {k: r[k] for k in ("pairs", "bertscore_f1", "presence_agreement", "exact_match")}
                         for r in summary.iloc[:-1].to_dict("records")},
        "bertscore_model": str(settings["bertscore_model"]),
        "bertscore_layers": int(settings["bertscore_layers"]),
        "bertscore": scorer.describe(),
        "zero_images": zero_images,
    }
    return scored, summary, metrics


def evaluate_stage1_with_control(model_dir: str | Path, test_json: str | Path, features: str | Path,
                                 settings: Mapping):
    """:func:`evaluate_stage1`, and with ``settings["zeroed_control"]`` the same model on the same
    pairs with every visual token zeroed (:func:`.answer_eval.image_ablation`).

    Returns (scored pairs with ``generated_zeroed``, per-question summary with the control's
    columns, metrics with ``zeroed`` and ``image_effect``).
    """
    from . import load
    from .answer_eval import image_ablation

    store = FeatureStore(features)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load(model_dir, feature_fingerprint=store_fingerprint(store), device=device,
                 dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    scored, summary, metrics = evaluate_stage1(model_dir, test_json, features, settings, model=model)
    if not settings.get("zeroed_control", True):
        return scored, summary, metrics
    zeroed, _, zero_metrics = evaluate_stage1(model_dir, test_json, features, settings, zero_images=True, model=model)
    ablation = image_ablation(scored, zeroed, n=int(settings.get("bootstrap", 1000)), seed=int(settings["seed"]))
    summary = summary.merge(ablation, on="question_id", how="left", validate="one_to_one")
    scored = scored.assign(generated_zeroed=zeroed["generated"].values, bertscore_f1_zeroed=zeroed["bertscore_f1"].values,
                           presence_agree_zeroed=zeroed["presence_agree"].values)
    overall = ablation.iloc[-1]
    metrics["zeroed"] = {k: zero_metrics[k] for k in ("bertscore_f1", "presence_agreement", "exact_match")}
    metrics["image_effect"] = {
        "bertscore_f1": {k: float(overall[f"bertscore_f1_diff{s}"]) for k, s in
                         (("difference", ""), ("ci_low", "_low"), ("ci_high", "_high"))},
        "presence_agreement": {k: float(overall[f"presence_diff{s}"]) for k, s in
                               (("difference", ""), ("ci_low", "_low"), ("ci_high", "_high"))},
        "majority_rate": float(overall["majority_rate"]),
        "bootstrap": int(settings.get("bootstrap", 1000)),
    }
    for q, row in metrics["per_question"].items():
        line = ablation.set_index("question_id").loc[q]
        row.update(majority_rate=float(line["majority_rate"]), presence_agreement_zeroed=float(line["presence_agreement_zeroed"]),
                   presence_diff=float(line["presence_diff"]), presence_diff_low=float(line["presence_diff_low"]),
                   presence_diff_high=float(line["presence_diff_high"]))
    return scored, summary, metrics


def write_stage1_evaluation(scored, summary, metrics: dict, answers: str | Path, table: str | Path, md: str | Path,
                            metrics_json: str | Path) -> None:
    """answers.parquet (no reference text is logged), eval.csv, eval.md, metrics.json; each atomic."""
    from ..atomic import atomic_path
    from .answer_eval import ablation_markdown, markdown_table

    with atomic_path(answers) as tmp:
        scored.drop(columns=["human"]).to_parquet(tmp, index=False)
    with atomic_path(table) as tmp:
        summary.to_csv(tmp, index=False)
    text = ("# Stage 1 on the test split\n\nGenerated vs reference answers: BERTScore F1 "
            f"({metrics['bertscore_model']}, layer {metrics['bertscore_layers']}, "
            f"{'rescaled' if metrics.get('bertscore', {}).get('rescaled') else 'not rescaled'}, no idf) and presence agreement "
            "(the rules reader on both answers).\n\n" + markdown_table(summary))
    if "majority_rate" in summary.columns:
        text += ("\n## Does it use the image?\n\nThe same model on the same pairs with every visual token zeroed; "
                 "differences are real - zeroed with 95% paired bootstrap intervals "
                 f"({metrics['image_effect']['bootstrap']} resamples of patients). Majority rate: the presence "
                 "agreement of answering every study with the question's most frequent answer.\n\n"
                 + ablation_markdown(summary))
    with atomic_path(md) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    with atomic_path(metrics_json) as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------- workflow job


def run_stage1_job(data: Sequence[Stage1Data], decoder: str | Path, out: str | Path, vlm: Mapping,
                   lock_dir: str | None = None, imaging: Mapping | None = None) -> None:
    """Rule train_stage1: hold ``vlm.stage1.gpus`` GPU slots; several -> ``accelerate launch``.

    One slot (or none, on a CPU) trains in this process.  With N > 1 the same training runs as
    ``accelerate launch --num_processes N -m ctsurv train-stage1 ...`` (DDP, or what
    ``vlm.stage1.accelerate_config`` says: FSDP, DeepSpeed ZeRO-3).
    """
    import subprocess
    import sys

    from ..errors import CtsurvError
    from ..gpu import gpu_slots

    stage = vlm["stage1"]
    with gpu_slots(int(stage["gpus"]), lock_dir=lock_dir, allow_cpu=True) as devices:
        if len(devices) <= 1:
            train_stage1(data, decoder, out, vlm, imaging=imaging)
            return
        settings = training_dir(out) / "vlm.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps(vlm, indent=1), encoding="utf-8")
        cmd = launch_command(data, decoder, out, settings, len(devices), stage.get("accelerate_config"))
        if imaging is not None:
            imaging_file = training_dir(out) / "imaging.json"
            imaging_file.write_text(json.dumps(imaging, indent=1), encoding="utf-8")
            cmd += ["--imaging-json", str(imaging_file)]
        log.info("running %s", " ".join(cmd))
        if subprocess.run(cmd, check=False).returncode != 0:
            raise CtsurvError(f"stage 1 under accelerate launch failed; see the log above ({' '.join(cmd[:6])} ...)")
        # the processes all trained; one writes the model (ctsurv train-stage1 does it on rank 0)
        if not (Path(out) / "vlm.json").is_file():
            raise CtsurvError(f"accelerate launch finished but wrote no model to {out}")
        sys.stdout.flush()


def launch_command(data: Sequence[Stage1Data], decoder, out, settings_file, processes: int,
                   accelerate_config: str | None) -> list[str]:
    """``accelerate launch`` of ``ctsurv train-stage1`` (the README shows it across SLURM nodes)."""
    import sys

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    cmd += ["--config_file", str(accelerate_config)] if accelerate_config else ["--multi_gpu"]
    cmd += ["-m", "ctsurv", "train-stage1", "--decoder", str(decoder), "--out", str(out), "--vlm-json", str(settings_file)]
    for d in data:
        cmd += ["--data", str(d.instructions), str(d.features)]
    return cmd
