"""Generated answers vs reference answers: BERTScore F1 and presence agreement, per question.

- BERTScore F1 with the configured model (:mod:`ctsurv.report.bertscore`, the one BERTScore
  implementation: ``minilm`` is the packaged all-MiniLM-L6-v2; the paper's roberta-large is a
  local folder).  Nothing is downloaded.
- Presence agreement: the rules reader (:func:`ctsurv.extraction.rules.answer_presence`)
  decides for the generated and for the reference answer whether the finding is reported
  present; the score is the fraction of pairs where both agree.
- :func:`paired_bootstrap` compares two systems on the same pairs (e.g. images vs zeroed
  images): the mean difference and a percentile interval over resampled patients' pairs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def qa_pairs(records: Sequence[dict]) -> pd.DataFrame:
    """One row per (record, turn): id, study_id, question_id, human (first-turn form), reference.

    A later turn of a multi-turn record is asked like the first: its question replaces the
    first turn's question after the ``<image>`` line, so every answer is generated from
    clinical sentence + image + its own question.
    """
    from .data import conversation_turns, record_where

    rows = []
    for i, rec in enumerate(records):
        turns = conversation_turns(rec, record_where(rec, i))
        qids = list(rec.get("question_ids") or [])
        first_human = turns[0][0]
        head = first_human.rsplit("\n", 1)[0] if "\n" in first_human else first_human
        for k, (human, answer) in enumerate(turns):
            rows.append({
                "id": str(rec.get("id", i)),
                "study_id": str(rec["study_id"]),
                "question_id": qids[k] if k < len(qids) else f"turn{k + 1}",
                "human": human if k == 0 else f"{head}\n{human}",
                "reference": answer,
            })
    return pd.DataFrame(rows, columns=["id", "study_id", "question_id", "human", "reference"])




def presence(question_ids: Sequence[str], answers: Sequence[str]) -> list[bool | None]:
    """Whether each answer reports its question's finding as present (None: undecidable)."""
    from ..extraction.rules import answer_presence

    return [answer_presence(q, a) for q, a in zip(question_ids, answers)]


def score_answers(pairs: pd.DataFrame, generated: Sequence[str], scorer=None) -> pd.DataFrame:
    """``pairs`` plus generated, bertscore_f1 (``scorer``: a :class:`ctsurv.report.bertscore.BertScoreModel`,
    default the packaged MiniLM), presence_generated/reference, presence_agree."""
    from ..report.bertscore import bertscore_f1

    out = pairs.copy()
    out["generated"] = list(generated)
    out["bertscore_f1"] = bertscore_f1(out["generated"].tolist(), out["reference"].tolist(), scorer)
    out["presence_generated"] = presence(out["question_id"], out["generated"])
    out["presence_reference"] = presence(out["question_id"], out["reference"])
    known = out["presence_generated"].notna() & out["presence_reference"].notna()
    agree = (out["presence_generated"] == out["presence_reference"]).astype(float)
    out["presence_agree"] = agree.where(known)
    return out


def summarize(scored: pd.DataFrame) -> pd.DataFrame:
    """Per question and overall: pairs, mean BERTScore F1, presence agreement, exact matches."""
    def row(name, g):
        return {"question_id": name, "pairs": len(g), "bertscore_f1": g["bertscore_f1"].mean(),
                "presence_agreement": g["presence_agree"].mean(),
                "exact_match": (g["generated"].str.strip() == g["reference"].str.strip()).mean()}

    rows = [row(q, g) for q, g in scored.groupby("question_id", sort=False)] + [row("all", scored)]
    return pd.DataFrame(rows)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], groups: Sequence[str] | None = None, n: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict:
    """Mean of ``a - b`` with a percentile interval, resampling groups (patients) with replacement.

    Pairs where either value is NaN are dropped.  ``groups`` (e.g. study ids) keeps the six
    answers of one patient together, so the interval is not too narrow.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = (a - b)[keep]
    labels = np.asarray(groups if groups is not None else np.arange(len(a)))[keep]
    uniq, inverse = np.unique(labels, return_inverse=True)
    sums = np.bincount(inverse, weights=diff, minlength=len(uniq))
    counts = np.bincount(inverse, minlength=len(uniq)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniq), size=(n, len(uniq)))
    boot = sums[draws].sum(axis=1) / np.maximum(counts[draws].sum(axis=1), 1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2]) if n else (np.nan, np.nan)
    return {"mean_difference": float(diff.mean()) if len(diff) else float("nan"), "ci_low": float(lo),
            "ci_high": float(hi), "level": level, "pairs": int(keep.sum()), "groups": int(len(uniq)),
            "resamples": n}


def markdown_table(summary: pd.DataFrame) -> str:
    lines = ["| question | pairs | BERTScore F1 | presence agreement | exact match |", "|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.question_id} | {r.pairs} | {r.bertscore_f1:.3f} | {r.presence_agreement:.3f} | "
                     f"{r.exact_match:.3f} |")
    return "\n".join(lines) + "\n"
