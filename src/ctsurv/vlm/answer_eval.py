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


def majority_rate(reference_presence: Sequence) -> float:
    """Share of the most frequent reference presence value: the agreement of a model that gives
    every study the same answer (the question's most frequent one); NaN without any."""
    values = pd.Series(reference_presence, dtype=object).dropna().astype(bool)
    return float(max(values.mean(), 1.0 - values.mean())) if len(values) else float("nan")


def image_ablation(scored: pd.DataFrame, zeroed: pd.DataFrame, n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Does the model use the image?  The same pairs answered from real and from zeroed visual tokens.

    Per question and overall (``all``): BERTScore F1 and presence agreement with zeroed tokens,
    the paired differences (real - zeroed) with percentile intervals over resampled patients
    (:func:`paired_bootstrap`, each patient's answers kept together), and the question's
    majority rate: the presence agreement of answering every study with the most frequent
    reference presence, on the pairs where presence agreement is defined
    (``presence_over_majority`` = agreement - majority rate).

    Args:
        scored, zeroed: :func:`score_answers` tables of the same pairs (same ids, same order).
        n, seed: bootstrap resamples and seed.
    """
    if scored["id"].tolist() != zeroed["id"].tolist() or scored["question_id"].tolist() != zeroed["question_id"].tolist():
        raise ValueError("image_ablation needs the same pairs in the same order in both tables")
    groups = list(scored.groupby("question_id", sort=False).groups.items())
    majority, counts = {}, {}
    for name, index in groups:
        known = scored.loc[index, "presence_agree"].notna()
        majority[name] = majority_rate(scored.loc[index][known]["presence_reference"])
        counts[name] = int(known.sum())
    # overall: each question answered with its own most frequent answer
    majority["all"] = float(sum(majority[q] * counts[q] for q, _ in groups if counts[q]) / max(sum(counts.values()), 1))
    rows = []
    for name, index in groups + [("all", scored.index)]:
        a, b = scored.loc[index], zeroed.loc[index]
        f1 = paired_bootstrap(a["bertscore_f1"], b["bertscore_f1"], groups=a["study_id"], n=n, seed=seed)
        pa = paired_bootstrap(a["presence_agree"], b["presence_agree"], groups=a["study_id"], n=n, seed=seed)
        rows.append({
            "question_id": name,
            "majority_rate": majority[name],
            "presence_over_majority": float(a["presence_agree"].mean()) - majority[name],
            "bertscore_f1_zeroed": float(b["bertscore_f1"].mean()),
            "presence_agreement_zeroed": float(b["presence_agree"].mean()),
            "exact_match_zeroed": float((b["generated"].str.strip() == b["reference"].str.strip()).mean()),
            "bertscore_f1_diff": f1["mean_difference"], "bertscore_f1_diff_low": f1["ci_low"],
            "bertscore_f1_diff_high": f1["ci_high"],
            "presence_diff": pa["mean_difference"], "presence_diff_low": pa["ci_low"], "presence_diff_high": pa["ci_high"],
        })
    return pd.DataFrame(rows)


def ablation_markdown(table: pd.DataFrame) -> str:
    lines = ["| question | presence agreement | majority rate | over majority | zeroed: presence | difference [95% CI] "
             "| BERTScore F1 | zeroed: F1 | difference [95% CI] |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.question_id} | {r.presence_agreement:.3f} | {r.majority_rate:.3f} | "
                     f"{r.presence_over_majority:+.3f} | {r.presence_agreement_zeroed:.3f} | {r.presence_diff:+.3f} "
                     f"[{r.presence_diff_low:+.3f}, {r.presence_diff_high:+.3f}] | {r.bertscore_f1:.3f} | "
                     f"{r.bertscore_f1_zeroed:.3f} | {r.bertscore_f1_diff:+.3f} [{r.bertscore_f1_diff_low:+.3f}, "
                     f"{r.bertscore_f1_diff_high:+.3f}] |")
    return "\n".join(lines) + "\n"


def markdown_table(summary: pd.DataFrame) -> str:
    lines = ["| question | pairs | BERTScore F1 | presence agreement | exact match |", "|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.question_id} | {r.pairs} | {r.bertscore_f1:.3f} | {r.presence_agreement:.3f} | "
                     f"{r.exact_match:.3f} |")
    return "\n".join(lines) + "\n"
