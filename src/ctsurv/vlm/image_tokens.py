"""A CT file's visual tokens as the model's training features were made (``ctsurv ask``/``predict``).

The model folder records the image encoder and preprocessing of its training features
(:mod:`.locate`); :func:`image_tokens` reads the CT, runs Merlin's preprocessing on that grid,
builds that encoder (its checkpoint found and sha256-checked, or a seeded random one),
checks that it gives the recorded fingerprint (architecture, weights, tokens, precision),
encodes in that precision and rounds to float16 as a feature store does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

SETTING_KEYS = ("checkpoint", "layers", "width", "seed", "tokens", "spacing", "size", "precision")


def encoder_settings(recorded: dict | None, overrides: dict | None = None, folder: str | Path | None = None) -> dict:
    """Encoder + preprocessing settings: the model folder's record, overridden by ``overrides``
    (command-line flags; None values are ignored).  ``checkpoint`` becomes the file to load.

    Raises:
        DataError: a setting is neither recorded nor given (the message names the flags).
    """
    from .locate import encoder_checkpoint

    settings = {k: v for k, v in (recorded or {}).items() if k in SETTING_KEYS}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if recorded and "checkpoint" not in given:
        settings["checkpoint"] = encoder_checkpoint(recorded, folder or ".")
    settings.update({k: (str(v) if k == "checkpoint" else v) for k, v in given.items()})
    settings.setdefault("checkpoint", None)
    settings.setdefault("seed", 0)
    settings.setdefault("precision", "fp32")
    missing = [k for k in ("layers", "width", "tokens", "spacing", "size") if settings.get(k) is None]
    if missing:
        flags = ", ".join("--" + ("encoder-" + k if k in ("layers", "width") else k) for k in missing)
        raise DataError(f"the model folder records no image encoder settings ({', '.join(missing)} unknown); "
                        f"pass {flags} (and --encoder-checkpoint for a trained encoder), or use --features")
    return settings


def image_tokens(model, image: str | Path, settings: dict, check_ct: bool = True, device: str = "cpu") -> np.ndarray:
    """(1, T, C) float32 visual tokens of the CT ``image`` for ``model`` (a vision-language model).

    Raises:
        DataError: the encoder is not the one the model was trained on (fingerprint), or its
            token count differs from the model's.
    """
    import torch

    from ..imaging.encode import autocast_context, encoder_fingerprint
    from ..imaging.io import read_ct
    from ..imaging.merlin import build_encoder, token_mode
    from ..imaging.preprocess import preprocess_volume
    from .io import check_fingerprint

    encoder = build_encoder(settings["checkpoint"], settings["layers"], settings["width"], settings["seed"])
    precision = settings.get("precision", "fp32")
    check_fingerprint(model.config, model.folder, encoder_fingerprint(encoder, int(settings["tokens"]), precision),
                      "the encoder recorded in the model folder (or given by the --encoder-* flags)")
    image = Path(image)
    volume = read_ct(image, study_id=image.name, check_ct=check_ct)
    array = preprocess_volume(volume, settings["spacing"], settings["size"]).array
    dtype = {"fp32": None, "bf16": torch.bfloat16}.get(precision)
    target = torch.device(device)
    encoder.to(target)
    with torch.inference_mode(), autocast_context(target, dtype):
        _, tokens = encoder.encode(torch.from_numpy(np.ascontiguousarray(array))[None, None].to(target),
                                   token_mode(int(settings["tokens"])))
    if tokens.shape[1] != model.config.tokens:
        raise DataError(f"the encoder gives {tokens.shape[1]} visual tokens for a {'x'.join(map(str, settings['size']))} "
                        f"grid; the model was trained on {model.config.tokens}: use the training's --size and --tokens")
    # Feature stores hold float16: round the same way so the model sees what it was trained on.
    return tokens.float().cpu().to(torch.float16).float().numpy()
