"""The one check of a saved model folder, before anything is loaded from it.

Every command that reads a model folder goes through :func:`ctsurv.vlm.io.load` (``ctsurv
ask``, ``ctsurv predict``, stage-1 evaluation, stage 2 reading a stage-1 folder, stage-2
prediction through :func:`ctsurv.vlm.stage2_io.load_stage2`), which calls
:func:`check_model_folder` first.  A file that is missing, cut short (an interrupted copy or
a full disk) or not what its name says is reported with the folder, the file, what is wrong
and how to remake the folder, instead of a traceback from safetensors, peft or tokenizers
minutes into loading a 7B decoder.  The checks read headers only: safetensors files are
complete when their size covers the header and every tensor's byte range.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterable

from ..errors import DataError

REMAKE_STAGE1 = ("remake it with the step that wrote it (rule train_stage1 or ctsurv train-stage1: delete the folder "
                 "and rerun), or copy it again from where it came from")
REMAKE_STAGE2 = ("remake it with the step that wrote it (rule train_stage2: delete the folder and rerun), or copy it "
                 "again from where it came from")

#: Tokenizer files: the config, and one of the vocabularies transformers can read.
TOKENIZER_VOCABS = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"), ("vocab.txt",))


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file (None: complete), from its header and size."""
    if not path.is_file():
        return "is a folder, not a file" if path.is_dir() else "is missing"
    size = path.stat().st_size
    if size < 8:
        return f"is cut short ({size} bytes, not even a header)"
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        if header_len > size - 8:
            return f"is cut short ({size} bytes; its header alone needs {header_len + 8})"
        try:
            header = json.loads(fh.read(header_len))
        except ValueError:
            return "is not a safetensors file (its header is not readable)"
    if not isinstance(header, dict):
        return "is not a safetensors file (its header is not a table of tensors)"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and "data_offsets" in v]
    need = 8 + header_len + max(ends, default=0)
    if size < need:
        return f"is cut short ({size} of {need} bytes)"
    return None


def json_problem(path: Path) -> str | None:
    """What is wrong with a JSON file (None: it parses)."""
    if not path.is_file():
        return "is a folder, not a file" if path.is_dir() else "is missing"
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        return f"is not valid JSON (cut short? {type(err).__name__}: {str(err)[:80]})"
    return None


def tokenizer_problems(folder: Path, where: str = "") -> list[str]:
    """A saved tokenizer: tokenizer_config.json and a vocabulary (tokenizer.json, ...)."""
    problems = []
    problem = json_problem(folder / "tokenizer_config.json")
    if problem:
        problems.append(f"{where}tokenizer_config.json {problem}")
    if not any(all((folder / name).is_file() for name in names) for names in TOKENIZER_VOCABS):
        problems.append(f"{where}tokenizer.json is missing (no tokenizer vocabulary in the folder)")
    elif (folder / "tokenizer.json").exists():
        problem = json_problem(folder / "tokenizer.json")
        if problem:
            problems.append(f"{where}tokenizer.json {problem}")
    return problems


def weights_problems(folder: Path, where: str, stem: str) -> list[str]:
    """A weight file written by save_pretrained: ``<stem>.safetensors`` (or sharded with an
    index, or a ``.bin``), each complete."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if index.exists():
        problem = json_problem(index)
        if problem:
            return [f"{where}{index.name} {problem}"]
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        return [f"{where}{name} {p}" for name in shards if (p := safetensors_problem(folder / name))]
    if not single.exists() and (folder / f"{stem}.bin").is_file():
        return [] if (folder / f"{stem}.bin").stat().st_size else [f"{where}{stem}.bin is empty"]
    problem = safetensors_problem(single)
    return [f"{where}{single.name} {problem}"] if problem else []


def check_model_folder(folder: str | Path, config=None, extra: Iterable[str] = ()) -> None:
    """Refuse a damaged or incomplete model folder before anything is loaded from it.

    Args:
        folder: a folder written by :func:`ctsurv.vlm.io.save` (or a stage-2 folder).
        config: its :class:`~ctsurv.vlm.config.VLMConfig` (read from ``vlm.json`` when None).
        extra: further files the caller reads (``.safetensors`` or ``.json``), e.g. a stage-2
            folder's ``survival.safetensors`` and ``survival.json``.

    Raises:
        DataError: naming the folder, every file that is missing, cut short or unreadable, and
            how to remake the folder.
    """
    from .config import CONFIG_FILE, VLMConfig
    from .io import ADAPTER_DIR, DECODER_DIR, FEATURE_NORM_FILE, PROJECTOR_FILE

    folder = Path(folder)
    if config is None:
        config = VLMConfig.from_json(folder / CONFIG_FILE)
    problems = []
    for name in [PROJECTOR_FILE] + ([FEATURE_NORM_FILE] if config.feature_norm == "standardize" else []):
        problem = safetensors_problem(folder / name)
        if problem:
            problems.append(f"{name} {problem}")
    if config.lora is not None:  # the decoder's weights: a LoRA adapter or the whole fine-tuned decoder
        sub, what, sub_config, stem = (ADAPTER_DIR, f"the LoRA adapter {CONFIG_FILE} names",
                                       "adapter_config.json", "adapter_model")
    else:
        sub, what, sub_config, stem = (DECODER_DIR, f"the fine-tuned decoder; {CONFIG_FILE} has no LoRA settings",
                                       "config.json", "model")
    if not (folder / sub).is_dir():
        problems.append(f"{sub}/ ({what}) is missing")
    else:
        problem = json_problem(folder / sub / sub_config)
        if problem:
            problems.append(f"{sub}/{sub_config} {problem}")
        problems += weights_problems(folder / sub, f"{sub}/", stem)
    problems += tokenizer_problems(folder)
    for name in extra:
        problem = json_problem(folder / name) if name.endswith(".json") else safetensors_problem(folder / name)
        if problem:
            problems.append(f"{name} {problem}")
    if problems:
        remake = REMAKE_STAGE2 if (folder / "survival.json").exists() or extra else REMAKE_STAGE1
        raise DataError(f"model folder {folder} is damaged or incomplete: " + "; ".join(problems) + f". {remake[0].upper()}{remake[1:]}")
