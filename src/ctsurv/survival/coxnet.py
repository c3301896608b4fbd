"""A penalised Cox model on dense features, its settings chosen on the validation split.

What a feature matrix holds about survival, with as little fitting as possible:
scikit-survival's :class:`~sksurv.linear_model.CoxnetSurvivalAnalysis` (elastic net) on the
standardised features, optionally reduced to their first principal components (fitted on the
training patients).  The input dimension (``dims``: principal components, None for all
features) and the penalty (a path of ``n_alphas`` strengths) are chosen by Harrell's c-index on
the validation patients, never on the test split.  Used as a reference row ("what the features
hold") beside the networks that read the same features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import DataError
from .metrics import concordance_sums
from .tabular import Standardizer

log = logging.getLogger(__name__)


def cindex(time, event, risk) -> float:
    """Harrell's c-index without checks or interval (NaN without a comparable pair)."""
    num, den = concordance_sums(np.asarray(time, float), np.asarray(event, bool), np.asarray(risk, float),
                                np.ones((1, len(time))))
    return float(num[0] / den[0]) if den[0] > 0 else float("nan")


@dataclass
class Coxnet:
    """Elastic-net Cox on (optionally PCA-reduced) standardised features.

    Args:
        dims: candidate input dimensions (principal components; None: every feature).
        l1_ratio: elastic-net mix (1 lasso, near 0 ridge).
        n_alphas: penalty strengths on the path.
    """

    dims: Sequence[int | None] = (8, 32, 128, None)
    l1_ratio: float = 0.5
    n_alphas: int = 30
    chosen: dict = field(default_factory=dict)

    def _project(self, x: np.ndarray, k: int | None) -> np.ndarray:
        z = self.scaler.transform(x)
        return z if k is None else z @ self.components[:k].T

    def fit(self, x: np.ndarray, time, event, train: np.ndarray, val: np.ndarray) -> "Coxnet":
        """Fit on ``train`` rows for each dimension, keep the (dimension, alpha) with the best
        validation c-index (``val`` rows)."""
        from sksurv.linear_model import CoxnetSurvivalAnalysis
        from sksurv.util import Surv

        time, event = np.asarray(time, float), np.asarray(event, bool)
        if not event[train].any():
            raise DataError("penalised Cox: no events among the training patients")
        if len(val) < 2 or not event[val].any():
            raise DataError("penalised Cox: the validation split needs events to choose the penalty")
        self.scaler = Standardizer().fit(x[train])
        z = self.scaler.transform(x[train])
        self.components = np.linalg.svd(z - z.mean(0), full_matrices=False)[2]
        y = Surv.from_arrays(event[train], time[train])
        best = None
        for k in self.dims:
            if k is not None and k >= min(z.shape):
                continue
            est = CoxnetSurvivalAnalysis(l1_ratio=self.l1_ratio, n_alphas=self.n_alphas, alpha_min_ratio=0.01,
                                         fit_baseline_model=False, max_iter=20000)
            try:
                est.fit(self._project(x[train], k), y)
            except ArithmeticError as err:  # sksurv: the path did not converge for these features
                log.warning("penalised Cox with %s dimensions: %s", k, err)
                continue
            xv = self._project(x[val], k)
            for alpha in est.alphas_:
                c = cindex(time[val], event[val], est.predict(xv, alpha=alpha))
                if np.isfinite(c) and (best is None or c > best[0]):
                    best = (c, k, float(alpha), est)
        if best is None:
            raise DataError("penalised Cox: no setting could be fitted on these features")
        self.val_cindex, self.k, self.alpha, self.model = best
        self.chosen = {"dims": self.k, "alpha": self.alpha, "val_cindex": round(self.val_cindex, 4),
                       "nonzero": int(np.count_nonzero(self.model.coef_[:, list(self.model.alphas_).index(self.alpha)]))}
        log.info("penalised Cox chosen on validation: %s", self.chosen)
        return self

    def predict_risk(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self._project(x, self.k), alpha=self.alpha)
