"""The paper's results: Table 2 per survival dataset, Fig. 3 (KM with / without pre-training), the page.

Inputs are the files the rules write: each baseline's and each joint-model run's
``predictions.parquet`` and ``metrics.json`` (joint runs also ``questions.parquet`` for the
figure's training risks, and the BERTScore inside their metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..survival.evaluation import read_predictions
from .tables import closing_note, load_runs, oracle_run, paper_table, paper_table_markdown, read_metrics, run_name


def load_stage2_runs(prediction_paths: Sequence, metrics_paths: Sequence) -> list[dict]:
    runs = []
    for pred, met in zip(prediction_paths, metrics_paths):
        head, pretrain = run_name(pred)  # .../stage2/{head}_{pretrain}/file
        metrics = read_metrics(met)
        runs.append({"model": head, "modality": "joint", "pretrain": pretrain, "predictions": read_predictions(pred),
                     "metrics": metrics, "bertscore": (metrics.get("bertscore") or {}).get("f1")})
    return runs


def dataset_table(baseline_predictions: Sequence, baseline_metrics: Sequence, stage2_predictions: Sequence,
                  stage2_metrics: Sequence, dataset: str, truth_path=None, n_boot: int = 1000,
                  seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Table 2 of one dataset (CSV-ready frame and markdown)."""
    baselines = load_runs(baseline_predictions, baseline_metrics)
    ours = load_stage2_runs(stage2_predictions, stage2_metrics)
    oracle = oracle_run(baselines or ours, truth_path, n_boot, seed) if truth_path is not None else None
    table = paper_table(baselines, ours, dataset, oracle, n_boot=n_boot, seed=seed)
    return table, paper_table_markdown(table, dataset) + bertscore_note(ours)


def bertscore_note(ours: Sequence[dict]) -> str:
    """Which model scored the BERTScore column (its figures are comparable only within one model:
    the paper's ~0.86 are roberta-large, layer 17, not rescaled)."""
    scorers = []
    for run in ours:
        model = ((run["metrics"].get("bertscore") or {}).get("model")) or None
        if model and model not in scorers:
            scorers.append(model)
    if not scorers:
        return ""
    text = "; ".join(f"{m['model']}, layer {m['layer']}, {'rescaled with its baseline' if m['rescaled'] else 'not rescaled'}"
                     for m in scorers)
    return f"\nBERTScore: F1 of the generated against the reference test answers, scored by {text}.\n"


def pretraining_figure(with_predictions: str | Path, without_predictions: str | Path, path: str | Path, title: str,
                       min_at_risk: int = 5) -> list[dict]:
    """The paper's Fig. 3: KM curves of high vs low predicted risk, with and without pre-training."""
    from ..survival.km import km_panels

    panels = []
    for label, pred in (("with pre-training", with_predictions), ("without pre-training", without_predictions)):
        p = read_predictions(pred)
        te, tr = p[p["split"] == "test"], p[p["split"] == "train"]
        panels.append((f"{title}, {label}", te["time"], te["event"], te["risk"], tr["risk"]))
    return km_panels(panels, path, min_at_risk)


def results_page(tables: Sequence[pd.DataFrame], markdowns: Sequence[str], figures: Sequence[str | Path] = ()) -> str:
    """The results page: every dataset's Table 2, the figures, and the closing note in numbers."""
    lines = ["# Results", "",
             "Harrell's c-index on the test split with 95% bootstrap intervals; the joint model's risk is the mean "
             "over the six questions. p vs CoxPH / best baseline (the highest validation c-index): paired bootstrap on the same test patients. "
             "BERTScore: F1 of generated vs reference answers (all-MiniLM-L6-v2, seeded sample of test QA pairs).", ""]
    lines += list(markdowns)
    if figures:
        lines += ["## Kaplan-Meier curves with and without pre-training", ""]
        lines += [f"![{Path(f).stem}]({f})" for f in figures]
        lines.append("")
    lines += ["## Closing note", ""]
    for table in tables:
        lines += closing_note(table)
    return "\n".join(lines) + "\n"
