"""``ctsurv train-stage1``: stage-1 visual instruction tuning outside the workflow."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..resources import config_schema, default_config
from .checks import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-stage1",
        help="train W and the decoder on instruction JSON + an image feature store (stage 1)",
        description="Stage 1 of the CT vision-language model: the projection W and the decoder (LoRA by default) "
        "on LLaVA-style conversations, from cached visual tokens. Re-running the same command after an "
        "interruption resumes from the last checkpoint in OUT.train/; a run whose settings changed since is "
        "refused unless --restart. Several GPUs: accelerate launch --num_processes N -m ctsurv train-stage1 ...",
    )
    parser.add_argument("--data", nargs=2, action="append", required=True, type=Path,
                        metavar=("INSTRUCTIONS_DIR", "FEATURE_STORE"),
                        help="a folder with train.json and val.json, and its image feature store; repeatable")
    parser.add_argument("--decoder", type=Path, required=True,
                        help="local Hugging Face causal LM folder, or packaged:NAME (e.g. packaged:demo-radllama)")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (training state in OUT.train/)")
    parser.add_argument("--config", type=Path, help="ctsurv config file whose 'vlm' section is used (default: config/config.yaml here, else the demo's)")
    parser.add_argument("--vlm-json", type=Path, help=argparse.SUPPRESS)  # the vlm section, from the workflow
    parser.add_argument("--imaging-json", type=Path, help=argparse.SUPPRESS)  # the encoder to record, from the workflow
    parser.add_argument("--max-steps", type=positive_int, help="override vlm.stage1.max_steps")
    parser.add_argument("--restart", action="store_true", help="delete an interrupted run's checkpoints and start over")
    parser.add_argument("--zero-images", action="store_true", help="train on zeroed visual tokens (the no-image control)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_yaml, validate_config
    from ..vlm.stage1 import Stage1Data, train_stage1, training_dir
    from ..resources import resolve_model
    from .checks import check_inputs, check_outputs, check_replaceable

    args.decoder = resolve_model(str(args.decoder))
    folders = [("--decoder", args.decoder, "decoder folder", "config.json",
                "pass a local Hugging Face causal LM folder (with config.json), e.g. the demo_decoder rule's output")]
    for instructions, features in args.data:
        folders += [("--data", instructions, "instruction folder", "train.json",
                     "write it with the workflow's build_instructions rule (it holds train.json and val.json)"),
                    ("--data", features, "feature store", "index.parquet",
                     "write it with the workflow's encode_images rule or ctsurv encode-images")]
    check_inputs(files=[("--config", args.config, "config file"), ("--vlm-json", args.vlm_json, "vlm settings file")],
                 folders=folders)
    seen: dict[str, Path] = {}
    for instructions, _ in args.data:
        again = seen.setdefault(os.path.realpath(instructions), instructions)
        if again is not instructions:
            from ..errors import CtsurvError

            raise CtsurvError(f"--data {instructions}: this instruction folder is given twice (also as {again}); its "
                              "conversations would be trained on twice. Give each --data pair once")
    inputs = [args.decoder, args.config, args.vlm_json, *(p for pair in args.data for p in pair)]
    check_outputs(inputs=inputs, folders=[("--out", args.out), ("--out", training_dir(args.out))])
    check_replaceable("--out", args.out, "vlm.json", "model folder")

    from ..vlm.locate import imaging_params

    if args.vlm_json:
        vlm = json.loads(args.vlm_json.read_text(encoding="utf-8"))
        imaging = json.loads(args.imaging_json.read_text(encoding="utf-8")) if args.imaging_json else None
    else:
        config = validate_config(load_yaml(args.config or default_config()), schema=config_schema())
        vlm = config["vlm"]
        # the model folder records the encoder that made the stores (checked against their fingerprint)
        imaging = imaging_params(config["imaging"])
    if args.max_steps:
        vlm["stage1"]["max_steps"] = args.max_steps
    data = [Stage1Data(instructions, features) for instructions, features in args.data]
    result = train_stage1(data, args.decoder, args.out, vlm, restart=args.restart, zero_images=args.zero_images,
                          imaging=imaging)
    print(f"stage 1: {result.steps} steps, best validation loss {result.best_val_loss} at step {result.best_step} "
          f"-> {args.out}")
    return 0
