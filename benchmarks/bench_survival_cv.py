"""5-fold CV on scikit-survival's GBSG2 and WHAS500: ctsurv vs pycox and scikit-survival.

Same folds (stratified on event, seed 42), same validation hold-out, same networks
(2 x 32 MLP, ReLU, batch norm, dropout 0.1) and hyper-parameters on both sides:

* ctsurv DeepSurv vs pycox ``CoxPH`` (DeepSurv), ctsurv DeepHit vs pycox ``DeepHitSingle``
  (20 quantile cuts, alpha 0.2, sigma 0.1); both scored with Harrell's c-index, DeepHit on
  minus the restricted mean survival time of its curve (ctsurv's documented risk);
* ctsurv CoxPH (own fold-wise encoding) vs a scikit-learn pipeline of scikit-survival's
  ``OneHotEncoder``, ``StandardScaler`` and ``CoxPHSurvivalAnalysis``.

Prints c-index mean and sd, total fit time per model and the time ratio ctsurv / reference,
and checks the targets (|dc| <= 0.01 vs pycox, <= 1e-3 vs scikit-survival, ratio <= 1).
pycox is a benchmark-only dependency.  Run: ``.venv/bin/python benchmarks/bench_survival_cv.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd
import torch

from ctsurv.survival.cv import make_folds, split_validation
from ctsurv.survival.fit import TrainConfig
from ctsurv.survival.models import DeepHit, DeepSurv, CoxPH, NetConfig, deephit_risk
from ctsurv.survival.tabular import TabularEncoder

warnings.filterwarnings("ignore")


def load(name):
    from sksurv import datasets

    x, y = {"GBSG2": datasets.load_gbsg2, "WHAS500": datasets.load_whas500}[name]()
    event_name, time_name = y.dtype.names
    return x, y[time_name].astype(float), y[event_name].astype(bool)


def pycox_fit_predict(kind, x, t, e, xv, tv, ev, xt, cfg, net_cfg, cuts=None):
    """Fit a pycox model; return (risk on xt, fit seconds)."""
    import torchtuples as tt
    from pycox.models import CoxPH as PyCoxPH, DeepHitSingle
    from pycox.preprocessing.label_transforms import LabTransDiscreteTime

    torch.manual_seed(cfg.seed)
    if kind == "deepsurv":
        net = tt.practical.MLPVanilla(x.shape[1], list(net_cfg.hidden), 1, batch_norm=True, dropout=net_cfg.dropout)
        model = PyCoxPH(net, tt.optim.Adam(lr=cfg.lr))
        y, yv = (t.astype("float32"), e.astype("float32")), (tv.astype("float32"), ev.astype("float32"))
    else:
        lab = LabTransDiscreteTime(cuts)
        y, yv = lab.transform(t, e.astype("float32")), lab.transform(tv, ev.astype("float32"))
        net = tt.practical.MLPVanilla(x.shape[1], list(net_cfg.hidden), lab.out_features, batch_norm=True, dropout=net_cfg.dropout)
        model = DeepHitSingle(net, tt.optim.Adam(lr=cfg.lr), alpha=0.2, sigma=0.1, duration_index=lab.cuts)
    start = time.perf_counter()
    model.fit(x, y, cfg.batch_size, cfg.max_epochs, [tt.callbacks.EarlyStopping(patience=cfg.patience)], verbose=False, val_data=(xv, yv))
    seconds = time.perf_counter() - start
    if kind == "deepsurv":
        return model.predict(xt).reshape(-1), seconds
    return deephit_risk(model.predict_surv(xt), np.asarray(cuts)), seconds


def sksurv_cox(xdf, t, e, tr, te, penalizer):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.preprocessing import OneHotEncoder
    from sksurv.util import Surv

    pipe = make_pipeline(OneHotEncoder(), StandardScaler(), CoxPHSurvivalAnalysis(alpha=penalizer, ties="efron"))
    start = time.perf_counter()
    pipe.fit(xdf.iloc[tr], Surv.from_arrays(e[tr], t[tr]))
    return pipe.predict(xdf.iloc[te]), time.perf_counter() - start


def warm_up(net_cfg):
    """One untimed tiny fit of each model, so first-call costs (lazy imports, allocator,
    kernel selection) are not charged to whichever side happens to run first."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    t, e = rng.exponential(size=64) + 0.1, rng.random(64) < 0.6
    cfg = TrainConfig(lr=1e-2, batch_size=32, max_epochs=3, patience=3)
    data = (x[:48], t[:48], e[:48], x[48:], t[48:], e[48:])
    DeepSurv(net_cfg, cfg).fit(*data)
    dh = DeepHit(net_cfg, cfg, num_durations=5).fit(*data)
    pycox_fit_predict("deepsurv", *data, x, cfg, net_cfg)
    pycox_fit_predict("deephit", *data, x, cfg, net_cfg, cuts=dh.cuts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-epochs", type=int, default=500)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--penalizer", type=float, default=1e-4)
    ap.add_argument("--repeats", type=int, default=3, help="network seeds per fold (c-index averaged over them)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (tiny MLPs run fastest on one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sksurv.metrics import concordance_index_censored

    net_cfg = NetConfig()
    warm_up(net_cfg)
    ok = True
    rows = []
    for name in ("GBSG2", "WHAS500"):
        xdf, t, e = load(name)
        folds = make_folds(e, 5, 42)
        res = {k: ([], []) for k in ("coxph", "sksurv", "deepsurv", "pycox_deepsurv", "deephit", "pycox_deephit")}
        for tr, te in folds:
            enc = TabularEncoder(list(xdf.columns)).fit(xdf.iloc[tr])
            x = enc.transform(xdf)
            cidx = lambda r: concordance_index_censored(e[te], t[te], r)[0]  # noqa: E731
            ours = CoxPH(args.penalizer).fit(x[tr], t[tr], e[tr])
            res["coxph"][0].append(cidx(ours.predict_risk(x[te]))), res["coxph"][1].append(ours.fit_seconds)
            risk, sec = sksurv_cox(xdf, t, e, tr, te, args.penalizer)
            res["sksurv"][0].append(cidx(risk)), res["sksurv"][1].append(sec)
            fit_idx, val_idx = split_validation(tr, e, 0.2, 42)
            for seed in range(args.repeats):
                cfg = TrainConfig(lr=args.lr, batch_size=args.batch_size, max_epochs=args.max_epochs, patience=args.patience, seed=seed)
                data = (x[fit_idx], t[fit_idx], e[fit_idx], x[val_idx], t[val_idx], e[val_idx])
                ds = DeepSurv(net_cfg, cfg).fit(*data)
                res["deepsurv"][0].append(cidx(ds.predict_risk(x[te]))), res["deepsurv"][1].append(ds.fit_seconds)
                risk, sec = pycox_fit_predict("deepsurv", *data, x[te], cfg, net_cfg)
                res["pycox_deepsurv"][0].append(cidx(risk)), res["pycox_deepsurv"][1].append(sec)
                dh = DeepHit(net_cfg, cfg, num_durations=20, scheme="quantile").fit(*data)
                res["deephit"][0].append(cidx(dh.predict_risk(x[te]))), res["deephit"][1].append(dh.fit_seconds)
                # pycox gets ctsurv's cuts so the comparison is about the network and loss.
                risk, sec = pycox_fit_predict("deephit", *data, x[te], cfg, net_cfg, cuts=dh.cuts)
                res["pycox_deephit"][0].append(cidx(risk)), res["pycox_deephit"][1].append(sec)
        for ours, ref, tol in (("coxph", "sksurv", 1e-3), ("deepsurv", "pycox_deepsurv", 0.01), ("deephit", "pycox_deephit", 0.01)):
            (c_o, s_o), (c_r, s_r) = res[ours], res[ref]
            diff = np.mean(c_o) - np.mean(c_r)
            ratio = np.sum(s_o) / np.sum(s_r)
            passed = abs(diff) <= tol and (ours == "coxph" or ratio <= 1.0)
            ok &= passed
            rows.append({
                "dataset": name, "model": ours, "ctsurv c": f"{np.mean(c_o):.4f} ± {np.std(c_o, ddof=1):.4f}",
                "reference": ref, "ref c": f"{np.mean(c_r):.4f} ± {np.std(c_r, ddof=1):.4f}", "diff": f"{diff:+.4f}",
                "ctsurv fit s": f"{np.sum(s_o):.2f}", "ref fit s": f"{np.sum(s_r):.2f}", "time ratio": f"{ratio:.2f}",
                "pass": "yes" if passed else "NO",
            })
    print(f"5-fold CV, stratified on event, seed 42; lr {args.lr}, batch {args.batch_size}, patience {args.patience}, "
          f"{args.repeats} seed(s) per fold; {torch.get_num_threads()} torch threads")
    print(pd.DataFrame(rows).to_string(index=False))
    print("targets:", "met" if ok else "NOT met (see 'pass')")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
