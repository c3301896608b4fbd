"""Word frequencies of a report collection and a medical-word ranking against general English.

The medical-word score of a word ``w`` compares how often it appears in the reports with how
often it appears in general English (the ``wordfreq`` package, a maintained blend of
Wikipedia, subtitles, news, books, web and social-media text):

.. math::

    \\mathrm{score}(w) = \\log_{10} \\frac{p_\\mathrm{rep}(w) + \\epsilon}{p_\\mathrm{en}(w) + \\epsilon},
    \\qquad p_\\mathrm{rep}(w) = \\frac{\\mathrm{count}(w)}{\\sum_v \\mathrm{count}(v)}

where :math:`p_\\mathrm{en}` is ``wordfreq.word_frequency(w, "en")`` and :math:`\\epsilon`
(``english_floor``, default 1e-6, i.e. Zipf 3) smooths both sides.  Without it, every word
wordfreq has never seen would tie at an infinite score; with it, words rarer than
:math:`\\epsilon` in English are ranked by their frequency in the reports, so common findings
("effusion", "nodule", "lymph") lead and one-off misspellings do not.  General words score
near zero ("the", "were") or low ("normal": frequent in reports but also in English).

Only ``word`` tokens found in at least ``min_doc_freq`` reports are scored; stop words,
numbers and units are counted but get a NaN score.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Iterable

import pandas as pd
from tqdm import tqdm

from .tokenize import token_kind, tokenize

log = logging.getLogger(__name__)

COLUMNS = ["word", "count", "doc_freq", "score", "kind"]


def min_doc_freq_for(n_reports: int, fraction: float, at_least: int = 2) -> int:
    """Documents a word must appear in to be ranked: ``max(at_least, ceil(fraction * n))``."""
    return max(at_least, math.ceil(fraction * n_reports))


def mine_words(
    reports: Iterable[str | None],
    *,
    english_floor: float = 1e-6,
    min_doc_fraction: float = 0.01,
    progress: bool = False,
) -> pd.DataFrame:
    """Count tokens over reports and score words against general English.

    Args:
        reports: report texts; None, NaN and empty strings are skipped (not counted as documents).
        english_floor: :math:`\\epsilon` of the score (see the module docstring).
        min_doc_fraction: a word must appear in at least this fraction of the reports (and
            in at least 2) to get a score.
        progress: show a tqdm progress bar.

    Returns:
        One row per distinct token, sorted by score (descending, NaN last) then count:
        ``word`` (str), ``count`` (int, occurrences), ``doc_freq`` (int, reports containing
        it), ``score`` (float or NaN), ``kind`` (word / stop / number / unit).
    """
    from wordfreq import word_frequency

    counts: Counter[str] = Counter()
    doc_freq: Counter[str] = Counter()
    n_docs = 0
    for text in tqdm(reports, desc="mining words", unit="report", disable=not progress):
        if not isinstance(text, str) or not text:
            continue
        tokens = tokenize(text)
        counts.update(tokens)
        doc_freq.update(set(tokens))
        n_docs += 1
    if not counts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, [str, "int64", "int64", float, str])})

    total = sum(counts.values())
    threshold = min_doc_freq_for(n_docs, min_doc_fraction)
    rows = []
    # One wordfreq lookup per distinct token, not per occurrence.
    for word, count in counts.items():
        kind = token_kind(word)
        df = doc_freq[word]
        score = math.nan
        if kind == "word" and df >= threshold:
            p_rep = count / total
            p_en = word_frequency(word, "en")
            score = math.log10((p_rep + english_floor) / (p_en + english_floor))
        rows.append((word, count, df, score, kind))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.sort_values(["score", "count", "word"], ascending=[False, False, True], na_position="last")
    log.info("mined %d reports: %d tokens, %d distinct, %d ranked (doc_freq >= %d)",
             n_docs, total, len(table), int(table["score"].notna().sum()), threshold)
    return table.reset_index(drop=True)


def top_words(table: pd.DataFrame, n: int = 100) -> pd.DataFrame:
    """The ``n`` highest-scoring medical words of a :func:`mine_words` table, with a 1-based ``rank``."""
    top = table.dropna(subset=["score"]).sort_values(["score", "count"], ascending=False).head(n).copy()
    top.insert(0, "rank", range(1, len(top) + 1))
    return top.reset_index(drop=True)
