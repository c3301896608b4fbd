"""Reading a report table (CSV or Parquet) for mining."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError


def read_report_texts(path: str | Path, text_column: str) -> pd.Series:
    """The report texts of a CSV or Parquet table.

    Raises:
        DataError: the file is missing, not CSV/Parquet, or has no ``text_column``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        table = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".tsv") or suffix in (".csv.gz", ".tsv.gz"):
        table = pd.read_csv(path, sep="\t" if ".tsv" in suffix else ",")
    else:
        raise DataError(f"{path}: expected a .csv, .tsv or .parquet report table")
    if text_column not in table.columns:
        raise DataError(
            f"{path}: column '{text_column}' not found; columns are {list(table.columns)}; "
            "name the report text column with --text-column"
        )
    return table[text_column]
