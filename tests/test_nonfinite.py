"""Non-finite numbers never pass silently (issue 23 item 1): features read for training, the
training loss, and the probe's targets.  (Predictions: tests/test_report.py.)"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from vlm_fixtures import cached_decoder, tiny_records, tiny_store

from ctsurv.cli import main
from ctsurv.errors import DataError
from ctsurv.vlm.trainer import NonFiniteLoss, TrainSettings, random_batches, train


def _poison(store, study, values):
    """Set the first ``values`` token entries of ``study`` to NaN, inf, -inf, NaN, ... in a feature store."""
    ids = pd.read_parquet(store / "index.parquet")["study_id"].astype(str).tolist()
    tokens = np.load(store / "tokens.npy")
    flat = tokens[ids.index(study)].reshape(-1)
    flat[:values] = np.resize([np.nan, np.inf, -np.inf], values)
    tokens[ids.index(study)] = flat.reshape(tokens.shape[1:])
    np.save(store / "tokens.npy", tokens)


def test_stage1_refuses_a_store_with_nan_features_naming_store_study_and_count(tmp_path, capsys):
    """Stage 1 on such a store exited 0 with a model whose weights were all NaN."""
    store = tiny_store(tmp_path / "features", ["s1", "s2", "s3"])
    _poison(store, "s2", 3)
    inst = tmp_path / "instructions"
    inst.mkdir()
    (inst / "train.json").write_text(json.dumps(tiny_records(["s1", "s2", "s3"])), encoding="utf-8")
    code = main(["train-stage1", "--decoder", str(cached_decoder()), "--data", str(inst), str(store),
                 "--out", str(tmp_path / "model"), "--max-steps", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"feature store {store}: 'tokens' holds NaN or infinite values: study 's2' (3 values)" in err
    assert not (tmp_path / "model").exists()


def test_stage2_refuses_a_store_with_nan_features(tmp_path):
    """Stage 2 ran with a NaN loss and crashed only at evaluation."""
    from ctsurv.vlm.stage2_data import load_split_data

    ids = [f"p{i}" for i in range(8)]
    store = tiny_store(tmp_path / "features", ids)
    _poison(store, "p5", 1)
    _poison(store, "p6", 2)
    cohort = pd.DataFrame({"study_id": ids, "patient_id": ids, "split": ["train"] * 6 + ["val"] * 2,
                           "time": np.arange(1, 9, dtype=float), "event": pd.array([1, 0] * 4, dtype="Int64")})
    files = {}
    for split, part in (("train", ids[:6]), ("val", ids[6:])):
        files[split] = tmp_path / f"{split}.json"
        files[split].write_text(json.dumps(tiny_records(part)), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_split_data(files, cohort, store)
    assert f"feature store {store}: 'tokens' holds NaN or infinite values: study 'p5' (1 values), study 'p6' (2 values)" \
        in str(err.value)


def _collate(items):
    return {"x": torch.stack([it["x"] for it in items]), "y": torch.stack([it["y"] for it in items]),
            "study_ids": [it["study_id"] for it in items]}


def test_a_non_finite_loss_stops_training_at_that_step_keeping_the_last_good_checkpoint(tmp_path):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=gen), torch.randn(40, 1, generator=gen)
    x[13, 2] = float("nan")  # study s13's input
    data = [{"x": x[i], "y": y[i], "study_id": f"s{i:02d}"} for i in range(40)]
    settings = TrainSettings(lr=0.01, batch_size=4, grad_accum=1, max_steps=40, checkpoint_every=2, eval_every=2, seed=5,
                             precision="fp32", gradient_checkpointing=False, progress=False)
    # the step that first draws study 13 (the trainer's own order)
    batches = [b for epoch in range(5) for b in random_batches(32, 4, 5)(epoch)]
    step = next(i for i, b in enumerate(batches) if 13 in b) + 1
    assert step > 2  # a checkpoint exists before it

    def save_fn(m, folder, state_dict=None):
        folder.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(folder / "model.safetensors"))

    def loss_fn(m, batch):
        return {"loss": torch.nn.functional.mse_loss(m(batch["x"]), batch["y"])}

    torch.manual_seed(1)
    model = torch.nn.Linear(6, 1)
    with pytest.raises(NonFiniteLoss) as err:
        train(model, data[:32], data[32:], loss_fn, settings, tmp_path / "run", _collate, save_fn)
    msg = str(err.value)
    kept = (step - 1) // 2 * 2
    assert msg.startswith(f"step {step}: the training loss is nan on the batch of studies ") and "'s13'" in msg
    assert f"the last good checkpoint {tmp_path / 'run' / 'checkpoints'}" in msg and "is kept" in msg
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the step was not applied
    best = load_file(str(tmp_path / "run" / "best" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in best.values())
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["step"].max() == step - 1 and np.isfinite(metrics["loss"]).all()
    assert kept >= 2


def test_probe_with_an_infinite_target_is_a_clear_error(tmp_path, capsys):
    store = tiny_store(tmp_path / "features", [f"s{i}" for i in range(30)])
    table = pd.DataFrame({"study_id": [f"s{i}" for i in range(30)], "size": np.linspace(1, 30, 30)})
    table.loc[4, "size"] = np.inf
    table.to_csv(tmp_path / "truth.csv", index=False)
    code = main(["probe", str(store), str(tmp_path / "truth.csv"), "--columns", "size", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "truth.csv" in err and "column 'size': infinite value(s) at row(s) 6" in err


@pytest.mark.parametrize("command", ["ask", "predict"])
def test_ask_and_predict_refuse_a_study_with_nan_features_before_loading_the_model(tmp_path, capsys, command):
    """ask printed an empty answer for such a study."""
    store = tiny_store(tmp_path / "features", ["s1", "s2"])
    _poison(store, "s1", 2)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "vlm.json").write_text("{}", encoding="utf-8")  # never read: the study is refused first
    (tmp_path / "model" / "survival.json").write_text("{}", encoding="utf-8")
    argv = [command, str(tmp_path / "model"), "--features", str(store), "--study", "s1"]
    argv += ["--question", "size?"] if command == "ask" else ["--clinical", "A 60-year-old man."]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"feature store {store}: 'tokens' holds NaN or infinite values: study 's1' (2 values)" in err
