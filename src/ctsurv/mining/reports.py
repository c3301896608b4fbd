"""Reading a report table (CSV or Parquet) for mining."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data.tables import load_table
from ..errors import DataError


def read_report_texts(path: str | Path, text_column: str) -> pd.Series:
    """The report texts of a CSV or Parquet table.

    Raises:
        DataError: the file is missing, not CSV/Parquet, or has no ``text_column``.
    """
    table = load_table(path, what="report table")
    if text_column not in table.columns:
        raise DataError(
            f"{path}: column '{text_column}' not found; columns are {list(table.columns)}; "
            "name the report text column with --text-column"
        )
    return table[text_column]
