#!/usr/bin/env bash
# Builds the CPU environment if needed, then runs the CPU demo. Extra args go to `openrlhf-3spo demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_cpu_env.sh
exec .venv/bin/openrlhf-3spo demo "$@"
