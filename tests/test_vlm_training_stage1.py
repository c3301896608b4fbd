"""Stage 1 glue: train on instruction JSON + feature store, publish the model, evaluate answers."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from vlm_fixtures import LORA, cached_decoder, tiny_records, tiny_store

from ctsurv.errors import DataError
from ctsurv.vlm.answer_eval import paired_bootstrap, qa_pairs
from ctsurv.vlm.stage1 import (Stage1Data, ZeroImages, evaluate_stage1, evaluate_stage1_with_control, train_stage1,
                               training_dir, write_stage1_evaluation)

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

    # the demo's rule also answers from zeroed visual tokens: the control's columns join eval.csv
    settings = dict(_vlm()["evaluate"], bootstrap=200)
    scored2, summary2, m2 = evaluate_stage1_with_control(out, dataset.instructions / "test.json", dataset.features,
                                                         settings)
    zeroed, _, mz = evaluate_stage1(out, dataset.instructions / "test.json", dataset.features, settings, zero_images=True)
    assert scored2["generated"].tolist() == scored["generated"].tolist()
    assert scored2["generated_zeroed"].tolist() == zeroed["generated"].tolist()
    assert m2["zeroed"]["bertscore_f1"] == pytest.approx(mz["bertscore_f1"])
    effect = m2["image_effect"]["bertscore_f1"]
    assert effect["difference"] == pytest.approx(m["bertscore_f1"] - mz["bertscore_f1"])
    assert effect["ci_low"] <= effect["difference"] <= effect["ci_high"]
    assert {"majority_rate", "presence_over_majority", "bertscore_f1_diff_low", "presence_diff_high"} <= set(summary2.columns)
    write_stage1_evaluation(scored2, summary2, m2, *files)
    table = pd.read_csv(files[1])
    assert table["bertscore_f1_zeroed"].iloc[-1] == pytest.approx(mz["bertscore_f1"])
    assert "Does it use the image?" in files[2].read_text(encoding="utf-8")


def test_image_ablation_per_question_against_the_majority_rate():
    from ctsurv.vlm.answer_eval import image_ablation

    # 4 patients x 2 questions; q1's reference is present for 1 of 4 (majority rate 0.75)
    ref = [True, False, False, False, True, True, False, True]
    real = pd.DataFrame({"id": [f"r{i}" for i in range(8)], "study_id": ["p1", "p2", "p3", "p4"] * 2,
                         "question_id": ["q1"] * 4 + ["q2"] * 4, "reference": ["x"] * 8, "generated": ["x"] * 8,
                         "bertscore_f1": [0.9] * 8, "presence_reference": ref, "presence_agree": [1.0] * 8})
    zero = real.assign(generated=["y"] * 8, bertscore_f1=[0.7] * 8,
                       presence_agree=[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    table = image_ablation(real, zero, n=200, seed=0).set_index("question_id")
    assert table.loc["q1", "majority_rate"] == pytest.approx(0.75) and table.loc["q2", "majority_rate"] == 0.75
    assert table.loc["q1", "presence_over_majority"] == pytest.approx(0.25)
    assert table.loc["all", "majority_rate"] == pytest.approx(0.75)
    assert table.loc["all", "presence_diff"] == pytest.approx(0.25)
    assert table.loc["all", "bertscore_f1_diff"] == pytest.approx(0.2)
    assert table.loc["all", "bertscore_f1_diff_low"] == pytest.approx(0.2)  # every pair differs by 0.2
    assert table.loc["all", "presence_diff_low"] >= 0.0 and table.loc["q1", "exact_match_zeroed"] == 0.0
    with pytest.raises(ValueError, match="same pairs"):
        image_ablation(real, zero.iloc[::-1].reset_index(drop=True))


def test_cli_trains_with_the_configs_vlm_section(dataset, tmp_path, capsys, repo):
    from ctsurv.cli import main

    out = tmp_path / "cli_model"
    code = main(["train-stage1", "--data", str(dataset.instructions), str(dataset.features), "--decoder",
                 str(cached_decoder()), "--out", str(out), "--max-steps", "2", "--config", str(repo / "config" / "config.yaml")])
    assert code == 0, capsys.readouterr().err
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == [1, 2]
    meta = json.loads((out / "vlm.json").read_text(encoding="utf-8"))
    assert meta["lora"] is None and meta["feature_norm"] == "standardize"  # config/config.yaml's (full fine-tuning)
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


def test_projector_learning_rate_is_its_own_group(dataset, tmp_path, monkeypatch):
    import ctsurv.vlm.stage1 as stage1

    seen = {}

    class Stop(Exception):
        pass

    def fake_train(model, *args, lr_groups=None, run_config=None, **kwargs):
        seen.update(lr_groups=lr_groups, run_config=run_config, names=[n for n, p in model.named_parameters()
                                                                        if p.requires_grad and n.startswith("projector.")])
        raise Stop

    monkeypatch.setattr(stage1, "train", fake_train)
    with pytest.raises(Stop):
        train_stage1([dataset], cached_decoder(), tmp_path / "m", _vlm(projector_lr=0.05))
    assert seen["lr_groups"] == {"projector.": 0.05} and seen["run_config"]["projector_lr"] == 0.05
    assert seen["names"]  # the prefix names W's trainable parameters
    with pytest.raises(Stop):
        train_stage1([dataset], cached_decoder(), tmp_path / "m", _vlm())
    assert seen["lr_groups"] is None and "projector_lr" not in seen["run_config"]


def test_the_published_model_records_the_encoder_that_made_the_store(dataset, tmp_path, caplog):
    from ctsurv.imaging.encode import encoder_fingerprint
    from ctsurv.imaging.merlin import build_encoder
    from ctsurv.vlm.locate import imaging_params

    imaging = {"spacing": [4.0, 4.0, 6.0], "size": [64, 64, 16], "on_bad_image": "error",
               "encoder": {"checkpoint": None, "layers": [1, 1, 1, 1], "width": 2, "seed": 5, "tokens": 49,
                           "precision": "auto", "batch_size": 2}}
    made_it = encoder_fingerprint(build_encoder(None, [1, 1, 1, 1], 2, 5), 49, "bf16")
    meta = json.loads((dataset.features / "encoder.json").read_text())
    (dataset.features / "encoder.json").write_text(json.dumps({**meta, "fingerprint": made_it, "tokens": 49,
                                                               "precision": "bf16"}))
    out = tmp_path / "models" / "stage1"
    train_stage1([dataset], cached_decoder(), out, _vlm(max_steps=2, eval_every=2, checkpoint_every=2),
                 imaging=imaging_params(imaging))
    saved = json.loads((out / "vlm.json").read_text())
    assert saved["encoder"] == {"checkpoint": None, "checkpoint_sha256": None, "checkpoint_absolute": None,
                                "checkpoint_relative": None, "checkpoint_copy": None, "layers": [1, 1, 1, 1],
                                "width": 2, "seed": 5, "tokens": 49, "spacing": [4.0, 4.0, 6.0], "size": [64, 64, 16],
                                "precision": "bf16", "fingerprint": made_it}
    # relative to the published folder (not to the training's best/ it was first saved in)
    decoder = saved["decoder_location"]
    assert (out / decoder["relative"]).resolve() == cached_decoder().resolve()
    # settings that did not make the store are not recorded (ask would refuse them)
    imaging["encoder"]["seed"] = 6
    other = tmp_path / "models" / "other"
    train_stage1([dataset], cached_decoder(), other, _vlm(max_steps=2, eval_every=2, checkpoint_every=2),
                 imaging=imaging_params(imaging))
    assert json.loads((other / "vlm.json").read_text())["encoder"] is None
    assert "does not give the feature store's fingerprint" in caplog.text
