"""Report text -> sentences, without the acquisition sections.

:func:`split_sentences` splits prose at terminal punctuation, line breaks, quote marks and
semicolons, keeping decimals, measurements and abbreviations together; :func:`report_sentences`
also drops the sentences of technique / protocol / comparison sections, which describe how
the scan was done, not what it shows.
"""

from __future__ import annotations

import re

# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = frozenset(
    "dr mr mrs ms prof approx appr e.g i.e eg ie vs etc fig max min cf ca incl resp st".split()
)
# "no." and "nos." abbreviate "number" only before one ("node no. 4"); in "Pleural effusion:
# no. Pneumothorax: present." the "no." is an answer and ends its sentence.
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos"})
_NUMBER_AHEAD = re.compile(r"\s*\d")
# A candidate boundary: terminal punctuation followed by space, a line break, or a quote mark
# (CT-RATE puts the impression after a '"').
_BOUNDARY = re.compile(r"[.!?]+(?=\s|\"|$)|\n+|\"+|;")


def split_sentences(text: str) -> list[str]:
    """Split report prose into sentences (semicolons end one too).

    Decimals ("3.2 cm"), measurements ("13x9.3 mm") and abbreviations ("Dr.", "approx.", "e.g.")
    do not end a sentence.

    Args:
        text: report text.

    Returns:
        Stripped, non-empty sentences with their final punctuation, in reading order.
    """
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        mark = match.group()
        if mark[0] == ".":
            before = re.search(r"([\w.]+)$", text[start : match.start()])
            word = before.group(1).lower() if before else ""
            # an abbreviation, or an initial such as the "J." of "J. Smith"
            if word in _NUMBER_ABBREVIATIONS:
                if _NUMBER_AHEAD.match(text, match.end()):
                    continue
            elif word in _ABBREVIATIONS or (len(word) == 1 and text[match.start() - 1].isupper()):
                continue
        end = match.end() if mark[0] in ".!?" else match.start()
        piece = text[start:end].strip(" \t\r\n\"';")
        if piece and any(ch.isalnum() for ch in piece):
            sentences.append(piece)
        start = match.end()
    tail = text[start:].strip(" \t\r\n\"';")
    if tail and any(ch.isalnum() for ch in tail):
        sentences.append(tail)
    return sentences


# Section headers opening a sentence ("Findings: ...").  The sentences of the acquisition
# sections (technique, protocol, comparison) describe how the scan was done -- "pulmonary
# arterial phase" -- not what it shows, so they answer no question.  Request and history
# sections are kept: "Known brain metastases" is a finding, and the request's own wording
# ("evaluate for pulmonary embolism") is a hypothetical negation cue below.
_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z /&_-]{0,40}?)\s*:\s*")
_ACQUISITION_SECTIONS = re.compile(
    r"^(?:technique|protocol|procedure|acquisition|contrast|comparisons?|prior(?: studies)?|examination|exam)$",
    re.IGNORECASE,
)
_FINDING_SECTIONS = re.compile(
    r"^(?:findings?|impressions?|conclusions?|results?|opinion|summary|diagnosis|assessment)$", re.IGNORECASE
)


def _section(sentence: str) -> tuple[str | None, int]:
    """('skip' | 'keep' | None, header length) for a sentence that may open with a header."""
    header = _HEADER.match(sentence)
    if not header:
        return None, 0
    name = re.sub(r"[\s_]+", " ", header.group(1)).strip().removesuffix(" EN")
    if _ACQUISITION_SECTIONS.match(name):
        return "skip", header.end()
    if _FINDING_SECTIONS.match(name):
        return "keep", header.end()
    return None, 0


def report_sentences(text: str) -> list[str]:
    """The report's sentences (:func:`split_sentences`) that can report findings.

    A sentence opening with an acquisition header ("Technique: ...") is dropped, and so are
    the sentences after it on the same line when a findings/impression header follows later;
    the header of a findings or impression section is removed from its first sentence.
    """
    lines = [split_sentences(line) for line in text.splitlines()]
    kinds = [[_section(s) for s in line] for line in lines]
    flat = [k for line in kinds for k, _ in line]
    out: list[str] = []
    seen = 0
    for line, line_kinds in zip(lines, kinds):
        keep = True
        for sentence, (kind, cut) in zip(line, line_kinds):
            seen += 1
            if kind == "skip":
                keep = "keep" not in flat[seen:]
                continue
            if kind == "keep":
                keep = True
                sentence = sentence[cut:]
            if keep and sentence.strip():
                out.append(sentence)
    return out
