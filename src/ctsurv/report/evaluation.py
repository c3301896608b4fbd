"""Evaluation of a joint-model run: the baselines' metrics plus validation c-index and BERTScore."""

from __future__ import annotations

import logging

import pandas as pd

from ..errors import DataError
from ..survival.evaluation import evaluate_predictions
from .bertscore import PAIRS, BertScoreModel, answer_bertscore

log = logging.getLogger(__name__)


def evaluate_stage2(predictions: pd.DataFrame, survival: pd.DataFrame, questions: pd.DataFrame, km_path, title: str = "",
                    n_boot: int = 1000, seed: int = 0, min_at_risk: int = 5, bertscore_pairs: int = PAIRS,
                    bertscore_seed: int = 0, bertscore_model: BertScoreModel | None = None) -> dict:
    """Test metrics and KM figure (as for the baselines), validation c-index, and BERTScore F1 of
    the generated test answers against the reference answers (``bertscore_pairs`` seeded pairs,
    scored by ``bertscore_model``, default the packaged MiniLM; ``metrics["bertscore"]["model"]``
    names it)."""
    from ..survival.metrics import harrell_cindex

    metrics = evaluate_predictions(predictions, survival, km_path, title=title, n_boot=n_boot, seed=seed,
                                   min_at_risk=min_at_risk)
    val = predictions[predictions["split"] == "val"]
    try:
        metrics["val_cindex"] = harrell_cindex(val["time"], val["event"], val["risk"], n_boot=0).cindex
    except DataError as err:  # a small validation split may have no comparable pair
        log.warning("no validation c-index: %s", err)
        metrics["val_cindex"] = None
    test_q = questions[questions["split"] == "test"]
    metrics["bertscore"] = (answer_bertscore(test_q, bertscore_pairs, bertscore_seed, bertscore_model)
                            if test_q["generated"].notna().any() else None)
    log.info("c-index %.3f [%.3f, %.3f], val c-index %s, BERTScore %s", metrics["harrell"]["cindex"],
             metrics["harrell"]["lower"], metrics["harrell"]["upper"], metrics["val_cindex"],
             metrics["bertscore"]["f1"] if metrics["bertscore"] else None)
    return metrics
