"""A saved model folder finds what it was built from, wherever it is copied.

Two things live outside a model folder (``vlm.json``):

* the **base decoder** of a LoRA model (7B weights are not copied into every model).  Its
  location is recorded three ways (``decoder_location``): the packaged name when it ships with
  ctsurv (``packaged:demo-radllama``), the path relative to the model folder (so a copy of the
  whole results tree still works) and the absolute path.  :func:`find_decoder` tries them in
  that order, then looks for a folder with the recorded hash beside the model folder and in
  ``$CTSURV_MODEL_PATH``; it never takes a folder whose hash differs.
* the **image encoder** (``encoder``): its architecture (layers, width, seed), token setting,
  preprocessing grid (spacing, size), precision and fingerprint, and its checkpoint file: a
  copy inside the folder (``encoder/``) when it is small (the demo's, up to
  :data:`COPY_LIMIT` bytes), else recorded by sha256, packaged name, relative and absolute path.
  :func:`encoder_checkpoint` finds it and checks its sha256.

:func:`record_locations` (at save) and :func:`relocate` (when a saved folder is published
elsewhere, as stage 1 and stage 2 do) keep the relative paths right.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..errors import CtsurvError, DataError
from ..hashing import file_sha256
from ..imaging.stamps import read_store_meta

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
COPY_LIMIT = 64 * 2**20  # encoder checkpoints up to this size are copied into the model folder
MODEL_PATH_ENV = "CTSURV_MODEL_PATH"  # extra folders (colon-separated) searched for a moved decoder


def packaged_name(path: str | Path | None) -> str | None:
    """``packaged:NAME`` when ``path`` is (inside) a model shipped with ctsurv, else None."""
    from ..resources import PACKAGED_PREFIX, packaged_models, resolve_model

    if path is None:
        return None
    if str(path).startswith(PACKAGED_PREFIX):
        return str(path)
    real = Path(os.path.realpath(path))
    for name in packaged_models():
        root = Path(os.path.realpath(resolve_model(PACKAGED_PREFIX + name)))
        if real == root or real.is_relative_to(root):
            return PACKAGED_PREFIX + name
    return None


def checkpoint_file(spec: str | Path | None) -> Path | None:
    """The encoder weight file a config entry names (:func:`ctsurv.imaging.merlin.checkpoint_file`;
    a packaged model folder stands for its one weight file), or None."""
    from ..imaging.merlin import checkpoint_file as weight_file

    return None if spec is None else weight_file(spec)


# --------------------------------------------------------------------------- writing


def decoder_location(decoder: str | Path) -> dict:
    """What ``vlm.json`` records of the decoder's place (the relative path is added at save)."""
    from ..resources import resolve_model

    path = resolve_model(decoder)
    return {"packaged": packaged_name(decoder), "absolute": str(Path(path).resolve()), "relative": None}


def encoder_record(imaging_encoder: dict, spacing, size, store_meta: dict) -> dict:
    """``vlm.json``'s ``encoder``: the encoder that made the training features, and its preprocessing.

    Args:
        imaging_encoder: the config's ``imaging.encoder`` (checkpoint, layers, width, seed, tokens).
        spacing, size: the config's ``imaging.spacing`` and ``imaging.size``.
        store_meta: the feature store's ``encoder.json`` (fingerprint, precision, tokens, n_tokens).
    """
    spec = imaging_encoder.get("checkpoint")
    ckpt = checkpoint_file(spec)
    return {
        "checkpoint": None if spec is None else (packaged_name(spec) or str(Path(ckpt).resolve())),
        "checkpoint_sha256": None if ckpt is None else file_sha256(ckpt),
        "checkpoint_absolute": None if ckpt is None else str(Path(ckpt).resolve()),
        "checkpoint_relative": None,
        "checkpoint_copy": None,
        "layers": [int(n) for n in imaging_encoder["layers"]],
        "width": int(imaging_encoder["width"]),
        "seed": int(imaging_encoder.get("seed", 0)),
        "tokens": int(store_meta.get("tokens", imaging_encoder["tokens"])),
        "spacing": [float(s) for s in spacing],
        "size": [int(s) for s in size],
        "precision": str(store_meta.get("precision", "fp32")),
        "fingerprint": store_meta.get("fingerprint"),
    }


def verify_encoder_record(record: dict) -> bool:
    """Whether the recorded encoder gives the recorded fingerprint (the store was made with it)."""
    from ..imaging.encode import encoder_fingerprint
    from ..imaging.merlin import build_encoder

    if record.get("fingerprint") is None:
        return False
    encoder = build_encoder(record["checkpoint_absolute"], record["layers"], record["width"], record["seed"])
    return encoder_fingerprint(encoder, record["tokens"], record["precision"]) == record["fingerprint"]


def _relative(target: str | None, folder: Path) -> str | None:
    if not target:
        return None
    return os.path.relpath(target, os.path.realpath(folder))


def record_locations(config, folder: Path, final: Path | None = None, source: str | Path | None = None) -> None:
    """Fill the folder-relative parts of ``config`` for a model written to ``folder``.

    Copies a small encoder checkpoint into ``folder/encoder/`` (from its recorded place, or
    from ``source``, the folder the model was loaded from); relative paths are computed from
    ``final`` (where the folder will live; default ``folder``).
    """
    final = Path(final or folder)
    if config.decoder_location:
        config.decoder_location["relative"] = _relative(config.decoder_location.get("absolute"), final)
    enc = config.encoder
    if not enc or not enc.get("checkpoint_absolute"):
        return
    places = [Path(enc["checkpoint_absolute"])]
    if source is not None and enc.get("checkpoint_copy"):
        places.insert(0, Path(source) / enc["checkpoint_copy"])
    enc["checkpoint_copy"] = None
    for place in places:
        if place.is_file() and place.stat().st_size <= COPY_LIMIT and file_sha256(place) == enc["checkpoint_sha256"]:
            (folder / ENCODER_DIR).mkdir(exist_ok=True)
            name = Path(enc["checkpoint_absolute"]).name
            if os.path.realpath(place) != os.path.realpath(folder / ENCODER_DIR / name):
                shutil.copy2(place, folder / ENCODER_DIR / name)
            enc["checkpoint_copy"] = f"{ENCODER_DIR}/{name}"
            break
    enc["checkpoint_relative"] = _relative(enc["checkpoint_absolute"], final)


def relocate(folder: str | Path) -> None:
    """Re-compute the relative paths in ``folder/vlm.json`` for where the folder is now."""
    from .config import CONFIG_FILE, VLMConfig

    folder = Path(folder)
    config = VLMConfig.from_json(folder / CONFIG_FILE)
    record_locations(config, folder, source=folder)
    config.to_json(folder / CONFIG_FILE)


# --------------------------------------------------------------------------- reading


def _candidates_beside(folder: Path) -> list[Path]:
    roots = [folder.resolve().parent]
    roots += [Path(p) for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p]
    found = []
    for root in roots:
        if root.is_dir():
            found.append(root)
            found += sorted(p for p in root.iterdir() if p.is_dir())
    return found


def find_decoder(config, folder: str | Path) -> Path:
    """The base decoder of the model in ``folder``: recorded places first, then by hash.

    Raises:
        DataError: no folder with the recorded hash was found; the message names the hash,
            the places tried and how to point at the decoder.
    """
    from ..resources import resolve_model
    from .config import decoder_hash

    folder = Path(folder)
    loc = config.decoder_location or {}
    tried: list[str] = []
    recorded = []
    if loc.get("packaged"):
        try:
            recorded.append(resolve_model(loc["packaged"]))
        except CtsurvError:  # not shipped with this ctsurv
            tried.append(f"{loc['packaged']} (not installed)")
    if loc.get("relative"):
        recorded.append(Path(os.path.normpath(folder / loc["relative"])))
    recorded.append(Path(loc.get("absolute") or config.decoder))
    seen = set()
    for path in recorded + _candidates_beside(folder):
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        if not (Path(path) / "config.json").is_file():
            if path in recorded:
                tried.append(str(path))
            continue
        try:
            found = decoder_hash(path)
        except (OSError, DataError):
            continue
        if found == config.decoder_hash:
            if path not in recorded[:1]:
                log.info("model %s: decoder found by its hash %s at %s", folder, config.decoder_hash, path)
            return Path(path)
        if path in recorded:
            tried.append(f"{path} (another decoder: hash {found})")
    raise DataError(
        f"model {folder} needs its base decoder, hash {config.decoder_hash} (trained from {config.decoder}); no "
        f"folder with that hash at {'; '.join(tried) or 'the recorded places'}, beside the model folder or in "
        f"${MODEL_PATH_ENV}. Pass the decoder folder (ctsurv ask/predict --decoder DIR, ctsurv.vlm.load(decoder=...)) "
        f"or add its parent folder to ${MODEL_PATH_ENV}"
    )


def encoder_checkpoint(encoder: dict, folder: str | Path) -> Path | None:
    """The recorded encoder's checkpoint file (None for a seeded random encoder), its sha256 checked.

    Raises:
        DataError: none of the recorded places holds a file with the recorded sha256.
    """
    from ..resources import resolve_model

    if not encoder.get("checkpoint") and not encoder.get("checkpoint_absolute"):
        return None
    folder = Path(folder)
    want = encoder.get("checkpoint_sha256")
    places: list[Path] = []
    tried_packaged = None
    if encoder.get("checkpoint_copy"):
        places.append(folder / encoder["checkpoint_copy"])
    spec = encoder.get("checkpoint")
    if spec and str(spec).startswith("packaged:"):
        try:
            places.append(checkpoint_file(spec))
        except CtsurvError:  # not shipped with this ctsurv: other places may still hold it
            tried_packaged = f"{spec} (not installed)"
    if encoder.get("checkpoint_relative"):
        places.append(Path(os.path.normpath(folder / encoder["checkpoint_relative"])))
    if encoder.get("checkpoint_absolute"):
        places.append(Path(encoder["checkpoint_absolute"]))
    elif spec:
        places.append(Path(resolve_model(spec)))
    tried = [tried_packaged] if tried_packaged else []
    for path in places:
        if not path.is_file():
            tried.append(str(path))
            continue
        if want is None or file_sha256(path) == want:
            return path
        tried.append(f"{path} (another file)")
    raise DataError(
        f"model {folder} was trained on features of the encoder checkpoint {spec} (sha256 {str(want)[:16]}), which is "
        f"not at {'; '.join(tried)}. Pass it with --encoder-checkpoint"
    )


def imaging_params(imaging: dict) -> dict:
    """The ``imaging`` keys a model folder records (rule train_stage1/train_stage2's params)."""
    enc = imaging["encoder"]
    return {"spacing": list(imaging["spacing"]), "size": list(imaging["size"]),
            "encoder": {k: enc[k] for k in ("checkpoint", "layers", "width", "seed", "tokens") if k in enc}}


def encoder_record_for(imaging: dict | None, store_meta: dict, what: str = "model") -> dict | None:
    """:func:`encoder_record` of ``imaging`` (:func:`imaging_params`), checked against the store it
    made; None (with a warning) when there is no imaging section or it did not make the store."""
    if imaging is None:
        return None
    try:
        record = encoder_record(imaging["encoder"], imaging["spacing"], imaging["size"], store_meta)
        verified = verify_encoder_record(record)
    except CtsurvError as err:  # e.g. the checkpoint is not there any more
        log.warning("the %s records no image encoder: %s", what, err)
        return None
    if not verified:
        log.warning("the %s records no image encoder: imaging.encoder (%s) does not give the feature store's "
                    "fingerprint %s (the store was made with other settings); ctsurv ask --image will need "
                    "the --encoder-* flags", what, record["checkpoint"], str(record["fingerprint"])[:16])
        return None
    return record


def add_encoder_record(folder: str | Path, imaging: dict, store: str | Path) -> None:
    """Record the encoder in a published model folder that has none (stage 2 without
    pre-training), checked against the feature store it was trained on."""
    from .config import CONFIG_FILE, VLMConfig

    folder = Path(folder)
    config = VLMConfig.from_json(folder / CONFIG_FILE)
    if config.encoder is not None:
        return
    config.encoder = encoder_record_for(imaging, read_store_meta(store), f"model {folder}")
    record_locations(config, folder)
    config.to_json(folder / CONFIG_FILE)
