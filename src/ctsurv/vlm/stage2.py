r"""Stage 2: joint survival fine-tuning of the vision-language model, and its predictions.

Each training example is one patient with one of the six questions: clinical sentence,
image tokens, question, reference answer.  The loss is

.. math:: L = \lambda_{LM} L_{LM} + \alpha L_{surv} + \lambda_d L_{dispersion} + \lambda_a L_{alignment}

(:mod:`.survival`; the paper: all weights 1 and alpha 0.5).  What trains: the decoder (its
LoRA adapter, or all of it without LoRA), the residual adaptor and the head; the image
features are inputs (the encoder never trains) and W is frozen when the model comes from
stage 1 (``pretrain="with"``).  Without pre-training (``"without"``) W is fresh, so it trains
here: nothing else would.

Batch composition (the Cox loss needs risk sets): a batch holds distinct patients, each with
one question, the question cycling over epochs (:func:`patient_batches`); an epoch shows every
training patient once.  DeepSurv batches also draw on a :class:`~.survival.RiskMemory` of the
last patients' detached risks, so that an event's risk set is not limited to the handful of
patients of its batch (``stage2.risk_memory``; 0 turns it off).

Before the first step the branch's standardiser is fitted on the training patients' pooled
states (one question each, no gradient; ``stage2.standardize``), and the branch trains at its
own learning rate (``stage2.train.branch_lr``): why, in :mod:`.survival`.

Inference: the six questions of each patient give six risks (and for DeepHit six survival
curves); the patient's prediction is their mean (:mod:`.ensemble`).  Each question's answer is
generated; the pooled state is then taken over prompt plus generated answer, as in training
over prompt plus reference answer.  Training and validation patients (needed for Breslow's
baseline hazard, the Kaplan-Meier threshold and the validation c-index) are scored on their
reference answers, without generation, which keeps prediction cheap.
"""

from __future__ import annotations

import json
import logging
import time as _time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import DataError
from ..survival.discretize import discretize, make_cuts
from ..survival.models import deephit_risk
from .prompt import IGNORE_INDEX, IMAGE_TOKEN, tokenize_example
from .survival import RiskMemory, SurvivalBranch, SurvivalLossWeights, pool_hidden, survival_branch_loss

log = logging.getLogger(__name__)

BRANCH_WEIGHTS = "survival.safetensors"
BRANCH_CONFIG = "survival.json"
POOLS = ("all", "prompt")


# ----------------------------------------------------------------------------- data


def split_turns(record: Mapping, where: str = "") -> list[tuple[str, str, str]]:
    """(question_id, human text, reference answer) per question of an instruction record.

    Single-turn records give one; multi-turn records (``per_study``) give one per turn, each
    with the first turn's clinical sentence and image placeholder before its question.
    """
    conv = record.get("conversations") or []
    humans = [c["value"] for c in conv if c.get("from") == "human"]
    answers = [c["value"] for c in conv if c.get("from") == "gpt"]
    qids = list(record.get("question_ids") or [])
    if not humans or len(humans) != len(answers):
        raise DataError(f"{where}record {record.get('id')}: needs human/gpt turn pairs, got {len(humans)} human and "
                        f"{len(answers)} gpt turns")
    if len(qids) != len(humans):
        qids = [f"q{i + 1}" for i in range(len(humans))]
    first = humans[0]
    if first.count(IMAGE_TOKEN) != 1:
        raise DataError(f"{where}record {record.get('id')}: the first human turn needs exactly one {IMAGE_TOKEN}")
    prefix = first[: first.index(IMAGE_TOKEN) + len(IMAGE_TOKEN)]
    out = [(qids[0], first, answers[0])]
    for qid, human, answer in zip(qids[1:], humans[1:], answers[1:]):
        out.append((qid, f"{prefix}\n{human}", answer))
    return out


def question_table(records: Sequence[Mapping], where: str = "") -> pd.DataFrame:
    """One row per (study, question): study_id, question_id, human, answer."""
    rows = []
    for rec in records:
        for qid, human, answer in split_turns(rec, where):
            rows.append({"study_id": str(rec["study_id"]), "question_id": str(qid), "human": human, "answer": answer})
    return pd.DataFrame(rows, columns=["study_id", "question_id", "human", "answer"])


class SurvivalExamples(torch.utils.data.Dataset):
    """(patient, question) examples with follow-up: the stage-2 training and prediction data.

    Args:
        questions: :func:`question_table` rows (answers may be None for generation prompts).
        followup: study_id, time, event (the cohort).
        features: (N, T, C) visual tokens in the order of ``feature_ids``.
        feature_ids: study ids of ``features``.
        tokenizer, prompt_format, max_length: as in :mod:`.prompt`.
        cuts: DeepHit cuts (bin index per row), or None.
    """

    def __init__(self, questions: pd.DataFrame, followup: pd.DataFrame, features: np.ndarray, feature_ids: Sequence[str],
                 tokenizer, prompt_format: str, max_length: int, cuts: np.ndarray | None = None, where: str = ""):
        fu = followup.assign(study_id=followup["study_id"].astype(str)).set_index("study_id")
        missing = sorted(set(questions["study_id"]) - set(fu.index))
        if missing:
            raise DataError(f"{where}: studies {missing[:5]} have instruction records but no follow-up in the cohort")
        pos = {sid: i for i, sid in enumerate(map(str, feature_ids))}
        lost = sorted(set(questions["study_id"]) - set(pos))
        if lost:
            raise DataError(f"{where}: studies {lost[:5]} have no image features; re-run encode_images")
        self.questions = questions.reset_index(drop=True)
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.rows = [pos[s] for s in self.questions["study_id"]]
        self.time = fu.loc[self.questions["study_id"], "time"].to_numpy(float)
        self.event = fu.loc[self.questions["study_id"], "event"].to_numpy(float)
        self.idx = discretize(self.time, self.event, cuts)[0] if cuts is not None else np.zeros(len(self.time), np.int64)
        tokens = self.features.shape[1]
        self.encoded = [
            tokenize_example(tokenizer, r.human, None if r.answer is None or pd.isna(r.answer) else r.answer,
                             prompt_format, max_length, image_tokens=tokens, where=f"{where} study {r.study_id}")
            for r in self.questions.itertuples()
        ]

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> dict:
        enc = self.encoded[i]
        return {"features": self.features[self.rows[i]], "input_ids": enc["input_ids"], "labels": enc["labels"],
                "time": float(self.time[i]), "event": float(self.event[i]), "idx": int(self.idx[i]),
                "study_id": self.questions.at[i, "study_id"], "question_id": self.questions.at[i, "question_id"]}


def collate(items: Sequence[dict], pad_id: int) -> dict:
    """Right-padded batch (training): features, input_ids, attention_mask, labels, follow-up."""
    length = max(len(it["input_ids"]) for it in items)
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), length), dtype=torch.long)
    for b, it in enumerate(items):
        n = len(it["input_ids"])
        ids[b, :n] = torch.as_tensor(it["input_ids"])
        labels[b, :n] = torch.as_tensor(it["labels"])
        mask[b, :n] = 1
    return {"features": torch.stack([it["features"] for it in items]), "input_ids": ids, "attention_mask": mask,
            "labels": labels, "time": torch.tensor([it["time"] for it in items], dtype=torch.float32),
            "event": torch.tensor([it["event"] for it in items], dtype=torch.float32),
            "idx": torch.tensor([it["idx"] for it in items], dtype=torch.long)}


def patient_batches(study_ids: Sequence[str], batch_size: int, seed: int):
    """Batch sampler: batches of distinct patients, one question each, the question cycling per epoch.

    Returns ``epoch -> list of batches of example indices`` (the trainer's ``batch_sampler``).
    An epoch shows each patient once; over six epochs each patient is seen with each question.
    """
    by_patient: dict[str, list[int]] = {}
    for i, sid in enumerate(study_ids):
        by_patient.setdefault(str(sid), []).append(i)
    patients = sorted(by_patient)

    def batches(epoch: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(patients), generator=gen).tolist()
        picks = []
        for p in order:
            rows = by_patient[patients[p]]
            picks.append(rows[(epoch + p) % len(rows)])
        return [picks[i : i + batch_size] for i in range(0, len(picks), batch_size)]

    return batches


# ----------------------------------------------------------------------------- model


class CTSurvivalVLM(nn.Module):
    """A :class:`~.model.CTVisionLanguageModel` with a :class:`~.survival.SurvivalBranch`.

    Args:
        vlm: the vision-language model.
        branch: the survival branch on its pooled last hidden state.
        cuts: DeepHit's time cuts (None for DeepSurv).
        pool: ``all`` (every non-padding token, the paper) or ``prompt`` (sentence, image and
            question only).
    """

    def __init__(self, vlm: nn.Module, branch: SurvivalBranch, cuts: np.ndarray | None = None, pool: str = "all"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.vlm, self.branch, self.pool = vlm, branch, pool
        self.cuts = None if cuts is None else np.asarray(cuts, dtype=float)

    @property
    def head(self) -> str:
        return self.branch.head_name

    def forward(self, batch: Mapping) -> dict:
        """LM loss (when labels are given), pooled state, adapted z_surv and the head output.

        ``pooled`` is the decoder's mean state as is; ``z`` the same in the branch's standardised
        coordinates (what the adaptor starts from and the alignment compares z_surv with).

        The visual tokens are detached: the image encoder is frozen in both stages, so no loss
        term may reach it even when the features arrive with a gradient path.
        """
        out = self.vlm(batch["features"].detach(), batch["input_ids"], batch["attention_mask"], batch.get("labels"))
        mask = out.attention_mask
        if self.pool == "prompt" and out.labels is not None:
            mask = mask * (out.labels == IGNORE_INDEX).to(mask.dtype)
        pooled = pool_hidden(out.last_hidden_state.float(), mask)
        z_surv, head_out = self.branch(pooled)
        return {"lm": out.loss, "pooled": pooled, "z": self.branch.standardize(pooled), "z_surv": z_surv, "out": head_out}

    def risks(self, head_out: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Risk per row (higher = earlier event) and, for DeepHit, S(c_k) (n, K)."""
        if self.head == "deepsurv":
            return head_out.reshape(-1).detach().double().cpu().numpy(), None
        pmf = torch.softmax(head_out.detach().double(), dim=1).cpu().numpy()
        surv = 1.0 - np.cumsum(pmf, axis=1)[:, :-1]
        return deephit_risk(surv, self.cuts), surv


@dataclass
class Stage2Loss:
    """The trainer's ``loss_fn``: LM + survival branch terms, with the DeepSurv risk memory."""

    weights: SurvivalLossWeights = field(default_factory=SurvivalLossWeights)
    lm_weight: float = 1.0
    memory: RiskMemory = field(default_factory=RiskMemory)

    def __call__(self, model: CTSurvivalVLM, batch: Mapping) -> dict:
        res = model(batch)
        head = getattr(model, "module", model).head  # DDP wraps the model on several GPUs
        use_memory = model.training and head == "deepsurv"
        parts = survival_branch_loss(head, res["z"], res["z_surv"], res["out"], batch["time"], batch["event"],
                                     batch["idx"], self.weights, memory=self.memory.get() if use_memory else None)
        if use_memory:
            self.memory.push(res["out"], batch["time"], batch["event"])
        lm = res["lm"] if res["lm"] is not None else res["z"].sum() * 0.0
        loss = self.lm_weight * lm + parts["total"]
        return {"loss": loss, "lm": lm.detach(), "surv": parts["surv"].detach(),
                "dispersion": parts["dispersion"].detach(), "alignment": parts["alignment"].detach()}


def trainable_summary(model: nn.Module) -> dict[str, int]:
    """Trainable parameter counts by part (projector, decoder, branch)."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            part = name.split(".")[1] if name.startswith("vlm.") else name.split(".")[0]
            counts[part] = counts.get(part, 0) + p.numel()
    return counts


def save_stage2(model: CTSurvivalVLM, folder: str | Path) -> None:
    """The vision-language model (``ctsurv.vlm.save``) plus the branch's weights and settings."""
    from safetensors.torch import save_file

    from .io import save

    folder = Path(folder)
    save(model.vlm, folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.branch.state_dict().items()}, str(folder / BRANCH_WEIGHTS))
    meta = {"branch": model.branch.spec(), "pool": model.pool, "cuts": None if model.cuts is None else model.cuts.tolist()}
    (folder / BRANCH_CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_stage2(folder: str | Path, feature_fingerprint: str | None = None) -> CTSurvivalVLM:
    """A saved stage-2 model (refuses another feature store's fingerprint, as ``ctsurv.vlm.load``)."""
    from safetensors.torch import load_file

    from .io import load

    folder = Path(folder)
    if not (folder / BRANCH_CONFIG).is_file():
        raise DataError(f"{folder} is not a stage-2 model: no {BRANCH_CONFIG} (train it with rule train_stage2)")
    meta = json.loads((folder / BRANCH_CONFIG).read_text(encoding="utf-8"))
    vlm = load(folder, feature_fingerprint=feature_fingerprint)
    branch = SurvivalBranch(**meta["branch"])
    branch.load_weights(load_file(str(folder / BRANCH_WEIGHTS)), where=f"{folder}: ")
    return CTSurvivalVLM(vlm, branch, meta["cuts"], meta["pool"])


# ----------------------------------------------------------------------------- training


@dataclass
class Stage2Settings:
    """Config section ``stage2`` (besides the trainer's settings under ``stage2.train``)."""

    pool: str = "all"
    bottleneck: int = 64
    head_hidden: tuple = ()
    num_durations: int = 10
    cuts: str = "quantile"
    lm_weight: float = 1.0
    loss: dict = field(default_factory=dict)
    risk_memory: int = 64
    standardize: bool = True

    @classmethod
    def from_config(cls, section: Mapping) -> "Stage2Settings":
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in section.items() if k in names}
        if "head_hidden" in values:
            values["head_hidden"] = tuple(values["head_hidden"])
        return cls(**values)


def load_split_data(instructions: Mapping[str, str | Path], cohort: pd.DataFrame, store_path: str | Path):
    """Question tables per split, the follow-up table and the visual tokens they need."""
    from ..features import FeatureStore
    from ..survival.baselines import survival_rows

    followup = survival_rows(cohort)[["study_id", "split", "time", "event"]].assign(
        study_id=lambda d: d["study_id"].astype(str))
    tables = {}
    for split, path in instructions.items():
        records = json.loads(Path(path).read_text(encoding="utf-8"))
        table = question_table(records, where=f"{path}: ")
        tables[split] = table[table["study_id"].isin(followup["study_id"])].reset_index(drop=True)
    ids = sorted({s for t in tables.values() for s in t["study_id"]})
    store = FeatureStore(store_path)
    missing = [s for s in ids if s not in store]
    if missing:
        raise DataError(f"feature store {store_path} lacks {len(missing)} studies of the instruction data "
                        f"(e.g. {missing[:3]}); re-run encode_images")
    return tables, followup, store.get(ids, name="tokens"), ids


def build_stage2_model(head: str, pretrain: str, settings: Stage2Settings, stage1_dir=None, decoder_path=None,
                       vlm_options: Mapping | None = None, feature_dim: int = 0, tokens: int = 0,
                       feature_fingerprint: str | None = None, cuts=None) -> CTSurvivalVLM:
    """The model before stage 2, with the right parts frozen.

    ``with``: W and decoder from the stage-1 folder, W frozen, decoder (LoRA) trainable.
    ``without``: a fresh W on the untouched decoder; W and decoder (LoRA) trainable.
    """
    from . import model as vlm_model
    from .io import load

    if pretrain == "with":
        if stage1_dir is None:
            raise DataError("pretrain 'with' needs the stage-1 model folder")
        vlm = load(stage1_dir, feature_fingerprint=feature_fingerprint, trainable=True)
        vlm.freeze(projector=True, decoder=False)
    elif pretrain == "without":
        opts = dict(vlm_options or {})
        torch.manual_seed(0)  # W and LoRA start the same in every process, as the branch does below
        vlm = vlm_model.build(decoder_path, feature_dim, tokens, projector=opts.get("projector", "linear"),
                              feature_norm=opts.get("feature_norm", "none"), lora=opts.get("lora"),
                              feature_fingerprint=feature_fingerprint)
        vlm.freeze(projector=False, decoder=False)
    else:
        raise ValueError(f"pretrain must be 'with' or 'without', got {pretrain!r}")
    torch.manual_seed(0)
    branch = SurvivalBranch(vlm.config.hidden_size, head, None if cuts is None else len(cuts), settings.bottleneck,
                            settings.head_hidden)
    return CTSurvivalVLM(vlm, branch, cuts, settings.pool)


def train_stage2(instructions: Mapping[str, str | Path], cohort: pd.DataFrame, store_path: str | Path, head: str,
                 pretrain: str, settings: Stage2Settings, train_settings, out_dir: str | Path, stage1_dir=None,
                 decoder_path=None, vlm_options: Mapping | None = None, restart: bool = False,
                 branch_lr: float | None = None) -> dict:
    """Train one stage-2 model; the best (validation loss) lands in ``out_dir/best``.

    Before the first step of a fresh run (not on resume: the buffers are in the checkpoint) the
    branch's standardiser is fitted on one question per training patient
    (``settings.standardize``; :func:`fit_standardizer`).

    Args:
        instructions: instruction JSON per split (``train``, ``val``).
        cohort: the survival cohort (follow-up).
        store_path: image feature store (``tokens``).
        head, pretrain: ``deepsurv``/``deephit``, ``with``/``without``.
        settings: :class:`Stage2Settings`; train_settings: ``ctsurv.vlm.trainer.TrainSettings``.
        stage1_dir: the stage-1 model (``with``); decoder_path, vlm_options: the decoder and
            projector/LoRA settings (``without``).
        restart: drop existing checkpoints (see the trainer).
        branch_lr: learning rate of the survival branch (adaptor and head), None: the
            trainer's ``lr``.  The fresh head needs a larger one than the pre-trained decoder:
            at 2e-3, 40 demo steps moved its weights by less than their initial scale.

    Returns:
        Summary: steps, best step and validation loss, trainable parameters, seconds.
    """
    from .trainer import train

    started = _time.perf_counter()
    tables, followup, feats, ids = load_split_data({k: instructions[k] for k in ("train", "val")}, cohort, store_path)
    fu_train = followup[followup["split"] == "train"]
    cuts = None
    if head == "deephit":
        cuts = make_cuts(fu_train["time"].to_numpy(float), fu_train["event"].to_numpy(bool), settings.num_durations,
                         settings.cuts)
    fingerprint = _store_fingerprint(store_path)
    model = build_stage2_model(head, pretrain, settings, stage1_dir, decoder_path, vlm_options, feats.shape[2],
                               feats.shape[1], fingerprint, cuts)
    if pretrain == "without":  # a fresh W: its visual-token standardiser comes from this dataset's training patients
        pos = {sid: i for i, sid in enumerate(ids)}
        model.vlm.fit_feature_norm([np.asarray(feats[[pos[s] for s in dict.fromkeys(tables["train"]["study_id"])]])])
    tok, cfg = model.vlm.tokenizer, model.vlm.config
    tables["val"] = one_question_each(tables["val"])
    data = {s: SurvivalExamples(tables[s], followup, feats, ids, tok, cfg.prompt_format, cfg.max_length, cuts,
                                where=str(instructions[s])) for s in ("train", "val")}
    loss_fn = Stage2Loss(SurvivalLossWeights.from_config(settings.loss), settings.lm_weight, RiskMemory(settings.risk_memory))
    sampler = patient_batches(data["train"].questions["study_id"], train_settings.batch_size, train_settings.seed)
    pad = tok.pad_token_id
    run_config = {"head": head, "pretrain": pretrain, "stage2": asdict(settings), "stage1": str(stage1_dir),
                  "decoder": str(decoder_path), "branch_lr": branch_lr,
                  "feature_norm": model.vlm.config.feature_norm}
    fitted: dict = {}

    def on_start(wrapped, accelerator) -> None:
        if not settings.standardize:
            return
        fit_data = SurvivalExamples(one_question_each(tables["train"]), followup, feats, ids, tok, cfg.prompt_format,
                                    cfg.max_length, cuts, where=str(instructions["train"]))
        with accelerator.autocast():
            fitted.update(fit_standardizer(wrapped, fit_data, train_settings.batch_size, accelerator.device))
        log.info("stage 2 standardiser fitted: %s", fitted)

    result = train(model, data["train"], data["val"] if len(data["val"]) else None, loss_fn, train_settings, out_dir,
                   lambda items: collate(items, pad), save_stage2, run_config=run_config, restart=restart,
                   batch_sampler=sampler, lr_groups=None if branch_lr is None else {"branch.": float(branch_lr)},
                   on_start=on_start)
    summary = {"head": head, "pretrain": pretrain, "steps": result.steps, "best_step": result.best_step,
               "best_val_loss": result.best_val_loss, "trainable": trainable_summary(model),
               "train_examples": len(data["train"]), "val_examples": len(data["val"]),
               "risk_memory": settings.risk_memory, "branch_lr": branch_lr, "standardizer": fitted or None,
               "seconds": round(_time.perf_counter() - started, 2)}
    log.info("stage 2 %s/%s: %s", head, pretrain, summary)
    return summary


def one_question_each(table: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, the question cycling over patients: a validation set six times
    cheaper than every (patient, question) that still asks every question."""
    if table.empty:
        return table
    rank = table.groupby("study_id", sort=False).ngroup()
    within = table.groupby("study_id", sort=False).cumcount()
    size = table.groupby("study_id", sort=False)["study_id"].transform("size")
    return table[within == rank % size].reset_index(drop=True)


def _store_fingerprint(store_path) -> str | None:
    meta = Path(store_path) / "encoder.json"
    return json.loads(meta.read_text(encoding="utf-8")).get("fingerprint") if meta.is_file() else None


# ----------------------------------------------------------------------------- prediction


@torch.no_grad()
def forward_examples(model, data: SurvivalExamples, batch_size: int = 32, device=None):
    """The model's outputs (:meth:`CTSurvivalVLM.forward`) per batch of examples, in order:
    eval mode, no gradient, teacher-forced on the examples' text.  ``model`` may be wrapped
    (DDP); ``device`` defaults to the decoder's."""
    core = getattr(model, "module", model)
    model.eval()
    pad = core.vlm.tokenizer.pad_token_id
    device = device if device is not None else core.vlm.device
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))], pad)
        yield model({k: v.to(device) for k, v in batch.items()})


def fit_standardizer(model, data: SurvivalExamples, batch_size: int = 32, device=None) -> dict:
    """Fit the branch's standardiser on the pooled states of ``data`` (one no-grad pass).

    Stage 2 calls it before the first step on one question per training patient (the
    patient's pooled state barely depends on the question); see :mod:`.survival` for why.
    Returns the fit's summary plus its wall time in seconds.
    """
    started = _time.perf_counter()
    core = getattr(model, "module", model)
    pooled = torch.cat([out["pooled"].detach().float() for out in forward_examples(model, data, batch_size, device)])
    info = core.branch.fit_standardizer(pooled)
    info["seconds"] = round(_time.perf_counter() - started, 2)
    return info


@torch.no_grad()
def score_examples(model: CTSurvivalVLM, data: SurvivalExamples, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """Risk (and DeepHit S(c_k)) per example, teacher-forced on the examples' text."""
    risks, survs = [], []
    for out in forward_examples(model, data, batch_size):
        r, s = model.risks(out["out"])
        risks.append(r)
        if s is not None:
            survs.append(s)
    return np.concatenate(risks), (np.concatenate(survs) if survs else None)


def predict_questions(model: CTSurvivalVLM, tables: Mapping[str, pd.DataFrame], followup: pd.DataFrame,
                      features: np.ndarray, feature_ids: Sequence[str], generate_splits=("test",),
                      batch_size: int = 32, max_new_tokens: int = 48) -> pd.DataFrame:
    """Per-question predictions: risk, generated answer (``generate_splits``), reference answer.

    For generated splits the pooled state covers prompt plus generated answer; other splits
    are scored on their reference answers (module docstring).  DeepHit rows carry S(c_k) in
    ``surv_at_cuts``.
    """
    from .generate import generate_answers

    tok, cfg = model.vlm.tokenizer, model.vlm.config
    pos = {sid: i for i, sid in enumerate(feature_ids)}
    frames = []
    for split, table in tables.items():
        if table.empty:
            continue
        table = table.copy()
        table["reference"] = table["answer"]
        if split in generate_splits:
            feats = torch.as_tensor(np.asarray(features[[pos[s] for s in table["study_id"]]], dtype=np.float32))
            model.eval()
            table["generated"] = generate_answers(model.vlm, feats, table["human"].tolist(), max_new_tokens=max_new_tokens,
                                                  batch_size=batch_size)
            table["answer"] = table["generated"]
        else:
            table["generated"] = None
        data = SurvivalExamples(table, followup, features, feature_ids, tok, cfg.prompt_format, cfg.max_length,
                                model.cuts, where=f"{split} predictions")
        risk, surv = score_examples(model, data, batch_size)
        table["split"], table["risk"] = split, risk
        table["time"], table["event"] = data.time, data.event.astype(int)
        if surv is not None:
            table["surv_at_cuts"] = list(surv)
        frames.append(table.drop(columns=["answer"]))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- workflow steps


def run_stage2(instructions: Mapping[str, str | Path], cohort: pd.DataFrame, store_path: str | Path, head: str,
               pretrain: str, stage2: Mapping, vlm: Mapping, out: str | Path, stage1_dir=None, decoder_path=None,
               restart: bool = False) -> dict:
    """Train one stage-2 model and publish it to ``out`` (as stage 1 does).

    The checkpoints live in ``out.train/`` beside the model, so that Snakemake (which deletes
    a rule's outputs before re-running it) never deletes an interrupted run's checkpoints;
    they are deleted once the run completes.

    Args:
        stage2: the config's ``vlm.stage2`` section (:class:`Stage2Settings` keys and ``train``,
            whose ``branch_lr`` is the survival branch's learning rate).
        vlm: the config's ``vlm`` section (projector, weights, stage1's LoRA settings for
            ``without``).
    """
    import shutil

    from .stage1 import publish, training_dir
    from .trainer import TrainSettings

    out = Path(out)
    work = training_dir(out)
    settings = Stage2Settings.from_config(stage2)
    train_settings = TrainSettings.from_dict(stage2["train"])
    stage1 = vlm.get("stage1", {})
    options = {"projector": vlm.get("projector", "linear"), "feature_norm": vlm.get("feature_norm", "none"),
               "lora": None if stage1.get("full_finetune") else stage1.get("lora")}
    summary = train_stage2(instructions, cohort, store_path, head, pretrain, settings, train_settings, work,
                           stage1_dir=stage1_dir, decoder_path=decoder_path, vlm_options=options,
                           restart=restart or bool(stage2.get("restart")), branch_lr=stage2["train"].get("branch_lr"))
    publish(work, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return summary


def predict_stage2(model_dir: str | Path, instructions: Mapping[str, str | Path], cohort: pd.DataFrame,
                   store_path: str | Path, out_questions: str | Path, out_predictions: str | Path,
                   out_survival: str | Path, batch_size: int = 32, max_new_tokens: int = 48,
                   generate_splits=("test",), train_questions: str = "all") -> dict:
    """Six questions per patient -> per-question and per-patient predictions (see the module docstring).

    ``train_questions="one"`` scores each training patient on one question (cycling) instead of
    all six: their risks only set Breslow's baseline hazard and the Kaplan-Meier threshold, and
    on a CPU demo this saves five sixths of the largest split.

    Writes ``out_questions`` (study_id, question_id, split, time, event, risk, generated,
    reference, human, and DeepHit's surv_at_cuts), ``out_predictions`` (one row per patient:
    the mean risk) and ``out_survival`` (per-patient curves on a time grid).
    """
    from .ensemble import patient_tables

    started = _time.perf_counter()
    model = load_stage2(model_dir, feature_fingerprint=_store_fingerprint(store_path))
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    tables, followup, feats, ids = load_split_data(instructions, cohort, store_path)
    if train_questions == "one" and "train" in tables:
        tables["train"] = one_question_each(tables["train"])
    elif train_questions != "all":
        raise ValueError(f"train_questions must be 'all' or 'one', got {train_questions!r}")
    per_q = predict_questions(model, tables, followup, feats, ids, generate_splits, batch_size, max_new_tokens)
    test = per_q[per_q["split"] == "test"]
    n_questions = int(test.groupby("study_id").size().max()) if len(test) else None
    patients, survival = patient_tables(per_q, model.head, model.cuts, expected=None)
    short = patients[(patients["split"] == "test") & (patients["n_questions"] < (n_questions or 0))]
    if len(short):
        log.warning("%d test patients have fewer than %d questions", len(short), n_questions)
    for path in (out_questions, out_predictions, out_survival):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    per_q.to_parquet(out_questions, index=False)
    patients.to_parquet(out_predictions, index=False)
    survival.to_parquet(out_survival, index=False)
    summary = {"patients": len(patients), "questions": len(per_q), "generated": int(per_q["generated"].notna().sum()),
               "seconds": round(_time.perf_counter() - started, 2)}
    log.info("stage-2 predictions: %s", summary)
    return summary
