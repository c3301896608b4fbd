"""``ctsurv predict`` / ``ctsurv.vlm.load_survival_model``: one patient scored as the workflow scores them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from vlm_fixtures import QUESTIONS, SENTENCES, cached_decoder, question_records, tiny_store

from ctsurv.cli import main

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
N = 16
PAIRS = [(f"q{i}", q) for i, q in enumerate(QUESTIONS)]


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
        paths[s].write_text(json.dumps(question_records([i for i, sp in zip(ids, split) if sp == s])), encoding="utf-8")
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


def test_predict_from_a_ct_file_with_the_recorded_encoder(tmp_path, capsys, monkeypatch):
    """The whole path: CT -> preprocessing -> the recorded encoder -> six questions -> risk."""
    from test_vlm_ask import ENCODER, _ct

    from ctsurv.imaging.encode import encoder_fingerprint
    from ctsurv.imaging.io import read_ct
    from ctsurv.imaging.merlin import build_encoder
    from ctsurv.imaging.preprocess import preprocess_volume
    from ctsurv.vlm import build, load_survival_model, predict_patient
    from ctsurv.vlm.locate import encoder_record
    from ctsurv.vlm.stage2_io import save_stage2
    from ctsurv.vlm.stage2_model import CTSurvivalVLM
    from ctsurv.vlm.survival import SurvivalBranch

    encoder = build_encoder(None, ENCODER["layers"], ENCODER["width"], ENCODER["seed"])
    meta = {"fingerprint": encoder_fingerprint(encoder, 49, "fp32"), "precision": "fp32", "tokens": 49}
    torch.manual_seed(0)
    vlm = build(cached_decoder(), 64, 4, lora=LORA, feature_fingerprint=meta["fingerprint"],
                encoder=encoder_record(ENCODER, ENCODER["spacing"], ENCODER["size"], meta))
    branch = SurvivalBranch(vlm.config.hidden_size, "deepsurv", None, bottleneck=8)
    with torch.no_grad():
        for p in branch.parameters():
            p.add_(0.3 * torch.randn_like(p))
    save_stage2(CTSurvivalVLM(vlm, branch, None), tmp_path / "model")
    reference = {"questions": [{"id": q, "text": t} for q, t in PAIRS], "train_questions": "all", "horizons": [30.0],
                 "train": {"study_id": ["a", "b", "c"], "risk": [-1.0, 0.0, 5.0], "time": [10.0, 40.0, 70.0],
                           "event": [1, 1, 0]}}
    (tmp_path / "model" / "reference.json").write_text(json.dumps(reference))
    ct = _ct(tmp_path / "ct.nii.gz")
    monkeypatch.chdir(tmp_path)
    code, out, err = _predict(capsys, tmp_path / "model", "--image", ct, "--clinical", SENTENCES[1], "--max-new-tokens", 3,
                              "--json")
    assert code == 0, err
    got = json.loads(out)
    array = preprocess_volume(read_ct(ct), ENCODER["spacing"], ENCODER["size"]).array
    with torch.inference_mode():
        _, tokens = encoder.encode(torch.from_numpy(array)[None, None], "inplane")
    want = predict_patient(load_survival_model(tmp_path / "model"), tokens.half().float().numpy(), SENTENCES[1],
                           max_new_tokens=3)
    assert got["risk"] == pytest.approx(want["risk"], abs=1e-6) and len(got["answers"]) == len(PAIRS)
    assert got["percentile"] == pytest.approx(100 * np.mean(np.array([-1.0, 0.0, 5.0]) < got["risk"]))
    assert got["horizons"] == [30.0] and 0.0 <= got["survival"][0] <= 1.0


def test_deephit_gives_the_workflows_risk_and_mean_curve(world, capsys, tmp_path):
    from ctsurv.vlm import build
    from ctsurv.vlm.ensemble import step_survival
    from ctsurv.vlm.stage2 import predict_stage2
    from ctsurv.vlm.stage2_io import save_stage2
    from ctsurv.vlm.stage2_model import CTSurvivalVLM
    from ctsurv.vlm.survival import SurvivalBranch
    from ctsurv.vlm.survival_model import write_reference

    cuts = np.array([0.0, 40.0, 90.0, 160.0])
    torch.manual_seed(1)
    vlm = build(world["tmp"] / "run" / "decoder", 8, 4, lora=LORA, feature_fingerprint="tiny-encoder")
    branch = SurvivalBranch(vlm.config.hidden_size, "deephit", len(cuts), bottleneck=8)
    with torch.no_grad():
        for p in branch.parameters():
            p.add_(0.3 * torch.randn_like(p))
    folder = tmp_path / "deephit"
    save_stage2(CTSurvivalVLM(vlm, branch, cuts), folder)
    paths = {s: world["tmp"] / f"{s}.json" for s in ("train", "val", "test")}
    write_reference(folder, paths["train"], world["cohort"], world["store"], PAIRS, {"horizons": [45.0, 120.0]})
    files = [tmp_path / f for f in ("q.parquet", "p.parquet", "s.parquet")]
    predict_stage2(folder, paths, world["cohort"], world["store"], *files, max_new_tokens=2, questions=PAIRS)
    per_q = pd.read_parquet(files[0])
    sid = "s12"
    code, out, err = _predict(capsys, folder, "--features", world["store"], "--study", sid, "--clinical", SENTENCES[0],
                              "--max-new-tokens", 2, "--json")
    assert code == 0, err
    got = json.loads(out)
    rows = per_q[per_q["study_id"] == sid]
    assert got["head"] == "deephit" and got["risk"] == pytest.approx(rows["risk"].mean(), abs=1e-5)
    want = step_survival(np.mean(np.stack(rows["surv_at_cuts"].to_numpy()), axis=0)[None], cuts, [45.0, 120.0])[0]
    assert np.allclose(got["survival"], want, atol=1e-5)
