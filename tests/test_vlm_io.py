"""Saving and loading a model folder: identical logits, refusal of another decoder or encoder."""

from __future__ import annotations

import json

import pytest
import torch
from vlm_fixtures import ANSWERS, LORA, QUESTIONS, SENTENCES, cached_decoder

from ctsurv.errors import DataError
from ctsurv.vlm import build, load, save
from ctsurv.vlm.config import decoder_hash
from ctsurv.vlm.prompt import tokenize_example

torch.set_num_threads(1)
HUMAN = f"{SENTENCES[1]}\n<image>\n{QUESTIONS[2]}"


def _batch(model):
    ex = tokenize_example(model.tokenizer, HUMAN, ANSWERS[4], model.config.prompt_format, 128, image_tokens=4)
    ids = torch.tensor([ex["input_ids"]] * 2)
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 8, generator=gen), ids, torch.ones_like(ids)


def _perturb(module, seed=3):
    """Move every trainable weight off its initial value (LoRA's B starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("lora", [LORA, None], ids=["lora", "full"])
def test_save_then_load_gives_identical_logits(tmp_path, lora):
    torch.manual_seed(0)
    model = build(cached_decoder(pad_token=False), feature_dim=8, tokens=4, lora=lora, feature_fingerprint="enc-A",
                  projector="mlp2x_gelu")
    model.freeze(projector=False, decoder=False)
    features, ids, mask = _batch(model)
    before = model(features, ids, mask).logits
    _perturb(model)
    trained = model(features, ids, mask).logits
    assert (trained - before).abs().max() > 1e-3  # the adapter/weights do something
    save(model, tmp_path / "m")
    loaded = load(tmp_path / "m", feature_fingerprint="enc-A")
    assert torch.equal(loaded(features, ids, mask).logits, trained)
    assert loaded.image_token_id == model.image_token_id
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"vlm.json", "projector.safetensors", "tokenizer.json"} <= files
    assert ("adapter" in files) == (lora is not None) and ("decoder" in files) == (lora is None)
    if lora:
        assert (tmp_path / "m" / "adapter" / "adapter_config.json").exists()
        assert (tmp_path / "m" / "adapter" / "adapter_model.safetensors").exists()


def test_vlm_json_records_the_model(tmp_path):
    folder = cached_decoder()
    model = build(folder, feature_dim=8, tokens=4, lora=LORA, feature_fingerprint="enc-A",
                  encoder={"checkpoint": None, "layers": [1, 1, 1, 1], "width": 16, "seed": 0, "tokens": 49})
    save(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "vlm.json").read_text(encoding="utf-8"))
    assert meta["decoder"] == str(folder)
    assert meta["decoder_hash"] == decoder_hash(folder) and len(meta["decoder_hash"]) == 16
    assert (meta["projector"], meta["tokens"], meta["feature_dim"], meta["hidden_size"]) == ("linear", 4, 8, 32)
    assert meta["feature_fingerprint"] == "enc-A"
    assert meta["lora"] == LORA and meta["max_length"] == 128 and meta["prompt_format"] == "plain"
    assert meta["encoder"]["width"] == 16


def test_decoder_hash_tells_decoders_apart():
    assert decoder_hash(cached_decoder(seed=0)) == decoder_hash(cached_decoder(seed=0))
    assert decoder_hash(cached_decoder(seed=0)) != decoder_hash(cached_decoder(pad_token=False))


def test_load_refuses_another_feature_store(tmp_path):
    model = build(cached_decoder(), feature_dim=8, tokens=4, lora=LORA, feature_fingerprint="enc-A")
    save(model, tmp_path / "m")
    with pytest.raises(DataError, match=r"trained on features with encoder fingerprint enc-A, but the feature store "
                                         r"has enc-B"):
        load(tmp_path / "m", feature_fingerprint="enc-B")


@pytest.mark.parametrize("lora", [LORA, None], ids=["lora", "full"])
def test_load_refuses_another_decoder(tmp_path, lora):
    model = build(cached_decoder(), feature_dim=8, tokens=4, lora=lora)
    save(model, tmp_path / "m")
    other = cached_decoder(seed=1)
    with pytest.raises(DataError, match=rf"made for the decoder {cached_decoder()} \(hash \w+\), but the decoder at "
                                         rf"{other} has hash \w+"):
        load(tmp_path / "m", decoder=other)


def test_lora_model_finds_its_moved_decoder_or_names_its_hash(tmp_path, monkeypatch):
    import shutil

    monkeypatch.delenv("CTSURV_MODEL_PATH", raising=False)
    base = tmp_path / "tree" / "base"
    shutil.copytree(cached_decoder(), base)
    model = build(base, feature_dim=8, tokens=4, lora=LORA)
    save(model, tmp_path / "tree" / "models" / "m")
    location = json.loads((tmp_path / "tree" / "models" / "m" / "vlm.json").read_text())["decoder_location"]
    assert location == {"packaged": None, "absolute": str(base.resolve()), "relative": "../../base"}
    # the whole tree copied elsewhere, the original gone: found relative to the model folder
    shutil.copytree(tmp_path / "tree", tmp_path / "copy")
    shutil.rmtree(tmp_path / "tree")
    assert load(tmp_path / "copy" / "models" / "m").config.decoder_hash == model.config.decoder_hash
    # the decoder moved beside the model folder: found by its hash
    (tmp_path / "copy" / "base").rename(tmp_path / "copy" / "models" / "radllama")
    assert load(tmp_path / "copy" / "models" / "m").config.decoder_hash == model.config.decoder_hash
    # moved where nothing points: the error names the hash and the way out
    far = tmp_path / "far" / "decoders"
    far.mkdir(parents=True)
    (tmp_path / "copy" / "models" / "radllama").rename(far / "radllama")
    with pytest.raises(DataError, match=f"needs its base decoder, hash {model.config.decoder_hash}.*--decoder DIR"):
        load(tmp_path / "copy" / "models" / "m")
    monkeypatch.setenv("CTSURV_MODEL_PATH", str(far))
    assert load(tmp_path / "copy" / "models" / "m").config.decoder_hash == model.config.decoder_hash
    monkeypatch.delenv("CTSURV_MODEL_PATH")
    assert load(tmp_path / "copy" / "models" / "m", decoder=far / "radllama").config.decoder_hash == model.config.decoder_hash
    # another decoder at the recorded place is never taken
    other = tmp_path / "copy" / "base"
    shutil.copytree(cached_decoder(seed=1), other)
    with pytest.raises(DataError, match=f"{other} \\(another decoder: hash "):
        load(tmp_path / "copy" / "models" / "m")


def test_not_a_model_folder(tmp_path):
    with pytest.raises(DataError, match="is not a saved vision-language model"):
        load(tmp_path)


def test_saving_again_replaces_the_folder(tmp_path):
    """A LoRA model saved over a full one leaves no stale decoder/ behind (and no temporary folders)."""
    save(build(cached_decoder(), feature_dim=8, tokens=4, lora=None), tmp_path / "m")
    assert (tmp_path / "m" / "decoder").is_dir()
    save(build(cached_decoder(), feature_dim=8, tokens=4, lora=LORA), tmp_path / "m")
    assert not (tmp_path / "m" / "decoder").exists() and (tmp_path / "m" / "adapter").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_feature_standardiser_is_saved_loaded_and_equals_a_reparameterised_w(tmp_path):
    """feature_norm 'standardize': the fitted statistics travel with the folder (identical logits after
    load), and the model equals the raw-token model whose linear W absorbed the standardisation."""
    import numpy as np
    from safetensors.torch import load_file

    from ctsurv.vlm.io import FEATURE_NORM_FILE

    torch.manual_seed(0)
    model = build(cached_decoder(), feature_dim=8, tokens=4, lora=LORA, feature_norm="standardize")
    features, ids, mask = _batch(model)
    gen = np.random.default_rng(0)
    tokens = 5.0 + 3.0 * gen.standard_normal((30, 4, 8))  # a shared offset, as pooled CNN features have
    fitted = model.feature_norm.fit([tokens[:10], tokens[10:]])  # streamed in two chunks
    assert fitted["tokens"] == 120
    flat = tokens.reshape(-1, 8)
    assert torch.allclose(model.feature_norm.mean, torch.from_numpy(flat.mean(0)).float(), atol=1e-6)
    assert torch.allclose(model.feature_norm.std, torch.from_numpy(flat.std(0)).float(), atol=1e-5)
    x = torch.from_numpy(tokens[:2]).float()
    standardised = model(x, ids, mask).logits

    raw = build(cached_decoder(), feature_dim=8, tokens=4, lora=LORA)  # feature_norm "none": identity
    raw.decoder.load_state_dict(model.decoder.state_dict())
    m, s = model.feature_norm.mean, model.feature_norm.std
    with torch.no_grad():
        raw.projector.weight.copy_(model.projector.weight / s)
        raw.projector.bias.copy_(model.projector.bias - (model.projector.weight * (m / s)).sum(dim=1))
    assert torch.allclose(raw(x, ids, mask).logits, standardised, atol=1e-4)

    save(model, tmp_path / "m")
    assert set(load_file(str(tmp_path / "m" / FEATURE_NORM_FILE))) == {"mean", "std"}
    assert json.loads((tmp_path / "m" / "vlm.json").read_text(encoding="utf-8"))["feature_norm"] == "standardize"
    assert torch.equal(load(tmp_path / "m")(x, ids, mask).logits, standardised)

    (tmp_path / "m" / FEATURE_NORM_FILE).unlink()
    with pytest.raises(DataError, match="feature_norm.safetensors is missing"):
        load(tmp_path / "m")


def test_folders_without_feature_norm_load_with_raw_tokens(tmp_path):
    """A vlm.json written before feature_norm existed loads as 'none' (the identity)."""
    torch.manual_seed(0)
    model = build(cached_decoder(), feature_dim=8, tokens=4, lora=LORA)
    save(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "vlm.json").read_text(encoding="utf-8"))
    del meta["feature_norm"]
    (tmp_path / "m" / "vlm.json").write_text(json.dumps(meta), encoding="utf-8")
    loaded = load(tmp_path / "m")
    assert loaded.config.feature_norm == "none"
    assert torch.equal(loaded.feature_norm.mean, torch.zeros(8)) and torch.equal(loaded.feature_norm.std, torch.ones(8))


def test_a_packaged_decoder_is_recorded_by_name_and_found_where_ctsurv_is_installed(tmp_path, monkeypatch):
    import shutil

    from ctsurv import resources

    installed = {"demo-dec": tmp_path / "site-a" / "models" / "demo-dec"}
    shutil.copytree(cached_decoder(), installed["demo-dec"])
    monkeypatch.setattr(resources, "packaged_models", lambda: sorted(installed))
    real_resolve = resources.resolve_model
    monkeypatch.setattr(resources, "resolve_model", lambda spec: installed[str(spec).split(":", 1)[1]]
                        if str(spec).startswith("packaged:") else real_resolve(spec))
    monkeypatch.delenv("CTSURV_MODEL_PATH", raising=False)
    model = build(installed["demo-dec"], feature_dim=8, tokens=4, lora=LORA)
    save(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "vlm.json").read_text())["decoder_location"]["packaged"] == "packaged:demo-dec"
    # ctsurv installed somewhere else (another venv): the name still finds the decoder
    installed["demo-dec"] = tmp_path / "site-b" / "models" / "demo-dec"
    shutil.move(tmp_path / "site-a" / "models" / "demo-dec", installed["demo-dec"])
    assert load(tmp_path / "m").config.decoder_hash == model.config.decoder_hash
