"""Results tables: one dataset's baselines, and the paper's Table 2 (baselines plus ours).

Every run is a dict with ``model``, ``modality``, ``metrics`` (from
:func:`ctsurv.survival.evaluation.evaluate_predictions`) and ``predictions`` (per-patient
DataFrame); joint-model runs add ``pretrain`` ("with"/"without") and ``bertscore``.  Paired
bootstrap p-values compare two models on the same test patients.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from ..survival.evaluation import oracle_cindex, read_predictions

REFERENCE = "coxph_clinical"
OURS = "ours"


def _key(run: dict) -> str:
    return f"{run['model']}_{run['modality']}"


def paired_p(run: dict, ref: dict, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """Paired bootstrap of ``run`` against ``ref`` on their common test patients (None if < 5)."""
    from ..survival.metrics import compare_cindex

    if ref is None or run is ref or run.get("predictions") is None or ref.get("predictions") is None:
        return None
    a = run["predictions"].query("split == 'test'").set_index("study_id")
    b = ref["predictions"].query("split == 'test'").set_index("study_id")
    common = a.index.intersection(b.index)
    if len(common) < 5:
        return None
    return compare_cindex(a.loc[common, "time"], a.loc[common, "event"], a.loc[common, "risk"], b.loc[common, "risk"],
                          n_boot=n_boot, seed=seed)


def val_cindex(run: dict) -> float:
    """Harrell's c-index of a run on its validation patients (NaN without them or without a
    comparable pair): how the results table picks its best baseline, never on the test split."""
    from ..survival.metrics import concordance_sums

    pred = run.get("predictions")
    if pred is None:
        return float("nan")
    val = pred[pred["split"] == "val"]
    if val.empty:
        return float("nan")
    num, den = concordance_sums(val["time"].to_numpy(float), val["event"].to_numpy(bool), val["risk"].to_numpy(float),
                                np.ones((1, len(val))))
    return float(num[0] / den[0]) if den[0] > 0 else float("nan")


def best_by_validation(runs: Sequence[dict]) -> dict | None:
    """The run with the highest validation c-index (:func:`val_cindex`; runs without one rank last)."""
    scored = [(v if np.isfinite(v) else -np.inf, i) for i, v in enumerate(val_cindex(r) for r in runs)]
    return runs[max(scored)[1]] if scored and max(scored)[0] > -np.inf else None


def _metric_row(r: dict) -> dict:
    m = r["metrics"]
    h = m["harrell"]
    return {"model": r["model"], "modality": r["modality"], "c_index": h["cindex"], "ci_low": h["lower"],
            "ci_high": h["upper"], "uno": m.get("uno"), "mean_auc": m.get("mean_auc"), "ibs": m.get("ibs"),
            "logrank_p": (m.get("km") or {}).get("logrank_p"), "n_test": h["n"], "events_test": h["events"]}


def results_table(runs: Sequence[dict], reference: str = REFERENCE, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model: c-index with 95% CI, Uno, mean AUC, IBS, log-rank p, and the paired
    bootstrap p-value against ``reference`` (same test patients).

    Args:
        runs: run dicts (module docstring); an optional dict with model ``oracle`` and
            ``metrics = {"harrell": ...}`` adds the oracle row.
    """
    ref = next((r for r in runs if _key(r) == reference), None)
    out = []
    for r in runs:
        row = _metric_row(r)
        cmp = paired_p(r, ref, n_boot, seed)
        row[f"p_vs_{reference}"] = cmp["p_value"] if cmp else None
        out.append(row)
    return pd.DataFrame(out)


def _fmt(v, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.{d}f}"


def _pfmt(v) -> str:
    return "–" if _fmt(v) == "–" else f"{v:.2g}"


def table_markdown(table: pd.DataFrame, title: str) -> str:
    """A baseline results table as markdown (c-index with its interval, 3 decimals)."""
    lines = [f"## {title}", "", "| model | modality | c-index (95% CI) | Uno | mean AUC | IBS | log-rank p | p vs CoxPH | n test (events) |",
             "|---|---|---|---|---|---|---|---|---|"]
    pcol = [c for c in table.columns if c.startswith("p_vs_")]
    for _, r in table.iterrows():
        p_vs = r[pcol[0]] if pcol else None
        lines.append(
            f"| {r['model']} | {r['modality']} | {_fmt(r['c_index'])} ({_fmt(r['ci_low'])}–{_fmt(r['ci_high'])}) | {_fmt(r['uno'])} | "
            f"{_fmt(r['mean_auc'])} | {_fmt(r['ibs'])} | {_pfmt(r['logrank_p'])} | {_pfmt(p_vs)} | {r['n_test']} ({r['events_test']}) |"
        )
    return "\n".join(lines) + "\n"


def run_name(path: str | Path) -> tuple[str, str]:
    """The two parts of a run folder's name: (model, modality) from
    ``.../baselines/{model}_{modality}/file``, (head, pretrain) from ``.../stage2/{head}_{pretrain}/file``."""
    model, _, modality = Path(path).parent.name.partition("_")
    return model, modality


HARRELL_KEYS = ("cindex", "lower", "upper", "n", "events")


def read_metrics(path: str | Path) -> dict:
    """A run's ``metrics.json``: empty, cut short, not JSON or without the c-index is a
    DataError naming the file (the report rules read every run's file)."""
    path = Path(path)
    redo = "delete it and rerun the rule that writes it (snakemake --forcerun on the run's evaluation)"
    if not path.is_file():
        raise DataError(f"{path}: {'is a folder, not a metrics file' if path.is_dir() else 'not found'}; {redo}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: the metrics file is empty (an interrupted write?); {redo}")
    try:
        metrics = json.loads(text)
    except ValueError as err:
        raise DataError(f"{path}: not valid JSON ({err}; cut short?); {redo}") from None
    harrell = metrics.get("harrell") if isinstance(metrics, dict) else None
    missing = [k for k in HARRELL_KEYS if not isinstance(harrell, dict) or k not in harrell]
    if missing:
        raise DataError(f"{path}: no harrell c-index entries {missing}; not a metrics file of ctsurv's evaluation; {redo}")
    return metrics


def load_runs(prediction_paths: Sequence, metrics_paths: Sequence) -> list[dict]:
    """Baseline run dicts from their ``predictions.parquet`` / ``metrics.json`` files (both checked:
    :func:`read_metrics`, :func:`ctsurv.survival.evaluation.read_predictions`)."""
    runs = []
    for pred, met in zip(prediction_paths, metrics_paths):
        model, modality = run_name(pred)
        runs.append({"model": model, "modality": modality, "predictions": read_predictions(pred),
                     "metrics": read_metrics(met)})
    return runs


def oracle_run(runs: Sequence[dict], truth_path, n_boot: int = 1000, seed: int = 0) -> dict:
    """The oracle row's run: c-index of the known log-hazard on the first run's test patients."""
    harrell = oracle_cindex(runs[0]["predictions"], pd.read_parquet(truth_path), n_boot=n_boot, seed=seed)
    return {"model": "oracle", "modality": "known hazard", "predictions": None, "metrics": {"harrell": harrell}}


def dataset_results(prediction_paths: Sequence, metrics_paths: Sequence, dataset: str, truth_path=None,
                    n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Results table of one dataset's baselines from the per-model files, plus its markdown.

    With ``truth_path`` (demo data) an ``oracle`` row gives the c-index of the known
    log-hazard on the same test patients.
    """
    runs = load_runs(prediction_paths, metrics_paths)
    if truth_path is not None and runs:
        runs.append(oracle_run(runs, truth_path, n_boot, seed))
    table = results_table(runs, n_boot=n_boot, seed=seed)
    table.insert(0, "dataset", dataset)
    return table, table_markdown(table, dataset)


def report_markdown(markdown_tables: Sequence[str], csv_tables: Sequence[pd.DataFrame]) -> str:
    """The demo-wide baseline page: each dataset's table, then clinical CoxPH next to the oracle."""
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


# ---- The paper's Table 2 -------------------------------------------------------------------

# What each input modality feeds a model: (report, clinical, image).  The joint model is
# trained on report-derived answers and sees the clinical sentence and the image tokens.
_INPUTS = {"clinical": (False, True, False), "text": (False, True, False), "image": (False, False, True),
           "both": (False, True, True), "joint": (True, True, True)}
_METHOD = {"coxph": "CoxPH", "deepsurv": "DeepSurv", "deephit": "DeepHit"}
_MODALITY = {"clinical": "clinical table", "text": "clinical sentence", "image": "image",
             "both": "clinical sentence + image", "joint": "clinical sentence + image + questions"}


def paper_table(baselines: Sequence[dict], ours: Sequence[dict], dataset: str, oracle: dict | None = None,
                n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The paper's Table 2 for one dataset: baselines, then ours per head and pre-training.

    Args:
        baselines: baseline run dicts.
        ours: joint-model run dicts (model = head, modality = ``joint``, ``pretrain``,
            ``bertscore``).
        oracle: optional oracle run dict (demo data: c-index of the known hazard).

    Returns:
        One row per model with pre-train / report / clinical / image flags, the c-index and its
        interval, Uno, mean AUC, IBS, BERTScore, the validation c-index, and paired bootstrap
        p-values against the clinical CoxPH and (for ours) against the best baseline, the one
        with the highest *validation* c-index (:func:`best_by_validation`: picked without
        looking at the test split).
    """
    ref = next((r for r in baselines if _key(r) == REFERENCE), None)
    best = best_by_validation(list(baselines))
    rows = []
    for r in list(baselines) + list(ours) + ([oracle] if oracle else []):
        is_ours = any(r is o for o in ours)
        row = {"dataset": dataset, **_metric_row(r)}
        if r is oracle:
            row.update(method="oracle (known hazard)", pretrain=None, report=None, clinical=None, image=None)
        else:
            report, clinical, image = _INPUTS["joint" if is_ours else r["modality"]]
            method = f"Ours ({_METHOD[r['model']]})" if is_ours else _METHOD[r["model"]]
            row.update(method=method, pretrain=(r.get("pretrain") == "with") if is_ours else None,
                       report=report, clinical=clinical, image=image)
        row["input"] = _MODALITY.get(r["modality"], r["modality"])
        row["bertscore"] = r.get("bertscore")
        row["val_c_index"] = val_cindex(r) if r is not oracle else None
        cmp = paired_p(r, ref, n_boot, seed) if r is not oracle else None
        row["p_vs_coxph"] = cmp["p_value"] if cmp else None
        cmp_best = paired_p(r, best, n_boot, seed) if is_ours else None
        row["best_baseline"] = f"{best['model']}_{best['modality']}" if (is_ours and best) else None
        row["p_vs_best_baseline"] = cmp_best["p_value"] if cmp_best else None
        row["diff_vs_best_baseline"] = cmp_best["difference"] if cmp_best else None
        rows.append(row)
    cols = ["dataset", "method", "model", "modality", "input", "pretrain", "report", "clinical", "image", "c_index",
            "ci_low", "ci_high", "val_c_index", "uno", "mean_auc", "ibs", "logrank_p", "bertscore", "p_vs_coxph",
            "best_baseline",
            "p_vs_best_baseline", "diff_vs_best_baseline", "n_test", "events_test"]
    return pd.DataFrame(rows)[cols]


def _tick(v) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else ("✓" if bool(v) else "✗")


def paper_table_markdown(table: pd.DataFrame, title: str) -> str:
    """Table 2 as markdown: flags, c-index [95% CI], BERTScore, p-values."""
    lines = [f"## {title}", "",
             "| method | input | pre-train | report | clinical | image | c-index [95% CI] | Uno | IBS | BERTScore | p vs CoxPH | p vs best baseline | n test (events) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['method']} | {r['input']} | {_tick(r['pretrain'])} | {_tick(r['report'])} | {_tick(r['clinical'])} | "
            f"{_tick(r['image'])} | {_fmt(r['c_index'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {_fmt(r['uno'])} | "
            f"{_fmt(r['ibs'])} | {_fmt(r['bertscore'])} | {_pfmt(r['p_vs_coxph'])} | {_pfmt(r['p_vs_best_baseline'])} | "
            f"{r['n_test']} ({r['events_test']}) |")
    return "\n".join(lines) + "\n"


def closing_note(table: pd.DataFrame) -> list[str]:
    """The finding in numbers: CoxPH, best baseline, ours with / without pre-training, oracle."""
    ds = table["dataset"].iat[0]
    get = lambda mask: table[mask].iloc[0] if mask.any() else None  # noqa: E731
    cox = get((table["model"] == "coxph") & (table["modality"] == "clinical"))
    oracle = get(table["method"].str.startswith("oracle"))
    parts = [f"CoxPH (clinical) {_fmt(cox['c_index'])}" if cox is not None else "no clinical CoxPH"]
    ours = table[table["method"].str.startswith("Ours")]
    if len(ours):
        parts.append(f"best baseline {ours['best_baseline'].iat[0]}")
    for _, r in ours.iterrows():
        pre = "with" if r["pretrain"] else "without"
        parts.append(f"{r['method']} {pre} pre-training {_fmt(r['c_index'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] "
                     f"(p vs CoxPH {_pfmt(r['p_vs_coxph'])}, vs best baseline {_pfmt(r['p_vs_best_baseline'])})")
    if oracle is not None:
        parts.append(f"oracle (known hazard) {_fmt(oracle['c_index'])}")
    return [f"- {ds}: " + "; ".join(parts)]
