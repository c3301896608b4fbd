"""What each of the paper's questions is about: the words that put a sentence on its topic.

A :class:`Topic` per question id (:data:`TOPICS`): topic terms, the context a sentence also
needs, the words that put it off topic, and phrases whose topic words are not the topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

_I = re.IGNORECASE

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


def topic_for(question_id: str) -> Topic:
    try:
        return TOPICS[question_id]
    except KeyError:
        raise ConfigError(
            f"question id '{question_id}': the rules backend knows only {sorted(TOPICS)}; "
            "use these ids in the questions file or an LLM backend for other questions"
        ) from None
