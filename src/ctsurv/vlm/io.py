"""A saved model is a folder in formats people already use.

::

    vlm.json                  VLMConfig: decoder folder + hash, projector, T, C, fingerprint, ...
    projector.safetensors     W
    feature_norm.safetensors  the visual tokens' standardisation before W (feature_norm "standardize")
    adapter/                  LoRA adapter as peft writes it (adapter_config.json,
                              adapter_model.safetensors; PeftModel.from_pretrained reads it)
    decoder/                  or: the full fine-tuned decoder (save_pretrained)
    tokenizer files           the decoder's tokenizer with <image> and a pad token

    encoder/                  a copy of a small image-encoder checkpoint (:mod:`.locate`)

A LoRA folder needs its base decoder, found where ``vlm.json`` records it (packaged name,
path relative to the folder, absolute path), else by its hash beside the folder or in
``$CTSURV_MODEL_PATH`` (:func:`.locate.find_decoder`), or given as the ``decoder`` argument of
:func:`load`; a folder whose hash differs is refused: an adapter on another base model loads
without error in peft and produces nonsense.  Both kinds refuse a feature store with another
encoder's fingerprint: the projector learned that encoder's features.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import torch

from ..errors import DataError
from .config import CONFIG_FILE, VLMConfig, decoder_hash
from .locate import find_decoder, record_locations
from .model import (CTVisionLanguageModel, enable_gradient_checkpointing, load_decoder,
                    prepare_tokenizer_and_embeddings)
from .projector import build_projector

log = logging.getLogger(__name__)

PROJECTOR_FILE = "projector.safetensors"
FEATURE_NORM_FILE = "feature_norm.safetensors"
ADAPTER_DIR = "adapter"
DECODER_DIR = "decoder"


def save(model: CTVisionLanguageModel, folder: str | Path, state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` to ``folder`` (replaced atomically: readers never see half a model).

    Args:
        state_dict: the weights to write, keyed as ``model.state_dict()`` (``projector.*``,
            ``decoder.*``); default: the model's own.  Sharded training (FSDP, DeepSpeed)
            passes the full weights gathered from every process, because then ``model``
            itself holds only this process's shard (see :mod:`ctsurv.vlm.trainer`).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    projector_state = decoder_state = norm_state = None
    if state_dict is not None:
        with torch.device("meta"):  # the full shapes (the model's own may be shards)
            shapes = build_projector(model.config.projector, model.config.feature_dim, model.config.hidden_size)
        projector_state = sub_state_dict(state_dict, "projector.", shapes.state_dict())
        decoder_state = sub_state_dict(state_dict, "decoder.")
        norm_state = sub_state_dict(state_dict, "feature_norm.") or None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(tmp, 0o755)
    try:
        state = projector_state if projector_state is not None else model.projector.state_dict()
        save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(tmp / PROJECTOR_FILE))
        if model.config.feature_norm == "standardize":
            norm = norm_state if norm_state is not None else model.feature_norm.state_dict()
            save_file({k: v.detach().to("cpu").contiguous() for k, v in norm.items()}, str(tmp / FEATURE_NORM_FILE))
        given = {} if decoder_state is None else {"state_dict": decoder_state}
        if model.uses_lora:
            model.decoder.save_pretrained(tmp / ADAPTER_DIR, save_embedding_layers=False, **given)
        else:
            model.decoder.save_pretrained(tmp / DECODER_DIR, **given)
            model.tokenizer.save_pretrained(tmp / DECODER_DIR)
        model.tokenizer.save_pretrained(tmp)
        config = copy.deepcopy(model.config)
        # relative paths from where the folder will be; a small encoder checkpoint copied in
        record_locations(config, tmp, final=folder, source=getattr(model, "folder", None))
        config.to_json(tmp / CONFIG_FILE)
        if folder.exists():
            old = folder.parent / f".{folder.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved vision-language model to %s", folder)
    return folder


def sub_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str,
                   expected: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed.

    With ``expected`` (a state dict with the full shapes), keys and shapes must match: a
    shard is refused instead of written as if it were the whole tensor.
    """
    part = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if expected is not None:
        missing, extra = sorted(set(expected) - set(part)), sorted(set(part) - set(expected))
        if missing or extra:
            raise DataError(f"the weights to save do not match the model under '{prefix}' "
                            f"(missing {missing[:3]}, unexpected {extra[:3]})")
        for k, v in part.items():
            want = tuple(expected[k].shape)
            if tuple(v.shape) != want:
                raise DataError(f"the weights to save have {prefix}{k} of shape {tuple(v.shape)}, the model {want}: "
                                "a shard, not the whole tensor; gather the full state dict first")
    return part


def check_fingerprint(config: VLMConfig, model_name: str | Path | None, feature_fingerprint: str | None,
                      store: str = "") -> None:
    """Refuse features from another image encoder than the one the model was trained on.

    ``store`` names the features' source in the message (default "the feature store").
    """
    if feature_fingerprint is None or config.feature_fingerprint is None:
        return
    if feature_fingerprint != config.feature_fingerprint:
        raise DataError(
            f"model{' ' + str(model_name) if model_name else ''} was trained on features with encoder fingerprint "
            f"{config.feature_fingerprint[:16]}, "
            f"but {store or 'the feature store'} has {feature_fingerprint[:16]}: it was made by "
            "another image encoder (or other token settings); re-encode with the model's encoder or retrain"
        )


def store_fingerprint(store) -> str | None:
    """The encoder fingerprint of a feature store (a path or a ``FeatureStore``): its
    ``encoder.json["fingerprint"]``, None when the store has no ``encoder.json``."""
    from ..imaging.stamps import read_store_meta

    return read_store_meta(store).get("fingerprint")


def load(
    folder: str | Path,
    feature_fingerprint: str | None = None,
    device: str | torch.device = "cpu",
    decoder: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    trainable: bool = False,
    gradient_checkpointing: bool = False,
) -> CTVisionLanguageModel:
    """Restore a model written by :func:`save`.

    Args:
        folder: the model folder.
        feature_fingerprint: fingerprint of the features it will read; refused if it differs.
        device: where to put the model.
        decoder: the base decoder folder, if it cannot be found (default: where ``vlm.json``
            records it, else by its hash, :func:`.locate.find_decoder`); refused if its hash
            differs from the recorded one.
        dtype: weights' dtype.
        trainable: keep the LoRA adapter trainable (to continue training, e.g. stage 2).
        gradient_checkpointing: as in :func:`ctsurv.vlm.build`.

    Raises:
        DataError: not a model folder, a damaged one (a file missing or cut short:
            :func:`.folder_check.check_model_folder`), another decoder, another feature
            store, missing base.
    """
    from safetensors.torch import load_file

    from .folder_check import check_model_folder

    folder = Path(folder)
    config = VLMConfig.from_json(folder / CONFIG_FILE)
    check_model_folder(folder, config)  # every file complete, before minutes of loading
    check_fingerprint(config, folder, feature_fingerprint)
    if decoder is not None:
        base = Path(decoder)
        _check_decoder(config, folder, base)
    elif config.lora is not None:
        base = find_decoder(config, folder)

    if config.lora is not None:
        from peft import PeftModel
        from transformers import AutoTokenizer

        _, hf_decoder = load_decoder(base, dtype)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        prepare_tokenizer_and_embeddings(tokenizer, hf_decoder, config.image_token)
        hf_decoder = PeftModel.from_pretrained(hf_decoder, folder / ADAPTER_DIR, is_trainable=trainable)
    else:
        if not (folder / DECODER_DIR).is_dir():
            raise DataError(f"model {folder}: no {DECODER_DIR}/ folder (full fine-tuning) and no LoRA settings in "
                            f"{CONFIG_FILE}; the folder is incomplete, save it again")
        tokenizer, hf_decoder = load_decoder(folder / DECODER_DIR, dtype)
        prepare_tokenizer_and_embeddings(tokenizer, hf_decoder, config.image_token)
    if gradient_checkpointing:
        enable_gradient_checkpointing(hf_decoder)

    projector = build_projector(config.projector, config.feature_dim, config.hidden_size)
    state = load_file(str(folder / PROJECTOR_FILE))
    try:
        projector.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DataError(f"model {folder}: {PROJECTOR_FILE} does not match projector '{config.projector}' "
                        f"{config.feature_dim} -> {config.hidden_size} ({str(err).splitlines()[0]})") from None
    model = CTVisionLanguageModel(hf_decoder, projector.to(dtype), tokenizer, config)
    if config.feature_norm == "standardize":
        norm_file = folder / FEATURE_NORM_FILE
        if not norm_file.is_file():
            raise DataError(f"model {folder}: {CONFIG_FILE} says feature_norm 'standardize' but {FEATURE_NORM_FILE} "
                            "is missing; the folder is incomplete, save it again")
        try:
            model.feature_norm.load_state_dict(load_file(str(norm_file)), strict=True)
        except RuntimeError as err:
            raise DataError(f"model {folder}: {FEATURE_NORM_FILE} does not match {config.feature_dim} feature channels "
                            f"({str(err).splitlines()[0]})") from None
    model.folder = str(folder)
    return model.to(device)


def _check_decoder(config: VLMConfig, folder: Path, base: Path) -> None:
    if not base.is_dir():
        raise DataError(f"model {folder} needs its base decoder (hash {config.decoder_hash}); {base} is not there: "
                        "pass the decoder's folder (decoder=... in ctsurv.vlm.load, --decoder on the command line)")
    found = decoder_hash(base)
    if found != config.decoder_hash:
        raise DataError(
            f"model {folder} was made for the decoder {config.decoder} (hash {config.decoder_hash}), but the decoder "
            f"at {base} has hash {found}: it is another model (or was changed); use the decoder the model was trained on"
        )
