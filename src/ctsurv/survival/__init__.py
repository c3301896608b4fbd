"""ctsurv.survival: survival losses, heads, regularisers, models, metrics and baselines.

No Snakemake here; the workflow rules call :mod:`.baselines`, the command line ``ctsurv cv``
calls :mod:`.cv`, and the joint model (stage 2) uses :mod:`.losses`, :mod:`.heads` and
:mod:`.regularizers`.
"""

from .losses import cox_nll, deephit_loss, deephit_nll, deephit_ranking
from .regularizers import alignment, dispersion_continuous, dispersion_discrete
from .heads import MLPHead, ResidualAdaptor, deephit_head, deepsurv_head
from .discretize import discretize, make_cuts

__all__ = [
    "cox_nll",
    "deephit_loss",
    "deephit_nll",
    "deephit_ranking",
    "alignment",
    "dispersion_continuous",
    "dispersion_discrete",
    "MLPHead",
    "ResidualAdaptor",
    "deephit_head",
    "deepsurv_head",
    "discretize",
    "make_cuts",
]
