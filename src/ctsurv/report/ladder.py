"""The signal ladder of one survival cohort: where between the true hazard and our model the signal is lost.

Each rung is one risk score on the test split, with Harrell's c-index and its bootstrap
interval, from the most informed to the model:

* ``truth`` (demo data only, from ``truth.parquet``): the oracle (the whole known log-hazard)
  and each of its parts alone (clinical, findings a report describes, image-only);
* ``clinical``: the clinical CoxPH baseline;
* ``features``: a penalised Cox (:mod:`ctsurv.survival.coxnet`, its input dimension and penalty
  chosen on validation) on the encoder's pooled image features, alone and with the clinical
  table: what the inputs hold for a linear model;
* ``baselines``: DeepSurv and DeepHit on each modality;
* ``ours``: the joint model per head, with and without pre-training.

With the truth, each score's Spearman correlation with each true part (test patients) says
which part of the hazard it carries, e.g. how much of the clinical part the joint model keeps
against the CoxPH.  The page names the largest drop along the chain oracle -> what the
features hold -> best baseline (picked on validation) -> ours: the rung where the signal is lost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..survival.evaluation import read_predictions
from .tables import run_name, val_cindex

log = logging.getLogger(__name__)

PARTS = {"log_hazard_clinical": "clinical part", "log_hazard_findings": "findings part",
         "log_hazard_image_only": "image-only part"}
GROUPS = ("truth", "clinical", "features", "baselines", "ours")
_METHOD = {"coxph": "CoxPH", "deepsurv": "DeepSurv", "deephit": "DeepHit"}


def _rung(group: str, name: str, scores: pd.DataFrame, risk_col: str = "risk") -> dict:
    """A rung: its scores (study_id, split, time, event and the risk column)."""
    frame = scores.rename(columns={risk_col: "risk"})[["study_id", "split", "time", "event", "risk"]]
    return {"group": group, "rung": name, "scores": frame.assign(study_id=frame["study_id"].astype(str))}


def truth_rungs(truth: pd.DataFrame, followup: pd.DataFrame) -> list[dict]:
    """The oracle and each true part alone, on the cohort's follow-up."""
    cols = ["study_id", "log_hazard", *[c for c in PARTS if c in truth]]  # the truth's own time/event stay out
    merged = followup.merge(truth[cols].assign(study_id=truth["study_id"].astype(str)), on="study_id", how="inner")
    rungs = [_rung("truth", "oracle (known hazard)", merged, "log_hazard")]
    rungs += [_rung("truth", f"true {label} alone", merged, col) for col, label in PARTS.items() if col in merged]
    return rungs


def feature_rungs(followup: pd.DataFrame, cohort: pd.DataFrame, image_store, clinical: Sequence[str]) -> list[dict]:
    """Penalised Cox on the pooled image features, alone and with the clinical table."""
    from ..features import FeatureStore
    from ..survival.coxnet import Coxnet
    from ..survival.tabular import TabularEncoder

    store = FeatureStore(image_store)
    rows = followup[followup["study_id"].isin(set(store.study_ids))].reset_index(drop=True)
    image = store.get(rows["study_id"].tolist(), "pooled").astype(np.float64)
    train = np.flatnonzero(rows["split"].to_numpy() == "train")
    val = np.flatnonzero(rows["split"].to_numpy() == "val")
    inputs = {"penalised Cox, image features": image}
    if clinical:
        table = cohort.assign(study_id=cohort["study_id"].astype(str)).set_index("study_id").loc[rows["study_id"]]
        table = table.reset_index()
        clin = TabularEncoder(list(clinical)).fit(table.iloc[train]).transform(table)
        inputs["penalised Cox, clinical + image features"] = np.concatenate([np.asarray(clin, float), image], axis=1)
    rungs = []
    for name, x in inputs.items():
        model = Coxnet().fit(x, rows["time"], rows["event"], train, val)
        rung = _rung("features", name, rows.assign(risk=model.predict_risk(x)))
        rung["chosen"] = model.chosen
        rungs.append(rung)
    return rungs


def run_rungs(baseline_predictions: Sequence, stage2_predictions: Sequence) -> list[dict]:
    """The clinical CoxPH, the other baselines and ours, from their ``predictions.parquet``."""
    rungs = []
    for path in baseline_predictions:
        model, modality = run_name(path)
        group = "clinical" if model == "coxph" else "baselines"
        rungs.append(_rung(group, f"{_METHOD.get(model, model)}, {modality}", read_predictions(path)))
    for path in stage2_predictions:
        head, pretrain = run_name(path)
        rungs.append(_rung("ours", f"ours ({_METHOD.get(head, head)}), {pretrain} pre-training", read_predictions(path)))
    return rungs


def ladder_table(rungs: Sequence[dict], truth: pd.DataFrame | None = None, n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """One row per rung: test c-index with its interval, validation c-index, and (with the
    truth) the Spearman correlation of the score with each true part on the test patients."""
    from ..survival.metrics import harrell_cindex

    rows = []
    parts = [c for c in PARTS if truth is not None and c in truth]
    for r in rungs:
        s = r["scores"]
        te = s[s["split"] == "test"]
        h = harrell_cindex(te["time"], te["event"], te["risk"], n_boot=n_boot, seed=seed)
        row = {"group": r["group"], "rung": r["rung"], "c_index": h.cindex, "ci_low": h.lower, "ci_high": h.upper,
               "val_c_index": val_cindex({"predictions": s}) if r["group"] != "truth" else None,
               "n_test": h.n, "events_test": h.events, "chosen": r.get("chosen")}
        if parts:
            joined = te.merge(truth.assign(study_id=truth["study_id"].astype(str))[["study_id", *parts]], on="study_id")
            for col in parts:
                row[f"corr_{col.removeprefix('log_hazard_')}"] = float(joined["risk"].corr(joined[col], method="spearman"))
        rows.append(row)
    table = pd.DataFrame(rows)
    table["group"] = pd.Categorical(table["group"], GROUPS, ordered=True)
    return table.sort_values("group", kind="stable").reset_index(drop=True).assign(group=lambda t: t["group"].astype(str))


def _pick(table: pd.DataFrame, group: str, by_val: bool = True) -> pd.Series | None:
    rows = table[table["group"] == group]
    if rows.empty:
        return None
    if by_val and rows["val_c_index"].notna().any():
        return rows.loc[rows["val_c_index"].astype(float).idxmax()]
    return rows.iloc[0]


def where_lost(table: pd.DataFrame) -> list[str]:
    """The chain oracle -> what the features hold -> best baseline -> ours (each non-truth step
    picked by its validation c-index), each step's change in test c-index, and the largest drop."""
    chain = [("truth", False), ("features", True), ("baselines", True), ("ours", True)]
    steps = [(g, row) for g, by_val in chain if (row := _pick(table, g, by_val)) is not None]
    lines = []
    for (_, a), (_, b) in zip(steps, steps[1:]):
        lines.append(f"{a['rung']} {a['c_index']:.3f} -> {b['rung']} {b['c_index']:.3f} ({b['c_index'] - a['c_index']:+.3f})")
    drops = [(b["c_index"] - a["c_index"], b["rung"], a["rung"]) for (_, a), (_, b) in zip(steps, steps[1:])]
    out = [f"- {line}" for line in lines]
    if drops:
        d, to, frm = min(drops)
        out.append(f"- The signal is lost mostly between **{frm}** and **{to}** ({d:+.3f})." if d < 0 else
                   "- No step along the chain loses c-index.")
    cox = _pick(table, "clinical", False)
    ours = _pick(table, "ours")
    if cox is not None and "corr_clinical" in table and ours is not None:
        out.append(f"- Clinical part of the true hazard carried (Spearman, test): {cox['rung']} "
                   f"{cox['corr_clinical']:.2f}, {ours['rung']} {ours['corr_clinical']:.2f}.")
    return out


def ladder_markdown(table: pd.DataFrame, dataset: str) -> str:
    """The ladder as markdown, with where the signal is lost."""
    corr = [c for c in table.columns if c.startswith("corr_")]
    head = "| group | rung | c-index [95% CI] | val c-index | " + " | ".join(f"r {c[5:]}" for c in corr) + " | n test (events) |"
    lines = [f"## Signal ladder: {dataset}", "",
             "Harrell's c-index on the test split with 95% bootstrap intervals; val c-index: the validation split "
             "(how the best baseline and model are picked); r: Spearman correlation of the score with each part of "
             "the true log-hazard (demo data).", "", head, "|" + "---|" * (5 + len(corr))]
    fmt = lambda v: "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"  # noqa: E731
    for _, r in table.iterrows():
        cells = " | ".join(fmt(r[c]) for c in corr)
        lines.append(f"| {r['group']} | {r['rung']} | {fmt(r['c_index'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | "
                     f"{fmt(r['val_c_index'])} | " + (cells + " | " if corr else "") + f"{r['n_test']} ({r['events_test']}) |")
    lines += ["", "### Where the signal is lost", ""] + where_lost(table)
    return "\n".join(lines) + "\n"


def ladder_figure(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Each rung's test c-index with its interval, top (truth) to bottom (ours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(GROUPS, ("#555555", "#1f77b4", "#2ca02c", "#9467bd", "#d62728")))
    n = len(table)
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * n + 1.2))
    y = np.arange(n)[::-1]
    for yi, (_, r) in zip(y, table.iterrows()):
        lo, hi = r["ci_low"], r["ci_high"]
        err = None if not (np.isfinite(lo) and np.isfinite(hi)) else [[r["c_index"] - lo], [hi - r["c_index"]]]
        ax.errorbar(r["c_index"], yi, xerr=err, fmt="o", color=colors.get(r["group"], "k"), capsize=3)
    ax.set_yticks(y, table["rung"].tolist(), fontsize=8)
    ax.axvline(0.5, color="#999999", lw=0.8, ls=":")
    cox = table[table["group"] == "clinical"]
    if len(cox):
        ax.axvline(float(cox["c_index"].iat[0]), color=colors["clinical"], lw=0.8, ls="--", label="clinical CoxPH")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("Harrell's c-index, test split (95% bootstrap interval)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def signal_ladder(cohort: pd.DataFrame, image_store, baseline_predictions: Sequence, stage2_predictions: Sequence,
                  dataset: str, clinical: Sequence[str] = (), truth_path=None, n_boot: int = 1000,
                  seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The ladder of one cohort (table and markdown); rungs that need the truth only with it."""
    from ..survival.baselines import survival_rows

    followup = survival_rows(cohort)[["study_id", "split", "time", "event"]].assign(
        study_id=lambda d: d["study_id"].astype(str))
    truth = pd.read_parquet(truth_path) if truth_path is not None else None
    rungs = truth_rungs(truth, followup) if truth is not None else []
    rungs += feature_rungs(followup, cohort, image_store, clinical)
    rungs += run_rungs(baseline_predictions, stage2_predictions)
    table = ladder_table(rungs, truth, n_boot=n_boot, seed=seed)
    table.insert(0, "dataset", dataset)
    return table, ladder_markdown(table, dataset)
