"""A damaged model folder is a clear error in every command that loads one (issue 23 item 2).

Each kind of damage (a file cut short, a file or the adapter deleted) is applied to a copy of
a stage-1 folder and of a stage-2 folder, and every reader is run on it: ``ctsurv ask``,
``ctsurv predict``, ``ctsurv.vlm.load`` (stage-1 evaluation), stage 2 building on a stage-1
folder.  Before the check these were tracebacks from safetensors, peft or tokenizers.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from test_vlm_predict import world  # noqa: F401 - the stage-2 folder fixture
from vlm_fixtures import SENTENCES

from ctsurv.cli import main
from ctsurv.errors import DataError

STAGE1_DAMAGE = {
    "projector cut short": ("projector.safetensors", "cut", "projector.safetensors is cut short"),
    "adapter cut short": ("adapter/adapter_model.safetensors", "cut", "adapter/adapter_model.safetensors is cut short"),
    "adapter deleted": ("adapter", "delete", "adapter/ (the LoRA adapter vlm.json names) is missing"),
    "adapter config cut short": ("adapter/adapter_config.json", "cut", "adapter/adapter_config.json is not valid JSON"),
    "tokenizer.json deleted": ("tokenizer.json", "delete", "tokenizer.json is missing"),
    "tokenizer.json cut short": ("tokenizer.json", "cut", "tokenizer.json is not valid JSON"),
    "feature norm cut short": ("feature_norm.safetensors", "cut", "feature_norm.safetensors is cut short"),
}
STAGE2_DAMAGE = {**{k: v for k, v in STAGE1_DAMAGE.items() if k != "feature norm cut short"},  # saved without it
                 "branch cut short": ("survival.safetensors", "cut", "survival.safetensors is cut short"),
                 "branch settings cut short": ("survival.json", "cut", "survival.json is not valid JSON")}


def damaged_copy(folder, tmp_path, damage):
    name, how, _ = damage
    copy = tmp_path / f"damaged_{folder.name}"
    shutil.copytree(folder, copy)
    target = copy / name
    if how == "delete":
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    else:
        data = target.read_bytes()
        target.write_bytes(data[: len(data) * 2 // 3])
    return copy


def assert_clear(message, folder, damage, stage):
    assert f"model folder {folder} is damaged or incomplete" in message, message
    assert damage[2] in message, message
    assert f"rule train_stage{stage}" in message and "Traceback" not in message


@pytest.fixture(scope="module")
def stage1(world):  # noqa: F811
    """A stage-1 folder (LoRA, standardised tokens) on the tiny decoder, and its feature store."""
    from ctsurv.vlm import build, save

    torch.manual_seed(0)
    model = build(world["tmp"] / "run" / "decoder", 8, 4, feature_norm="standardize",
                  lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
                  feature_fingerprint="tiny-encoder")
    folder = world["tmp"] / "stage1"
    save(model, folder)
    return folder


@pytest.mark.parametrize("kind", list(STAGE1_DAMAGE))
def test_ask_and_load_and_stage2_refuse_a_damaged_stage1_folder(stage1, world, tmp_path, capsys, kind):  # noqa: F811
    from ctsurv.vlm import load
    from ctsurv.vlm.stage2_train import Stage2Settings, build_stage2_model

    damage = STAGE1_DAMAGE[kind]
    copy = damaged_copy(stage1, tmp_path, damage)
    code = main(["ask", str(copy), "--features", str(world["store"]), "--study", "s00", "--question", "size?",
                 "--device", "cpu"])
    assert code == 1
    assert_clear(capsys.readouterr().err, copy, damage, 1)
    with pytest.raises(DataError) as err:  # stage-1 evaluation and the Python API
        load(copy)
    assert_clear(str(err.value), copy, damage, 1)
    with pytest.raises(DataError) as err:  # train_stage2 with pre-training reads the stage-1 folder
        build_stage2_model("deepsurv", "with", Stage2Settings(), stage1_dir=copy, feature_dim=8, tokens=4,
                           feature_fingerprint="tiny-encoder")
    assert_clear(str(err.value), copy, damage, 1)


@pytest.mark.parametrize("kind", list(STAGE2_DAMAGE))
def test_predict_refuses_a_damaged_stage2_folder(world, tmp_path, capsys, kind):  # noqa: F811
    from ctsurv.vlm.stage2_io import load_stage2

    damage = STAGE2_DAMAGE[kind]
    copy = damaged_copy(world["folder"], tmp_path, damage)
    code = main(["predict", str(copy), "--features", str(world["store"]), "--study", "s13", "--clinical", SENTENCES[0],
                 "--device", "cpu"])
    assert code == 1
    assert_clear(capsys.readouterr().err, copy, damage, 2)
    with pytest.raises(DataError) as err:  # rule predict_stage2
        load_stage2(copy)
    assert_clear(str(err.value), copy, damage, 2)


def test_an_intact_folder_passes_the_check(stage1, world):  # noqa: F811
    from ctsurv.vlm.folder_check import check_model_folder

    check_model_folder(stage1)
    check_model_folder(world["folder"], extra=("survival.json", "survival.safetensors"))


@pytest.mark.parametrize("command", ["ask", "predict"])
def test_device_cuda_without_a_gpu_is_a_clear_error(world, capsys, command, monkeypatch):  # noqa: F811
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [command, str(world["folder"]), "--features", str(world["store"]), "--study", "s13", "--device", "cuda"]
    argv += ["--question", "size?"] if command == "ask" else ["--clinical", SENTENCES[0]]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--device: cuda: no CUDA GPU is available on this machine" in err and "--device cpu" in err


@pytest.mark.parametrize("arch", ["BertForMaskedLM", "BertModel"])
def test_a_bert_folder_given_as_the_decoder_is_not_a_causal_language_model(tmp_path, arch):
    """It failed with 'the decoder's tokenizer has no EOS token' (transformers maps BERT to BertLMHeadModel)."""
    import transformers

    from ctsurv.vlm import build

    config = transformers.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                     intermediate_size=8)
    getattr(transformers, arch)(config).save_pretrained(tmp_path / "bert")
    with pytest.raises(DataError, match=r"holds a 'bert' model, which is not a causal language model"):
        build(tmp_path / "bert", feature_dim=8, tokens=4)
