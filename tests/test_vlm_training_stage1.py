"""Stage 1 glue: train on instruction JSON + feature store, publish the model, evaluate answers."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from vlm_fixtures import LORA, cached_decoder, tiny_records, tiny_store

from ctsurv.errors import DataError
from ctsurv.vlm.answer_eval import paired_bootstrap, qa_pairs
from ctsurv.vlm.stage1 import Stage1Data, ZeroImages, evaluate_stage1, train_stage1, training_dir, write_stage1_evaluation

torch.set_num_threads(1)

STUDIES = [f"s{i}" for i in range(8)]


def _vlm(**stage) -> dict:
    settings = {"lora": LORA, "full_finetune": True, "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 0,
                "batch_size": 8, "grad_accum": 1, "epochs": None, "max_steps": 60, "eval_every": 20,
                "checkpoint_every": 10, "patience": None, "max_grad_norm": None, "precision": "fp32",
                "gradient_checkpointing": False, "seed": 0, "gpus": 0, "accelerate_config": None, "restart": False,
                "progress": False}
    settings.update(stage)
    return {"decoder": None, "projector": "linear", "prompt_format": None, "weights": "fp32", "stage1": settings,
            "evaluate": {"bertscore_model": "minilm", "bertscore_layers": 6, "max_new_tokens": 12, "batch_size": 8,
                         "max_pairs": None, "seed": 0}}


@pytest.fixture
def dataset(tmp_path):
    store = tiny_store(tmp_path / "features", STUDIES, tokens=4, dim=8)
    folder = tmp_path / "instructions"
    folder.mkdir()
    records = tiny_records(STUDIES)
    for split in ("train", "val", "test"):
        (folder / f"{split}.json").write_text(json.dumps(records), encoding="utf-8")
    return Stage1Data(folder, store)


def test_train_publish_and_evaluate(dataset, tmp_path):
    out = tmp_path / "models" / "stage1"
    result = train_stage1([dataset], cached_decoder(), out, _vlm())
    assert result.steps == 60 and result.best_step is not None
    # the model folder is ctsurv.vlm.save's, plus the training curve; checkpoints are gone after a complete run
    assert {"vlm.json", "projector.safetensors", "decoder", "metrics.csv", "tensorboard"} <= {p.name for p in out.iterdir()}
    assert not (training_dir(out) / "checkpoints").exists()
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["step"].tolist() == list(range(1, 61))
    assert metrics["val_loss"].dropna().iloc[-1] < 0.5 * metrics["val_loss"].dropna().iloc[0]
    assert result.best_val_loss == pytest.approx(metrics["val_loss"].min())

    scored, summary, m = evaluate_stage1(out, dataset.instructions / "test.json", dataset.features,
                                         _vlm()["evaluate"])
    assert m["pairs"] == len(STUDIES) == len(scored)
    assert 0.0 < m["bertscore_f1"] <= 1.0 and 0.0 <= m["presence_agreement"] <= 1.0
    assert summary["question_id"].tolist() == ["q1", "all"]
    # 60 steps on 8 examples: part of them come back word for word, the rest start to
    assert m["exact_match"] > 0 and m["exact_match"] == (scored["generated"] == scored["reference"]).mean()
    assert m["bertscore_f1"] > 0.4
    files = [tmp_path / "eval" / n for n in ("answers.parquet", "eval.csv", "eval.md", "metrics.json")]
    write_stage1_evaluation(scored, summary, m, *files)
    assert "human" not in pd.read_parquet(files[0]).columns
    assert json.loads(files[3].read_text(encoding="utf-8"))["pairs"] == len(STUDIES)
    assert "| all | 8 |" in files[2].read_text(encoding="utf-8")


def test_cli_trains_with_the_configs_vlm_section(dataset, tmp_path, capsys, repo):
    from ctsurv.cli import main

    out = tmp_path / "cli_model"
    code = main(["train-stage1", "--data", str(dataset.instructions), str(dataset.features), "--decoder",
                 str(cached_decoder()), "--out", str(out), "--max-steps", "2", "--config", str(repo / "config" / "config.yaml")])
    assert code == 0, capsys.readouterr().err
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == [1, 2]
    meta = json.loads((out / "vlm.json").read_text(encoding="utf-8"))
    assert meta["lora"]["r"] == 16 and meta["feature_norm"] == "standardize"  # config/config.yaml's
    # the standardiser was fitted on the training studies' tokens (train.json holds every study)
    from safetensors.torch import load_file

    from ctsurv.features import FeatureStore

    tokens = FeatureStore(dataset.features).get(STUDIES, name="tokens").astype("float64").reshape(-1, 8)
    norm = load_file(str(out / "feature_norm.safetensors"))
    assert torch.allclose(norm["mean"], torch.from_numpy(tokens.mean(0)).float(), atol=1e-5)
    assert torch.allclose(norm["std"], torch.from_numpy(tokens.std(0)).float(), atol=1e-5)


def test_missing_features_and_zero_images(dataset, tmp_path):
    records = tiny_records(STUDIES + ["ghost"])
    (dataset.instructions / "train.json").write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError, match="record 'ghost-q1'.*no features"):
        train_stage1([dataset], cached_decoder(), tmp_path / "m", _vlm())
    item = ZeroImages([{"features": torch.ones(4, 8), "input_ids": [1]}])[0]
    assert item["features"].abs().sum() == 0 and item["input_ids"] == [1]


def test_qa_pairs_and_paired_bootstrap():
    rec = {"id": "a", "study_id": "s", "question_ids": ["q1", "q2"], "conversations": [
        {"from": "human", "value": "Sentence.\n<image>\nFirst?"}, {"from": "gpt", "value": "one"},
        {"from": "human", "value": "Second?"}, {"from": "gpt", "value": "two"}]}
    pairs = qa_pairs([rec])
    assert pairs["human"].tolist() == ["Sentence.\n<image>\nFirst?", "Sentence.\n<image>\nSecond?"]
    assert pairs["question_id"].tolist() == ["q1", "q2"] and pairs["reference"].tolist() == ["one", "two"]
    a, b = [1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]
    res = paired_bootstrap(a, b, groups=["p1", "p1", "p2", "p3"], n=500, seed=0)
    assert res["mean_difference"] == pytest.approx(0.5) and res["groups"] == 3
    assert 0.0 <= res["ci_low"] <= 0.5 <= res["ci_high"] <= 1.0
