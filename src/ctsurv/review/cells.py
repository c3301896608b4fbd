"""Text cells that survive a round trip through Excel unchanged and harmless.

Every value ctsurv writes into a review workbook is text: stored as a string (never a
formula) in a cell with number format "text" (``@``).  Text that starts with ``=``, ``+``,
``-`` or ``@`` would be run as a formula once a person edits the cell (formula injection,
OWASP "CSV injection"), so such cells also get Excel's *quote prefix* style -- what Excel
itself sets when one types ``'=...`` -- which shows the text as it is, without the literal
apostrophe an escaping scheme would show clinicians.  The value read back is the value
written, character for character.

Two things a cell cannot hold are changed, the same way at export and when comparing a
workbook with the answers (:func:`cell_value`): control characters other than tab and line
breaks (openpyxl refuses them; ``\\x0b`` and ``\\x0c`` become a space, the others U+FFFD, so
the clinician sees that something was there), and text beyond Excel's 32,767 characters per
cell (cut, ending with a note; report texts continue in the next cells instead, see
:func:`chunks`).
"""

from __future__ import annotations

import datetime as dt
import math
import re

#: first characters that make a spreadsheet treat what is typed into a cell as a formula
FORMULA_STARTS = ("=", "+", "-", "@")
#: number format "text": Excel keeps what a person types in such a cell as text
TEXT_FORMAT = "@"
#: characters one cell holds (Excel's limit; openpyxl writes more, Excel then cuts or refuses the file)
EXCEL_CELL_LIMIT = 32767
#: what openpyxl refuses to write (XML 1.0 has no such characters)
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CUT_NOTE = " [cut: {n:,} characters; a workbook cell holds {limit:,}]"


def needs_quote_prefix(text: str) -> bool:
    """Whether a cell holding ``text`` gets the quote-prefix style (see the module docstring)."""
    return text.startswith(FORMULA_STARTS)


def clean_text(text: str) -> tuple[str, int]:
    """``text`` without the characters a workbook cannot hold, and how many were replaced."""
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        count += 1
        return " " if match.group() in "\x0b\x0c" else "\ufffd"

    return _ILLEGAL.sub(replace, text), count


def cell_value(value) -> str | None:
    """What a cell shows for ``value`` once written and read back, or None for an empty cell.

    None, NaN/NA and blank text are empty (a failed extraction's ``""`` included); other text
    has its illegal characters replaced and is cut to :data:`EXCEL_CELL_LIMIT` with a note.
    Compare answers with workbook cells through this function, never raw.
    """
    if value is None or (not isinstance(value, str) and _is_missing(value)):
        return None
    text, _ = clean_text(str(value))
    if not text.strip():
        return None
    if len(text) > EXCEL_CELL_LIMIT:
        note = _CUT_NOTE.format(n=len(text), limit=EXCEL_CELL_LIMIT)
        text = text[: EXCEL_CELL_LIMIT - len(note)] + note
    return text


def chunks(text: str, size: int = EXCEL_CELL_LIMIT) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, for a text that continues across cells."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _is_missing(value) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return isinstance(value, float) and math.isnan(value)


class CoercedCell(ValueError):
    """A cell holds a date, time or formula where text was expected."""


def cell_text(value, *, allow_numbers: bool, formula: bool = False) -> str | None:
    """The text of a cell as ctsurv wrote it (or a person typed it), or None when empty.

    Args:
        value: the value openpyxl read (str, int, float, bool, datetime or None).
        allow_numbers: a number in a free-text column is turned back into the text a
            person typed ("12", "1.5"); elsewhere (ids, read-only columns) it is an error,
            because Excel may have changed it (leading zeros, long ids, exponents).
        formula: the cell holds a formula (openpyxl's data type ``f``), not text.

    Raises:
        CoercedCell: for formulas (what the clinician sees is computed, not typed), dates
            and times (what was typed cannot be recovered), booleans, and numbers where
            ``allow_numbers`` is False.
    """
    if value is None:
        return None
    if formula:
        raise CoercedCell(f"holds the formula {value!r}: type the text itself (the cell's format must stay Text)")
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        raise CoercedCell(f"holds the date/time {value!s}: Excel converted what was typed; re-type it as text")
    if isinstance(value, bool):
        raise CoercedCell(f"holds the logical value {value}: type the text instead")
    if isinstance(value, (int, float)):
        if not allow_numbers:
            raise CoercedCell(f"holds the number {value!r}: Excel converted this text to a number; restore the original text")
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    raise CoercedCell(f"holds an unsupported value {value!r}")
