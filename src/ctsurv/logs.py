"""Logging set-up shared by the command line and the workflow scripts."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send ``ctsurv`` log records to ``log_file`` (appending) or to stderr.

    Report text and clinical values are never logged by ctsurv: records name studies,
    counts and files only.
    """
    handler: logging.Handler
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ctsurv")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return root
