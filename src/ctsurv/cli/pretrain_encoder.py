"""``ctsurv pretrain-encoder``: make the demo's image encoder (``demo-merlin``) from a generated corpus."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .checks import fraction, non_negative_int, positive_float, positive_int

#: the shipped recipe (src/ctsurv/models/demo-merlin/CARD.md says how it was chosen)
RECIPE = {"corpus_size": 3000, "corpus_seed": 20261206, "heldout_size": 400, "epochs": 5, "width": 16,
          "layers": [1, 1, 1, 1], "lr": 2e-3, "batch_size": 8, "val_fraction": 0.1, "spacing": [4.0, 4.0, 6.0],
          "size": [96, 96, 64], "precision": "auto", "save_dtype": "float16"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain-encoder",
        help="pre-train the demo image encoder (demo-merlin) on a generated corpus with dense label supervision",
        description="Generate a pre-training corpus with the demo generator (its own seed, a findings mix rich in "
        "tumours, metastases and bone lesions), preprocess volumes and label maps onto the demo grid, train the "
        "small I3ResNet with a dense head (per layer-4 cell: square-root fraction of each finding, and its "
        "presence) and a pooled head (phenotype codes, tumour size, emphysema, RV/LV, fat), then probe it on a "
        "freshly generated held-out set and write a model folder: safetensors in Merlin's key layout, card.json "
        "(command, commit, corpus seed and size, wall and CPU time, CPU model, curve, held-out probes, sha256) "
        "and curve.png. Defaults are the shipped recipe. Checkpoints every epoch; re-run the same command to "
        "resume after an interruption.",
    )
    parser.add_argument("--out", required=True, type=Path, help="model folder to write (replaced whole at the end)")
    parser.add_argument("--work", type=Path, default=None, help="corpus and checkpoint folder (default: OUT.train)")
    parser.add_argument("--corpus-seed", type=non_negative_int, default=RECIPE["corpus_seed"],
                        help=f"corpus seed; must differ from the demo's demo.seed (default {RECIPE['corpus_seed']})")
    parser.add_argument("--heldout-seed", type=non_negative_int, default=None, help="seed of the held-out probe set (default CORPUS_SEED + 1)")
    for name in ("corpus_size", "heldout_size", "epochs", "width", "batch_size"):
        parser.add_argument("--" + name.replace("_", "-"), type=positive_int, default=RECIPE[name], help=f"(default {RECIPE[name]})")
    parser.add_argument("--layers", type=positive_int, nargs=4, default=RECIPE["layers"], help="blocks per stage (default 1 1 1 1)")
    parser.add_argument("--lr", type=positive_float, default=RECIPE["lr"], help=f"peak learning rate (default {RECIPE['lr']})")
    parser.add_argument("--val-fraction", type=fraction, default=RECIPE["val_fraction"], help="patients held out for validation (default 0.1)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=RECIPE["precision"],
                        help="training precision (auto: bf16 autocast on CPUs with native bf16, else fp32)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workers", type=positive_int, default=2, help="processes generating and preprocessing the corpus (default 2)")
    parser.add_argument("--max-minutes", type=positive_float, default=None, help="stop training after the epoch that passes this")
    parser.add_argument("--share-to", type=Path, default=None, help="also write each epoch's weights and settings.json here")
    parser.add_argument("--finish", action="store_true",
                        help="train no further: make the model folder from the last finished epoch in --work (a run stopped early)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..imaging.dense_pretrain import DenseSettings, make_model_folder
    from .checks import check_outputs

    demo_seed = _demo_seed()
    heldout_seed = args.corpus_seed + 1 if args.heldout_seed is None else args.heldout_seed
    for flag, seed in (("--corpus-seed", args.corpus_seed), ("--heldout-seed", heldout_seed)):
        if seed == demo_seed:
            raise ConfigError(f"{flag} {seed} is the demo's demo.seed: the encoder must never see the demo cohorts; pick another seed")
    work = args.work or args.out.with_name(args.out.name + ".train")
    check_outputs(folders=[("--out", args.out), ("--work", work)])
    settings = DenseSettings(layers=list(args.layers), width=args.width, epochs=args.epochs, lr=args.lr,
                             batch_size=args.batch_size, precision=args.precision, max_minutes=args.max_minutes)
    command = "ctsurv " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["pretrain-encoder"] else None
    card = make_model_folder(args.out, work, settings, corpus_size=args.corpus_size, corpus_seed=args.corpus_seed,
                             heldout_size=args.heldout_size, heldout_seed=heldout_seed, spacing=RECIPE["spacing"],
                             size=RECIPE["size"], val_fraction=args.val_fraction, workers=args.workers,
                             threads=args.threads, share_to=args.share_to, command=command, finish_only=args.finish)
    print(f"wrote {args.out} (card: corpus seed {card['corpus_seed']}, {card['corpus_size']} studies)")
    return 0


def _demo_seed() -> int:
    import yaml

    from ..resources import DEMO_CONFIG, packaged

    return int(yaml.safe_load(packaged(DEMO_CONFIG).read_text(encoding="utf-8"))["demo"]["seed"])
