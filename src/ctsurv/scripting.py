"""Glue for the thin scripts under ``workflow/scripts``.

Every script does ``from ctsurv.scripting import run_step`` and hands it a function; the
function gets the ``snakemake`` object.  Logs go to the rule's ``log:`` file and a
:class:`~ctsurv.errors.CtsurvError` ends the job with its message and no traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from .errors import CtsurvError
from .logs import setup_logging


def run_step(snakemake: Any, step: Callable[[Any], None]) -> None:
    log_file = snakemake.log[0] if len(snakemake.log) else None
    logger = setup_logging(log_file)
    # Warnings from libraries go to the rule log too, not the terminal.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").handlers[:] = logger.handlers
    try:
        step(snakemake)
    except CtsurvError as err:
        logger.error("%s", err)
        print(f"ctsurv error in rule {snakemake.rule}: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        logger.exception("unexpected failure in rule %s", snakemake.rule)
        raise
