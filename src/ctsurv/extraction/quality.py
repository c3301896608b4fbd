"""Quality of extracted answers: any backend's answers scored against gold answers or labels.

Three agreements per question, each over the rows where the gold has something to compare:

* presence: does the answer report the finding (:func:`~ctsurv.extraction.negation.answer_presence`)
  as the gold ``present`` says?  All rows; a ``failed`` answer counts as a disagreement.
* size: rows whose gold finding is present with a ``size_mm``: does a measurement in the answer
  (largest dimension, cm converted to mm) lie within ``max(1 mm, 10 %)`` of it?
* location: rows whose gold finding is present with a ``location``: do all words of the gold
  location appear in the answer (lobe abbreviations such as "RUL" expanded, plurals and a few
  synonyms such as "spondylosis" for "spine" folded)?
"""

from __future__ import annotations

import re

import pandas as pd

from .negation import answer_presence, sentence_affirms
from .sentence_split import split_sentences
from .topics import Topic

_SIZE = re.compile(
    r"(\d+(?:[.,]\d+)?)((?:\s*[x×*]\s*\d+(?:[.,]\d+)?)*)\s*(mm|cm|millimet(?:er|re)s?|centimet(?:er|re)s?)\b",
    re.IGNORECASE,
)
_LOBES = {"rul": "right upper lobe", "rml": "right middle lobe", "rll": "right lower lobe",
          "lul": "left upper lobe", "lll": "left lower lobe"}
_EFFUSION = Topic(terms=re.compile(r"\b(?<!pericardial )effusions?\b", re.IGNORECASE))


def parse_sizes_mm(text: str | None) -> list[float]:
    """Largest dimension, in mm, of every measurement in ``text``.

    >>> parse_sizes_mm("a 3.2 cm mass and a 13x9.3 mm node")
    [32.0, 13.0]
    """
    if not isinstance(text, str):
        return []
    sizes = []
    for number, more, unit in _SIZE.findall(text):
        dims = [float(number.replace(",", "."))]
        dims += [float(d.replace(",", ".")) for d in re.findall(r"\d+(?:[.,]\d+)?", more)]
        sizes.append(max(dims) * (10.0 if unit.lower().startswith("c") else 1.0))
    return sizes


def size_agrees(answer: str | None, size_mm: float, rel_tol: float = 0.10, abs_tol_mm: float = 1.0) -> bool:
    """Whether some measurement in ``answer`` is within ``max(abs_tol_mm, rel_tol * size_mm)``."""
    tol = max(abs_tol_mm, rel_tol * size_mm)
    return any(abs(s - size_mm) <= tol for s in parse_sizes_mm(answer))


# Words naming the same place as a canonical location word ("thoracic spondylosis" is in the
# thoracic spine).
_SYNONYMS = {"spinal": "spine", "spondylosis": "spine", "spondylotic": "spine", "vertebrae": "vertebra"}


def _singular(word: str) -> str:
    """'arteries' -> 'artery', 'nodes' -> 'node' (not 'hilus', 'axis', 'mass')."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    words = " ".join(_LOBES.get(w, w) for w in words).split()
    return {_singular(_SYNONYMS.get(w, w)) for w in words}


def location_agrees(answer: str | None, location: str) -> bool:
    """Whether every word of the gold ``location`` appears in ``answer``."""
    if not isinstance(answer, str):
        return False
    return _words(location) <= _words(answer)


def effusion_presence(answer: str | None, status: str = "ok") -> bool | None:
    """Whether an answer reports a (non-pericardial) effusion as present; None for failed answers."""
    if status == "failed" or answer is None:
        return None
    sentences = [s for s in split_sentences(answer) if _EFFUSION.terms.search(s)]
    return any(sentence_affirms(s, _EFFUSION) for s in sentences)


def score_answers(answers: pd.DataFrame, gold: pd.DataFrame) -> pd.DataFrame:
    """Per-question agreement of an answers table with gold answers.

    Args:
        answers: ``study_id, question_id, answer, status`` (the answers-table contract).
        gold: ``study_id, question_id, present`` (bool), ``size_mm`` (float or NaN),
            ``location`` (str or null), as the demo's ``gold_answers.parquet``.

    Returns:
        One row per question plus ``all``: ``question_id, n, presence, n_size, size,
        n_location, location, missing`` (agreements are fractions in [0, 1], NaN when there is
        nothing to compare; ``missing`` counts gold rows without an answer, scored as wrong).
    """
    merged = gold[["study_id", "question_id", "present", "size_mm", "location"]].merge(
        answers[["study_id", "question_id", "answer", "status"]], on=["study_id", "question_id"], how="left"
    )
    merged["missing"] = merged["status"].isna()
    merged["predicted"] = [
        None if m else answer_presence(q, a, s)
        for q, a, s, m in zip(merged["question_id"], merged["answer"], merged["status"], merged["missing"])
    ]
    merged["presence_ok"] = [p is not None and bool(p) == bool(g) for p, g in zip(merged["predicted"], merged["present"])]
    has_size = merged["present"].astype(bool) & merged["size_mm"].notna()
    merged["size_ok"] = [
        size_agrees(a, float(s)) if h else False for a, s, h in zip(merged["answer"], merged["size_mm"], has_size)
    ]
    has_loc = merged["present"].astype(bool) & merged["location"].notna()
    merged["location_ok"] = [
        location_agrees(a, str(loc)) if h else False for a, loc, h in zip(merged["answer"], merged["location"], has_loc)
    ]
    merged["has_size"], merged["has_loc"] = has_size, has_loc

    def summarise(g: pd.DataFrame) -> dict:
        n_size, n_loc = int(g["has_size"].sum()), int(g["has_loc"].sum())
        return {
            "n": len(g),
            "presence": g["presence_ok"].mean() if len(g) else float("nan"),
            "n_size": n_size,
            "size": g.loc[g["has_size"], "size_ok"].mean() if n_size else float("nan"),
            "n_location": n_loc,
            "location": g.loc[g["has_loc"], "location_ok"].mean() if n_loc else float("nan"),
            "missing": int(g["missing"].sum()),
        }

    order = list(dict.fromkeys(gold["question_id"]))
    rows = [{"question_id": q, **summarise(merged[merged["question_id"] == q])} for q in order]
    rows.append({"question_id": "all", **summarise(merged)})
    return pd.DataFrame(rows)


#: Answers compared with CT-RATE's manual labels: question, label column, presence function.
CT_RATE_LABELS = {
    "pleura": "Pleural effusion",
    "lymph_nodes": "Lymphadenopathy",
}


def label_agreement(answers: pd.DataFrame, labels: pd.DataFrame, id_column: str = "study_id") -> pd.DataFrame:
    """Agreement of answer presence with CT-RATE's binary labels.

    Args:
        answers: answers table (``study_id, question_id, answer, status``).
        labels: one row per report with ``id_column`` and the label columns of :data:`CT_RATE_LABELS`.

    Returns:
        One row per compared answer: ``question_id, label, n, positives, agreement,
        sensitivity, specificity``.  For ``pleura`` a second row ``pleura (effusion only)``
        tests only the effusion mentions of the answer, which is what the label describes.
    """
    rows = []
    for qid, label in CT_RATE_LABELS.items():
        sub = answers[answers["question_id"] == qid].merge(
            labels[[id_column, label]].rename(columns={id_column: "study_id"}), on="study_id"
        )
        truth = sub[label].astype(bool).to_numpy()
        variants = [(qid, [answer_presence(qid, a, s) for a, s in zip(sub["answer"], sub["status"])])]
        if qid == "pleura":
            variants.append((f"{qid} (effusion only)", [effusion_presence(a, s) for a, s in zip(sub["answer"], sub["status"])]))
        for name, pred in variants:
            pred = [bool(p) if p is not None else None for p in pred]
            ok = [p is not None and p == t for p, t in zip(pred, truth)]
            pos, neg = truth.sum(), (~truth).sum()
            rows.append({
                "question_id": name,
                "label": label,
                "n": len(sub),
                "positives": int(pos),
                "agreement": sum(ok) / len(sub) if len(sub) else float("nan"),
                "sensitivity": sum(o for o, t in zip(ok, truth) if t) / pos if pos else float("nan"),
                "specificity": sum(o for o, t in zip(ok, truth) if not t) / neg if neg else float("nan"),
            })
    return pd.DataFrame(rows)
