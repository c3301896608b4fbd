"""Stage-2 memory at INSPECT's size: peak RSS of data preparation and one epoch of loading.

    python benchmarks/bench_stage2_memory.py [--patients 20000] [--dir /tmp/ctsurv-bench-stage2-memory]
    python benchmarks/bench_stage2_memory.py --patients 300 --dir /tmp/x --keep   # seconds

Builds (once; reused while its size matches) a feature store of ``--patients`` studies x 49
visual tokens x 2048 in float16 (20,000 studies: 3.9 GiB on disk, as INSPECT's), the cohort
(70/10/20 splits) and per-question instruction JSON for six questions (120,000 conversations),
then measures, each in a fresh process so one phase's peak cannot hide another's:

* ``baseline``: imports, a tiny decoder and its tokenizer (the model's share of a real run is
  the 7B decoder on the GPU; here the process itself),
* ``prepare``: what ``train_stage2`` does before step 1 (``load_split_data``, the six fixed
  questions per patient, ``SurvivalExamples`` for train and validation, tokenizing every
  example),
* ``epoch``: one epoch of batches as the trainer draws them (``patient_batches``, local batch
  12, ``collate``: the visual tokens of each batch read from the store and cast to float32).

Prints each phase's peak RSS (``VmHWM``) against the store's size, one batch's bytes and
the target: peak RSS under 1.5 x (baseline with the model + one batch), whatever the cohort's
size.  Exit status 1 when a phase misses it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TOKENS, DIM, BATCH = 49, 2048, 12
QUESTIONS = [("primary_tumor", "What is the location and size of the primary lung tumor?"),
             ("lymph_nodes", "Which lymph nodes are involved, and what are their size and location?"),
             ("pleura", "Is there pleural involvement or pleural effusion?"),
             ("metastases", "Are there metastases or involvement of other organs?"),
             ("vessels", "Are major vessels involved or compressed?"),
             ("bones", "Are there skeletal or bone changes?")]
ANSWERS = ["No pleural effusion.", "Acute pulmonary embolism in the right lower lobe arteries.", "Not mentioned.",
           "Enlarged subcarinal lymph node, 14 mm.", "No metastases.", "Degenerative changes of the thoracic spine."]


def build(folder: Path, patients: int) -> None:
    """The store (written in chunks: never whole in memory), cohort, instructions and a tiny decoder."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from vlm_fixtures import tiny_decoder

    marker = folder / "built.json"
    if marker.is_file() and json.loads(marker.read_text())["patients"] == patients:
        return
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"st{i:06d}" for i in range(patients)]
    store = folder / "store"
    store.mkdir(exist_ok=True)
    pd.DataFrame({"study_id": ids}).to_parquet(store / "index.parquet", index=False)
    tokens = np.lib.format.open_memmap(store / "tokens.npy", mode="w+", dtype=np.float16, shape=(patients, TOKENS, DIM))
    pooled = np.lib.format.open_memmap(store / "pooled.npy", mode="w+", dtype=np.float16, shape=(patients, DIM))
    rng = np.random.default_rng(0)
    for start in range(0, patients, 500):
        chunk = rng.standard_normal((min(500, patients - start), TOKENS, DIM), dtype=np.float32)
        tokens[start:start + len(chunk)] = chunk
        pooled[start:start + len(chunk)] = chunk.mean(1)
    tokens.flush()
    pooled.flush()
    del tokens, pooled
    (store / "encoder.json").write_text(json.dumps({"fingerprint": "bench-memory"}), encoding="utf-8")
    split = np.array(["train"] * patients, dtype=object)
    split[int(0.7 * patients):int(0.8 * patients)] = "val"
    split[int(0.8 * patients):] = "test"
    time_ = rng.exponential(365, patients) + 1
    event = (rng.random(patients) < 0.3).astype(int)
    pd.DataFrame({"study_id": ids, "patient_id": ids, "split": split, "time": time_,
                  "event": pd.array(event, dtype="Int64")}).to_parquet(folder / "cohort.parquet", index=False)
    for s in ("train", "val", "test"):
        records = [{"id": f"{sid}__{qid}", "image": f"{sid}.nii.gz", "study_id": sid, "question_ids": [qid],
                    "conversations": [{"from": "human", "value": f"A {50 + i % 40}-year-old female, acute pulmonary "
                                       f"embolism, pulse {60 + i % 50} bpm.\n<image>\n{text}"},
                                      {"from": "gpt", "value": ANSWERS[(i + q) % len(ANSWERS)]}]}
                   for i, (sid, sp) in enumerate(zip(ids, split)) if sp == s for q, (qid, text) in enumerate(QUESTIONS)]
        (folder / f"{s}.json").write_text(json.dumps(records), encoding="utf-8")
        del records
    tiny_decoder(folder / "decoder", max_positions=512)
    marker.write_text(json.dumps({"patients": patients}), encoding="utf-8")


def peak_mb() -> float:
    """This process's peak resident set (VmHWM, MiB).  Not ru_maxrss: Linux carries the parent's
    peak into a child across fork and exec, so a child of the process that built the store would
    report the build's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(folder: Path, name: str) -> dict:
    """One phase in this process (run by the parent in a fresh one); prints its figures as JSON."""
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    from ctsurv.vlm import build as build_vlm
    from ctsurv.vlm.data import collate
    from ctsurv.vlm.stage2_data import SurvivalExamples, fixed_questions, load_split_data, one_question_each, patient_batches

    model = build_vlm(folder / "decoder", DIM, TOKENS)
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    out = {"phase": name, "baseline_peak_mb": peak_mb(), "model_mb": model_mb}
    if name == "baseline":
        return out
    started = time.perf_counter()
    cohort = pd.read_parquet(folder / "cohort.parquet")
    tables, followup, feats, ids = load_split_data({s: folder / f"{s}.json" for s in ("train", "val")}, cohort,
                                                   folder / "store")
    tables = {s: fixed_questions(t, QUESTIONS) for s, t in tables.items()}
    tok, cfg = model.tokenizer, model.config
    train = SurvivalExamples(tables["train"], followup, feats, ids, tok, cfg.prompt_format, cfg.max_length)
    val = SurvivalExamples(one_question_each(tables["val"]), followup, feats, ids, tok, cfg.prompt_format, cfg.max_length)
    del tables
    out.update(examples=len(train) + len(val), prepare_s=round(time.perf_counter() - started, 1))
    if name == "epoch":
        started = time.perf_counter()
        pad = tok.pad_token_id
        batches = patient_batches(train.questions["study_id"], BATCH, seed=0)(0)
        checksum = 0.0
        for rows in batches:
            batch = collate([train[i] for i in rows], pad)
            checksum += float(batch["features"][:, 0, 0].sum())
        out.update(batches=len(batches), epoch_s=round(time.perf_counter() - started, 1), checksum=checksum)
    out["peak_mb"] = peak_mb()
    return out


def run_phase(folder: Path, name: str) -> dict:
    res = subprocess.run([sys.executable, __file__, "--dir", str(folder), "--phase", name], capture_output=True, text=True,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    if res.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20000)
    parser.add_argument("--dir", default="/tmp/ctsurv-bench-stage2-memory")
    parser.add_argument("--keep", action="store_true", help="keep the built store (default: deleted at the end)")
    parser.add_argument("--phase", choices=["baseline", "prepare", "epoch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    if args.phase:
        print(json.dumps(phase(folder, args.phase)))
        return 0
    started = time.perf_counter()
    build(folder, args.patients)
    store_mb = (folder / "store" / "tokens.npy").stat().st_size / 2**20
    print(f"store: {args.patients} studies x {TOKENS} x {DIM} float16 = {store_mb:,.0f} MiB "
          f"(a float32 copy: {2 * store_mb:,.0f} MiB); built in {time.perf_counter() - started:.0f} s")
    batch_mb = BATCH * TOKENS * DIM * 4 / 2**20
    base = run_phase(folder, "baseline")
    target = 1.5 * (base["baseline_peak_mb"] + batch_mb)
    print(f"baseline (imports + tiny decoder {base['model_mb']:.2f} MiB + tokenizer): peak RSS "
          f"{base['baseline_peak_mb']:.0f} MiB; one batch of {BATCH}: {batch_mb:.1f} MiB; target: peak < 1.5 x "
          f"({base['baseline_peak_mb']:.0f} + {batch_mb:.1f}) = {target:.0f} MiB")
    ok = True
    for name in ("prepare", "epoch"):
        r = run_phase(folder, name)
        extra = (f", {r['batches']} batches in {r['epoch_s']} s" if name == "epoch" else "")
        verdict = "meets" if r["peak_mb"] < target else "MISSES"
        ok &= r["peak_mb"] < target
        print(f"{name}: {r['examples']} examples (prepared in {r['prepare_s']} s{extra}): peak RSS {r['peak_mb']:.0f} MiB "
              f"= {r['peak_mb'] / store_mb:.3f} x the store, {r['peak_mb'] / (base['baseline_peak_mb'] + batch_mb):.2f} x "
              f"(baseline + batch), +{r['peak_mb'] - base['baseline_peak_mb']:.0f} MiB over the baseline: {verdict} the target")
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
