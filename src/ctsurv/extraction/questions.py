"""The approved question templates: ``config/questions.yaml`` loaded and checked.

The file holds ``version`` and a list ``questions`` of ``{id, text}`` entries.  Ids are
stable snake_case keys (answers, reviews and instructions refer to them) and must be unique.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..config import load_yaml
from ..errors import ConfigError
from .base import Question

ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")

#: The six questions of the paper, in its order.
PAPER_QUESTION_IDS = ("primary_tumor", "lymph_nodes", "pleura", "metastases", "vessels", "bones")


def load_questions(path: str | Path) -> list[Question]:
    """Read and validate a questions file.

    Args:
        path: YAML file with ``questions: [{id: ..., text: ...}, ...]``.

    Returns:
        The questions in file order.

    Raises:
        ConfigError: naming the file and the entry (``questions[2]``, id) at fault.
    """
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list) or not data["questions"]:
        raise ConfigError(f"{path}: expected a key 'questions' holding a non-empty list of {{id, text}} entries")
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(data["questions"]):
        where = f"{path}, questions[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with keys 'id' and 'text', got {entry!r}")
        unknown = set(entry) - {"id", "text"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed keys are 'id' and 'text'")
        qid, text = entry.get("id"), entry.get("text")
        if not isinstance(qid, str) or not ID_RE.match(qid):
            raise ConfigError(f"{where}: 'id' must be a snake_case name such as 'primary_tumor', got {qid!r}")
        where = f"{where} (id '{qid}')"
        if qid in seen:
            raise ConfigError(f"{where}: duplicate id, also used by questions[{seen[qid]}]; ids must be unique")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: 'text' must be a non-empty question")
        seen[qid] = i
        questions.append(Question(id=qid, text=text.strip()))
    return questions
