#!/usr/bin/env bash
# Builds the CPU environment if needed, then runs the whole test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_cpu_env.sh
exec .venv/bin/python -m pytest "$@"
