"""The demo-merlin recipe (ctsurv.imaging.dense_pretrain) at tiny scale: label maps on the image
grid, cell fractions at the layer-4 grid, training that resumes where it stopped, weights that the
strict Merlin loader reads, and ``ctsurv pretrain-encoder`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctsurv.cli import main as cli_main
from ctsurv.errors import DataError
from ctsurv.hashing import file_sha256
from ctsurv.imaging.dense_pretrain import (
    FINDINGS,
    Corpus,
    DenseSettings,
    build_corpus,
    cell_fractions,
    layer4_grid,
    preprocess_labels,
    train_dense,
)
from ctsurv.imaging.io import CtVolume
from ctsurv.imaging.merlin import CHECKPOINT_PREFIX, build_encoder, read_checkpoint
from ctsurv.imaging.preprocess import preprocess_volume


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size", [(96, 96, 64), (32, 32, 16), (40, 36, 20)])
def test_layer4_grid_is_the_encoders(size):
    model = build_encoder(None, [1, 1, 1, 1], 2, 0)
    with torch.no_grad():
        fmap = model(torch.zeros(1, 1, *size))
    assert tuple(fmap.shape[2:]) == layer4_grid(size)


def test_label_maps_land_where_the_image_does():
    """A block painted in both a CT and its label map, stored in LPS order with anisotropic
    spacing: after the chain the label block covers the bright image block (nearest neighbour)."""
    shape_zyx = (20, 30, 40)
    labels = np.zeros(shape_zyx, np.uint8)
    labels[5:12, 8:20, 10:30] = 11  # tumour
    hu = np.where(labels > 0, 1000, -1000).astype(np.int16)
    affine = np.diag([-2.0, -2.5, 3.0, 1.0])  # LPS storage: x and y flipped with respect to RAS
    affine[:3, 3] = [40.0, 30.0, -10.0]
    spacing, size = (4.0, 4.0, 6.0), (24, 24, 16)
    image = preprocess_volume(CtVolume(hu, affine), spacing, size).array
    mapped = preprocess_labels(CtVolume(labels, affine), spacing, size)
    assert mapped.dtype == np.uint8 and mapped.shape == size
    assert set(np.unique(mapped)) == {0, 11}
    bright, inside = image > 0.5, mapped == 11
    assert (bright & inside).sum() / (bright | inside).sum() > 0.85
    # the fractions over the layer-4 cells are the block's share of each cell
    frac = cell_fractions(mapped, layer4_grid(size))
    assert frac.shape == (len(FINDINGS), *layer4_grid(size))
    tumour = list(FINDINGS).index("tumor")
    assert frac[tumour].mean() == pytest.approx(inside.mean(), rel=1e-5)
    assert np.delete(frac, tumour, axis=0).max() == 0.0


def _corpus(tmp_path):
    return build_corpus(tmp_path / "corpus", 8, 11, [8.0, 8.0, 12.0], [32, 32, 16], workers=1, val_fraction=0.25,
                        progress=False)


def test_training_resumes_as_if_never_stopped_and_exports_a_strict_merlin_checkpoint(tmp_path):
    folder = _corpus(tmp_path)
    corpus = Corpus.open(folder)
    assert corpus.volumes.shape == (8, 32, 32, 16) and corpus.volumes.dtype == np.uint16
    assert corpus.cells.shape == (8, len(FINDINGS), *layer4_grid((32, 32, 16)))
    assert set(corpus.table["split"]) == {"train", "val"}
    assert build_corpus(folder, 8, 11, [8.0, 8.0, 12.0], [32, 32, 16], workers=1, val_fraction=0.25) == folder  # done: kept

    base = dict(width=2, epochs=2, batch_size=2, precision="fp32", intensity_jitter=0.05, shift_voxels=2)
    whole = train_dense(folder, tmp_path / "whole", DenseSettings(**base), progress=False)
    stopped = train_dense(folder, tmp_path / "resumed", DenseSettings(**base, max_minutes=0.0), progress=False)
    assert len(whole["history"]) == 2 and len(stopped["history"]) == 1
    resumed = train_dense(folder, tmp_path / "resumed", DenseSettings(**base), resume=True, progress=False)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    a, b = (read_checkpoint(tmp_path / run / "latest.safetensors") for run in ("whole", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(k.startswith(CHECKPOINT_PREFIX) for k in a)
    assert a[CHECKPOINT_PREFIX + "conv1.weight"].dtype == torch.float16
    assert (tmp_path / "whole" / "history.csv").read_text().count("\n") == 3

    model = build_encoder(tmp_path / "whole" / "latest.safetensors", [1, 1, 1, 1], 2)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with pytest.raises(DataError, match="does not match the encoder"):
        build_encoder(tmp_path / "whole" / "latest.safetensors", [1, 1, 1, 1], 4)
    with pytest.raises(Exception, match="other settings"):
        train_dense(folder, tmp_path / "whole", DenseSettings(**{**base, "lr": 1e-3}), resume=True, progress=False)


def test_pretrain_encoder_command_makes_a_model_folder_with_its_card(tmp_path, capsys):
    out = tmp_path / "demo-merlin"
    args = ["pretrain-encoder", "--out", str(out), "--corpus-size", "6", "--heldout-size", "12", "--epochs", "1",
            "--width", "2", "--batch-size", "3", "--workers", "1", "--threads", "1", "--corpus-seed", "99"]
    assert cli_main(args) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["corpus_seed"] == 99 and card["heldout_seed"] == 100 and card["corpus_size"] == 6
    assert card["files"]["demo-merlin.safetensors"] == file_sha256(out / "demo-merlin.safetensors")
    assert card["architecture"]["width"] == 2 and card["epochs_run"] == 1
    assert card["fp16_check"]["studies"] >= 1 and card["heldout_probes"]["heldout_size"] == 12
    assert {"demo-merlin pooled", "random weights pooled"} <= set(card["heldout_probes"]["feature_sets"])
    assert "CPUs visible" in card["cpu"] and card["seconds"]["train_wall"] > 0
    assert "seed 99" in (out / "CARD.md").read_text() and (out / "curve.png").stat().st_size > 1000
    build_encoder(out, [1, 1, 1, 1], 2)  # the folder reads like a checkpoint file, strictly

    # --finish makes the folder again from the last finished epoch, training no further
    weights = read_checkpoint(out / "demo-merlin.safetensors")
    assert cli_main(args[:args.index("--epochs")] + ["--epochs", "3"] + args[args.index("--epochs") + 2:] + ["--finish"]) == 1
    assert "other settings" in capsys.readouterr().err
    assert cli_main(args + ["--finish"]) == 0
    again = read_checkpoint(out / "demo-merlin.safetensors")
    assert again.keys() == weights.keys() and all(torch.equal(again[k], weights[k]) for k in weights)

    assert cli_main(["pretrain-encoder", "--out", str(tmp_path / "x"), "--corpus-seed", "7"]) == 1
    assert "demo.seed" in capsys.readouterr().err


def test_the_corpus_mix_enriches_findings_and_the_default_mix_is_the_demos():
    from ctsurv.demo.cohort import plan_dataset, plan_pretrain
    from ctsurv.demo.findings import ENCODER_CORPUS_MIX, PretrainMix

    default, same, rich = plan_pretrain(150, 3), plan_pretrain(150, 3, PretrainMix()), plan_pretrain(150, 3, ENCODER_CORPUS_MIX)
    assert [(p.study_id, p.report, p.render_seed) for p in default] == [(p.study_id, p.report, p.render_seed) for p in same]

    def count(plans, key):
        return sum(bool(p.truth[key]) for p in plans)

    assert count(rich, "tumor_size_mm") > 1.4 * count(default, "tumor_size_mm")
    assert count(rich, "bone_lesions") > 2 * count(default, "bone_lesions")
    assert count(rich, "metastasis_sites") > 2 * count(default, "metastasis_sites")
    with pytest.raises(ValueError, match="pretrain kind only"):
        plan_dataset("lung", 5, 3, ENCODER_CORPUS_MIX)
