#!/usr/bin/env bash
# One prepared GPU check of the paper's run, under 8 minutes, writing one JSON of figures.
#
#   benchmarks/gpu_check.sh [--out gpu_check.json] [--vllm-model DIR] [--vllm-executable EXE]
#   benchmarks/gpu_check.sh --cpu-smoke --out /tmp/gpu_check.json     # every section's code path on a CPU (CI)
#
# Sections, each under its own time limit, each recorded even when it fails:
#   encoder     benchmarks/bench_encoder_gpu.py: full-size Merlin I3ResNet-152 (224 x 224 x 160),
#               volumes/s per precision and batch, and the encode pipeline
#   stage1      benchmarks/bench_stage1_gpu.py: LLaMA-2-7B-shaped decoder, LoRA, bf16, gradient
#               checkpointing, through ctsurv's trainer; tokens/s, MFU, peak memory, generation
#   stage2      benchmarks/bench_stage2_gpu.py: the same decoder plus the survival branch, the
#               stage-2 loss, through the trainer; tokens/s, peak memory, scoring and generation
#   extraction  benchmarks/bench_extraction.py --only vllm: a vLLM server started as rule
#               extract_answers starts it, when a vLLM executable and a model folder are given
#               (--vllm-executable / $CTSURV_VLLM, --vllm-model / $CTSURV_VLLM_MODEL); else skipped
# The JSON: {"device", "cpu_smoke", "started", "seconds", "sections": {name: {"rc", "seconds",
# "figures" (the benchmark's own JSON, when it writes one), "log_tail"}}}.  Exit status: 0 when
# every section that ran passed.
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
OUT="gpu_check.json"
SMOKE=0
VLLM_MODEL="${CTSURV_VLLM_MODEL:-}"
VLLM_EXE="${CTSURV_VLLM:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-smoke) SMOKE=1 ;;
        --out) OUT="$2"; shift ;;
        --vllm-model) VLLM_MODEL="$2"; shift ;;
        --vllm-executable) VLLM_EXE="$2"; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
T0=$(date +%s)

# run NAME LIMIT_S [JSON_FLAG] -- COMMAND...: the section's status, seconds and log go to $WORK
run() {
    local name="$1" limit="$2"; shift 2
    local start rc
    start=$(date +%s)
    echo "== $name (limit ${limit} s)" >&2
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    echo "$rc $(( $(date +%s) - start ))" >"$WORK/$name.status"
    tail -n 5 "$WORK/$name.log" >&2
}

if [ "$SMOKE" = 1 ]; then
    run encoder 120 "$PY" "$REPO/benchmarks/bench_encoder_gpu.py" --cpu-smoke
    run stage1 120 "$PY" "$REPO/benchmarks/bench_stage1_gpu.py" --cpu-smoke --json "$WORK/stage1.json"
    run stage2 120 "$PY" "$REPO/benchmarks/bench_stage2_gpu.py" --cpu-smoke --json "$WORK/stage2.json"
else
    run encoder 75 "$PY" "$REPO/benchmarks/bench_encoder_gpu.py" --batch-sizes 4 16 --seconds 4 \
        --pipeline-volumes 48 --pipeline-files 8 --json "$WORK/encoder.json"
    run stage1 130 "$PY" "$REPO/benchmarks/bench_stage1_gpu.py" --steps 8 --patients 64 --json "$WORK/stage1.json"
    run stage2 130 "$PY" "$REPO/benchmarks/bench_stage2_gpu.py" --steps 8 --json "$WORK/stage2.json"
fi
if [ -n "$VLLM_EXE" ] && [ -n "$VLLM_MODEL" ]; then
    run extraction 140 "$PY" "$REPO/benchmarks/bench_extraction.py" --only vllm --demo lung --n 64 \
        --vllm-model "$VLLM_MODEL" --vllm-executable "$VLLM_EXE"
else
    echo "skipped: no vLLM executable and model folder given (--vllm-executable/\$CTSURV_VLLM, --vllm-model/\$CTSURV_VLLM_MODEL)" \
        >"$WORK/extraction.skipped"
fi

"$PY" - "$WORK" "$OUT" "$SMOKE" "$STARTED" "$(( $(date +%s) - T0 ))" <<'PYEOF'
import json
import sys
from pathlib import Path

work, out, smoke, started, seconds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], int(sys.argv[5])
try:
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
except Exception as err:  # torch missing or broken: say so in the file
    device = f"unknown ({type(err).__name__})"
sections, failed = {}, False
for name in ("encoder", "stage1", "stage2", "extraction"):
    skipped = work / f"{name}.skipped"
    if skipped.exists():
        sections[name] = {"skipped": skipped.read_text().strip()}
        continue
    rc, secs = (int(v) for v in (work / f"{name}.status").read_text().split())
    figures = work / f"{name}.json"
    log = (work / f"{name}.log").read_text(errors="replace").splitlines()
    sections[name] = {"rc": rc, "seconds": secs, "timed_out": rc in (124, 137),
                      "figures": json.loads(figures.read_text()) if figures.exists() else None, "log_tail": log[-25:]}
    failed |= rc != 0
report = {"device": device, "cpu_smoke": smoke, "started": started, "seconds": seconds, "sections": sections}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
print(f"gpu_check: {device}, {seconds} s, " + ", ".join(
    f"{k}: {'skipped' if 'skipped' in v else ('ok' if v['rc'] == 0 else 'rc ' + str(v['rc']))}" for k, v in sections.items())
    + f" -> {out}")
sys.exit(1 if failed else 0)
PYEOF
