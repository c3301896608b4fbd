"""Pretraining the demo encoder: the loss falls, and the saved file loads like a Merlin checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ctsurv.errors import DataError
from ctsurv.imaging.cache import write_entry
from ctsurv.imaging.merlin import CHECKPOINT_PREFIX, I3ResNet, build_encoder, load_merlin_checkpoint, read_checkpoint
from ctsurv.imaging.pretrain import (
    Conv3dFastGrad,
    PretrainSettings,
    Split,
    TargetCoding,
    augment,
    pretrain_cohort,
    read_phenotypes,
    train_encoder,
)

LAYERS, WIDTH = (1, 1, 1, 1), 4
SHAPE = (24, 24, 16)


@pytest.fixture(autouse=True)
def _pin():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_num_threads(threads)


def _volume(rng, big: bool) -> np.ndarray:
    """A dim body with a bright ball whose size is the phenotype."""
    vol = np.full(SHAPE, 0.05, np.float32)
    x, y, z = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    r = 6.0 if big else 2.5
    c = rng.uniform(9, 15, 3) * [1, 1, 0.6]
    vol[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < r * r] = 0.9
    return np.clip(vol + rng.normal(0, 0.02, SHAPE).astype(np.float32), 0, 1)


def _cohort(tmp_path, n=16):
    rng = np.random.default_rng(0)
    cache = tmp_path / "ct"
    ids = [f"p{i:02d}" for i in range(n)]
    big = [i % 2 == 0 for i in range(n)]
    for sid, b in zip(ids, big):
        write_entry(cache, sid, _volume(rng, b), key={"test": sid})
    pd.DataFrame({"study_id": ids, "status": "ok"}).to_parquet(cache / "qc.parquet")
    split = ["val" if i >= n - 4 else "train" for i in range(n)]
    reports = [("A large mass." if b else "No mass. Lungs are clear.") for b in big]
    pd.DataFrame({"study_id": ids, "split": split, "report": reports}).to_parquet(tmp_path / "cohort.parquet")
    pd.DataFrame({"study_id": ids, "mass": [int(b) for b in big], "size": [30.0 if b else 8.0 for b in big]}).to_csv(
        tmp_path / "phenotypes.csv", index=False)
    return cache


def _fake_text_encoder(texts, model_path=None, batch_size=32, device=None):
    """Stands in for MiniLM (tested in test_text_encoder.py): one fixed vector per distinct text."""
    vectors = {t: np.random.default_rng(len(t)).normal(size=12).astype(np.float32) for t in set(texts)}
    return np.stack([vectors[t] for t in texts])


@pytest.mark.parametrize("frozen_stages", [0, 2])
def test_pretraining_lowers_the_loss_and_saves_a_strictly_loadable_checkpoint(tmp_path, monkeypatch, frozen_stages):
    monkeypatch.setattr("ctsurv.text_encoder.encode_texts", _fake_text_encoder)
    cache = _cohort(tmp_path)
    settings = {"epochs": 6, "patience": 6, "lr": 3e-3, "batch_size": 4, "shift_voxels": 1, "intensity_jitter": 0.02,
                "projection_dim": 16, "seed": 0, "frozen_stages": frozen_stages}
    out = tmp_path / "encoder" / "encoder.safetensors"
    summary = pretrain_cohort(tmp_path / "cohort.parquet", cache / "qc.parquet", tmp_path / "phenotypes.csv", out,
                              encoder={"layers": LAYERS, "width": WIDTH, "seed": 0}, settings=settings,
                              summary_out=tmp_path / "encoder" / "pretrain.json", progress=False)
    history = summary["history"]
    assert summary["n_train"] == 12 and summary["n_val"] == 4
    assert summary["phenotypes"] == {"mass": "binary", "size": "numeric"}
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert min(h["val_loss"] for h in history) < history[0]["val_loss"]
    assert json.loads((tmp_path / "encoder" / "pretrain.json").read_text(encoding="utf-8"))["best_epoch"] == summary["best_epoch"]

    # Merlin's layout: every encoder key under the prefix, heads that the loader drops.
    keys = read_checkpoint(out).keys()
    assert any(k.startswith(CHECKPOINT_PREFIX + "classifier.") for k in keys)
    assert any(k.startswith(CHECKPOINT_PREFIX + "contrastive_head.") for k in keys)
    assert any(k.startswith("encode_text.") for k in keys)
    # The real-checkpoint path: strict, weights only, into the encoder class.
    model = build_encoder(out, LAYERS, WIDTH)
    random = build_encoder(None, LAYERS, WIDTH, seed=0)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, random.state_dict()[k])]
    # frozen stages keep the seeded random weights; the others trained
    assert ("conv1.weight" in changed) == (frozen_stages == 0)
    assert ("layer1.0.conv2.weight" in changed) == (frozen_stages < 2)
    assert "layer4.0.conv2.weight" in changed and len(changed) > 10
    with pytest.raises(DataError, match="does not match the encoder"):
        load_merlin_checkpoint(I3ResNet(LAYERS, WIDTH * 2), out)


def test_binary_and_numeric_targets_are_coded():
    frame = pd.DataFrame({"a": [0, 1, 0, 0], "b": [1.0, 2.0, 3.0, 4.0]})
    coding = TargetCoding.fit(frame)
    assert coding.binary == [True, False]
    assert coding.pos_weight[0] == pytest.approx(3.0)
    coded = coding.encode(frame)
    assert coded[:, 0].tolist() == [0, 1, 0, 0]
    assert coded[:, 1].mean() == pytest.approx(0.0, abs=1e-6) and coded[:, 1].std() == pytest.approx(1.0, rel=1e-5)


def test_phenotype_table_errors_name_the_row_and_study(tmp_path):
    path = tmp_path / "ph.csv"
    pd.DataFrame({"study_id": ["a", "b"], "mass": ["1", "yes"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 3, column 'mass'"):
        read_phenotypes(path, ["a", "b"])
    pd.DataFrame({"study_id": ["a"], "mass": [1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="study 'b'"):
        read_phenotypes(path, ["a", "b"])


def test_augmentation_keeps_orientation_and_range():
    gen = torch.Generator().manual_seed(0)
    vol = torch.zeros(2, 1, 12, 12, 8)
    vol[:, :, 2:4, 5:7, 3:5] = 1.0  # an off-centre block, to see a flip if there were one
    out = augment(vol, gen, shift_voxels=1, jitter=0.05)
    assert out.min() >= 0 and out.max() <= 1
    for v in out:
        xs = torch.nonzero(v[0] > 0.5)[:, 0]
        assert xs.max() <= 4  # still at the low-x side: shifted by at most 1, never mirrored


def test_train_encoder_without_validation_keeps_the_last_epoch():
    rng = np.random.default_rng(0)
    vols = {f"s{i}": _volume(rng, i % 2 == 0) for i in range(6)}
    split = Split(list(vols), np.array([[i % 2] for i in range(6)], np.float32), rng.normal(size=(6, 8)).astype(np.float32))
    coding = TargetCoding(["m"], [True], [0.0], [1.0], [1.0])
    settings = PretrainSettings(epochs=2, batch_size=3, projection_dim=8, shift_voxels=0, intensity_jitter=0.0)
    model, heads, summary = train_encoder(split, Split([], np.zeros((0, 1), np.float32), np.zeros((0, 8), np.float32)),
                                          vols.__getitem__, coding, LAYERS, WIDTH, 0, settings, progress=False)
    assert summary["epochs_run"] == 2 and "val_loss" not in summary["history"][0]
    assert not model.training


@pytest.mark.parametrize("kernel, stride, padding", [
    ((3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((3, 3, 3), (2, 2, 2), (1, 1, 1)),
    ((1, 1, 1), (2, 2, 2), (0, 0, 0)),
    ((3, 7, 7), (1, 2, 2), (1, 3, 3)),
])
def test_fast_weight_gradients_equal_autograd(kernel, stride, padding):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 9, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, *kernel, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.conv3d(x, w, stride=stride, padding=padding)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    y2 = Conv3dFastGrad.apply(x, w, stride, padding)
    assert torch.equal(y, y2)
    gx2, gw2 = torch.autograd.grad(y2, (x, w), g)
    assert torch.allclose(gx2, gx, atol=1e-10) and torch.allclose(gw2, gw, atol=1e-10)
