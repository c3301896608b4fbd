"""Text cells that survive a round trip through Excel unchanged and harmless.

Every value ctsurv writes into a review workbook is text.  Text that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return would be run as a formula by a spreadsheet
(formula injection, OWASP "CSV injection"), so it gets a leading apostrophe; text that
already starts with an apostrophe followed by one of those characters gets one too, so
:func:`unescape` restores every value exactly.
"""

from __future__ import annotations

import datetime as dt

#: first characters that make a spreadsheet treat a cell as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: number format "text": Excel keeps what a person types in such a cell as text
TEXT_FORMAT = "@"


def escape(text: str) -> str:
    """Make ``text`` safe to store in a cell (see the module docstring)."""
    if text.startswith(FORMULA_STARTS) or (text.startswith("'") and text[1:].startswith(FORMULA_STARTS)):
        return "'" + text
    return text


def unescape(text: str) -> str:
    """Invert :func:`escape`."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS + ("'",)):
        return text[1:]
    return text


class CoercedCell(ValueError):
    """A cell holds a date, time or formula where text was expected."""


def cell_text(value, *, allow_numbers: bool) -> str | None:
    """The text of a cell as ctsurv wrote it (or a person typed it), or None when empty.

    Args:
        value: the value openpyxl read (str, int, float, bool, datetime or None).
        allow_numbers: a number in a free-text column is turned back into the text a
            person typed ("12", "1.5"); elsewhere (ids, read-only columns) it is an error,
            because Excel may have changed it (leading zeros, long ids, exponents).

    Raises:
        CoercedCell: for dates and times (what was typed cannot be recovered), booleans,
            and numbers where ``allow_numbers`` is False.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = unescape(value)
        return text if text.strip() else None
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
