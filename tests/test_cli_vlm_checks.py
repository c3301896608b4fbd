"""ask, probe and train-stage1 check inputs and outputs before any work, as the other commands do."""

from __future__ import annotations

import json

import pytest
from vlm_fixtures import cached_decoder, tiny_records, tiny_store

from ctsurv.cli import main


def _err(capsys, argv):
    code = main(argv)
    assert code != 0
    return capsys.readouterr().err


def test_ask_names_a_missing_model_folder(tmp_path, capsys):
    err = _err(capsys, ["ask", str(tmp_path / "nomodel"), "--features", str(tmp_path), "--study", "s", "--question", "q"])
    assert f"MODEL {tmp_path / 'nomodel'}: model folder not found" in err and "train-stage1" in err


def test_ask_checks_store_and_study_before_loading_the_model(tmp_path, capsys):
    model = tmp_path / "m"
    model.mkdir()
    (model / "vlm.json").write_text("{}", encoding="utf-8")  # never read: the store is checked first
    err = _err(capsys, ["ask", str(model), "--features", str(tmp_path / "nostore"), "--study", "s", "--question", "q"])
    assert f"--features {tmp_path / 'nostore'}: feature store not found" in err and "encode_images" in err
    store = tiny_store(tmp_path / "store", ["s1"])
    err = _err(capsys, ["ask", str(model), "--features", str(store), "--study", "s2", "--question", "q"])
    assert f"--study s2: not in the feature store {store}" in err
    err = _err(capsys, ["ask", str(model), "--image", str(tmp_path / "ct.nii.gz"), "--question", "q"])
    assert "ct.nii.gz: CT file or DICOM folder not found" in err


def test_ask_and_probe_numbers_stop_at_parsing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["ask", "m", "--features", "f", "--study", "s", "--question", "q", "--max-new-tokens", "0"])
    assert "--max-new-tokens: must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["probe", "s", "t.csv", "--columns", "a", "--out", "o", "--folds", "1"])
    assert "--folds: must be at least 2, got 1" in capsys.readouterr().err


def test_probe_names_missing_inputs_and_refuses_an_output_inside_the_store(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("study_id,a\ns1,1\n", encoding="utf-8")
    err = _err(capsys, ["probe", str(tmp_path / "nostore"), str(table), "--columns", "a", "--out", str(tmp_path / "o")])
    assert f"STORE {tmp_path / 'nostore'}: feature store not found" in err
    store = tiny_store(tmp_path / "store", ["s1"])
    err = _err(capsys, ["probe", str(store), str(tmp_path / "no.csv"), "--columns", "a", "--out", str(tmp_path / "o")])
    assert f"TABLE {tmp_path / 'no.csv'}: table not found" in err
    err = _err(capsys, ["probe", str(store), str(table), "--columns", "a", "--compare", "b", str(tmp_path / "x"),
                        "--out", str(tmp_path / "o")])
    assert f"--compare b {tmp_path / 'x'}: feature store not found" in err
    err = _err(capsys, ["probe", str(store), str(table), "--columns", "a", "--out", str(store / "probe")])
    assert "is inside the input folder" in err
    (tmp_path / "file").write_text("x", encoding="utf-8")
    err = _err(capsys, ["probe", str(store), str(table), "--columns", "a", "--out", str(tmp_path / "file")])
    assert "is a file, not a folder" in err


@pytest.fixture
def stage1_inputs(tmp_path):
    store = tiny_store(tmp_path / "features", ["s1", "s2"])
    inst = tmp_path / "instructions"
    inst.mkdir()
    (inst / "train.json").write_text(json.dumps(tiny_records(["s1", "s2"])), encoding="utf-8")
    return inst, store


def test_train_stage1_names_missing_inputs(tmp_path, capsys, stage1_inputs):
    inst, store = stage1_inputs
    base = ["train-stage1", "--decoder", str(cached_decoder()), "--out", str(tmp_path / "m")]
    err = _err(capsys, base + ["--data", str(tmp_path / "noinst"), str(store)])
    assert f"--data {tmp_path / 'noinst'}: instruction folder not found" in err and "build_instructions" in err
    err = _err(capsys, base + ["--data", str(inst), str(tmp_path / "nostore")])
    assert f"--data {tmp_path / 'nostore'}: feature store not found" in err
    err = _err(capsys, base + ["--data", str(store), str(store)])
    assert f"--data {store}: not an instruction folder (it has no train.json)" in err
    err = _err(capsys, ["train-stage1", "--decoder", str(tmp_path), "--out", str(tmp_path / "m"), "--data", str(inst), str(store)])
    assert f"--decoder {tmp_path}: not a decoder folder (it has no config.json)" in err


def test_train_stage1_refuses_an_existing_folder_that_is_not_a_model_and_outputs_in_inputs(tmp_path, capsys, stage1_inputs):
    inst, store = stage1_inputs
    out = tmp_path / "mydata"
    out.mkdir()
    (out / "precious.txt").write_text("keep me", encoding="utf-8")
    argv = ["train-stage1", "--decoder", str(cached_decoder()), "--data", str(inst), str(store), "--out"]
    err = _err(capsys, argv + [str(out)])
    assert f"--out {out}: the folder exists and is not a model folder (no vlm.json)" in err and "delete" in err
    assert (out / "precious.txt").read_text(encoding="utf-8") == "keep me"
    err = _err(capsys, argv + [str(store / "model")])
    assert "is inside the input folder" in err
