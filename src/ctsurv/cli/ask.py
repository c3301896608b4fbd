"""``ctsurv ask``: one question about one CT, answered by a saved vision-language model.

Two sources of visual tokens:

* ``--image CT_FILE``: the file is read, run through Merlin's preprocessing and the image
  encoder, end to end.  The encoder (checkpoint, layers, width, seed, tokens, precision) and
  the preprocessing grid (spacing, size) come from the model folder's ``vlm.json``, as the
  training recorded them (:mod:`ctsurv.vlm.locate`: the checkpoint is a copy inside the folder
  or found by its sha256), else from the ``--encoder-*``/``--spacing``/``--size`` flags
  (which also override the recorded ones).  The encoder's fingerprint must match the one
  the model was trained on.
* ``--features STORE --study ID``: a study already in a feature store.

The prompt is built as in training: clinical sentence, ``<image>``, question.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .checks import device, non_negative_int, positive_float, positive_int

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
    add_source_flags(p)
    p.add_argument("--question", required=True, help="the question")
    p.add_argument("--clinical", default=None, help="clinical sentence placed before the image (as in training)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="longest answer in tokens (default 64)")
    p.add_argument("--device", type=device, default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--decoder", type=Path, default=None,
                   help="base decoder folder, if it cannot be found (LoRA models; default: where vlm.json records it, "
                   "else by its hash beside the model folder or in $CTSURV_MODEL_PATH)")
    add_encoder_flags(p)
    p.set_defaults(func=_run)


def add_source_flags(parser) -> None:
    """The study's source (shared with ``ctsurv predict``): ``--image CT`` or ``--features STORE --study ID``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="CT file (NIfTI, NRRD, MHA) or DICOM series folder")
    src.add_argument("--features", type=Path, help="feature store folder (encode_images output)")
    parser.add_argument("--study", help="study id in --features")


def add_encoder_flags(parser) -> None:
    """The ``--image`` encoder flags (shared with ``ctsurv predict``); default: as recorded in vlm.json."""
    enc = parser.add_argument_group("image encoder and preprocessing (--image; default: as recorded in vlm.json)")
    enc.add_argument("--encoder-checkpoint", type=Path, default=None, help="encoder checkpoint (.pt / .safetensors)")
    enc.add_argument("--encoder-layers", type=positive_int, nargs=4, default=None, help="blocks per stage")
    enc.add_argument("--encoder-width", type=positive_int, default=None, help="stem channels")
    enc.add_argument("--encoder-seed", type=non_negative_int, default=None, help="seed of a random encoder (no checkpoint)")
    enc.add_argument("--tokens", type=int, choices=[49, 490], default=None, help="49 (mean over z) or 490")
    enc.add_argument("--spacing", type=positive_float, nargs=3, metavar=("X", "Y", "Z"), default=None, help="mm")
    enc.add_argument("--size", type=positive_int, nargs=3, metavar=("X", "Y", "Z"), default=None, help="voxels")
    enc.add_argument("--encoder-precision", choices=["fp32", "bf16"], default=None, help="precision of the encoding")
    enc.add_argument("--no-ct-check", action="store_true", help="accept images whose values do not look like CT HU")


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import DataError
    from ..instructions import first_prompt
    from ..vlm import generate_answers, load

    if not args.question.strip():
        raise DataError("--question is empty; ask a question, e.g. --question 'Is there a pleural effusion?'")
    check_sources(args, ("MODEL", args.model, "model folder", "vlm.json", MODEL_HOW),
                  whom="the study to answer about", image_is="the study")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load(args.model, device=device, decoder=args.decoder)
    features = source_features(model, args, device)
    human = first_prompt(args.clinical, args.question)
    answer = generate_answers(model, features, [human], max_new_tokens=args.max_new_tokens, batch_size=1)[0]
    print(answer)
    return 0


def check_sources(args: argparse.Namespace, model_folder: tuple, whom: str, image_is: str) -> None:
    """The checks ``ask`` and ``predict`` make of their inputs, all before the model is loaded (minutes
    for a 7B decoder): ``--study`` only with ``--features``, ``model_folder`` (a ``check_inputs`` folder
    entry), the store, decoder, encoder checkpoint and image present, the study in the store with finite
    tokens.  ``whom``/``image_is`` name the study in the messages ("the patient to score", ...)."""
    from ..errors import DataError
    from .checks import check_inputs

    if args.features is not None and not args.study:
        raise DataError(f"--features needs --study ID ({whom})")
    if args.image is not None and args.study:
        raise DataError(f"--study goes with --features; with --image the CT file is {image_is}")
    check_inputs(
        files=[("--encoder-checkpoint", args.encoder_checkpoint, "encoder checkpoint")],
        folders=[model_folder,
                 ("--features", args.features, "feature store", "index.parquet", STORE_HOW),
                 ("--decoder", args.decoder, "decoder folder", "config.json",
                  "pass the base decoder's Hugging Face folder (with config.json)")])
    if args.image is not None and not args.image.exists():
        raise DataError(f"--image {args.image}: CT file or DICOM folder not found; check the path")
    if args.features is not None:
        from ..features import FeatureStore

        store = FeatureStore(args.features)
        if args.study not in store:
            raise DataError(f"--study {args.study}: not in the feature store {args.features}; check the id "
                            "(ids are compared exactly) or encode the study")
        store.check_finite([args.study], "tokens")  # NaN tokens give an empty answer, not an error


def source_features(model, args: argparse.Namespace, device: str = "cpu"):
    """(1, T, C) tokens of the study the flags name: ``--features STORE --study ID`` or the ``--image`` CT file."""
    if args.features is not None:
        return store_features(model, args.features, args.study)
    return image_features(model, args, device)


def store_features(model, store_path: Path, study: str):
    """(1, T, C) tokens of a cached study, the store's encoder checked against the model's."""
    from ..errors import DataError
    from ..features import FeatureStore
    from ..vlm.io import check_fingerprint, store_fingerprint

    store = FeatureStore(store_path)
    check_fingerprint(model.config, model.folder, store_fingerprint(store_path), f"the feature store {store_path}")
    if study not in store:
        raise DataError(f"--study {study}: not in the feature store {store_path}")
    return store.get([study], name="tokens")


def encoder_overrides(args: argparse.Namespace) -> dict:
    """The ``--encoder-*``/``--tokens``/``--spacing``/``--size`` flags given (None: not given)."""
    return {"checkpoint": args.encoder_checkpoint, "layers": args.encoder_layers, "width": args.encoder_width,
            "seed": args.encoder_seed, "tokens": args.tokens, "spacing": args.spacing, "size": args.size,
            "precision": args.encoder_precision}


def image_features(model, args: argparse.Namespace, device: str = "cpu"):
    """(1, T, C) tokens of ``args.image`` with the model's recorded encoder (or the flags)."""
    from ..vlm.image_tokens import encoder_settings, image_tokens

    settings = encoder_settings(model.config.encoder, encoder_overrides(args), model.folder)
    return image_tokens(model, args.image, settings, check_ct=not args.no_ct_check, device=device)
