"""Tokenisation fit for radiology prose.

Reports are lower-cased and cut into tokens by one regular expression:

* measurements stay whole: ``3.2``, ``13x9.3``, ``1,5`` and ordinals such as ``7th``;
* an alphanumeric code stays whole: ``t4``, ``n1``, ``c7`` (stages, vertebrae);
* words are runs of letters; a hyphen separates them, because in radiology prose
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

TOKEN_RE = re.compile(
    r"\d+(?:st|nd|rd|th)\b"  # ordinal: 7th
    r"|\d+(?:[.,]\d+)?(?:\s?[x×*]\s?\d+(?:[.,]\d+)?)*"  # number or measurement: 3.2, 13x9.3
    r"|[^\W\d_]+\d+[^\W_]*"  # code: t4, l1, c7
    r"|[^\W\d_]+(?:'[^\W\d_]+)?"  # word (letters, any script), with an apostrophe: patient's
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
