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
    assert len(tok("a\n<image>\nb", add_special_tokens=False)["input_ids"]) == 5
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
