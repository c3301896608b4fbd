"""Stage 2 against its baselines over several seeds, with paired differences and their intervals.

    python benchmarks/bench_stage2_seeds.py --results results [--datasets demo_pe demo_lung] [--seeds 0 1 2]
        [--arms ours_with ours_without deepsurv_both deephit_both] [--ours NAME:with|without:KEY=VALUE,...]
        [--stage2-set KEY=VALUE ...] [--json OUT.json]

From a finished workflow's files (instructions, cohort, feature stores, stage-1 model, decoder),
each arm is trained once per seed (``vlm.stage2.train.seed`` for ours, ``survival.seed`` for
the baselines) and scored on the validation and test patients:

* ``ours_with`` / ``ours_without``: the joint model (DeepSurv head; ``--head``) with and without
  stage-1 pre-training, trained and predicted as the workflow does (``run_stage2``,
  ``predict_stage2``: six questions per patient, the checkpoint picked on validation);
* ``deepsurv_<modality>`` / ``deephit_<modality>``: the survival baselines (``train_baseline``);
* ``coxph_clinical`` is fitted once (it has no seed) as the reference;
* ``--ours NAME:PRETRAIN:KEY=VALUE,...`` adds a joint-model arm with ``vlm.stage2`` overrides
  (e.g. ``mem0:with:risk_memory=0``, ``all:with:pool=all``, ``loss01:with:loss.dispersion=0.1``),
  which is how the risk-memory, pooling and loss-weight measurements of the README were made.

Prints, per dataset and arm, the test and validation c-index as mean ± sd over seeds, and per
pair of arms (``--pairs``; default: each arm against ``ours_with``, and ``ours_with`` against
the clinical CoxPH) the mean paired difference in test c-index with a 95% bootstrap interval
over the test patients (each resample scores every seed's risks; the difference is averaged
over seeds) and the fraction of resamples at or below 0.  Writes nothing under ``--results``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

DEFAULT_ARMS = ["ours_with", "ours_without", "deepsurv_both", "deephit_both"]


def _set(section: dict, assignment: str) -> None:
    """``a.b=value`` into a nested dict (value parsed as YAML)."""
    key, _, value = assignment.partition("=")
    *path, last = key.strip().split(".")
    node = section
    for part in path:
        node = node.setdefault(part, {})
    node[last] = yaml.safe_load(value)


def parse_ours(spec: str) -> tuple[str, str, list[str]]:
    name, pretrain, *rest = spec.split(":", 2)
    if pretrain not in ("with", "without"):
        raise SystemExit(f"--ours {spec}: the second field is with or without")
    return name, pretrain, [a for a in (rest[0].split(",") if rest else []) if a]


def ours_run(results: Path, dataset: str, config: dict, pretrain: str, head: str, seed: int, sets: list[str],
             out: Path, with_answers: bool = False) -> pd.DataFrame:
    from ctsurv.vlm.paths import decoder_folder
    from ctsurv.vlm.stage2 import predict_stage2, run_stage2

    stage2 = copy.deepcopy(config["vlm"]["stage2"])
    for assignment in sets:
        _set(stage2, assignment)
    stage2["train"] = dict(stage2["train"], progress=False, seed=seed)
    inst = {s: results / dataset / "instructions" / f"{s}.json" for s in ("train", "val", "test")}
    cohort = pd.read_parquet(results / dataset / "cohort.parquet")
    store = results / dataset / "features" / "image"
    decoder = decoder_folder(config["vlm"])
    decoder = decoder if Path(decoder).is_absolute() else str(results.parent / decoder)
    run_stage2({k: inst[k] for k in ("train", "val")}, cohort, store, head, pretrain, stage2, config["vlm"], out / "model",
               stage1_dir=results / "models" / "stage1", decoder_path=decoder)
    predict = stage2["predict"]
    # the risks need no generated answer with pool: prompt (BERTScore is not measured here)
    generate = ("test",) if stage2.get("pool") == "all" or with_answers else ()
    predict_stage2(out / "model", inst, cohort, store, out / "q.parquet", out / "p.parquet", out / "s.parquet",
                   batch_size=predict["batch_size"], max_new_tokens=predict["max_new_tokens"],
                   generate_splits=generate, train_questions=predict["train_questions"])
    return pd.read_parquet(out / "p.parquet")


def baseline_run(results: Path, dataset: str, config: dict, model: str, modality: str, seed: int, out: Path) -> pd.DataFrame:
    from ctsurv.survival.baselines import train_baseline
    from ctsurv.survival.models import ModelSettings

    cohort = pd.read_parquet(results / dataset / "cohort.parquet")
    stores = {k: str(results / dataset / "features" / k) for k in ("text", "image")}
    clinical = list(config["datasets"][dataset].get("clinical", {}))
    train_baseline(cohort, model, modality, clinical, stores, ModelSettings.from_config(config["survival"], seed=seed), out)
    return pd.read_parquet(out / "predictions.parquet")


def cindex(pred: pd.DataFrame, split: str) -> float:
    from ctsurv.survival.metrics import harrell_cindex

    p = pred[pred["split"] == split]
    return float(harrell_cindex(p["time"], p["event"], p["risk"], n_boot=0).cindex)


def paired(preds_a: list[pd.DataFrame], preds_b: list[pd.DataFrame], n_boot: int, seed: int) -> dict:
    """Mean over seeds of c(a) - c(b) on the common test patients, with a patient bootstrap."""
    from ctsurv.survival.metrics import _bootstrap_cindices

    tests = [p[p["split"] == "test"].set_index("study_id") for p in preds_a + preds_b]
    common = sorted(set.intersection(*(set(t.index) for t in tests)))
    ref = tests[0].loc[common]
    time_, event = ref["time"].to_numpy(float), ref["event"].to_numpy(bool)
    risks = [t.loc[common, "risk"].to_numpy(float) for t in tests]
    point = np.array([cindex(t.loc[common].reset_index().assign(split="test"), "test") for t in tests])
    k = len(preds_a)
    boots = np.stack(_bootstrap_cindices(time_, event, risks, n_boot, seed))  # (2k, n_boot)
    diff = boots[:k].mean(0) - boots[k:].mean(0)
    diff = diff[np.isfinite(diff)]
    per_seed = point[:k] - point[k:]
    return {"mean_diff": round(float(per_seed.mean()), 4), "sd_diff": round(float(per_seed.std(ddof=1)), 4) if k > 1 else None,
            "lower": round(float(np.quantile(diff, 0.025)), 4), "upper": round(float(np.quantile(diff, 0.975)), 4),
            "share_le_0": round(float((diff <= 0).mean()), 4), "per_seed": [round(float(d), 4) for d in per_seed],
            "n_test": len(common)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished workflow's results folder")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--datasets", nargs="+", default=["demo_pe", "demo_lung"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--head", default="deepsurv", choices=["deepsurv", "deephit"])
    parser.add_argument("--arms", nargs="*", default=DEFAULT_ARMS)
    parser.add_argument("--ours", action="append", default=[], help="NAME:with|without:KEY=VALUE,... (vlm.stage2 keys)")
    parser.add_argument("--stage2-set", action="append", default=[], help="KEY=VALUE for every joint-model arm")
    parser.add_argument("--pairs", nargs="*", default=None, help="A-B pairs of arm names")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--answers", action="store_true", help="generate the test answers as the workflow does "
                        "(with pool: prompt the risks do not need them; off: faster)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep", help="keep every run's predictions.parquet under this folder ({dataset}/{arm}/seed{s}.parquet)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = Path(args.results).resolve()
    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    ours = {a: (a.split("_", 1)[1], list(args.stage2_set)) for a in args.arms if a.startswith("ours_")}
    for spec in args.ours:
        name, pretrain, sets = parse_ours(spec)
        ours[name] = (pretrain, list(args.stage2_set) + sets)
    arms = list(dict.fromkeys([a for a in args.arms if not a.startswith("ours_")] + list(ours)))
    report: dict = {"seeds": args.seeds, "head": args.head, "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.datasets:
            preds: dict[str, list[pd.DataFrame]] = {}
            seconds: dict[str, float] = {}
            cox = baseline_run(results, ds, config, "coxph", "clinical", 0, Path(tmp) / ds / "coxph")
            for arm in arms:
                preds[arm] = []
                started = time.perf_counter()
                for seed in args.seeds:
                    out = Path(tmp) / ds / arm / f"seed{seed}"
                    if arm in ours:
                        pretrain, sets = ours[arm]
                        p = ours_run(results, ds, config, pretrain, args.head, seed, sets, out, args.answers)
                    else:
                        model, modality = arm.split("_", 1)
                        p = baseline_run(results, ds, config, model, modality, seed, out)
                    preds[arm].append(p)
                    if args.keep:
                        kept = Path(args.keep) / ds / arm / f"seed{seed}.parquet"
                        kept.parent.mkdir(parents=True, exist_ok=True)
                        p.to_parquet(kept, index=False)
                    print(json.dumps({"dataset": ds, "arm": arm, "seed": seed, "test": round(cindex(p, "test"), 4),
                                      "val": round(cindex(p, "val"), 4)}), flush=True)
                seconds[arm] = round((time.perf_counter() - started) / len(args.seeds), 1)
            rows = [{"arm": "coxph_clinical", "test_mean": cindex(cox, "test"), "test_sd": 0.0, "val_mean": cindex(cox, "val"),
                     "val_sd": 0.0, "seconds_per_seed": None}]
            for arm, ps in preds.items():
                te, va = [cindex(p, "test") for p in ps], [cindex(p, "val") for p in ps]
                rows.append({"arm": arm, "test_mean": np.mean(te), "test_sd": np.std(te, ddof=1) if len(te) > 1 else 0.0,
                             "val_mean": np.mean(va), "val_sd": np.std(va, ddof=1) if len(va) > 1 else 0.0,
                             "seconds_per_seed": seconds[arm]})
            table = pd.DataFrame(rows).round(4)
            preds["coxph_clinical"] = [cox] * len(args.seeds)
            pairs = args.pairs or ([f"ours_with-{a}" for a in arms if a != "ours_with"] + ["ours_with-coxph_clinical"]
                                   if "ours_with" in preds else [f"{a}-coxph_clinical" for a in arms])
            diffs = {}
            for pair in pairs:
                a, b = pair.split("-", 1)
                if a in preds and b in preds:
                    diffs[pair] = paired(preds[a], preds[b], args.n_boot, 0)
            print(f"\n{ds}: test / validation c-index, mean ± sd over seeds {args.seeds}")
            print(table.to_string(index=False))
            print(f"{ds}: paired differences in test c-index (mean over seeds, 95% bootstrap interval over patients)")
            for pair, d in diffs.items():
                print(f"  {pair}: {d['mean_diff']:+.4f} [{d['lower']:+.4f}, {d['upper']:+.4f}] per seed {d['per_seed']} "
                      f"(share <= 0: {d['share_le_0']})")
            report["datasets"][ds] = {"arms": table.to_dict(orient="records"), "pairs": diffs}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
