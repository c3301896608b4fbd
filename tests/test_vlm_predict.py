"""``ctsurv predict`` / ``ctsurv.vlm.load_survival_model``: one patient scored as the workflow scores them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from vlm_fixtures import ANSWERS, QUESTIONS, SENTENCES, cached_decoder, tiny_store

from ctsurv.cli import main

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
N = 16
PAIRS = [(f"q{i}", q) for i, q in enumerate(QUESTIONS)]


def _records(ids):
    return [{"id": f"{sid}-{q}", "image": f"{sid}.nii.gz", "study_id": sid, "question_ids": [f"q{q}"],
             "conversations": [{"from": "human", "value": f"{SENTENCES[0]}\n<image>\n{QUESTIONS[q]}"},
                               {"from": "gpt", "value": ANSWERS[(i + q) % len(ANSWERS)]}]}
            for i, sid in enumerate(ids) for q in range(len(QUESTIONS))]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A stage-2 model folder (random, seeded branch: no training needed to compare two scorers)."""
    from ctsurv.vlm import build
    from ctsurv.vlm.stage2 import predict_stage2
    from ctsurv.vlm.stage2_io import save_stage2
    from ctsurv.vlm.stage2_model import CTSurvivalVLM
    from ctsurv.vlm.survival import SurvivalBranch
    from ctsurv.vlm.survival_model import write_reference

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("predict")
    ids = [f"s{i:02d}" for i in range(N)]
    store = tiny_store(tmp / "store", ids, tokens=4, dim=8)
    rng = np.random.default_rng(0)
    split = np.array(["train"] * 10 + ["val"] * 2 + ["test"] * 4)
    event = (rng.random(N) < 0.7).astype(int)
    event[:3] = 1
    cohort = pd.DataFrame({"study_id": ids, "patient_id": ids, "split": split, "time": rng.exponential(100, N) + 1,
                           "event": pd.array(event, dtype="Int64")})
    paths = {}
    for s in ("train", "val", "test"):
        paths[s] = tmp / f"{s}.json"
        paths[s].write_text(json.dumps(_records([i for i, sp in zip(ids, split) if sp == s])), encoding="utf-8")
    shutil.copytree(cached_decoder(), tmp / "run" / "decoder")
    torch.manual_seed(0)
    vlm = build(tmp / "run" / "decoder", 8, 4, lora=LORA, feature_fingerprint="tiny-encoder")
    branch = SurvivalBranch(vlm.config.hidden_size, "deepsurv", None, bottleneck=8)
    with torch.no_grad():  # the head starts at zero (the Cox null model): give it a slope
        for p in branch.parameters():
            p.add_(0.3 * torch.randn_like(p))
    folder = tmp / "run" / "model"
    save_stage2(CTSurvivalVLM(vlm, branch, None), folder)
    write_reference(folder, paths["train"], cohort, store, PAIRS, {"train_questions": "all", "horizons": [50.0, 100.0]})
    files = [tmp / f for f in ("q.parquet", "p.parquet", "s.parquet")]
    predict_stage2(folder, paths, cohort, store, *files, max_new_tokens=4, questions=PAIRS)
    return {"tmp": tmp, "folder": folder, "store": store, "cohort": cohort, "predictions": pd.read_parquet(files[1]),
            "survival": pd.read_parquet(files[2])}


def _predict(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_gives_the_workflows_risk_percentile_and_curve(world, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any folder
    pred = world["predictions"].set_index("study_id")
    sid = "s13"
    code, out, err = _predict(capsys, world["folder"], "--features", world["store"], "--study", sid, "--clinical",
                              SENTENCES[0], "--max-new-tokens", 4, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert pred.loc[sid, "split"] == "test" and got["risk"] == pytest.approx(pred.loc[sid, "risk"], abs=1e-5)
    train = pred[pred["split"] == "train"]["risk"].to_numpy()
    assert got["n_train"] == 10 and got["percentile"] == pytest.approx(100 * np.mean(train < got["risk"]))
    assert [a["id"] for a in got["answers"]] == [q for q, _ in PAIRS] and all(a["answer"] for a in got["answers"])
    # Breslow on the same training patients: the workflow's curve at the horizons
    from ctsurv.survival.evaluation import breslow_survival

    t = pred[pred["split"] == "train"]
    want = breslow_survival(t["risk"], t["time"], t["event"], [pred.loc[sid, "risk"]], [50.0, 100.0])[0]
    assert got["horizons"] == [50.0, 100.0] and np.allclose(got["survival"], want, atol=1e-5)
    assert got["survival"][0] >= got["survival"][1]
    # the text form says the same
    code, text, _ = _predict(capsys, world["folder"], "--features", world["store"], "--study", sid, "--clinical",
                             SENTENCES[0], "--max-new-tokens", 4)
    assert code == 0 and f"{got['risk']:.4f}" in text and "Breslow curve" in text and f"{PAIRS[-1][0]}:" in text


def test_a_copied_model_folder_still_answers_and_a_lost_decoder_is_named_by_hash(world, capsys, tmp_path):
    from ctsurv.vlm import load_survival_model

    sid = "s14"
    want = world["predictions"].set_index("study_id").loc[sid, "risk"]
    shutil.copytree(world["tmp"] / "run", tmp_path / "copy")  # the tree: model + its decoder
    model = load_survival_model(tmp_path / "copy" / "model", device="cpu", dtype=torch.float32)
    assert model.reference["horizons"] == [50.0, 100.0] and model.head == "deepsurv"
    code, out, err = _predict(capsys, tmp_path / "copy" / "model", "--features", world["store"], "--study", sid,
                              "--clinical", SENTENCES[0], "--max-new-tokens", 2, "--json")
    assert code == 0 and json.loads(out)["risk"] == pytest.approx(want, abs=1e-5), err
    shutil.copytree(tmp_path / "copy" / "model", tmp_path / "alone" / "model")  # without any decoder near it
    shutil.rmtree(tmp_path / "copy")
    (world["tmp"] / "run" / "decoder").rename(world["tmp"] / "decoder.moved")
    try:
        code, _, err = _predict(capsys, tmp_path / "alone" / "model", "--features", world["store"], "--study", sid)
        assert code == 1 and f"hash {model.vlm.config.decoder_hash}" in err and "Traceback" not in err
        code, out, err = _predict(capsys, tmp_path / "alone" / "model", "--features", world["store"], "--study", sid,
                                  "--clinical", SENTENCES[0], "--decoder", world["tmp"] / "decoder.moved", "--json")
        assert code == 0 and json.loads(out)["risk"] == pytest.approx(want, abs=1e-5), err
    finally:
        (world["tmp"] / "decoder.moved").rename(world["tmp"] / "run" / "decoder")


def test_predict_checks_its_inputs(world, capsys, tmp_path):
    code, _, err = _predict(capsys, tmp_path / "nope", "--features", world["store"], "--study", "s13")
    assert code == 1 and "stage-2 model folder not found" in err
    stage1 = tmp_path / "stage1"
    stage1.mkdir()
    (stage1 / "vlm.json").write_text("{}")
    code, _, err = _predict(capsys, stage1, "--features", world["store"], "--study", "s13")
    assert code == 1 and "has no survival.json" in err
    code, _, err = _predict(capsys, world["folder"], "--features", world["store"], "--study", "zzz")
    assert code == 1 and "--study zzz: not in the feature store" in err
    code, _, err = _predict(capsys, world["folder"], "--features", world["store"])
    assert code == 1 and "--features needs --study" in err
    code, _, err = _predict(capsys, world["folder"], "--image", tmp_path / "ct.nii.gz")
    assert code == 1 and "CT file or DICOM folder not found" in err


def test_a_model_without_pretraining_gets_the_encoder_record_that_made_its_store(world, tmp_path, caplog):
    from ctsurv.imaging.encode import encoder_fingerprint
    from ctsurv.imaging.merlin import build_encoder
    from ctsurv.vlm.locate import add_encoder_record

    imaging = {"spacing": [4.0, 4.0, 6.0], "size": [64, 64, 16],
               "encoder": {"checkpoint": None, "layers": [1, 1, 1, 1], "width": 2, "seed": 0, "tokens": 49}}
    shutil.copytree(world["folder"], tmp_path / "model")
    add_encoder_record(tmp_path / "model", imaging, world["store"])  # the tiny store was not made by it
    assert json.loads((tmp_path / "model" / "vlm.json").read_text())["encoder"] is None
    assert "does not give the feature store's fingerprint" in caplog.text
    store = tmp_path / "store"
    shutil.copytree(world["store"], store)
    made = encoder_fingerprint(build_encoder(None, [1, 1, 1, 1], 2, 0), 49, "fp32")
    (store / "encoder.json").write_text(json.dumps({"fingerprint": made, "tokens": 49, "precision": "fp32"}))
    add_encoder_record(tmp_path / "model", imaging, store)
    record = json.loads((tmp_path / "model" / "vlm.json").read_text())["encoder"]
    assert record["fingerprint"] == made and record["size"] == [64, 64, 16] and record["checkpoint"] is None
