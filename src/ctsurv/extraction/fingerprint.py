"""What identifies the model behind an answer, for the answer cache's key.

A backend's ``name`` ("transformers:<folder name>", "openai:<served name>") says which model
was meant, not which weights answered: a fine-tuned or re-quantised model saved under the
same folder name would be served from the cache.  So the key holds a fingerprint:

* a model folder (:func:`folder_fingerprint`): the content of its small files (config,
  generation config, tokenizer and chat template: they shape the prompt and the stop
  tokens) and, for each weight file, its size and a hash of its first and last
  :data:`HEAD_BYTES` (the safetensors / GGUF header with every tensor's name, dtype and
  shape, plus the first and last tensors' data).  Reading whole multi-GB files on every
  run would cost minutes; header, size and both ends change with any retraining or
  re-quantisation in practice.  The folder's path and name are not part of it: a copy
  elsewhere is the same model.
* a server (:func:`server_fingerprint`): the served model id and, where the server lists
  them, its revision and root (vLLM's ``root`` is the folder or hub id it loaded).
* the rules backend: a hash of its own source code (:func:`source_fingerprint`), so an
  edited rule re-extracts without anyone bumping a version string.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

#: bytes hashed at each end of a weight file
HEAD_BYTES = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack", ".onnx", ".npz")
#: small files hashed whole above this size only by size, head and tail, like weights
SMALL_FILE_BYTES = 8 << 20


def _head_and_tail(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(HEAD_BYTES))
        if size > HEAD_BYTES:
            fh.seek(max(HEAD_BYTES, size - HEAD_BYTES))
            digest.update(fh.read(HEAD_BYTES))
    return digest.hexdigest()


def _file_entry(path: Path) -> list:
    size = path.stat().st_size
    if path.suffix.lower() in WEIGHT_SUFFIXES or size > SMALL_FILE_BYTES:
        return ["weights", size, _head_and_tail(path)]
    return ["file", size, hashlib.sha256(path.read_bytes()).hexdigest()]


def folder_fingerprint(folder: str | Path, gguf_file: str | None = None) -> str:
    """sha256 (hex) of a local model folder's configuration and weights (see the module docstring).

    Args:
        folder: the model folder.
        gguf_file: the GGUF file in use; other ``.gguf`` files in the folder (other
            quantisations) are left out.
    """
    folder = Path(folder)
    entries = []
    for path in sorted(_model_files(folder)):
        rel = path.relative_to(folder).as_posix()
        if gguf_file and path.suffix.lower() == ".gguf" and rel != gguf_file:
            continue
        entries.append([rel, *_file_entry(path)])
    return hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()


def _model_files(folder: Path) -> Iterable[Path]:
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).parts
        # hidden entries are caches and lock files (.cache/huggingface), not the model
        if path.is_file() and not any(part.startswith(".") for part in rel):
            yield path


def server_fingerprint(card: dict) -> str:
    """The served model's identity from its ``/v1/models`` entry: id, revision and root where listed."""
    keys = ("id", "revision", "root", "parent")
    return "server:" + json.dumps({k: card[k] for k in keys if card.get(k) is not None}, sort_keys=True)


def source_fingerprint(files: Iterable[str | Path], label: str) -> str:
    """``label:`` and the sha256 of the given source files' bytes, in order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).read_bytes())
    return f"{label}:{digest.hexdigest()}"
