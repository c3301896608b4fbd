"""ctsurv.survival: survival losses, heads, regularisers, models, metrics and baselines.

No Snakemake here; the workflow rules call :mod:`.baselines`, the command line ``ctsurv cv``
calls :mod:`.cv`, and the joint model (stage 2) uses :mod:`.losses`, :mod:`.heads` and
:mod:`.regularizers`.

The torch names below are imported on first use: importing a submodule that needs neither
torch nor scikit-survival (e.g. :mod:`.evaluation` for a results table) does not load them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Eager (numpy only): the function ``discretize`` shares its name with its module, and only an
# import here keeps ``ctsurv.survival.discretize`` the function.
from .discretize import discretize, make_cuts

_EXPORTS = {
    "cox_nll": "losses",
    "deephit_loss": "losses",
    "deephit_nll": "losses",
    "deephit_ranking": "losses",
    "alignment": "regularizers",
    "dispersion_continuous": "regularizers",
    "dispersion_discrete": "regularizers",
    "MLPHead": "heads",
    "ResidualAdaptor": "heads",
    "deephit_head": "heads",
    "deepsurv_head": "heads",
}

__all__ = [*_EXPORTS, "discretize", "make_cuts"]

if TYPE_CHECKING:  # pragma: no cover
    from .heads import MLPHead, ResidualAdaptor, deephit_head, deepsurv_head
    from .losses import cox_nll, deephit_loss, deephit_nll, deephit_ranking
    from .regularizers import alignment, dispersion_continuous, dispersion_discrete


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
