"""``ctsurv predict``: a new patient's risk from a trained stage-2 model, a CT and a clinical sentence.

The whole path of the workflow's ``predict_stage2`` for one patient: the CT file through
Merlin's preprocessing and the image encoder the model folder records (or a study already
in a feature store: ``--features STORE --study ID``), the six questions asked with the
clinical sentence, the six risks averaged.  Printed: the relative risk, its percentile among
the training patients, the survival curve at the model's horizons (DeepHit: the mean of the
six curves; DeepSurv: Breslow's baseline hazard on the training patients), and the six
generated answers; ``--json`` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .ask import add_encoder_flags, add_source_flags
from .checks import device, positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="risk, survival curve and the six answers for one patient from a trained stage-2 model",
        description="Score one patient with the stage-2 model saved in MODEL: a CT file (--image) or a cached "
        "study (--features STORE --study ID), and the clinical sentence (--clinical, as the dataset's template "
        "writes it).  Prints the relative risk, its percentile among the training patients, the survival curve "
        "at the model's horizons and the answers to the six questions.",
    )
    p.add_argument("model", type=Path, help="stage-2 model folder (rule train_stage2: results/DATASET/stage2/HEAD_PRETRAIN/model)")
    add_source_flags(p)
    p.add_argument("--clinical", default=None, help="the patient's clinical sentence (placed before the image, as in training)")
    p.add_argument("--horizons", type=positive_float, nargs="+", default=None,
                   help="times for the survival curve (default: the model's, vlm.stage2.predict.horizons)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--max-new-tokens", type=positive_int, default=48, help="longest answer in tokens (default 48)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="questions per forward pass (default 32)")
    p.add_argument("--device", type=device, default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--decoder", type=Path, default=None,
                   help="base decoder folder, if it cannot be found (default: where vlm.json records it, else by its "
                   "hash beside the model folder or in $CTSURV_MODEL_PATH)")
    add_encoder_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..vlm.stage2_io import BRANCH_CONFIG
    from ..vlm.survival_model import load_survival_model, predict_patient
    from .ask import check_sources, source_features

    check_sources(args, ("MODEL", args.model, "stage-2 model folder", BRANCH_CONFIG,
                         "pass the folder written by rule train_stage2 (it holds survival.json; "
                         "a stage-1 model has none)"),
                  whom="the patient to score", image_is="the patient's")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_survival_model(args.model, device=device, decoder=args.decoder)
    features = source_features(model.vlm, args, device)
    result = predict_patient(model, features, args.clinical, horizons=args.horizons, batch_size=args.batch_size,
                             max_new_tokens=args.max_new_tokens, study_id=args.study or args.image.name)
    print(json.dumps(result, indent=1) if args.json else describe(result))
    return 0


def describe(result: dict) -> str:
    """The prediction as text for a person."""
    lines = [f"relative risk ({result['head']}, higher = worse): {result['risk']:.4f}"]
    if result["percentile"] is not None:
        how = "one question each" if result.get("train_questions") == "one" else "all questions"
        lines.append(f"percentile among the {result['n_train']} training patients: {result['percentile']:.1f} "
                     f"(their risks scored on {how})")
    if result["survival"] is not None:
        curve = "DeepHit curve" if result["head"] == "deephit" else "Breslow curve"
        lines.append(f"survival ({curve}): " + ", ".join(f"S({h:g}) = {s:.3f}" for h, s in
                                                          zip(result["horizons"], result["survival"])))
    lines.append("answers:")
    lines += [f"  {a['id']}: {a['question']}\n    {a['answer']}  (risk {a['risk']:.4f})" for a in result["answers"]]
    return "\n".join(lines)
