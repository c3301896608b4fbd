"""Does stage 1 use the image?  The same training with real vs zeroed visual tokens.

Trains stage 1 twice on a workflow folder's pretrain data (the config's ``vlm`` settings),
once on the cached visual tokens and once with every token zeroed, evaluates each on the test
split (the zeroed model sees zeroed tokens there too) and prints BERTScore F1 and presence
agreement of both, with a paired bootstrap interval of the difference (patients resampled,
their six answers kept together).

    python benchmarks/bench_stage1_images.py --workdir . [--config config/config.yaml] [--max-steps N]

Needs results/{dataset}/instructions/*.json and results/{dataset}/features/image/ in the workflow
folder, and the decoder the config names (the demo: the packaged demo-radllama).  Per question it
also prints the presence agreement of both models beside the question's majority rate (the
agreement of always giving its most frequent answer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("."), help="workflow folder with results/")
    parser.add_argument("--config", type=Path, default=None, help="config file (default: WORKDIR/config/config.yaml)")
    parser.add_argument("--dataset", default=None, help="pretrain dataset to evaluate on (default: the first)")
    parser.add_argument("--max-steps", type=int, default=None, help="override vlm.stage1.max_steps")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--out", type=Path, default=None, help="JSON with both metrics and the intervals")
    args = parser.parse_args(argv)

    import torch

    from ctsurv.config import load_yaml, validate_config
    from ctsurv.resources import config_schema
    from ctsurv.vlm.answer_eval import majority_rate, paired_bootstrap
    from ctsurv.vlm.paths import decoder_folder
    from ctsurv.vlm.stage1 import Stage1Data, evaluate_stage1, train_stage1

    torch.set_num_threads(args.threads)
    args.out = args.out.resolve() if args.out else None
    args.config = args.config.resolve() if args.config else None
    os.chdir(args.workdir)
    config = validate_config(load_yaml(args.config or Path("config/config.yaml")), schema=config_schema())
    vlm = config["vlm"]
    vlm["stage1"]["restart"] = True
    if args.max_steps:
        vlm["stage1"]["max_steps"] = args.max_steps
    pretrain = [d for d, spec in config["datasets"].items() if spec["role"] == "pretrain"]
    if not pretrain:
        print("no pretrain dataset in the config", file=sys.stderr)
        return 1
    dataset = args.dataset or pretrain[0]
    data = [Stage1Data(Path(f"results/{d}/instructions"), Path(f"results/{d}/features/image")) for d in pretrain]
    results, scored = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_stage1_") as tmp:
        for name, zero in (("images", False), ("zeroed", True)):
            started, cpu = time.perf_counter(), time.process_time()
            model_dir = Path(tmp) / name
            train = train_stage1(data, decoder_folder(vlm), model_dir, vlm, restart=True, zero_images=zero)
            table, _, metrics = evaluate_stage1(model_dir, f"results/{dataset}/instructions/test.json",
                                                f"results/{dataset}/features/image", vlm["evaluate"], zero_images=zero)
            metrics.update(best_val_loss=train.best_val_loss, steps=train.steps,
                           wall_s=round(time.perf_counter() - started, 1), cpu_s=round(time.process_time() - cpu, 1))
            results[name], scored[name] = metrics, table
    a, b = scored["images"], scored["zeroed"]
    assert a["id"].tolist() == b["id"].tolist() and a["question_id"].tolist() == b["question_id"].tolist()
    diffs = {
        metric: paired_bootstrap(a[column], b[column], groups=a["study_id"], n=args.bootstrap, seed=0)
        for metric, column in (("bertscore_f1", "bertscore_f1"), ("presence_agreement", "presence_agree"))
    }
    print(f"stage 1 on {dataset} test split ({results['images']['pairs']} QA pairs), same training with real vs zeroed visual tokens")
    print(f"{'':22s}{'images':>10s}{'zeroed':>10s}   difference [95% bootstrap CI]")
    for metric in ("bertscore_f1", "presence_agreement"):
        d = diffs[metric]
        print(f"{metric:22s}{results['images'][metric]:10.3f}{results['zeroed'][metric]:10.3f}   "
              f"{d['mean_difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    print(f"\n{'question':16s}{'pairs':>6s}{'majority':>10s}{'images':>8s}{'zeroed':>8s}   presence agreement, difference [95% CI]")
    per_question = {}
    for q, index in a.groupby("question_id", sort=False).groups.items():
        known = a.loc[index, "presence_agree"].notna()
        d = paired_bootstrap(a.loc[index, "presence_agree"], b.loc[index, "presence_agree"],
                             groups=a.loc[index, "study_id"], n=args.bootstrap, seed=0)
        majority = majority_rate(a.loc[index][known]["presence_reference"])
        per_question[q] = {"majority_rate": majority, "images": float(a.loc[index, "presence_agree"].mean()),
                           "zeroed": float(b.loc[index, "presence_agree"].mean()), "difference": d}
        print(f"{q:16s}{len(index):6d}{majority:10.3f}{per_question[q]['images']:8.3f}{per_question[q]['zeroed']:8.3f}   "
              f"{d['mean_difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    print()
    for name in ("images", "zeroed"):
        r = results[name]
        print(f"{name}: best val loss {r['best_val_loss']:.4f}, {r['steps']} steps, {r['cpu_s']} s CPU, {r['wall_s']} s wall")
    if args.out:
        args.out.write_text(json.dumps({"dataset": dataset, "results": results, "differences": diffs,
                                        "per_question": per_question}, indent=1),
                            encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
