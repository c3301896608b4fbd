"""Sharded training (FSDP) writes the whole best model, gathered onto the main process.

The two-process test runs stage 1 with torch's and Accelerate's real FSDP2 on CPU tensors
(gloo; see tests/vlm_fsdp_worker.py for how the accelerator is set up without a GPU) and
with DDP, and checks that each saved model holds exactly the trained weights, and that
FSDP and DDP trained the same weights.  The GPU path is benchmarks/bench_stage1_gpu.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from vlm_fixtures import LORA, QUESTIONS, cached_decoder, tiny_decoder, tiny_records, tiny_store

from ctsurv.errors import ConfigError, DataError
from ctsurv.vlm import build, load, save
from ctsurv.vlm.trainer import TrainSettings, accepts_state_dict, train

torch.set_num_threads(1)
HERE = Path(__file__).parent
STUDIES = [f"s{i}" for i in range(8)]


def _model(lora):
    torch.manual_seed(0)
    model = build(cached_decoder(), feature_dim=8, tokens=4, lora=lora, feature_fingerprint="enc")
    model.freeze(projector=False, decoder=False)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def _logits(model):
    ids = torch.tensor([[model.tokenizer.bos_token_id or 1, model.image_token_id, 5, 6, 7]])
    return model(torch.ones(1, 4, 8), ids, torch.ones_like(ids)).logits


@pytest.mark.parametrize("lora", [LORA, None], ids=["lora", "full"])
def test_save_from_a_given_state_dict_equals_save_from_the_model(tmp_path, lora):
    model = _model(lora)
    save(model, tmp_path / "own")
    # what the trainer passes after gathering: the whole model's state dict, on the CPU
    save(model, tmp_path / "given", state_dict={k: v.clone() for k, v in model.state_dict().items()})
    a, b = load(tmp_path / "own"), load(tmp_path / "given")
    assert torch.equal(_logits(a), _logits(b)) and torch.equal(_logits(b), _logits(model))
    sub = "adapter/adapter_model.safetensors" if lora else "decoder/model.safetensors"
    for name in ("projector.safetensors", sub):
        x, y = load_file(str(tmp_path / "own" / name)), load_file(str(tmp_path / "given" / name))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_save_refuses_a_shard_or_missing_weights(tmp_path):
    model = _model(LORA)
    state = dict(model.state_dict())
    state["projector.weight"] = state["projector.weight"][:16]  # what one of two processes holds
    with pytest.raises(DataError, match=r"shape \(16, 8\), the model \(32, 8\).*a shard"):
        save(model, tmp_path / "m", state_dict=state)
    with pytest.raises(DataError, match="missing"):
        save(model, tmp_path / "m", state_dict={k: v for k, v in model.state_dict().items() if not k.startswith("projector.")})
    assert not (tmp_path / "m").exists()


def test_accepts_state_dict():
    def old(model, folder): ...
    def new(model, folder, state_dict=None): ...
    def loose(model, folder, **kw): ...
    assert not accepts_state_dict(old) and accepts_state_dict(new) and accepts_state_dict(loose)
    assert accepts_state_dict(save)


def test_sharded_training_refuses_a_save_function_without_state_dict_before_training(tmp_path, monkeypatch):
    import ctsurv.vlm.trainer as trainer

    monkeypatch.setattr(trainer, "is_sharded", lambda acc: True)
    calls = []

    def loss_fn(m, batch):
        calls.append(1)
        return {"loss": m(batch["x"]).sum()}

    def save_fn(m, folder):
        raise AssertionError("not reached")

    settings = TrainSettings(max_steps=2, batch_size=2, precision="fp32", gradient_checkpointing=False, progress=False)
    data = [{"x": torch.ones(3)} for _ in range(4)]
    with pytest.raises(ConfigError, match=r"shards the weights.*'test_sharded.*save_fn' takes no state_dict.*DDP"):
        train(torch.nn.Linear(3, 1), data, None, loss_fn, settings, tmp_path / "run",
              lambda items: {"x": torch.stack([i["x"] for i in items])}, save_fn)
    assert not calls


def _torchrun(mode, inst, store, decoder, out):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "vlm_fsdp_worker.py"), mode, str(inst), str(store), str(decoder), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


@pytest.mark.slow
def test_fsdp_and_ddp_save_the_trained_weights_whole(tmp_path):
    decoder = tiny_decoder(tmp_path / "decoder")
    store = tiny_store(tmp_path / "features", STUDIES, tokens=4, dim=8)
    inst = tmp_path / "instructions"
    inst.mkdir()
    (inst / "train.json").write_text(json.dumps(tiny_records(STUDIES)), encoding="utf-8")
    # 6 validation conversations in batches of 2 over 2 processes: one process evaluates one
    # batch more than the other (the forward passes must still pair up, or FSDP/DDP hang)
    (inst / "val.json").write_text(json.dumps(tiny_records(STUDIES[:6], question=QUESTIONS[1])), encoding="utf-8")
    for mode in ("ddp", "fsdp"):
        _torchrun(mode, inst, store, decoder, tmp_path / mode)
    for kind in ("lora", "full"):
        refs = {}
        for mode in ("ddp", "fsdp"):
            ref = load_file(str(tmp_path / mode / f"{kind}.reference.safetensors"))
            model = load(tmp_path / mode / kind)
            own = model.state_dict()
            assert own.keys() == ref.keys()
            # the saved model is exactly the trained one: every weight whole and equal
            assert all(torch.equal(own[k], ref[k]) for k in ref), [k for k in ref if not torch.equal(own[k], ref[k])][:3]
            assert model.projector.weight.shape == (32, 8)
            refs[mode] = ref
        # FSDP trains what DDP trains (the same gradients, averaged over the same processes)
        diff = max((refs["ddp"][k] - refs["fsdp"][k]).abs().max().item() for k in refs["ddp"])
        assert diff < 1e-5, (kind, diff)
        torch.manual_seed(0)  # as stage 1 does before building the model
        start = build(decoder, feature_dim=8, tokens=4, lora=LORA if kind == "lora" else None).state_dict()
        moved = [k for k in refs["ddp"] if k in start and not torch.equal(start[k], refs["ddp"][k])]
        assert any(k.startswith("projector.") for k in moved) and any("decoder." in k for k in moved)
