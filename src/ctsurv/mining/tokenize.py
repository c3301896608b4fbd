"""Tokenisation fit for radiology prose.

Reports are lower-cased and cut into tokens by one regular expression:

* measurements stay whole: ``3.2``, ``13x9.3``, ``1,5`` and ordinals such as ``7th``;
* an alphanumeric code stays whole: ``t4``, ``n1``, ``c7`` (stages, vertebrae);
* words are runs of (Latin, also accented) letters; a hyphen separates them, because in radiology prose
  (and the translated CT-RATE reports) it joins findings reported together
  (``effusion-thickening``, ``hilar-axillary``) far more often than it builds a compound;
* units glued to a number (``3cm``) become their own token (``3``, ``cm``);
* punctuation is dropped.

Each distinct token is then classed as a ``word``, ``stop`` word, ``number`` or ``unit``;
only words take part in the medical-word ranking.
"""

from __future__ import annotations

import re

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

# Letters: ASCII and accented Latin (a Unicode class like [^\W\d_] costs a third more time).
# Letters and digits start different branches, so the order only matters for speed: words first.
_L = "a-z\u00c0-\u024f"
TOKEN_RE = re.compile(
    rf"[{_L}]+(?:\d+[{_L}0-9]*|'[{_L}]+)?"  # word, code (t4, c7), patient's
    r"|\d+(?:st\b|nd\b|rd\b|th\b|(?:[.,]\d+)?(?:\s?[x×*]\s?\d+(?:[.,]\d+)?)*)"  # 7th, 3.2, 13x9.3
)

#: Units of measurement met in CT reports; kept as tokens, never ranked as medical words.
UNITS = frozenset(
    "mm cm m ml cc l mg g kg hu mmhg bpm mgy msv kv kvp mas sec s min h hr hrs mcg µg "
    "millimeter millimeters millimetre millimetres centimeter centimeters centimetre centimetres".split()
)

#: General English stop words (scikit-learn's maintained list) plus single letters.
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)

KINDS = ("word", "stop", "number", "unit")


def tokenize(text: str) -> list[str]:
    """Cut one report into lower-case tokens.

    Args:
        text: report text (any length; empty gives ``[]``).

    Returns:
        Tokens in reading order, e.g. ``"Pleural effusion-thickening, 3.2 cm."`` ->
        ``["pleural", "effusion", "thickening", "3.2", "cm"]``.
    """
    return TOKEN_RE.findall(text.lower())


def token_kind(token: str) -> str:
    """Class of a token: ``number`` (has a digit), ``unit``, ``stop`` or ``word``."""
    if any(ch.isdigit() for ch in token):
        return "number"
    if token in UNITS:
        return "unit"
    if token in STOP_WORDS or len(token) == 1:
        return "stop"
    return "word"
