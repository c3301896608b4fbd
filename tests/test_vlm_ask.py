"""``ctsurv ask``: a CT file or a cached study in, an answer out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vlm_fixtures import QUESTIONS, SENTENCES, cached_decoder, tiny_store

from ctsurv.cli import main
from ctsurv.features import FeatureStore
from ctsurv.instructions import first_prompt
from ctsurv.vlm import build, generate_answers, load, save

ENCODER = {"checkpoint": None, "layers": [1, 1, 1, 1], "width": 2, "seed": 0, "tokens": 49,
           "spacing": [4.0, 4.0, 6.0], "size": [64, 64, 16]}  # 64 channels, 2 x 2 = 4 in-plane tokens


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ctsurv.imaging.encode import encoder_fingerprint
    from ctsurv.imaging.merlin import build_encoder

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ask")
    encoder = build_encoder(None, ENCODER["layers"], ENCODER["width"], ENCODER["seed"])
    fingerprint = encoder_fingerprint(encoder, 49)
    torch.manual_seed(0)
    model = build(cached_decoder(), feature_dim=64, tokens=4, feature_fingerprint=fingerprint, encoder=ENCODER)
    save(model, root / "with_encoder")
    model.config.encoder = None
    save(model, root / "without_encoder")
    return root, encoder, fingerprint


def _ct(path):
    """A small HU volume: air around a water cylinder with two 'lungs'."""
    import SimpleITK as sitk

    z, y, x = np.mgrid[0:24, 0:80, 0:80]
    body = (x - 40) ** 2 + (y - 40) ** 2 < 34**2
    lungs = ((x - 26) ** 2 + (y - 40) ** 2 < 10**2) | ((x - 54) ** 2 + (y - 40) ** 2 < 10**2)
    hu = np.where(body, 40, -1000) + np.where(lungs, -860, 0) + (z % 3)
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing((3.0, 3.0, 5.0))
    sitk.WriteImage(image, str(path))
    return path


def _ask(capsys, *argv):
    code = main(["ask", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err


def test_ask_with_a_ct_file_runs_the_whole_chain(setup, tmp_path, capsys):
    from ctsurv.imaging.io import read_ct
    from ctsurv.imaging.preprocess import preprocess_volume

    root, encoder, _ = setup
    ct = _ct(tmp_path / "ct.nii.gz")
    code, answer, err = _ask(capsys, root / "with_encoder", "--image", ct, "--question", QUESTIONS[0],
                             "--clinical", SENTENCES[0], "--max-new-tokens", 6, "--device", "cpu")
    assert code == 0, err
    array = preprocess_volume(read_ct(ct), ENCODER["spacing"], ENCODER["size"]).array
    with torch.inference_mode():
        _, tokens = encoder.encode(torch.from_numpy(array)[None, None], "inplane")
    model = load(root / "with_encoder")
    expected = generate_answers(model, tokens.half().float(), [first_prompt(SENTENCES[0], QUESTIONS[0])],
                                max_new_tokens=6)
    assert answer == expected[0]


def test_ask_with_flags_when_the_model_records_no_encoder(setup, tmp_path, capsys):
    root, _, _ = setup
    ct = _ct(tmp_path / "ct.nii.gz")
    code, _, err = _ask(capsys, root / "without_encoder", "--image", ct, "--question", QUESTIONS[0])
    assert code == 1 and "records no image encoder settings" in err and "--encoder-layers" in err
    code, _, err = _ask(capsys, root / "without_encoder", "--image", ct, "--question", QUESTIONS[0],
                        "--encoder-layers", 1, 1, 1, 1, "--encoder-width", 2, "--tokens", 49,
                        "--spacing", 4, 4, 6, "--size", 64, 64, 16, "--max-new-tokens", 3)
    assert code == 0, err


def test_ask_refuses_another_encoder(setup, tmp_path, capsys):
    root, _, _ = setup
    code, _, err = _ask(capsys, root / "with_encoder", "--image", _ct(tmp_path / "ct.nii.gz"), "--question", "q",
                        "--encoder-seed", 1)
    assert code == 1 and "was trained on features with encoder fingerprint" in err and "Traceback" not in err


def test_ask_with_a_cached_study(setup, tmp_path, capsys):
    root, _, fingerprint = setup
    store_dir = tiny_store(tmp_path / "features", ["a", "b"], tokens=4, dim=64, fingerprint=fingerprint)
    code, answer, err = _ask(capsys, root / "with_encoder", "--features", store_dir, "--study", "b",
                             "--question", QUESTIONS[1], "--max-new-tokens", 5)
    assert code == 0, err
    model = load(root / "with_encoder")
    features = FeatureStore(store_dir).get(["b"], name="tokens")
    assert answer == generate_answers(model, features, [first_prompt(None, QUESTIONS[1])], max_new_tokens=5)[0]

    code, _, err = _ask(capsys, root / "with_encoder", "--features", store_dir, "--study", "zzz", "--question", "q")
    assert code == 1 and "--study zzz: not in the feature store" in err
    code, _, err = _ask(capsys, root / "with_encoder", "--features", store_dir, "--question", "q")
    assert code == 1 and "--features needs --study" in err
    other = tiny_store(tmp_path / "other", ["a"], tokens=4, dim=64, fingerprint="another-encoder")
    code, _, err = _ask(capsys, root / "with_encoder", "--features", other, "--study", "a", "--question", "q")
    assert code == 1 and "another image encoder" in err


def test_ask_from_an_empty_folder_on_a_moved_model_needs_no_flag(tmp_path, capsys, monkeypatch):
    """A LoRA model whose folder records its encoder (a checkpoint file, copied in) and decoder:
    copied elsewhere with the original checkpoint gone, asked from an empty folder."""
    import shutil

    from safetensors.torch import save_file

    from ctsurv.imaging.encode import encoder_fingerprint
    from ctsurv.imaging.merlin import CHECKPOINT_PREFIX, build_encoder
    from ctsurv.vlm.locate import encoder_record
    from vlm_fixtures import LORA

    monkeypatch.delenv("CTSURV_MODEL_PATH", raising=False)
    encoder = build_encoder(None, [1, 1, 1, 1], 2, 3)
    ckpt = tmp_path / "train" / "enc.safetensors"
    ckpt.parent.mkdir()
    save_file({CHECKPOINT_PREFIX + k: v.contiguous() for k, v in encoder.state_dict().items()}, str(ckpt))
    meta = {"fingerprint": encoder_fingerprint(encoder, 49, "fp32"), "precision": "fp32", "tokens": 49}
    record = encoder_record({**ENCODER, "checkpoint": str(ckpt)}, ENCODER["spacing"], ENCODER["size"], meta)
    shutil.copytree(cached_decoder(), tmp_path / "train" / "decoder")
    torch.manual_seed(0)
    model = build(tmp_path / "train" / "decoder", feature_dim=64, tokens=4, lora=LORA,
                  feature_fingerprint=meta["fingerprint"], encoder=record)
    save(model, tmp_path / "train" / "models" / "stage1")
    ct = _ct(tmp_path / "ct.nii.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    argv = ("--image", ct, "--question", QUESTIONS[0], "--clinical", SENTENCES[0], "--max-new-tokens", 5)
    code, first, err = _ask(capsys, tmp_path / "train" / "models" / "stage1", *argv)
    assert code == 0, err
    # the whole training tree copied elsewhere, the original gone (checkpoint included)
    shutil.copytree(tmp_path / "train", tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "train")
    code, moved, err = _ask(capsys, tmp_path / "elsewhere" / "models" / "stage1", *argv)
    assert code == 0 and moved == first, err
    # only the model folder copied to a third place: its decoder is named by hash
    shutil.copytree(tmp_path / "elsewhere" / "models" / "stage1", tmp_path / "third" / "stage1")
    shutil.rmtree(tmp_path / "elsewhere" / "decoder")
    code, _, err = _ask(capsys, tmp_path / "third" / "stage1", *argv)
    assert code == 1 and f"needs its base decoder, hash {model.config.decoder_hash}" in err and "Traceback" not in err
    # the copied-in checkpoint is what the model uses: another file there is refused by its sha256
    (tmp_path / "third" / "stage1" / "encoder" / "enc.safetensors").write_bytes(b"not it")
    shutil.copytree(cached_decoder(), tmp_path / "dec")
    code, _, err = _ask(capsys, tmp_path / "third" / "stage1", *argv, "--decoder", tmp_path / "dec")
    assert code == 1 and "(another file)" in err and "--encoder-checkpoint" in err
