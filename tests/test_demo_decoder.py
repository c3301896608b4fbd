"""The demo decoder: BPE tokenizer on reports, a small LlamaForCausalLM, LM warm-up, save_pretrained."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch

from ctsurv.errors import DataError
from ctsurv.vlm.demo_decoder import DemoDecoderSettings, build_demo_decoder, cohort_reports

torch.set_num_threads(1)

SIDES = ["left", "right"]
LOBES = ["upper", "middle", "lower"]


def _reports(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = f"{rng.uniform(1, 6):.1f} x {rng.uniform(1, 5):.1f} cm"
        out.append(
            f"FINDINGS: A spiculated mass in the {rng.choice(SIDES)} {rng.choice(LOBES)} lobe measures {size}. "
            f"{rng.choice(['No pleural effusion.', 'Small pleural effusion on the left.'])} "
            f"{rng.choice(['Mediastinal lymph nodes are not enlarged.', 'Enlarged subcarinal node, 14 mm.'])}\n"
            f"IMPRESSION: {rng.choice(['Suspicious for malignancy.', 'No acute findings.'])}"
        )
    return out


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_decoder"
    settings = DemoDecoderSettings(vocab_size=400, hidden_size=32, layers=1, heads=2, intermediate_size=64,
                                   max_positions=256, steps=40, batch_size=8, block_size=64, lr=1e-2)
    summary = build_demo_decoder(_reports(60, 0), out, settings, val_reports=_reports(10, 1))
    return out, summary


def test_tokenizer_round_trips_reports_and_has_the_special_tokens(decoder):
    from transformers import AutoTokenizer

    out, _ = decoder
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    unseen = "Temperature 98.6°F; nodule 0.7 × 0.5 cm (Ø), “new”.\n\tRight hilum: 2 nodes."
    for text in _reports(5, 9) + [unseen]:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    assert tok("a\n<image>\nb", add_special_tokens=False)["input_ids"].count(tok.convert_tokens_to_ids("<image>")) == 1
    # an answer on its own is tokenized as the same sentence inside a report (prefix space)
    inside = tok("IMPRESSION: No acute findings.", add_special_tokens=False)["input_ids"]
    alone = tok("No acute findings.", add_special_tokens=False)["input_ids"]
    assert inside[-len(alone):] == alone and tok.decode(alone) == "No acute findings."
    assert tok.convert_tokens_to_ids("<image>") in tok("x <image> y")["input_ids"]
    assert len(tok) == 400
    # BPE learned the report words: a frequent phrase is a few tokens, not one per byte
    assert len(tok("pleural effusion", add_special_tokens=False)["input_ids"]) <= 6


def test_model_loads_from_the_folder_and_learned_the_reports(decoder):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    out, summary = decoder
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert summary == json.loads((out / "warmup.json").read_text(encoding="utf-8"))
    assert summary["last_loss"] < summary["first_loss"] - 1.0
    assert summary["val_loss_after"] < summary["val_loss_before"] - 1.0
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())


def test_vlm_builds_on_it_without_growing_the_vocabulary(decoder, tmp_path):
    from ctsurv.vlm import build

    out, _ = decoder
    model = build(out, feature_dim=8, tokens=4, lora=None)
    assert model.decoder.get_input_embeddings().weight.shape[0] == 400  # <image> and <pad> were there
    assert model.config.prompt_format == "plain"


def test_cohort_reports_reads_train_and_val_only(tmp_path):
    table = pd.DataFrame({"study_id": list("abcde"), "split": ["train", "train", "val", "test", "train"],
                          "report": ["r1", "r2", "r3", "r4", None]})
    table.to_parquet(tmp_path / "cohort.parquet")
    assert cohort_reports([tmp_path / "cohort.parquet"]) == (["r1", "r2"], ["r3"])
    with pytest.raises(DataError, match="needs training reports"):
        build_demo_decoder(["only one"], tmp_path / "x")


# --------------------------------------------------------------------------- pre-training (demo-radllama's recipe)


def test_report_corpus_is_seeded_one_report_per_patient_and_mixes_kinds():
    from ctsurv.demo.corpus import kind_counts, report_corpus

    assert kind_counts(10, {"pretrain": 0.6, "lung": 0.2, "pe": 0.2}) == {"pretrain": 6, "lung": 2, "pe": 2}
    assert kind_counts(7, {"pretrain": 1.0, "lung": 0.0}) == {"pretrain": 7}
    a = report_corpus(40, seed=11)
    assert len(a) == 40 and a == report_corpus(40, seed=11)
    assert a != report_corpus(40, seed=12)
    assert sum("pulmonary angiography" in r.lower() or "ctpa" in r.lower() for r in a[-8:]) >= 1  # pe kind last
    with pytest.raises(Exception, match="shares must be"):
        kind_counts(5, {"brain": 1.0})


def _tiny_settings(**kw) -> DemoDecoderSettings:
    values = dict(vocab_size=300, hidden_size=16, layers=1, heads=2, intermediate_size=32, max_positions=128,
                  steps=12, batch_size=4, block_size=32, lr=1e-2, checkpoint_every=5, curve_points=4)
    values.update(kw)
    return DemoDecoderSettings(**values)


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    reports, val = _reports(40, 0), _reports(8, 1)
    whole = build_demo_decoder(reports, tmp_path / "whole", _tiny_settings(), val_reports=val, work=tmp_path / "w1")
    assert not (tmp_path / "w1").exists()  # the working folder goes once the model is written

    calls = {"n": 0}
    real_clip = torch.nn.utils.clip_grad_norm_

    def dying_clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt("killed")
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dying_clip)
    with pytest.raises(KeyboardInterrupt):
        build_demo_decoder(reports, tmp_path / "resumed", _tiny_settings(), val_reports=val, work=tmp_path / "w2")
    assert (tmp_path / "w2" / "state.pt").is_file() and not (tmp_path / "resumed").exists()
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    again = build_demo_decoder(reports, tmp_path / "resumed", _tiny_settings(), val_reports=val, work=tmp_path / "w2")
    assert again["resumed_at_step"] == 5 and whole["resumed_at_step"] == 0
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [c["step"] for c in again["curve"]] == [3, 6, 9, 12] and again["curve"] == whole["curve"]
    # another recipe does not silently continue someone else's checkpoint
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dying_clip)
        calls["n"] = 0
        build_demo_decoder(reports, tmp_path / "x", _tiny_settings(), val_reports=val, work=tmp_path / "w3")
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    with pytest.raises(DataError, match="belongs to another run"):
        build_demo_decoder(reports, tmp_path / "x", _tiny_settings(lr=5e-3), val_reports=val, work=tmp_path / "w3")


def test_fp16_weights_are_saved_half_and_scored(tmp_path):
    from safetensors.torch import load_file

    summary = build_demo_decoder(_reports(40, 0), tmp_path / "m", _tiny_settings(save_dtype="float16"),
                                 val_reports=_reports(8, 1))
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float16}
    assert summary["val_loss_saved"] == pytest.approx(summary["val_loss_after"], abs=0.02)
    with pytest.raises(DataError, match="save_dtype"):
        build_demo_decoder(_reports(40, 0), tmp_path / "n", _tiny_settings(save_dtype="int8"))


def test_cli_recipe_at_tiny_scale_writes_a_card_and_loads(tmp_path, capsys):
    from ctsurv.cli import main
    from ctsurv.vlm import build
    from ctsurv.vlm.demo_decoder import file_sha256

    out = tmp_path / "radllama"
    args = ["pretrain-decoder", "--out", str(out), "--reports", "120", "--heldout-reports", "20", "--vocab-size", "300",
            "--hidden-size", "16", "--layers", "1", "--heads", "2", "--intermediate-size", "32", "--max-positions", "256",
            "--steps", "6", "--batch-size", "4", "--block-size", "32", "--seed", "99"]
    assert main(args) == 0, capsys.readouterr().err
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    assert card["corpus_seed"] == 99 and card["heldout"]["seed"] == 1099 and card["corpus"]["reports"] == 120
    assert card["summary"]["settings"]["save_dtype"] == "float16" and card["machine"]["cpu_model"]
    assert set(card["sha256"]) >= {"model.safetensors", "config.json", "tokenizer.json"}
    assert all(file_sha256(out / name) == digest for name, digest in card["sha256"].items())
    assert "Held-out language-model loss" in (out / "CARD.md").read_text(encoding="utf-8")
    model = build(out, feature_dim=8, tokens=9, lora=None)  # strict load through the project's path
    assert model.decoder.config.hidden_size == 16
    # the demo's own seed is refused: its patients would be in the corpus
    assert main(args[:-2] + ["--seed", "7", "--out", str(tmp_path / "other")]) == 1
    assert "demo's seed" in capsys.readouterr().err
