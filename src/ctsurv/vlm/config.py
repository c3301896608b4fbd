"""What a saved vision-language model is made of: :class:`VLMConfig`, written as ``vlm.json``.

The JSON names the decoder folder and a cheap hash of it, the projector, the visual token
count and width, and the fingerprint of the feature store the model was trained on, so that
``ctsurv.vlm.load`` can refuse a folder that would silently pair with another decoder or
another image encoder.  ``decoder_location`` and ``encoder`` make the folder self-contained
(:mod:`.locate`): where the decoder is (packaged name, relative and absolute path), and the
image encoder and preprocessing the training features came from (checkpoint by sha256 and
place, layers, width, seed, tokens, spacing, size, precision, fingerprint), so that ``ctsurv
ask --image`` and ``ctsurv predict`` go from a CT file to an answer with the same encoder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

PROJECTORS = ("linear", "mlp2x_gelu")
FEATURE_NORMS = ("none", "standardize")
PROMPT_FORMATS = ("chat_template", "plain")
CONFIG_FILE = "vlm.json"


@dataclass
class VLMConfig:
    """Settings that define a model (all JSON-serialisable).

    Attributes:
        decoder: the decoder folder it was built from (a local Hugging Face causal LM).
        decoder_hash: :func:`ctsurv.vlm.io.decoder_hash` of that folder.
        feature_dim: C, the width of a visual token in the feature store.
        tokens: T, visual tokens per study (49 or 490 for Merlin).
        hidden_size: the decoder's embedding width (the projector's output).
        projector: "linear" (the paper's W) or "mlp2x_gelu" (LLaVA-1.5's two-layer MLP).
        feature_norm: "standardize" (fixed per-channel standardisation of the visual tokens
            before W, fitted on the training tokens, :class:`.projector.FeatureStandardizer`)
            or "none" (folders saved before it existed load as "none").
        feature_fingerprint: ``encoder.json["fingerprint"]`` of the feature store, or None.
        image_token: the placeholder in prompts, replaced by the T projected tokens.
        prompt_format: "chat_template" (the decoder's own) or "plain" (:mod:`.prompt`).
        max_length: the decoder's context (tokens, image tokens counted as T).
        lora: {r, alpha, dropout, target_modules} or None (full fine-tuning).
        encoder: the image encoder + preprocessing of the training features
            (:func:`.locate.encoder_record`), or None (folders saved before it was recorded).
        decoder_location: {packaged, relative, absolute} of the decoder folder
            (:func:`.locate.decoder_location`), or None (then ``decoder`` is the only place).
    """

    decoder: str
    decoder_hash: str
    feature_dim: int
    tokens: int
    hidden_size: int
    projector: str = "linear"
    feature_norm: str = "none"
    feature_fingerprint: str | None = None
    image_token: str = "<image>"
    prompt_format: str = "plain"
    max_length: int = 2048
    lora: dict | None = None
    encoder: dict | None = None
    decoder_location: dict | None = None
    version: int = 1
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.projector not in PROJECTORS:
            raise ValueError(f"projector must be one of {PROJECTORS}, got {self.projector!r}")
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {self.feature_norm!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path) -> None:
        from ..atomic import atomic_write

        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))

    @classmethod
    def from_json(cls, path: str | Path) -> "VLMConfig":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path.parent} is not a saved vision-language model (no {path.name}); "
                            "pass the folder written by ctsurv.vlm.save / train_stage1")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise DataError(f"{path}: unknown keys {unknown}; written by a newer ctsurv?")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise DataError(f"{path}: {err}") from None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def decoder_hash(folder: str | Path, samples: int = 32, chunk: int = 4096) -> str:
    """A cheap identity of a decoder folder: config.json plus each weight file's name, size and samples.

    Reading 14 GB of weights to hash them would take a minute.  Instead each weight file
    contributes its name, its size, its safetensors header (tensor names, shapes, dtypes,
    offsets) and ``samples`` chunks of ``chunk`` bytes at evenly spaced offsets: another
    architecture changes the header, other weights (another seed, another warm-up) change
    the sampled bytes.
    """
    import hashlib
    import struct

    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        raise DataError(f"decoder folder {folder} has no config.json; it must be a Hugging Face model folder "
                        "(save_pretrained output)")
    digest = hashlib.sha256(config.read_bytes())
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as fh:
            if path.suffix == ".safetensors" and size >= 8:
                (header_len,) = struct.unpack("<Q", fh.read(8))
                digest.update(fh.read(min(header_len, size - 8)))
            step = max(size // samples, 1)
            for offset in range(0, size, step):
                fh.seek(offset)
                digest.update(fh.read(chunk))
    return digest.hexdigest()[:16]
