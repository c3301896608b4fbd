"""Survival models with one interface: ``fit``, ``predict_risk``, ``predict_survival``.

* :class:`CoxPH`: penalised Cox model (scikit-survival, Efron ties).
* :class:`DeepSurv`: MLP log-risk trained on the Cox partial likelihood; survival curves
  from Breslow's baseline hazard on the training set.
* :class:`DeepHit`: MLP over discrete time bins trained on DeepHit's loss.

Risk scores: higher means earlier death, for every model, so one c-index routine fits all.
DeepHit's risk is minus the restricted mean survival time up to the last cut,
``-sum_k S(c_k) (c_{k+1} - c_k)`` (time units); it uses the whole curve rather than one horizon.
"""

from __future__ import annotations

import json
import time as _time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .discretize import discretize, make_cuts
from .fit import History, TrainConfig, train_network
from .heads import deephit_head, deepsurv_head
from .losses import cox_nll, deephit_loss
from .validation import check_features, check_time_event, check_training_events


@dataclass
class NetConfig:
    """MLP shape (pycox's ``MLPVanilla`` defaults for the benchmark networks)."""

    hidden: tuple = (32, 32)
    dropout: float = 0.1
    batch_norm: bool = True


def _tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))


class SurvivalModel:
    """Base class: validation of inputs and the fit timer."""

    name = "model"
    fit_seconds: float = 0.0

    def _check_fit(self, x, time, event):
        x = check_features(x, what="training features")
        time, event = check_time_event(time, event, what="training split")
        check_training_events(event)
        return x, time, event

    def predict_risk(self, x) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict_survival(self, x, times) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class CoxPH(SurvivalModel):
    """Ridge-penalised Cox proportional hazards (``CoxPHSurvivalAnalysis``, Efron ties).

    Args:
        penalizer: ridge penalty alpha on the coefficients (0 = unpenalised).
    """

    name = "coxph"

    def __init__(self, penalizer: float = 1e-4):
        self.penalizer = penalizer

    def fit(self, x, time, event, x_val=None, time_val=None, event_val=None) -> "CoxPH":
        from sksurv.linear_model import CoxPHSurvivalAnalysis
        from sksurv.util import Surv

        x, time, event = self._check_fit(x, time, event)
        start = _time.perf_counter()
        self.model = CoxPHSurvivalAnalysis(alpha=self.penalizer, ties="efron")
        self.model.fit(x.astype(np.float64), Surv.from_arrays(event, time))
        self.fit_seconds = _time.perf_counter() - start
        return self

    def predict_risk(self, x) -> np.ndarray:
        return self.model.predict(check_features(x, what="features").astype(np.float64))

    def predict_survival(self, x, times) -> np.ndarray:
        fns = self.model.predict_survival_function(check_features(x, what="features").astype(np.float64))
        return np.stack([fn(np.clip(times, fn.domain[0], fn.domain[1])) for fn in fns])

    def state(self) -> dict:
        return {"model": self.name, "penalizer": self.penalizer, "coef": self.model.coef_.tolist()}


class _NetModel(SurvivalModel):
    def __init__(self, net: NetConfig | None = None, train: TrainConfig | None = None):
        self.net_cfg = net or NetConfig()
        self.train_cfg = train or TrainConfig()
        self.history: History | None = None

    def _run(self, x, targets, x_val, targets_val):
        torch.manual_seed(self.train_cfg.seed)
        self.net = self._build(x.shape[1])
        start = _time.perf_counter()
        self.history = train_network(self.net, self._loss, _tensor(x), targets, x_val, targets_val, self.train_cfg)
        self.fit_seconds = _time.perf_counter() - start

    def _forward(self, x) -> torch.Tensor:
        self.net.eval()
        with torch.no_grad():
            return self.net(_tensor(check_features(x, what="features")))

    def save(self, folder: str | Path) -> None:
        """``weights.safetensors`` plus ``model.json`` (settings, cuts, training history)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(folder / "weights.safetensors"))
        (folder / "model.json").write_text(json.dumps(self.state(), indent=2), encoding="utf-8")

    def state(self) -> dict:
        return {
            "model": self.name,
            "net": asdict(self.net_cfg),
            "train": asdict(self.train_cfg),
            "epochs": len(self.history.train_loss),
            "best_epoch": self.history.best_epoch,
            "fit_seconds": self.fit_seconds,
        }


class DeepSurv(_NetModel):
    """MLP log-risk trained on the Cox negative partial log-likelihood (Efron ties)."""

    name = "deepsurv"

    def _build(self, d):
        return deepsurv_head(d, hidden=self.net_cfg.hidden, dropout=self.net_cfg.dropout, batch_norm=self.net_cfg.batch_norm)

    @staticmethod
    def _loss(out, time, event):
        return cox_nll(out, event, time)

    def fit(self, x, time, event, x_val=None, time_val=None, event_val=None) -> "DeepSurv":
        from sksurv.linear_model.coxph import BreslowEstimator

        x, time, event = self._check_fit(x, time, event)
        val = None
        if x_val is not None:
            x_val = check_features(x_val, what="validation features")
            time_val, event_val = check_time_event(time_val, event_val, what="validation split")
            val = (_tensor(x_val), (_tensor(time_val), torch.as_tensor(event_val)))
        self._run(x, (_tensor(time), torch.as_tensor(event)), *(val or (None, None)))
        self.baseline = BreslowEstimator().fit(self.predict_risk(x).astype(np.float64), event, time)
        return self

    def predict_risk(self, x) -> np.ndarray:
        return self._forward(x).reshape(-1).numpy().astype(np.float64)

    def predict_survival(self, x, times) -> np.ndarray:
        fns = self.baseline.get_survival_function(self.predict_risk(x))
        return np.stack([fn(np.clip(times, fn.domain[0], fn.domain[1])) for fn in fns])


class DeepHit(_NetModel):
    """MLP over K time bins (+1 beyond the last cut) trained on DeepHit's loss.

    Args:
        num_durations: number of cuts K.
        scheme: "quantile" or "equidistant" cuts (from the training split).
        alpha, sigma: loss weights as in pycox (``alpha * nll + (1 - alpha) * ranking``).
    """

    name = "deephit"

    def __init__(self, net=None, train=None, num_durations: int = 20, scheme: str = "quantile", alpha: float = 0.2, sigma: float = 0.1):
        super().__init__(net, train)
        self.num_durations, self.scheme, self.alpha, self.sigma = num_durations, scheme, alpha, sigma

    def _build(self, d):
        return deephit_head(d, len(self.cuts), hidden=self.net_cfg.hidden, dropout=self.net_cfg.dropout, batch_norm=self.net_cfg.batch_norm)

    def _loss(self, out, idx, event):
        return deephit_loss(out, idx, event, self.alpha, self.sigma)

    def fit(self, x, time, event, x_val=None, time_val=None, event_val=None) -> "DeepHit":
        x, time, event = self._check_fit(x, time, event)
        self.cuts = make_cuts(time, event, self.num_durations, self.scheme)
        idx, ev = discretize(time, event, self.cuts)
        val = (None, None)
        if x_val is not None:
            x_val = check_features(x_val, what="validation features")
            time_val, event_val = check_time_event(time_val, event_val, what="validation split")
            iv, evv = discretize(time_val, event_val, self.cuts)
            val = (_tensor(x_val), (torch.as_tensor(iv), torch.as_tensor(evv)))
        self._run(x, (torch.as_tensor(idx), torch.as_tensor(ev)), *val)
        return self

    def predict_pmf(self, x) -> np.ndarray:
        """Probability per bin, shape (n, K + 1)."""
        return torch.softmax(self._forward(x), dim=1).numpy().astype(np.float64)

    def survival_at_cuts(self, x) -> np.ndarray:
        """S(c_k) = P(T > c_k), shape (n, K)."""
        return 1.0 - np.cumsum(self.predict_pmf(x), axis=1)[:, :-1]

    def predict_survival(self, x, times) -> np.ndarray:
        """Step function through S(c_k); 1 before the first cut."""
        surv = np.concatenate([np.ones((len(x), 1)), self.survival_at_cuts(x)], axis=1)
        pos = np.searchsorted(self.cuts, np.asarray(times, dtype=float), side="right")
        return surv[:, pos]

    def predict_risk(self, x) -> np.ndarray:
        return deephit_risk(self.survival_at_cuts(x), self.cuts)

    def state(self) -> dict:
        return super().state() | {"cuts": self.cuts.tolist(), "scheme": self.scheme, "alpha": self.alpha, "sigma": self.sigma}


def deephit_risk(surv_at_cuts: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Minus the restricted mean survival time on the cut grid.

    Args:
        surv_at_cuts: S(c_k), shape (n, K).
        cuts: shape (K,).

    Returns:
        Risk, shape (n,): ``-sum_{k<K-1} S(c_k) (c_{k+1} - c_k)`` (S = 1 before c_0 = 0).
    """
    return -(surv_at_cuts[:, :-1] * np.diff(cuts)[None, :]).sum(axis=1)


MODELS = {"coxph": CoxPH, "deepsurv": DeepSurv, "deephit": DeepHit}


@dataclass
class ModelSettings:
    """Everything needed to build any of the three models (config section ``survival``)."""

    penalizer: float = 1e-4
    net: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    num_durations: int = 20
    scheme: str = "quantile"
    alpha: float = 0.2
    sigma: float = 0.1

    @classmethod
    def from_config(cls, survival: dict, seed: int = 0) -> "ModelSettings":
        """From the validated config section ``survival``."""
        dh = survival.get("deephit", {})
        return cls(
            penalizer=survival.get("coxph", {}).get("penalizer", 1e-4),
            net=NetConfig(
                hidden=tuple(survival.get("hidden", (32, 32))),
                dropout=survival.get("dropout", 0.1),
                batch_norm=survival.get("batch_norm", True),
            ),
            train=TrainConfig(
                lr=survival.get("lr", 1e-4),
                batch_size=survival.get("batch_size", 32),
                max_epochs=survival.get("max_epochs", 500),
                patience=survival.get("patience", 50),
                weight_decay=survival.get("weight_decay", 0.0),
                seed=seed,
            ),
            num_durations=dh.get("num_durations", 20),
            scheme=dh.get("cuts", "quantile"),
            alpha=dh.get("alpha", 0.2),
            sigma=dh.get("sigma", 0.1),
        )


def build_model(name: str, settings: ModelSettings | None = None) -> SurvivalModel:
    """A fresh, unfitted model by name (coxph, deepsurv, deephit)."""
    s = settings or ModelSettings()
    if name == "coxph":
        return CoxPH(s.penalizer)
    if name == "deepsurv":
        return DeepSurv(s.net, s.train)
    if name == "deephit":
        return DeepHit(s.net, s.train, s.num_durations, s.scheme, s.alpha, s.sigma)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
