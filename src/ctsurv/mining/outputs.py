"""The three mining outputs of one report table: full table, top-N list and bar plot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from .plot import plot_top_words
from .words import mine_words, top_words

log = logging.getLogger(__name__)


def write_mining_outputs(
    reports: Iterable[str | None],
    words_path: str | Path,
    top_path: str | Path,
    plot_path: str | Path,
    *,
    top_n: int = 100,
    plot_top: int = 10,
    english_floor: float = 1e-6,
    min_doc_fraction: float = 0.01,
) -> None:
    """Mine ``reports`` and write ``words.parquet``, ``top_words.csv`` and the bar plot.

    Args:
        reports: report texts.
        words_path: full table (Parquet): word, count, doc_freq, score, kind.
        top_path: top-``top_n`` medical words (CSV): rank, word, count, doc_freq, score, kind.
        plot_path: bar plot of the ``plot_top`` best words (PNG).
        top_n, plot_top, english_floor, min_doc_fraction: see :func:`~ctsurv.mining.words.mine_words`.
    """
    from ..data.tables import text_count

    reports = list(reports)
    filled, total = text_count(reports)
    if not filled:
        log.warning("all %d report texts are empty: the word tables and the plot are empty; check the report column", total)
    table = mine_words(reports, english_floor=english_floor, min_doc_fraction=min_doc_fraction, progress=True)
    top = top_words(table, top_n)
    for path in (words_path, top_path, plot_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(words_path, index=False)
    top.to_csv(top_path, index=False)
    plot_top_words(top, plot_path, n=plot_top)
    log.info("wrote %s, %s (%d words), %s", words_path, top_path, len(top), plot_path)
