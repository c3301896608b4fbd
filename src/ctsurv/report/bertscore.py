"""BERTScore F1 of generated versus reference answers: the one implementation (stage 1 and stage 2).

The model comes from the config (``vlm.evaluate``), as bert-score takes it: a local model folder
(``bertscore_model``; ``minilm`` is the packaged all-MiniLM-L6-v2, the demo's), the layer whose
embeddings are compared (``bertscore_layers``, bert-score's ``num_layers``) and, optionally,
bert-score's baseline rescaling (``bertscore_rescale``; ``bertscore_baseline`` names the
baseline file, by default the one bert-score ships under the folder's name).  The paper's
figures (about 0.86) come from bert-score's default English model, roberta-large at layer 17,
without rescaling (config/paper.yaml); the demo's MiniLM scores are not comparable with them,
which is why every result names the model that scored it.  Nothing is downloaded; idf
weighting stays off (with one reference per candidate it scores 0).  The paper scores 500
sampled QA pairs per dataset (:func:`sample_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

PAIRS = 500
KEY = "vlm.evaluate.bertscore_model"
PACKAGED_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class BertScoreModel:
    """Which model scores, as bert-score takes it (config ``vlm.evaluate``)."""

    model: str = "minilm"
    layers: int = 6
    rescale: bool = False
    baseline: str | None = None

    @classmethod
    def from_config(cls, evaluate: Mapping) -> "BertScoreModel":
        """From the ``vlm.evaluate`` section (keys ``bertscore_model``, ``bertscore_layers``,
        ``bertscore_rescale``, ``bertscore_baseline``)."""
        return cls(model=str(evaluate.get("bertscore_model", "minilm")), layers=int(evaluate.get("bertscore_layers", 6)),
                   rescale=bool(evaluate.get("bertscore_rescale", False)), baseline=evaluate.get("bertscore_baseline"))

    def folder(self) -> Path:
        """The model folder (``minilm``: the packaged MiniLM)."""
        from ..text_encoder import resolve_text_model

        return resolve_text_model(self.model, key=KEY)

    @property
    def name(self) -> str:
        """The model's name: the folder's (``roberta-large``), or the packaged MiniLM's."""
        return PACKAGED_NAME if self.model == "minilm" else self.folder().name

    def baseline_file(self) -> Path | None:
        """The rescaling baseline (None without rescaling)."""
        if not self.rescale:
            return None
        if self.baseline:
            path = Path(self.baseline)
            if not path.is_file():
                raise ConfigError(f"vlm.evaluate.bertscore_baseline: {path} not found; give bert-score's baseline TSV "
                                  "for the model (a row per layer), or null for the one bert-score ships")
            return path
        import bert_score

        name = self.name
        path = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{name}.tsv"
        if not path.is_file():
            raise ConfigError(f"vlm.evaluate.bertscore_rescale is true but bert-score ships no baseline for a model named "
                              f"'{name}' ({path} not found); set vlm.evaluate.bertscore_baseline to the baseline TSV, "
                              "or bertscore_rescale: false")
        return path

    def describe(self) -> dict:
        """What scored, for metrics.json and the report."""
        return {"model": self.name if self.model == "minilm" else self.model, "layer": self.layers,
                "rescaled": self.rescale, "baseline": None if self.baseline_file() is None else str(self.baseline_file())}

    def label(self) -> str:
        """One line for a report, e.g. ``roberta-large, layer 17, not rescaled``."""
        return f"{self.name}, layer {self.layers}, {'rescaled with its baseline' if self.rescale else 'not rescaled'}"


def sample_pairs(table: pd.DataFrame, n: int | None = PAIRS, seed: int = 0) -> pd.DataFrame:
    """At most ``n`` rows with a reference (and a generated answer, when the column exists),
    drawn without replacement (seeded), in their original order; all of them when ``n`` is None
    or there are fewer."""
    usable = table[table["reference"].notna()]
    if "generated" in usable.columns:
        usable = usable[usable["generated"].notna()]
    if n is None or len(usable) <= n:
        return usable.reset_index(drop=True)
    return usable.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def bertscore_f1(candidates: Sequence[str], references: Sequence[str], scorer: BertScoreModel | None = None,
                 batch_size: int = 64) -> np.ndarray:
    """Per-pair BERTScore F1 (float64, shape (n,)) with ``scorer``'s model (default: the packaged MiniLM)."""
    import torch
    from bert_score import score

    scorer = scorer or BertScoreModel()
    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    if not len(candidates):
        return np.zeros(0)
    baseline = scorer.baseline_file()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.no_grad():
        _, _, f1 = score([str(c) for c in candidates], [str(r) for r in references], model_type=str(scorer.folder()),
                         num_layers=scorer.layers, idf=False, batch_size=batch_size, device=device,
                         use_fast_tokenizer=True, rescale_with_baseline=scorer.rescale, lang="en" if scorer.rescale else None,
                         baseline_path=None if baseline is None else str(baseline))
    return f1.double().numpy()


def answer_bertscore(table: pd.DataFrame, n: int = PAIRS, seed: int = 0, scorer: BertScoreModel | None = None,
                     batch_size: int = 64) -> dict:
    """Mean F1 (and per-question means) on ``n`` seeded pairs of ``generated``/``reference``,
    with the model that scored (``model``: :meth:`BertScoreModel.describe`)."""
    scorer = scorer or BertScoreModel()
    pairs = sample_pairs(table, n, seed)
    if pairs.empty:
        raise DataError("no answer pairs to score (no row has both a generated and a reference answer)")
    f1 = bertscore_f1(pairs["generated"], pairs["reference"], scorer, batch_size=batch_size)
    per_q = pd.Series(f1).groupby(pairs["question_id"].to_numpy()).mean() if "question_id" in pairs else pd.Series(dtype=float)
    return {"f1": float(f1.mean()), "n_pairs": int(len(f1)), "seed": seed, "model": scorer.describe(),
            "per_question": {str(k): float(v) for k, v in per_q.items()}}
