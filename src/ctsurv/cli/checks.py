"""Checks every sub-command runs before it starts working.

Two kinds: argparse types for numbers (a bad value stops at parsing with the usage line, as
any other argparse error) and :func:`check_outputs`, which refuses an output that would
overwrite an input or that cannot be written (under a file, in a read-only folder), so a
long run never fails at its very end and never destroys what it read.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Iterable

from ..errors import CtsurvError


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)  # argparse type: an integer >= 1


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = _number(float, text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def device(text: str) -> str:
    """argparse type of every ``--device`` flag: a torch device this machine has (``cuda``
    without a visible GPU stops at parsing, not with a CUDA traceback after loading a model)."""
    import torch

    try:
        kind = torch.device(text).type
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; use cpu or cuda (cuda:N for the N-th GPU)") from None
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is available on this machine "
                                             "(torch.cuda.is_available() is False); use --device cpu or leave --device out")
        index = torch.device(text).index
        if index is not None and index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 to "
                                             f"cuda:{torch.cuda.device_count() - 1})")
    return text


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _can_write_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried, since permissions alone do not
    tell: root ignores them, and read-only or virtual file systems refuse root too)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def _check_writable(path: Path, flag: str, folder: bool) -> None:
    if path.exists():
        if folder and not path.is_dir():
            raise CtsurvError(f"{flag} {path}: is a file, not a folder; choose a folder")
        if not folder and path.is_dir():
            raise CtsurvError(f"{flag} {path}: is a folder; give a file name")
        target = path if folder else path.parent
        if not _can_write_in(target):
            raise CtsurvError(f"{flag} {path}: cannot write in {target} (permission denied or read-only); choose a writable folder")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CtsurvError(f"{flag} {path}: {parent} is a file, so no folder can be made under it; choose another path")
    if not _can_write_in(parent):
        raise CtsurvError(f"{flag} {path}: cannot write under {parent} (permission denied or read-only); choose a writable folder")


def check_outputs(
    files: Iterable[tuple[str, str | Path | None]] = (),
    inputs: Iterable[str | Path | None] = (),
    *,
    folders: Iterable[tuple[str, str | Path | None]] = (),
) -> None:
    """Refuse outputs that overwrite an input or cannot be written, before any work.

    Args:
        files: (flag, path) of each output file, such as ``("--out", args.out)``; None
            paths are skipped.
        inputs: files and folders the command reads.
        folders: (flag, path) of each output folder (created when absent).

    Raises:
        CtsurvError: naming the flag, the path and the fix.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    outputs = [(flag, out, False) for flag, out in files] + [(flag, out, True) for flag, out in folders]
    for flag, out, is_folder in outputs:
        if out is None:
            continue
        out = Path(out)
        for source in inputs:
            if _same_file(out, source):
                raise CtsurvError(f"{flag} {out}: is the input {source}; writing it would destroy the input. Choose another output path")
            if source.is_dir() and _inside(out, source):
                raise CtsurvError(f"{flag} {out}: is inside the input folder {source} (e.g. a DICOM series or a cache), "
                                  "so writing it would change what is read. Choose a path outside it")
        _check_writable(out, flag, is_folder)


def check_inputs(
    files: Iterable[tuple[str, str | Path | None, str]] = (),
    folders: Iterable[tuple[str, str | Path | None, str, str | None, str]] = (),
) -> None:
    """Refuse missing inputs before any work (before a model is loaded), naming flag and path.

    Args:
        files: (flag, path, what) of each input file, e.g. ``("TABLE", args.table, "table")``;
            None paths are skipped.
        folders: (flag, path, what, marker, how) of each input folder: ``marker`` is a file the
            folder must hold (None: any folder), ``how`` says where such a folder comes from.

    Raises:
        CtsurvError: e.g. ``--features x: feature store not found; write it with ...``.
    """
    for flag, path, what in files:
        if path is None:
            continue
        path = Path(path)
        if not path.exists():
            raise CtsurvError(f"{flag} {path}: {what} not found; check the path")
        if path.is_dir():
            raise CtsurvError(f"{flag} {path}: is a folder; give the {what} file")
    for flag, path, what, marker, how in folders:
        if path is None:
            continue
        path = Path(path)
        if not path.exists():
            raise CtsurvError(f"{flag} {path}: {what} not found; {how}")
        if not path.is_dir():
            raise CtsurvError(f"{flag} {path}: is a file, not a {what} folder; {how}")
        if marker and not (path / marker).exists():
            raise CtsurvError(f"{flag} {path}: not a{'n' if what[0] in 'aeiou' else ''} {what} (it has no {marker}); {how}")


def check_replaceable(flag: str, path: str | Path, marker: str, what: str) -> None:
    """Refuse an output folder that exists, is not empty and is not a ``what`` (no ``marker``):
    the command replaces its output folder whole, which would delete what is in it."""
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise CtsurvError(f"{flag} {path}: the folder exists and is not a {what} (no {marker}); the command replaces "
                          "its output folder whole, which would delete what is in it. Choose a new folder, or empty it")
