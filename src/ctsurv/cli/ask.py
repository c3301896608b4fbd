"""``ctsurv ask``: one question about one CT, answered by a saved vision-language model.

Two sources of visual tokens:

* ``--image CT_FILE``: the file is read, run through Merlin's preprocessing and the image
  encoder, end to end.  The encoder (checkpoint, layers, width, seed, tokens) and the
  preprocessing grid (spacing, size) come from the model folder's ``vlm.json`` when the
  training recorded them, else from the ``--encoder-*``/``--spacing``/``--size`` flags
  (which also override the recorded ones).  The encoder's fingerprint must match the one
  the model was trained on.
* ``--features STORE --study ID``: a study already in a feature store.

The prompt is built as in training: clinical sentence, ``<image>``, question.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .checks import non_negative_int, positive_float, positive_int

MODEL_HOW = "pass the folder written by ctsurv train-stage1 (rule train_stage1) or ctsurv.vlm.save"
STORE_HOW = "write it with the workflow's encode_images rule or ctsurv encode-images"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ask",
        help="answer a question about one CT with a trained vision-language model",
        description="Answer QUESTION about a CT file (--image) or a cached study (--features STORE --study ID) "
        "with the model saved in MODEL (greedy decoding).  Prints the answer.",
    )
    p.add_argument("model", type=Path, help="model folder (ctsurv.vlm.save / train_stage1 output)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="CT file (NIfTI, NRRD, MHA) or DICOM series folder")
    src.add_argument("--features", type=Path, help="feature store folder (encode_images output)")
    p.add_argument("--study", help="study id in --features")
    p.add_argument("--question", required=True, help="the question")
    p.add_argument("--clinical", default=None, help="clinical sentence placed before the image (as in training)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="longest answer in tokens (default 64)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--decoder", type=Path, default=None, help="base decoder folder, if it moved (LoRA models)")
    enc = p.add_argument_group("image encoder and preprocessing (--image; default: as recorded in vlm.json)")
    enc.add_argument("--encoder-checkpoint", type=Path, default=None, help="encoder checkpoint (.pt / .safetensors)")
    enc.add_argument("--encoder-layers", type=positive_int, nargs=4, default=None, help="blocks per stage")
    enc.add_argument("--encoder-width", type=positive_int, default=None, help="stem channels")
    enc.add_argument("--encoder-seed", type=non_negative_int, default=None, help="seed of a random encoder (no checkpoint)")
    enc.add_argument("--tokens", type=int, choices=[49, 490], default=None, help="49 (mean over z) or 490")
    enc.add_argument("--spacing", type=positive_float, nargs=3, metavar=("X", "Y", "Z"), default=None, help="mm")
    enc.add_argument("--size", type=positive_int, nargs=3, metavar=("X", "Y", "Z"), default=None, help="voxels")
    enc.add_argument("--no-ct-check", action="store_true", help="accept images whose values do not look like CT HU")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import DataError
    from ..instructions import first_prompt
    from ..vlm import generate_answers, load
    from .checks import check_inputs

    if args.features is not None and not args.study:
        raise DataError("--features needs --study ID (the study to answer about)")
    if args.image is not None and args.study:
        raise DataError("--study goes with --features; with --image the CT file is the study")
    # every input before the model is loaded (minutes for a 7B decoder)
    check_inputs(
        files=[("--encoder-checkpoint", args.encoder_checkpoint, "encoder checkpoint")],
        folders=[("MODEL", args.model, "model folder", "vlm.json", MODEL_HOW),
                 ("--features", args.features, "feature store", "index.parquet", STORE_HOW),
                 ("--decoder", args.decoder, "decoder folder", "config.json",
                  "pass the base decoder's Hugging Face folder (with config.json)")])
    if args.image is not None and not args.image.exists():
        raise DataError(f"--image {args.image}: CT file or DICOM folder not found; check the path")
    if args.features is not None:
        from ..features import FeatureStore

        if args.study not in FeatureStore(args.features):
            raise DataError(f"--study {args.study}: not in the feature store {args.features}; check the id "
                            "(ids are compared exactly) or encode the study")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load(args.model, device=device, decoder=args.decoder)
    if args.features is not None:
        features = _store_features(model, args.features, args.study)
    else:
        features = _image_features(model, args)
    human = first_prompt(args.clinical, args.question)
    answer = generate_answers(model, features, [human], max_new_tokens=args.max_new_tokens, batch_size=1)[0]
    print(answer)
    return 0


def _store_features(model, store_path: Path, study: str):
    import json

    from ..errors import DataError
    from ..features import FeatureStore
    from ..vlm.io import check_fingerprint

    store = FeatureStore(store_path)
    meta = store_path / "encoder.json"
    if meta.is_file():
        check_fingerprint(model.config, model.folder, json.loads(meta.read_text(encoding="utf-8")).get("fingerprint"),
                          f"the feature store {store_path}")
    if study not in store:
        raise DataError(f"--study {study}: not in the feature store {store_path}")
    return store.get([study], name="tokens")


def encoder_config(recorded: dict | None, args: argparse.Namespace) -> dict:
    """Encoder + preprocessing settings: ``vlm.json``'s, overridden by the flags given."""
    from ..errors import DataError

    settings = dict(recorded or {})
    flags = {"checkpoint": args.encoder_checkpoint, "layers": args.encoder_layers, "width": args.encoder_width,
             "seed": args.encoder_seed, "tokens": args.tokens, "spacing": args.spacing, "size": args.size}
    for key, value in flags.items():
        if value is not None:
            settings[key] = str(value) if key == "checkpoint" else value
    settings.setdefault("checkpoint", None)
    settings.setdefault("seed", 0)
    missing = [k for k in ("layers", "width", "tokens", "spacing", "size") if settings.get(k) is None]
    if missing:
        flags_needed = ", ".join("--" + ("encoder-" + k if k in ("layers", "width") else k) for k in missing)
        raise DataError(f"the model folder records no image encoder settings ({', '.join(missing)} unknown); "
                        f"pass {flags_needed} (and --encoder-checkpoint for a trained encoder), or use --features")
    return settings


def _image_features(model, args: argparse.Namespace):
    import numpy as np
    import torch

    from ..errors import DataError
    from ..imaging.encode import encoder_fingerprint
    from ..imaging.io import read_ct
    from ..imaging.merlin import build_encoder, token_mode
    from ..imaging.preprocess import preprocess_volume
    from ..vlm.io import check_fingerprint

    settings = encoder_config(model.config.encoder, args)
    encoder = build_encoder(settings["checkpoint"], settings["layers"], settings["width"], settings["seed"])
    check_fingerprint(model.config, model.folder, encoder_fingerprint(encoder, int(settings["tokens"])),
                      "the encoder from vlm.json / the --encoder-* flags")
    volume = read_ct(args.image, study_id=args.image.name, check_ct=not args.no_ct_check)
    array = preprocess_volume(volume, settings["spacing"], settings["size"]).array
    with torch.inference_mode():
        _, tokens = encoder.encode(torch.from_numpy(np.ascontiguousarray(array))[None, None],
                                   token_mode(int(settings["tokens"])))
    if tokens.shape[1] != model.config.tokens:
        raise DataError(f"the encoder gives {tokens.shape[1]} visual tokens for a {'x'.join(map(str, settings['size']))} "
                        f"grid; the model was trained on {model.config.tokens}: use the training's --size and --tokens")
    # Feature stores hold float16: round the same way so the model sees what it was trained on.
    return tokens.to(torch.float16).float().numpy()
