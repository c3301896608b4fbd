"""``ctsurv pretrain-decoder``: make the demo's decoder (``demo-radllama``) from a generated corpus."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .checks import positive_int

#: the shipped recipe (src/ctsurv/models/demo-radllama/CARD.md says how it was chosen)
RECIPE = {"reports": 30000, "heldout_reports": 1000, "seed": 2718, "vocab_size": 2048, "hidden_size": 128,
          "layers": 2, "heads": 4, "intermediate_size": 384, "max_positions": 512, "steps": 1500,
          "batch_size": 16, "block_size": 128, "lr": 3e-3, "save_dtype": "float16"}
DESCRIPTION = ("The demo's stand-in for RadLLaMA-7B: a small LlamaForCausalLM with a byte-level BPE tokenizer, "
               "pre-trained as a language model on reports of the demo generator (general chest CT, lung cancer "
               "staging and CT pulmonary angiography reports) planned with a seed of its own, so that no patient "
               "of a demo dataset is in its corpus. It knows the report language, not the images: stage 1 "
               "teaches it to read the visual tokens.")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain-decoder",
        help="pre-train the demo decoder (demo-radllama) on a generated report corpus",
        description="Generate a report corpus with its own seed (no volumes), train a byte-level BPE tokenizer "
        "and a LlamaForCausalLM on it, and write a save_pretrained folder with card.json and CARD.md "
        "(command, commit, corpus seed and size, time, CPU, curve, held-out loss, sha256 of each file). "
        "Defaults are the shipped recipe. An interrupted run resumes from --work.",
    )
    parser.add_argument("--out", required=True, type=Path, help="model folder to write (replaced whole)")
    parser.add_argument("--work", type=Path, default=None, help="checkpoint folder (default: OUT.train)")
    parser.add_argument("--seed", type=int, default=RECIPE["seed"],
                        help=f"corpus seed; must differ from the demo's demo.seed (default {RECIPE['seed']})")
    parser.add_argument("--heldout-seed", type=int, default=None, help="seed of the held-out reports (default SEED + 1000)")
    for name in ("reports", "heldout_reports", "vocab_size", "hidden_size", "layers", "heads", "intermediate_size",
                 "max_positions", "steps", "batch_size", "block_size"):
        parser.add_argument("--" + name.replace("_", "-"), type=positive_int, default=RECIPE[name],
                            help=f"(default {RECIPE[name]})")
    parser.add_argument("--lr", type=float, default=RECIPE["lr"], help=f"peak learning rate (default {RECIPE['lr']})")
    parser.add_argument("--save-dtype", choices=["float16", "float32"], default=RECIPE["save_dtype"],
                        help=f"dtype of the saved weights (default {RECIPE['save_dtype']})")
    parser.add_argument("--checkpoint-every", type=positive_int, default=200, help="steps between checkpoints (default 200)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    parser.add_argument("--notes", type=Path, default=None, help="Markdown appended to CARD.md (what was tried)")
    parser.add_argument("--name", default="demo-radllama", help="model name in the card (default demo-radllama)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..demo.corpus import DEFAULT_MIX, report_corpus
    from ..errors import CtsurvError
    from ..vlm.demo_decoder import DemoDecoderSettings, build_demo_decoder, machine, write_card
    from .checks import check_outputs

    demo_seed = _demo_seed()
    heldout_seed = args.heldout_seed if args.heldout_seed is not None else args.seed + 1000
    for flag, seed in (("--seed", args.seed), ("--heldout-seed", heldout_seed)):
        if seed == demo_seed:
            raise CtsurvError(f"{flag} {seed} is the demo's seed (demo.seed): the corpus would hold the demo "
                              "datasets' patients; pick another")
    if heldout_seed == args.seed:
        raise CtsurvError(f"--heldout-seed equals --seed ({args.seed}): the held-out reports would be training reports")
    if args.notes is not None and not args.notes.is_file():
        raise CtsurvError(f"--notes {args.notes}: no such file")
    check_outputs(folders=[("--out", args.out)])
    torch.set_num_threads(args.threads)
    train = report_corpus(args.reports, args.seed)
    heldout = report_corpus(args.heldout_reports, heldout_seed)
    settings = DemoDecoderSettings(
        vocab_size=args.vocab_size, hidden_size=args.hidden_size, layers=args.layers, heads=args.heads,
        intermediate_size=args.intermediate_size, max_positions=args.max_positions, steps=args.steps,
        batch_size=args.batch_size, block_size=args.block_size, lr=args.lr, seed=0,
        checkpoint_every=args.checkpoint_every, save_dtype=args.save_dtype)
    work = args.work or args.out.with_name(args.out.name + ".train")
    summary = build_demo_decoder(train, args.out, settings, val_reports=heldout, work=work)
    card = {
        "name": args.name,
        "description": DESCRIPTION,
        "corpus_seed": args.seed,
        "corpus": {"reports": len(train), "mix": DEFAULT_MIX, "generator": "ctsurv.demo.corpus.report_corpus"},
        "heldout": {"seed": heldout_seed, "reports": len(heldout)},
        "command": "ctsurv pretrain-decoder " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if _is_cli() else None,
        "commit": _commit(),
        "machine": machine(),
        "summary": summary,
    }
    write_card(args.out, card, args.notes.read_text(encoding="utf-8") if args.notes else "")
    print(f"wrote {args.out}: {summary['parameters']:,} parameters, held-out loss {summary['val_loss_saved']:.4f} "
          f"({summary['seconds']:.0f} s)")
    return 0


def _is_cli() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] == "pretrain-decoder"


def _demo_seed() -> int:
    from ..config import load_yaml
    from ..resources import packaged, DEMO_CONFIG

    return int(load_yaml(packaged(DEMO_CONFIG))["demo"]["seed"])


def _commit() -> str:
    """The source checkout's commit (``+dirty`` with uncommitted changes), or "unknown"."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
