"""What each rule's ``params`` hold: the settings its step reads, and nothing else.

Snakemake re-runs a job when its params change (``--rerun-triggers params``, on by default),
so a rule that carries a whole config section re-runs for a change that cannot touch its
output: ``preprocess_ct`` carried all of ``imaging`` and re-ran every cohort's preprocessing
when ``imaging.encoder.checkpoint`` changed; ``train_stage1`` carried all of ``vlm`` and
re-trained stage 1 when ``vlm.stage2.pool`` changed.  Each function here picks the keys its
step reads (tests/test_rule_params.py changes one setting at a time and checks with a dry
run that only the steps reading it re-run).
"""

from __future__ import annotations

from typing import Mapping


def _pick(section: Mapping, keys) -> dict:
    return {k: section[k] for k in keys if k in section}


def _drop(section: Mapping, keys) -> dict:
    return {k: v for k, v in section.items() if k not in keys}


def preprocess(imaging: Mapping) -> dict:
    """Rule preprocess_ct: Merlin's chain (the workers are the rule's threads)."""
    return _pick(imaging, ("spacing", "size", "on_bad_image", "cache_precision"))


def qc(imaging: Mapping) -> dict:
    """Rule merge_qc: the montage's sample and spacing."""
    return _pick(imaging, ("spacing", "qc_sample"))


def probe_encoder(encoder: Mapping) -> dict:
    """Rule probe_features: the encoder settings the random-weights column is computed with."""
    return _pick(encoder, ("checkpoint", "layers", "width", "seed", "precision", "batch_size", "channels_last"))


#: vlm keys both training stages read to build the model (stage 1's whole section, for stage 1).
MODEL_KEYS = ("projector", "feature_norm", "prompt_format", "weights")


def stage1(vlm: Mapping) -> dict:
    """Rule train_stage1: the model's make-up and ``vlm.stage1`` (not stage 2, evaluation or
    the demo decoder's warm-up, which reaches stage 1 as its input folder)."""
    return {**_pick(vlm, MODEL_KEYS), "stage1": dict(vlm["stage1"])}


def stage2_vlm(vlm: Mapping) -> dict:
    """Rule train_stage2: the model's make-up and stage 1's adapter settings (LoRA or full)
    that a run without pre-training builds fresh."""
    stage = vlm.get("stage1") or {}
    return {**_pick(vlm, MODEL_KEYS), "stage1": _pick(stage, ("lora", "full_finetune"))}


def stage2_train(stage2: Mapping) -> dict:
    """Rule train_stage2: ``vlm.stage2`` without the lists that only choose the runs (heads,
    pretrain), the BERTScore sample and the prediction batch size (read by later rules)."""
    out = _drop(stage2, ("heads", "pretrain", "bertscore", "predict"))
    out["predict"] = _pick(stage2.get("predict") or {}, ("max_new_tokens",))
    return out


def baseline(survival: Mapping) -> dict:
    """Rule train_baseline: ``survival`` without the lists that only choose the runs."""
    return _drop(survival, ("heads", "modalities"))


def evaluation(survival: Mapping) -> dict:
    """Rule evaluate_stage2: the bootstrap and the Kaplan-Meier cut-off."""
    return _pick(survival, ("bootstrap", "km_min_at_risk"))


def bertscore(evaluate: Mapping) -> dict:
    """Rule evaluate_stage2: the BERTScore model settings of ``vlm.evaluate`` (not stage 1's
    generation settings)."""
    return {k: v for k, v in evaluate.items() if k.startswith("bertscore_")}


def mining(mining_section: Mapping) -> dict:
    """Rule mine_words: the ranking settings (not rule draft_questions' server)."""
    return _drop(mining_section, ("draft_url", "draft_model"))


def ingest(spec: Mapping) -> dict:
    """Rule ingest: a dataset's entry without the clinical sentence and its labels (read by
    build_instructions and encode_clinical_text; ingest keeps the typed columns)."""
    return _drop(spec, ("clinical_sentence", "labels"))
