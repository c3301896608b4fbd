"""The CT vision-language model: Merlin visual tokens -> projection W -> a local causal LM.

``build`` makes a new model from a decoder folder, ``save``/``load`` write and restore the
folder format of :mod:`.io`, ``merge_image_tokens`` is the seam between image and text
(:mod:`.merge`), ``generate_answers`` decodes answers (:mod:`.generate`),
``load_survival_model`` restores a stage-2 model to score new patients (:mod:`.survival_model`).
"""

from __future__ import annotations

from .config import VLMConfig
from .generate import generate_answers
from .io import load, save
from .merge import merge_image_tokens
from .model import CTVisionLanguageModel, VLMOutput, build
from .survival_model import load_survival_model, predict_patient

__all__ = ["CTVisionLanguageModel", "VLMConfig", "VLMOutput", "build", "generate_answers", "load",
           "load_survival_model", "merge_image_tokens", "predict_patient", "save"]
