"""The ``rules`` backend: deterministic answers from the report's sentences on each topic.

For each question the report's sentences that mention its topic (keyword lists below) are
returned verbatim, joined, as the answer; a report silent on the topic answers
:data:`~ctsurv.extraction.base.NOT_MENTIONED`.  Negated sentences are kept ("No pleural
effusion." answers the effusion question with a no).  Whether a finding is *present* is decided
NegEx-style: a negation cue before a topic term ("no", "without", "free of", ...) negates it up
to the end of its clause; a cue after it ("was not observed", "are normal", ...) negates back to
the clause start; clauses end at ";", "but", "however", ", and", ... .  :func:`answer_presence`
applies the same test to any backend's answer, for the quality scores.

It is the demo default on CPU and the baseline the LLM backends must beat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError
from .base import NOT_MENTIONED, Answer, Question

_I = re.IGNORECASE

# ----------------------------------------------------------------------------- sentences

# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = frozenset(
    "dr mr mrs ms prof approx appr e.g i.e eg ie vs etc fig no nos max min cf ca incl resp st".split()
)
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
            if word in _ABBREVIATIONS or (len(word) == 1 and text[match.start() - 1].isupper()):
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


# ----------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    """What makes a sentence part of a question's topic.

    Attributes:
        terms: topic terms; a sentence is on topic when one occurs (and ``context``/``exclude`` agree).
        context: the sentence must also match this (None: no condition).
        exclude: a sentence matching this is off topic unless it matches ``unless``.
        unless: see ``exclude``.
        ignore: phrases whose topic words are not the topic (e.g. "pleural-based nodule"
            locates a nodule, it is no pleural finding); masked before matching.
        findings: the abnormality words of a topic whose other terms only name anatomy
            ("embolus", "encased" against "pulmonary arteries"); a clause holding one is
            present only when a finding word escapes negation ("The pulmonary arteries are
            opacified without filling defects" is no vessel finding).  None: every term counts.
    """

    terms: re.Pattern
    context: re.Pattern | None = None
    exclude: re.Pattern | None = None
    unless: re.Pattern | None = None
    ignore: re.Pattern | None = None
    findings: re.Pattern | None = None

    def mask(self, text: str) -> str:
        """``text`` with the ``ignore`` phrases blanked out (same length, so offsets hold)."""
        if self.ignore is None:
            return text
        return self.ignore.sub(lambda m: "_" * len(m.group()), text)

    def matches(self, sentence: str) -> bool:
        sentence = self.mask(sentence)
        if not self.terms.search(sentence):
            return False
        if self.context is not None and not self.context.search(sentence):
            return False
        if self.exclude is not None and self.exclude.search(sentence):
            return self.unless is not None and bool(self.unless.search(sentence))
        return True


def _rx(pattern: str) -> re.Pattern:
    return re.compile(pattern, _I)


_BONE_ORGANS = r"bones?|osseous|vertebra\w*|ribs?|sternum|"
_BONE = r"\b(?:" + _BONE_ORGANS + r"lytic|sclerotic|blastic|skelet\w*)\b"
_OTHER_ORGANS = (
    r"\b(?:liver|hepatic|adrenal\w*|kidneys?|renal|spleen|splenic|pancrea\w*|brain|cerebral|thyroid|breast|"
    r"esophag\w*|oesophag\w*|stomach|gastric|" + _BONE_ORGANS + r"gallbladder|gall bladder)\b"
)
_LUNG = r"\b(?:lungs?|lobes?|lobar|pulmonary|parenchyma\w*|lingula\w*|bronch\w*|hil(?:um|ar|us)|perihilar|apical|segment\w*)\b"
_LESION = (
    r"\b(?:lesions?|mass(?:es)?|nodul\w*|metasta\w*|hypodens\w*|hyperdens\w*|foc(?:us|i|al)|deposits?|"
    r"space-occupying|tumou?r\w*|infiltrat\w*|involve\w*|implants?)\b"
)

TOPICS: dict[str, Topic] = {
    "primary_tumor": Topic(
        terms=_rx(r"\b(?:mass(?:es)?|tumou?r\w*|carcinoma\w*|neoplas\w*|malignan\w*|nodul\w*|lesions?|spiculat\w*)\b"),
        exclude=_rx(_OTHER_ORGANS + r"|\blymph"),
        unless=_rx(_LUNG),
    ),
    "lymph_nodes": Topic(
        terms=_rx(r"\b(?:lymph|lymphatic|nodes?|(?:lymph)?adenopath\w*)\b"),
    ),
    "pleura": Topic(
        terms=_rx(r"\b(?:pleura[el]?|pleurisy|(?<!pericardial )effusions?|hydrothorax|pneumothorax|empyema)\b"),
        # an effusion of the pericardium or elsewhere is not pleural
        exclude=_rx(r"\b(?:pericard\w*|perirenal|peritoneal|joint|kidneys?|renal|abdom\w*|spleen|subcapsular|perihepatic)\b"),
        unless=_rx(r"\b(?:pleura\w*|hemithora\w*)\b"),
        ignore=_rx(
            r"\bpleural?[- ]based\b|\bbased on the pleura\b|\b(?:close|adjacent|near|next|extending) to the pleura\w*|"
            r"\b(?:the )?base of the pleura\b|\breach\w* the pleural? surface\b|\bpleural[- ]?parenchymal\b|"
            r"\bsitting on the pleura\w*"
        ),
    ),
    "metastases": Topic(
        terms=_rx(r"\b(?:metasta\w*|mets|carcinomatosis|implants?|" + _OTHER_ORGANS[5:-3] + r")\b"),
        context=_rx(r"\b(?:metasta\w*|mets|carcinomatosis)\b|" + _LESION),
        exclude=_rx(_BONE),
        unless=_rx(r"\b(?:metasta\w*|mets|carcinomatosis)\b|" + _OTHER_ORGANS.replace(_BONE_ORGANS, "")),
        ignore=_rx(
            r"\b(?:nodal|lymph[- ]?node|lymphatic)\s+metasta\w*|"
            r"\bmetasta\w* (?:to|in|of|within) (?:the )?(?:\w+ ){0,3}(?:lymph[- ]?)?nodes?\b"
        ),
    ),
    "vessels": Topic(
        terms=_rx(
            r"\b(?:pulmonary (?:arter\w*|veins?|trunk)|aort\w*|vena cava|svc|ivc|vascular|vessels?|encase\w*|"
            r"embol\w*|thromb\w*|brachiocephalic|subclavian (?:arter\w*|veins?))\b"
        ),
        findings=_rx(
            r"\b(?:embol\w*|thromb\w*|filling defects?|encase\w*|invasi\w*|invad\w*|infiltrat\w*|involve\w*|"
            r"compress\w*|occlu\w*|obstruct\w*|narrow\w*|stenos\w*|aneurysm\w*|dilat\w*|ectasia|ectatic|"
            r"dissect\w*|abut\w*|displace\w*)\b"
        ),
        # the aortopulmonary window is a nodal station, not a vessel
        ignore=_rx(r"\baort[ao][- ]?pulmonary (?:window|region|space)\b|\bAP window\b"),
    ),
    "bones": Topic(
        terms=_rx(
            r"\b(?:osseous|bones?|bony|skelet\w*|vertebra\w*|ribs?|sternum|sternal|scapula\w*|clavicle\w*|spine|"
            r"spinal|lytic|sclerotic|blastic|fractur\w*|degenerative|osteophyt\w*|spondyl\w*|osteo\w*)\b"
        ),
    ),
}


# ----------------------------------------------------------------------------- negation

# Cues that negate what follows them, up to the end of the clause.
_PRE_CUES = _rx(
    r"\b(?:no|not|without|absence of|absent|negative for|free of|rule(?:s|d)? out|neither|nor|never|"
    r"there (?:is|are|was|were) no|"
    # hypothetical: what a request asks about is not a finding
    r"(?:to )?(?:evaluat\w*|assess\w*|screen\w*|look\w*|search\w*) for|to (?:exclude|rule out)|query|"
    r"question of)\b"
)
# Cues that negate what precedes them, back to the start of the clause.
_POST_CUES = _rx(
    r"\b(?:(?:was|were|is|are|has|have|had|been|be)(?: been)? not (?:\w+ )?"
    r"(?:observed|detected|seen|identified|noted|present|visuali[sz]ed|evident|found|demonstrated|enlarged|"
    r"pathologic\w*|significant|monitored|followed)|"
    r"not (?:observed|detected|seen|identified|noted|present|visuali[sz]ed|evident|found|enlarged)|"
    r"(?:is|are|was|were) (?:absent|normal|natural|unremarkable|preserved|intact|clear)|"
    r"(?:is|are|was|were|remains?|appears?) (?:\w+ )?patent|"
    r"(?:appears?|looks?|seems?) (?:normal|natural|unremarkable)|"
    r"within normal limits|normal(?:ly)? (?:in )?(?:size|calib(?:re|er|ration)|appearance)|"
    r"resolved|regressed|ruled out)\b"
)
# Look like negations but are not ("no change in the nodule").
_PSEUDO = _rx(
    r"\b(?:no (?:significant |interval )?change|not (?:been )?changed|not only|no longer|"
    r"(?:can|could|may|should) not be (?:excluded|ruled out)|not excluded)\b"
)
# Clause boundaries: negation does not cross them.
_CLAUSE = _rx(
    r";|,\s*(?:and|but)\b|\bbut\b|\bhowever\b|\balthough\b|\bwhereas\b|\bwhile\b|\bexcept\b|\bapart from\b|"
    r"\band\s+(?=(?:a|an|the|there|\d)\b)"
)


def _clauses(sentence: str) -> list[str]:
    return [c for c in _CLAUSE.split(sentence) if c.strip()]


def _clause_affirms(clause: str, topic: Topic) -> bool:
    """True when some topic term in ``clause`` lies outside every negation scope."""
    clause = topic.mask(clause)
    terms = [m.start() for m in topic.terms.finditer(clause)]
    if not terms:
        return False
    if topic.findings is not None:
        findings = [m.start() for m in topic.findings.finditer(clause)]
        terms = findings or terms
    masked = _PSEUDO.sub(lambda m: "_" * len(m.group()), clause)
    scopes = [(m.start(), len(clause)) for m in _PRE_CUES.finditer(masked)]
    scopes += [(0, m.end()) for m in _POST_CUES.finditer(masked)]
    return any(not any(lo <= t < hi for lo, hi in scopes) for t in terms)


def sentence_affirms(sentence: str, topic: Topic) -> bool:
    """Whether an on-topic sentence reports the finding as present (not negated)."""
    return any(_clause_affirms(c, topic) for c in _clauses(sentence))


def topic_for(question_id: str) -> Topic:
    try:
        return TOPICS[question_id]
    except KeyError:
        raise ConfigError(
            f"question id '{question_id}': the rules backend knows only {sorted(TOPICS)}; "
            "use these ids in the questions file or an LLM backend for other questions"
        ) from None


_NEGATIVE_ANSWER = _rx(r"^\s*(?:no\b|none\b|not\b|absent\b|negative\b|without\b|normal\b|unremarkable\b)")


def answer_presence(question_id: str, answer: str | None, status: str = "ok") -> bool | None:
    """Whether an answer (from any backend) reports its finding as present.

    ``not_mentioned`` is absent (False), ``failed`` is unknown (None).  Otherwise the answer's
    on-topic sentences decide as in the rules backend; an answer with no topic term (a
    paraphrase such as "None.") is absent when it opens with a negative word.
    """
    if status == "failed" or answer is None:
        return None
    if status == "not_mentioned" or answer.strip().lower().rstrip(".") == NOT_MENTIONED.lower():
        return False
    topic = TOPICS.get(question_id)
    if topic is not None:
        on_topic = [s for s in split_sentences(answer) if topic.terms.search(topic.mask(s))]
        if on_topic:
            return any(sentence_affirms(s, topic) for s in on_topic)
    return not _NEGATIVE_ANSWER.match(answer)


# ----------------------------------------------------------------------------- backend


class RulesBackend:
    """Deterministic keyword-and-negation extractor (see the module docstring).

    Args:
        max_sentences: at most this many sentences per answer; when more are on topic,
            sentences reporting a finding are kept before negated ones, in report order.
    """

    name = "rules"
    prompt_version = "rules-1"

    def __init__(self, max_sentences: int = 4):
        self.max_sentences = max_sentences

    def answer(self, sentences: Sequence[str], question: Question) -> Answer:
        """Answer one question from a report already split into sentences."""
        topic = topic_for(question.id)
        hits = [(i, s) for i, s in enumerate(sentences) if topic.matches(s)]
        if not hits:
            return Answer(question.id, NOT_MENTIONED, "not_mentioned")
        if len(hits) > self.max_sentences:
            ranked = sorted(hits, key=lambda h: (not sentence_affirms(h[1], topic), h[0]))
            hits = sorted(ranked[: self.max_sentences])
        text = " ".join(s if s[-1] in ".!?" else s + "." for _, s in hits)
        return Answer(question.id, text, "ok")

    def extract(self, reports: Sequence[str], questions: Sequence[Question]) -> list[list[Answer]]:
        for q in questions:
            topic_for(q.id)  # a configuration problem, raised before any work
        out: list[list[Answer]] = []
        for report in reports:
            try:
                sentences = report_sentences(report) if isinstance(report, str) else []
                out.append([self.answer(sentences, q) for q in questions])
            except Exception as err:  # never let one report stop the batch
                out.append([Answer(q.id, "", "failed", f"{type(err).__name__}: {err}") for q in questions])
        return out
