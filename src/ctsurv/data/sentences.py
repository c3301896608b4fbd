"""The clinical sentence placed before the image tokens.

``clinical_sentence(row, spec)`` fills the dataset's ``clinical_sentence`` template, e.g.
``"A {age}-year-old {sex}, {pe_acute}, temperature {temperature}°F"`` ->
``"A 61-year-old female, acute pulmonary embolism, temperature 98.6°F"``.

Value rules: ``labels[column]`` maps a value to words first (YAML turns the keys ``true``
and ``false`` into booleans; both forms match); ints print as ints; floats as they read
naturally (``98.6``, ``18.0``: at most two decimals, at least one); booleans without
labels as ``yes``/``no``; a missing value as ``unknown``.  A placeholder may carry a format
spec (``{temperature:.1f}``), applied to the raw value.
"""

from __future__ import annotations

import math
import string
from typing import Any, Mapping

from ..errors import ConfigError

UNKNOWN = "unknown"


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(value, float) and math.isnan(value)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _label(value: Any, labels: Mapping) -> str | None:
    # Compare as text: YAML gives True for `true:` keys, and 1 == True in a dict lookup.
    text = str(value).lower() if isinstance(value, bool) else str(value)
    for key, word in labels.items():
        key_text = str(key).lower() if isinstance(key, bool) else str(key)
        if key_text == text:
            return str(word)
    return None


def format_value(value: Any, kind: str | None = None) -> str:
    """One value as words, following the module's rules (no labels)."""
    value = _plain(value)
    if _is_missing(value):
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "int" or isinstance(value, int):
        try:
            return str(int(value))
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float):
        return repr(round(value, 2))
    return str(value)


def clinical_sentence(row: Mapping, spec: Mapping) -> str:
    """Fill the dataset's clinical-sentence template with one cohort row.

    Args:
        row: a cohort row (``pandas.Series`` or dict) holding the template's columns.
        spec: the dataset's config entry (``clinical_sentence``, ``labels``, ``clinical``).

    Returns:
        The sentence; an empty template gives "".

    Raises:
        ConfigError: the template names a column the row does not have.
    """
    template = spec.get("clinical_sentence") or ""
    labels_by_column = spec.get("labels") or {}
    clinical = spec.get("clinical") or {}
    parts = []
    for literal, field, fmt, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if field is None:
            continue
        if field not in row:
            raise ConfigError(
                f"clinical_sentence: placeholder '{{{field}}}' is not a column of the cohort "
                f"(declare it under 'clinical' or fix the template)"
            )
        value = _plain(row[field])
        labels = labels_by_column.get(field) or {}
        word = None if _is_missing(value) else _label(value, labels)
        if word is not None:
            parts.append(word)
        elif fmt and not _is_missing(value):
            parts.append(format(value, fmt))
        else:
            parts.append(format_value(value, (clinical.get(field) or {}).get("type")))
    return "".join(parts)
