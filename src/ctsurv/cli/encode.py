"""``ctsurv encode-images`` and ``ctsurv encode-texts``: feature stores outside the workflow."""

from __future__ import annotations

import argparse

from .checks import device, non_negative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode-images",
        help="encode a preprocessed CT cache with the Merlin image encoder into a feature store",
        description="Encode every study of a preprocessed cache (results/<dataset>/ct) into a feature store "
        "with pooled (N, C) and tokens (N, T, C), float16.  Resumable: re-run the same command after a crash.",
    )
    p.add_argument("cache_dir", help="preprocessed cache folder (rule preprocess_ct / ctsurv preprocess-ct)")
    p.add_argument("out_dir", help="feature store folder to write")
    p.add_argument("--checkpoint", default=None, help="Merlin checkpoint .pt (default: random demo encoder)")
    p.add_argument("--layers", type=positive_int, nargs=4, default=None,
                   help="blocks per stage (default 3 8 36 3 with a checkpoint, 1 1 1 1 without)")
    p.add_argument("--width", type=positive_int, default=None, help="stem channels (default 64 with a checkpoint, 16 without)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random encoder (no checkpoint)")
    p.add_argument("--tokens", type=int, choices=[49, 490], default=49, help="49: mean over z (paper); 490: all")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--device", type=device, default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--workers", type=non_negative_int, default=None, help="volume-reading processes (default 2 on a GPU, 0 on a CPU)")
    p.set_defaults(func=_encode_images)

    t = sub.add_parser(
        "encode-texts",
        help="mean-pooled text-encoder features of a table's text column",
        description="Encode one text per row (e.g. clinical sentences) into a feature store with pooled (N, D).",
    )
    t.add_argument("table", help="a .parquet or .csv table")
    t.add_argument("--id-column", required=True)
    t.add_argument("--text-column", required=True)
    t.add_argument("--out", required=True, help="feature store folder to write")
    t.add_argument("--model", default="minilm", help="'minilm' (packaged) or a local model folder")
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.set_defaults(func=_encode_texts)


def _encode_images(args: argparse.Namespace) -> int:
    from ..imaging.cache import cached_study_ids
    from ..imaging.encode import encode_cohort
    from ..imaging.merlin import build_encoder
    from .checks import check_outputs

    from pathlib import Path

    from ..errors import CtsurvError

    if not Path(args.cache_dir).is_dir():
        raise CtsurvError(f"{args.cache_dir}: preprocessed cache folder not found (write it with the workflow's "
                          "preprocess_ct rule, results/<dataset>/ct)")
    check_outputs(inputs=[args.cache_dir, args.checkpoint], folders=[("OUT_DIR", args.out_dir)])
    full = args.checkpoint is not None
    layers = args.layers or ([3, 8, 36, 3] if full else [1, 1, 1, 1])
    width = args.width or (64 if full else 16)
    model = build_encoder(args.checkpoint, layers, width, args.seed)
    encode_cohort(cached_study_ids(args.cache_dir), args.cache_dir, args.out_dir, model, tokens=args.tokens,
                  batch_size=args.batch_size, device=args.device, precision=args.precision,
                  num_workers=args.workers)
    print(args.out_dir)
    return 0


def _encode_texts(args: argparse.Namespace) -> int:
    from ..data.tables import load_table
    from ..errors import DataError
    from ..text_encoder import encode_clinical_sentences
    from .checks import check_outputs

    check_outputs(inputs=[args.table], folders=[("--out", args.out)])
    table = load_table(args.table)
    for col in (args.id_column, args.text_column):
        if col not in table.columns:
            raise DataError(f"{args.table}: no column '{col}' (columns: {', '.join(map(str, table.columns))})")
    encode_clinical_sentences(table[args.id_column].astype(str).tolist(), table[args.text_column].fillna("").tolist(),
                              args.out, model_path=args.model, batch_size=args.batch_size)
    print(args.out)
    return 0
