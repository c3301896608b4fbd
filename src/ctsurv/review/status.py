"""Review progress: approved / corrected / rejected / pending counts per question."""

from __future__ import annotations

import pandas as pd

from .layout import PENDING

COUNT_COLUMNS = {"approve": "approved", "correct": "corrected", "reject": "rejected", PENDING: "pending"}


def review_status(final: pd.DataFrame) -> pd.DataFrame:
    """Counts per question of a final table, plus a row ``all``.

    Returns:
        Index ``question_id`` (questions in first-seen order, then ``all``); integer columns
        ``approved, corrected, rejected, pending, total``.
    """
    order = list(dict.fromkeys(final["question_id"]))
    counts = pd.crosstab(final["question_id"], final["decision"]).reindex(index=order, columns=list(COUNT_COLUMNS), fill_value=0)
    counts = counts.rename(columns=COUNT_COLUMNS)
    counts.loc["all"] = counts.sum()
    counts["total"] = counts.sum(axis=1)
    counts.index.name = "question_id"
    return counts.astype("int64")
