"""Bar plot of the top medical words (the paper's Fig. 2, left)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_top_words(top: pd.DataFrame, path: str | Path, n: int = 10, title: str | None = None) -> Path:
    """Draw the ``n`` best-ranked words of a :func:`~ctsurv.mining.words.top_words` table.

    Bars show each word's number of occurrences in the reports, in rank order (best at the top).

    Args:
        top: table with ``word`` and ``count`` columns, best first.
        path: image file to write (format from the suffix, e.g. ``.png``).
        n: number of words drawn.
        title: plot title; default "Top-n medical words in the reports".

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = top.head(n)
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(rows), 1) + 1.2))
    ax.barh(rows["word"][::-1], rows["count"][::-1], color="#3b6ea5")
    ax.set_xlabel("occurrences in reports")
    ax.set_title(title or f"Top-{len(rows)} medical words in the reports")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
