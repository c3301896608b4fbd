"""Whether a sentence reports its topic's finding as present: NegEx-style negation scopes.

A negation cue before a topic term ("no", "without", "free of", "resolution of", ...) negates
it up to the end of its clause; a cue after it ("was not observed", "are normal", "has
resolved", ": no", ...) negates back to the clause start; clauses end at ";", "but",
"however", ", and", ... .  Phrases that look like negations but are not ("no change",
"cannot be excluded", "partial resolution") are masked first.  :func:`answer_presence`
applies the same test to any backend's answer, for the quality scores.
"""

from __future__ import annotations

import re

from .base import NOT_MENTIONED
from .sentence_split import split_sentences
from .topics import TOPICS, Topic


def _rx(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


# Cues that negate what follows them, up to the end of the clause.
_PRE_CUES = _rx(
    r"\b(?:no|not|without|absence of|absent|negative for|free of|rule(?:s|d)? out|neither|nor|never|"
    r"there (?:is|are|was|were) no|"
    # hypothetical: what a request asks about is not a finding
    r"(?:to )?(?:evaluat\w*|assess\w*|screen\w*|look\w*|search\w*) for|to (?:exclude|rule out)|query|"
    r"question of|"
    # a finding that went away is absent now ("interval resolution of the effusion")
    r"resolution of|resolved|disappearance of|clearance of)\b"
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
    r"no longer (?:\w+ )?(?:seen|visible|present|evident|identified|detected|demonstrated|appreciated|noted)|"
    r"resolved|regressed|cleared|disappeared|ruled out)\b|"
    # "Pleural effusion: no." -- a finding listed with its answer
    r":\s*(?:no|none|absent|negative|not (?:seen|present|identified))\b"
)
# Look like negations but are not ("no change in the nodule").
_UNABLE = r"(?:cannot|can ?not|can't|could ?not|couldn't|may not|might not|should not|shouldn't)"
_PSEUDO = _rx(
    r"\b(?:no (?:significant |interval )?change|not (?:been )?changed|not only|"
    # uncertainty: what cannot be excluded is possible, not absent
    + _UNABLE + r" (?:be )?(?:\w+ )?(?:excluded|ruled out)|" + _UNABLE + r" (?:\w+ )?(?:exclude|rule out)|"
    r"not (?:\w+ )?(?:excluded|ruled out)|"
    # a finding that went only partly, or not, is still there
    r"(?:partial|incomplete)(?:ly)? (?:resol\w*|regress\w*)|unresolved|"
    r"not (?:\w+ )?(?:resolved|regressed|cleared|disappeared))\b"
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
