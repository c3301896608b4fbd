"""Stage-2 model folders: a vision-language model folder (:mod:`.io`) plus the branch's weights
(``survival.safetensors``) and settings (``survival.json``: branch, pool, DeepHit cuts)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from .stage2_model import CTSurvivalVLM
from .survival import SurvivalBranch

BRANCH_WEIGHTS = "survival.safetensors"
BRANCH_CONFIG = "survival.json"


def save_stage2(model: CTSurvivalVLM, folder: str | Path) -> None:
    """The vision-language model (``ctsurv.vlm.save``) plus the branch's weights and settings."""
    from safetensors.torch import save_file

    from .io import save

    folder = Path(folder)
    save(model.vlm, folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.branch.state_dict().items()}, str(folder / BRANCH_WEIGHTS))
    meta = {"branch": model.branch.spec(), "pool": model.pool, "cuts": None if model.cuts is None else model.cuts.tolist()}
    (folder / BRANCH_CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_stage2(folder: str | Path, feature_fingerprint: str | None = None, dtype=None, decoder=None) -> CTSurvivalVLM:
    """A saved stage-2 model (refuses another feature store's fingerprint, as ``ctsurv.vlm.load``);
    ``dtype``: the decoder weights' (default float32; ``vlm.weights``); the branch stays float32;
    ``decoder``: the base decoder folder when the model folder cannot find it (``ctsurv.vlm.load``)."""
    from safetensors.torch import load_file

    from .io import load

    from .folder_check import check_model_folder

    folder = Path(folder)
    if not (folder / BRANCH_CONFIG).is_file() and not (folder / BRANCH_WEIGHTS).is_file():
        raise DataError(f"{folder} is not a stage-2 model: no {BRANCH_CONFIG} (train it with rule train_stage2)")
    check_model_folder(folder, extra=(BRANCH_CONFIG, BRANCH_WEIGHTS))
    meta = json.loads((folder / BRANCH_CONFIG).read_text(encoding="utf-8"))
    vlm = load(folder, feature_fingerprint=feature_fingerprint, decoder=decoder,
               **({} if dtype is None else {"dtype": dtype}))
    branch = SurvivalBranch(**meta["branch"])
    branch.load_weights(load_file(str(folder / BRANCH_WEIGHTS)), where=f"{folder}: ")
    return CTSurvivalVLM(vlm, branch, meta["cuts"], meta["pool"])
