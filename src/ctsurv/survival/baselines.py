"""The paper's baselines on a cohort: CoxPH on the clinical table, DeepSurv and DeepHit on
clinical, text (clinical-sentence features), image (pooled image features) or both.

:func:`train_baseline` fits on the train split (early stopping on val), then writes risk
scores and survival curves for every patient; :func:`evaluate_baseline` turns those into
test metrics and a Kaplan-Meier figure; :func:`results_table` collects one dataset's models.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .models import ModelSettings, build_model
from .paths import STORES
from .tabular import Standardizer, TabularEncoder
from .validation import check_time_event, check_training_events

log = logging.getLogger(__name__)

MODALITIES = ("clinical", "text", "image", "both")
SURVIVAL_GRID = 100  # points of the stored survival curves


def survival_rows(cohort: pd.DataFrame) -> pd.DataFrame:
    """Rows with follow-up, positions reset; follow-up checked (errors name the study rows)."""
    rows = cohort[cohort["time"].notna() & cohort["event"].notna()].reset_index(drop=True)
    if rows.empty:
        raise DataError("the cohort has no rows with follow-up (time and event); is this a survival dataset?")
    check_time_event(rows["time"].to_numpy(float), rows["event"].to_numpy(float), what="cohort")
    return rows


def load_features(
    rows: pd.DataFrame, modality: str, clinical: Sequence[str], stores: dict
) -> tuple[pd.DataFrame, np.ndarray | None, list[str]]:
    """Feature inputs of one modality.

    Args:
        rows: cohort rows with follow-up.
        modality: clinical, text, image or both.
        clinical: clinical column names (for ``clinical``).
        stores: ``{"text": path, "image": path}`` feature stores needed by the modality.

    Returns:
        (rows kept, dense features (n, d) or None for clinical, feature names).  Studies
        missing from a store (e.g. images skipped by QC) are dropped with a warning.
    """
    from ..features import FeatureStore

    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    if modality == "clinical":
        if not clinical:
            raise ConfigError("modality 'clinical' needs clinical columns in the dataset's config entry")
        return rows, None, list(clinical)
    opened = []
    for kind in STORES[modality]:
        if kind not in stores or stores[kind] is None:
            raise ConfigError(f"modality {modality!r} needs the {kind} feature store")
        opened.append(FeatureStore(stores[kind]))
    ids = rows["study_id"].astype(str)
    keep = np.all([ids.map(lambda s, st=st: s in st).to_numpy() for st in opened], axis=0)
    if not keep.all():
        log.warning("%d of %d studies have no %s features and are left out", (~keep).sum(), len(keep), modality)
        rows = rows[keep].reset_index(drop=True)
    parts = [st.get(rows["study_id"].astype(str).tolist(), "pooled") for st in opened]
    names = [f"{kind}_{i}" for kind, part in zip(STORES[modality], parts) for i in range(part.shape[1])]
    return rows, np.concatenate(parts, axis=1), names


def _split(rows, name):
    return np.flatnonzero(rows["split"].to_numpy() == name)


def train_baseline(
    cohort: pd.DataFrame,
    model: str,
    modality: str,
    clinical: Sequence[str],
    stores: dict,
    settings: ModelSettings,
    out_dir: str | Path,
    val_fraction: float = 0.2,
) -> dict:
    """Fit one baseline and write its predictions.

    Writes to ``out_dir``: ``predictions.parquet`` (study_id, split, time, event, risk),
    ``survival.parquet`` (study_id, then S(t) at ``SURVIVAL_GRID`` times named by t) and
    ``model.json`` (settings, plus ``weights.safetensors`` for networks).

    Args:
        cohort: the cohort table.
        model: coxph (clinical only), deepsurv or deephit.
        modality: clinical, text, image or both.
        clinical: clinical column names of the dataset.
        stores: feature store paths by kind (``text``, ``image``).
        settings: model settings.
        out_dir: output folder.
        val_fraction: when the val split has no events, this share of train is held out
            for early stopping instead.

    Returns:
        A summary dict (n per split, epochs, fit seconds).
    """
    if model == "coxph" and modality != "clinical":
        raise ConfigError("CoxPH is a baseline on the clinical table only (modality 'clinical')")
    rows, dense, names = load_features(survival_rows(cohort), modality, clinical, stores)
    time = rows["time"].to_numpy(float)
    event = rows["event"].to_numpy(float).astype(bool)
    train, val = _split(rows, "train"), _split(rows, "val")
    check_training_events(event[train], what=f"train split ({modality})")
    if dense is None:
        x = TabularEncoder(names).fit(rows.iloc[train]).transform(rows)
    else:
        x = Standardizer().fit(dense[train]).transform(dense)
    m = build_model(model, settings)
    if model == "coxph":
        m.fit(x[train], time[train], event[train])
    else:
        if len(val) < 2 or not event[val].any():
            from .cv import split_validation

            log.warning("val split has %d rows and %d events: holding out %.0f%% of train for early stopping",
                        len(val), int(event[val].sum()), 100 * val_fraction)
            train, val = split_validation(train, event, val_fraction, settings.train.seed)
        m.fit(x[train], time[train], event[train], x[val], time[val], event[val])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    risk = m.predict_risk(x)
    pd.DataFrame(
        {"study_id": rows["study_id"].astype(str), "split": rows["split"].astype(str), "time": time,
         "event": event.astype(int), "risk": risk}
    ).to_parquet(out / "predictions.parquet", index=False)
    grid = np.linspace(0.0, time.max(), SURVIVAL_GRID)
    surv = m.predict_survival(x, grid)
    table = pd.DataFrame(surv, columns=[repr(float(t)) for t in grid])
    table.insert(0, "study_id", rows["study_id"].astype(str).to_numpy())
    table.to_parquet(out / "survival.parquet", index=False)
    if model == "coxph":
        (out / "model.json").write_text(json.dumps(m.state() | {"features": names}, indent=2), encoding="utf-8")
    else:
        m.save(out)
    summary = {"model": model, "modality": modality, "n_train": int(len(train)), "n_val": int(len(val)),
               "n_test": int(len(_split(rows, "test"))), "fit_seconds": m.fit_seconds}
    log.info("%s on %s: %s", model, modality, summary)
    return summary


def _survival_fn(survival: pd.DataFrame, study_ids):
    """Step interpolation of stored curves: times -> (n, len(times))."""
    grid = np.array([float(c) for c in survival.columns[1:]])
    values = survival.set_index("study_id").loc[list(study_ids)].to_numpy(float)

    def fn(times):
        pos = np.clip(np.searchsorted(grid, np.asarray(times, float), side="right") - 1, 0, len(grid) - 1)
        return values[:, pos]

    return fn


def evaluate_baseline(predictions: pd.DataFrame, survival: pd.DataFrame | None, km_path, title: str = "",
                      n_boot: int = 1000, seed: int = 0, min_at_risk: int = 5) -> dict:
    """Test metrics (:func:`ctsurv.survival.metrics.evaluate`) and the KM figure of one model."""
    from .km import km_figure
    from .metrics import evaluate

    tr = predictions[predictions["split"] == "train"]
    te = predictions[predictions["split"] == "test"]
    fn = _survival_fn(survival, te["study_id"]) if survival is not None else None
    metrics = evaluate(tr["time"], tr["event"], te["time"], te["event"], te["risk"].to_numpy(), fn, n_boot=n_boot, seed=seed)
    metrics["km"] = km_figure(te["time"], te["event"], te["risk"], tr["risk"], km_path, title=title, min_at_risk=min_at_risk)
    return metrics


def oracle_cindex(predictions: pd.DataFrame, truth: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Harrell's c-index of the known log-hazard on the test patients of ``predictions``."""
    from .metrics import harrell_cindex

    te = predictions[predictions["split"] == "test"].merge(truth[["study_id", "log_hazard"]], on="study_id", how="inner")
    if te.empty:
        raise DataError("truth table shares no study_id with the test split")
    return harrell_cindex(te["time"], te["event"], te["log_hazard"], n_boot=n_boot, seed=seed).as_dict()


def results_table(runs: Sequence[dict], reference: str = "coxph_clinical", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model: c-index with 95% CI, Uno, mean AUC, IBS, log-rank p, and the paired
    bootstrap p-value against ``reference`` (same test patients).

    Args:
        runs: dicts with ``model``, ``modality``, ``metrics`` (from :func:`evaluate_baseline`)
            and ``predictions`` (DataFrame); an optional dict with model ``oracle`` and
            ``metrics = {"harrell": ...}`` adds the oracle row.
    """
    from .metrics import compare_cindex

    ref = next((r for r in runs if f"{r['model']}_{r['modality']}" == reference), None)
    out = []
    for r in runs:
        m = r["metrics"]
        h = m["harrell"]
        row = {"model": r["model"], "modality": r["modality"], "c_index": h["cindex"], "ci_low": h["lower"],
               "ci_high": h["upper"], "uno": m.get("uno"), "mean_auc": m.get("mean_auc"), "ibs": m.get("ibs"),
               "logrank_p": m.get("km", {}).get("logrank_p"), "n_test": h["n"], "events_test": h["events"],
               f"p_vs_{reference}": None}
        if ref is not None and r is not ref and r.get("predictions") is not None:
            a = r["predictions"].query("split == 'test'").set_index("study_id")
            b = ref["predictions"].query("split == 'test'").set_index("study_id")
            common = a.index.intersection(b.index)
            if len(common) >= 5:
                cmp = compare_cindex(a.loc[common, "time"], a.loc[common, "event"], a.loc[common, "risk"],
                                     b.loc[common, "risk"], n_boot=n_boot, seed=seed)
                row[f"p_vs_{reference}"] = cmp["p_value"]
        out.append(row)
    return pd.DataFrame(out)


def table_markdown(table: pd.DataFrame, title: str) -> str:
    """A results table as markdown (c-index with its interval, 3 decimals)."""
    lines = [f"## {title}", "", "| model | modality | c-index (95% CI) | Uno | mean AUC | IBS | log-rank p | p vs CoxPH | n test (events) |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, d=3: "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"  # noqa: E731
    pfmt = lambda v: fmt(v) if fmt(v) == "–" else f"{v:.2g}"  # noqa: E731
    pcol = [c for c in table.columns if c.startswith("p_vs_")]
    for _, r in table.iterrows():
        p_vs = r[pcol[0]] if pcol else None
        lines.append(
            f"| {r['model']} | {r['modality']} | {fmt(r['c_index'])} ({fmt(r['ci_low'])}–{fmt(r['ci_high'])}) | {fmt(r['uno'])} | "
            f"{fmt(r['mean_auc'])} | {fmt(r['ibs'])} | {pfmt(r['logrank_p'])} | {pfmt(p_vs)} | {r['n_test']} ({r['events_test']}) |"
        )
    return "\n".join(lines) + "\n"


def run_name(path: str | Path) -> tuple[str, str]:
    """(model, modality) from a ``.../baselines/{model}_{modality}/file`` path."""
    model, _, modality = Path(path).parent.name.partition("_")
    return model, modality


def dataset_results(prediction_paths: Sequence, metrics_paths: Sequence, dataset: str, truth_path=None,
                    n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Results table of one dataset from the per-model files, plus its markdown.

    With ``truth_path`` (demo data) an ``oracle`` row gives the c-index of the known
    log-hazard on the same test patients.
    """
    runs = []
    for pred, met in zip(prediction_paths, metrics_paths):
        model, modality = run_name(pred)
        runs.append({"model": model, "modality": modality, "predictions": pd.read_parquet(pred),
                     "metrics": json.loads(Path(met).read_text(encoding="utf-8"))})
    if truth_path is not None and runs:
        truth = pd.read_parquet(truth_path)
        harrell = oracle_cindex(runs[0]["predictions"], truth, n_boot=n_boot, seed=seed)
        runs.append({"model": "oracle", "modality": "known hazard", "predictions": None, "metrics": {"harrell": harrell}})
    table = results_table(runs, n_boot=n_boot, seed=seed)
    table.insert(0, "dataset", dataset)
    return table, table_markdown(table, dataset)


def report_markdown(markdown_tables: Sequence[str], csv_tables: Sequence[pd.DataFrame]) -> str:
    """The demo-wide page: each dataset's table, then clinical CoxPH next to the oracle."""
    lines = ["# Survival baselines", "", "Harrell's c-index on the test split; 95% bootstrap intervals; "
             "p vs CoxPH: paired bootstrap against the clinical CoxPH on the same patients.", ""]
    lines += [md for md in markdown_tables]
    lines += ["## Clinical CoxPH versus the known hazard", ""]
    for table in csv_tables:
        lines.append(oracle_line(table))
    return "\n".join(lines) + "\n"


def oracle_line(table: pd.DataFrame) -> str:
    """``dataset: CoxPH (clinical) c-index 0.xxx; oracle (known hazard) 0.xxx`` (oracle when known)."""
    ds = table["dataset"].iat[0] if len(table) else "?"
    cox = table[(table["model"] == "coxph") & (table["modality"] == "clinical")]
    oracle = table[table["model"] == "oracle"]
    text = f"- {ds}: CoxPH (clinical) c-index {cox['c_index'].iat[0]:.3f}" if len(cox) else f"- {ds}: no clinical CoxPH"
    if len(oracle):
        text += f"; oracle (known hazard) c-index {oracle['c_index'].iat[0]:.3f}"
    return text
