"""Stage 1 on two CPU processes (gloo) with DDP or FSDP2, for tests/test_vlm_fsdp.py.

``torchrun --standalone --nproc_per_node 2 vlm_fsdp_worker.py MODE INSTRUCTIONS STORE DECODER OUT``
trains stage 1 twice (LoRA, then full fine-tuning) into ``OUT/lora`` and ``OUT/full``, and
writes ``OUT/<kind>.reference.safetensors``: the trained weights gathered by torch's own
``get_model_state_dict`` (the reference the saved model is compared with).

Accelerate sets up FSDP only on accelerators (``cpu=True`` gives MULTI_CPU), so MODE
``fsdp`` builds the accelerator as ``accelerate launch`` with config/accelerate/fsdp.yaml
would on GPUs, FSDP2 with the same plugin settings, and sets the distributed type itself:
everything after that (prepare, sharded parameters, ``get_state_dict``, ``save_state``) is
Accelerate's and torch's real FSDP2 code, running on CPU tensors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)


def fsdp_accelerator(settings):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    AcceleratorState._reset_state()  # keeps the process group (PartialState)
    GradientState._reset_state()
    accum = settings.accumulation(PartialState(cpu=True).num_processes)
    acc = Accelerator(cpu=True, mixed_precision="no", gradient_accumulation_steps=accum)
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
        state_dict_type="SHARDED_STATE_DICT", reshard_after_forward=True)
    acc.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    assert acc.is_fsdp2
    return acc, accum  # as trainer._make_accelerator: the accelerator and the accumulation steps


def main(mode: str, instructions: str, store: str, decoder: str, out: str) -> None:
    from safetensors.torch import save_file

    from accelerate import Accelerator
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from ctsurv.vlm import stage1, trainer

    if mode == "fsdp":
        trainer._make_accelerator = fsdp_accelerator
    prepared = {}
    original_prepare = Accelerator.prepare

    def prepare_and_keep(self, *objs, **kwargs):  # the prepared model, to gather its final weights
        result = original_prepare(self, *objs, **kwargs)
        prepared["model"] = result[0]
        return result

    Accelerator.prepare = prepare_and_keep
    for kind in ("lora", "full"):
        vlm = {"decoder": None, "projector": "linear", "prompt_format": None, "weights": "fp32", "stage1": {
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "full_finetune": kind == "full", "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 0,
            "batch_size": 2, "grad_accum": 1, "epochs": None, "max_steps": 4, "eval_every": 4,
            "checkpoint_every": 2, "patience": None, "max_grad_norm": 1.0, "precision": "fp32",
            "gradient_checkpointing": False, "seed": 0, "progress": False}}
        result = stage1.train_stage1([stage1.Stage1Data(Path(instructions), Path(store))], decoder,
                                     Path(out) / kind, vlm)
        # no validation improvement after step 4 is possible (one evaluation): best = last
        assert result.best_step == 4, result
        full = get_model_state_dict(prepared["model"], options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if torch.distributed.get_rank() == 0:
            save_file({k: v.contiguous() for k, v in full.items()}, str(Path(out) / f"{kind}.reference.safetensors"))
        torch.distributed.barrier()


if __name__ == "__main__":
    main(*sys.argv[1:6])
