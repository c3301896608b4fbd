"""Stage 2 as the paper's run needs it (issue 20): gradient checkpointing through the trainer, the
decoder's dtype from vlm.weights, visual tokens read per batch, the same six questions for every patient."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from vlm_fixtures import ANSWERS, SENTENCES, tiny_decoder, tiny_store

from ctsurv.features import FeatureStore
from ctsurv.vlm.stage2_data import StudyTokens, SurvivalExamples, fixed_questions, load_split_data, question_table
from ctsurv.vlm.stage2_train import Stage2Settings, build_stage2_model, train_stage2
from ctsurv.vlm.trainer import TrainSettings

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
SIX = [("primary_tumor", "Where is the primary tumor and what size?"), ("lymph_nodes", "Which lymph nodes are involved?"),
       ("pleura", "Is there pleural effusion?"), ("metastases", "Are there metastases?"),
       ("vessels", "Are major vessels involved?"), ("bones", "Are there bone changes?")]
IDS = [f"p{i:02d}" for i in range(14)]
SPLIT = ["train"] * 8 + ["val"] * 3 + ["test"] * 3


@pytest.fixture(autouse=True)
def _pinned():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _records(ids, skip=()):
    """One conversation per (study, question); ``skip``: (study, question id) pairs whose extraction failed."""
    return [{"id": f"{sid}__{qid}", "image": f"{sid}.nii.gz", "study_id": sid, "question_ids": [qid],
             "conversations": [{"from": "human", "value": f"{SENTENCES[i % 2]}\n<image>\n{text}"},
                               {"from": "gpt", "value": ANSWERS[(i + q) % len(ANSWERS)]}]}
            for i, sid in enumerate(ids) for q, (qid, text) in enumerate(SIX) if (sid, qid) not in skip]


# failed extractions: a training patient loses two answers, a test patient all but one
SKIP = {("p00", "pleura"), ("p00", "bones"), *(("p12", qid) for qid, _ in SIX[1:])}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage2_paper")
    decoder = tiny_decoder(tmp / "decoder")
    store = tiny_store(tmp / "store", IDS, tokens=4, dim=8)
    rng = np.random.default_rng(1)
    cohort = pd.DataFrame({"study_id": IDS, "patient_id": IDS, "split": SPLIT, "time": rng.exponential(50, len(IDS)) + 1,
                           "event": pd.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1], dtype="Int64")})
    paths = {}
    for s in ("train", "val", "test"):
        ids = [i for i, sp in zip(IDS, SPLIT) if sp == s]
        paths[s] = tmp / f"{s}.json"
        paths[s].write_text(json.dumps(_records(ids, SKIP)), encoding="utf-8")
    return {"tmp": tmp, "decoder": decoder, "store": store, "cohort": cohort, "paths": paths}


def _train(world, out, checkpointing: bool, weights="fp32"):
    settings = Stage2Settings(bottleneck=8, risk_memory=0, selection="loss")
    ts = TrainSettings(lr=5e-3, batch_size=4, max_steps=3, warmup_steps=1, eval_every=3, checkpoint_every=3, seed=1,
                       precision="fp32", gradient_checkpointing=checkpointing, progress=False)
    return train_stage2(world["paths"], world["cohort"], world["store"], "deepsurv", "without", settings, ts, out,
                        decoder_path=world["decoder"], vlm_options={"lora": LORA}, weights=weights, questions=SIX)


def test_train_stage2_runs_with_gradient_checkpointing_and_it_changes_no_number(world, tmp_path):
    """The trainer calls the stage-2 model's own gradient_checkpointing_enable (the decoder sits at
    vlm.decoder); recomputing activations gives the same losses as keeping them."""
    from ctsurv.vlm import stage2_model

    calls = []
    original = stage2_model.CTSurvivalVLM.gradient_checkpointing_enable

    def spy(self):
        calls.append(type(self).__name__)
        original(self)
        base = self.vlm.decoder.get_base_model()
        calls.append(getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing)

    stage2_model.CTSurvivalVLM.gradient_checkpointing_enable = spy
    try:
        on = _train(world, tmp_path / "on", checkpointing=True)
    finally:
        stage2_model.CTSurvivalVLM.gradient_checkpointing_enable = original
    off = _train(world, tmp_path / "off", checkpointing=False)
    assert calls == ["CTSurvivalVLM", True]
    assert on["steps"] == off["steps"] == 3
    a, b = pd.read_csv(tmp_path / "on" / "metrics.csv"), pd.read_csv(tmp_path / "off" / "metrics.csv")
    cols = ["loss", "lm", "surv", "dispersion", "alignment", "val_loss"]
    assert np.isfinite(a[cols[:-1]].to_numpy()).all()
    assert (a[cols].fillna(-1) - b[cols].fillna(-1)).abs().to_numpy().max() < 1e-5
    # every training patient with all six questions, the failed extractions without an LM target
    assert on["train_examples"] == 8 * len(SIX)


@pytest.mark.parametrize("pretrain", ["with", "without"])
@pytest.mark.parametrize("weights, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("auto", torch.float32)])
def test_the_decoder_dtype_follows_vlm_weights(world, pretrain, weights, dtype):
    """vlm.weights sets the decoder's dtype in stage 2 as in stage 1 (auto: bf16 on a GPU, fp32 on this
    CPU); what trains from a fresh start (W without pre-training, the LoRA adapter, the branch) stays fp32."""
    from ctsurv.vlm import build, save

    stage1 = world["tmp"] / "stage1"
    if not stage1.exists():
        save(build(world["decoder"], 8, 4, lora=LORA, feature_fingerprint="tiny-encoder"), stage1)
    model = build_stage2_model("deepsurv", pretrain, Stage2Settings(bottleneck=8), stage1_dir=stage1,
                               decoder_path=world["decoder"], vlm_options={"lora": LORA}, feature_dim=8, tokens=4,
                               feature_fingerprint="tiny-encoder", weights=weights)
    base = model.vlm.decoder.get_base_model()
    assert base.get_input_embeddings().weight.dtype == dtype
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == dtype
    trainable = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}, trainable
    assert any("lora_" in n for n in trainable) and any(n.startswith("branch.") for n in trainable)
    assert any(n.startswith("vlm.projector") for n in trainable) == (pretrain == "without")


def test_every_patient_gets_the_same_six_questions(world, tmp_path):
    """Prediction asks each patient the six configured questions, failed extractions or not, and a
    patient without any instruction record too (from its clinical sentence)."""
    from ctsurv.vlm.stage2 import predict_stage2

    out = _train(world, tmp_path / "run", checkpointing=False)
    assert out["steps"] == 3
    # a test patient whose every extraction failed: no record at all, asked from the cohort's sentence
    paths = dict(world["paths"])
    test = json.loads(paths["test"].read_text(encoding="utf-8"))
    paths["test"] = tmp_path / "test.json"
    paths["test"].write_text(json.dumps([r for r in test if r["study_id"] != "p13"]), encoding="utf-8")
    sentences = {sid: SENTENCES[i % 2] for i, sid in enumerate(IDS)}
    files = [tmp_path / f for f in ("q.parquet", "p.parquet", "s.parquet")]
    predict_stage2(tmp_path / "run" / "best", paths, world["cohort"], world["store"], *files, max_new_tokens=3,
                   questions=SIX, sentences=sentences)
    per_q = pd.read_parquet(files[0])
    asked = per_q.groupby("study_id")["question_id"].apply(list)
    assert set(asked.index) == set(IDS)
    assert all(qs == [qid for qid, _ in SIX] for qs in asked)
    test_q = per_q[per_q["split"] == "test"]
    assert test_q["generated"].map(lambda s: isinstance(s, str)).all() and per_q["risk"].notna().all()
    refs = per_q.set_index(["study_id", "question_id"])["reference"]
    assert isinstance(refs.loc[("p12", "primary_tumor")], str) and pd.isna(refs.loc[("p12", "pleura")])
    assert refs.loc["p13"].isna().all() and pd.isna(refs.loc[("p00", "bones")])
    prompts = per_q.set_index(["study_id", "question_id"])["human"]
    assert prompts.loc[("p13", "vessels")] == f"{SENTENCES[1]}\n<image>\n{SIX[4][1]}"
    patients = pd.read_parquet(files[1])
    assert len(patients) == len(IDS) and (patients["n_questions"] == len(SIX)).all()


def test_fixed_questions_keep_the_records_prompts_and_refuse_unknown_questions():
    records = _records(["a", "b"], skip={("b", "vessels")})
    table = question_table(records)
    asked = fixed_questions(table, SIX)
    assert len(asked) == 12 and asked["answer"].isna().sum() == 1
    same = asked.merge(table, on=["study_id", "question_id"], suffixes=("", "_record"))
    assert (same["human"] == same["human_record"]).all() and (same["answer"] == same["answer_record"]).all()
    with pytest.raises(Exception, match=r"questions \['bones'\] that are not in the question list"):
        fixed_questions(table, SIX[:5])


def test_visual_tokens_are_read_per_batch_from_the_store(world):
    """The tokens stay on disk: examples read their study's rows (float16 on disk, float32 per read)."""
    tables, followup, feats, ids = load_split_data({"train": world["paths"]["train"]}, world["cohort"], world["store"])
    assert isinstance(feats, StudyTokens) and feats.shape == (8, 4, 8)
    store = FeatureStore(world["store"])
    assert np.array_equal(feats[[3, 0]], store.get([ids[3], ids[0]], name="tokens"))
    assert feats[2].dtype == np.float32 and np.array_equal(feats[2], store.get([ids[2]], name="tokens")[0])
    from ctsurv.vlm import build

    vlm = build(world["decoder"], 8, 4)
    data = SurvivalExamples(tables["train"], followup, feats, ids, vlm.tokenizer, vlm.config.prompt_format,
                            vlm.config.max_length)
    assert data.features is feats  # no copy of the store
    item = data[5]
    assert item["features"].dtype == torch.float32
    assert torch.equal(item["features"], torch.from_numpy(store.get([data.questions.at[5, "study_id"]], name="tokens")[0]))
    assert item["input_ids"].dtype == np.int32


def test_instruction_records_are_decoded_one_at_a_time_with_clear_errors(tmp_path):
    from ctsurv.errors import DataError
    from ctsurv.vlm.stage2_data import iter_records

    records = _records(["a", "b"])
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    assert list(iter_records(path)) == records
    path.write_text(" [ ] ", encoding="utf-8")
    assert list(iter_records(path)) == []
    path.write_text(json.dumps(records)[:-1] + " x", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.json: not a JSON array .*',' or '\]' expected"):
        list(iter_records(path))
    path.write_text('[{"id": 1,}]', encoding="utf-8")
    with pytest.raises(DataError, match=r"train.json: invalid JSON at line 1, column 11"):
        list(iter_records(path))
