#!/usr/bin/env bash
# Builds the CPU environment in .venv from requirements/cpu.lock alone (every package, its version and
# hashes), then this package in editable mode. Idempotent: a finished build leaves .venv/.setup-done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
LOCK=requirements/cpu.lock
STAMP="$VENV/.setup-done"
if [ -f "$STAMP" ] && [ "$STAMP" -nt "$LOCK" ] && [ "$STAMP" -nt scripts/setup_cpu_env.sh ]; then
  exit 0
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -m venv --clear "$VENV"  # a rebuild starts empty: the environment is the lock, nothing left over
# (this machine's pip config lists local indexes that pip reports as missing, once per package: drop that noise)
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
export DS_BUILD_OPS=0  # deepspeed builds from source: no CUDA ops
echo "[setup] the locked packages ($LOCK; alfworld compiles its planner, a few minutes) ..."
# --no-deps: the lock is the whole environment, resolved already. So pip does not see flash-attn,
# which openrlhf requires and which has no CPU build (the --cpu mode has a stand-in, below).
pip install --no-deps --require-hashes -r "$LOCK"
# The openrlhf wheel, kept: its tree (the package and the tests it ships) is what patches/ applies to.
"$VENV/bin/python" - "$LOCK" > "$VENV/openrlhf.req" <<'PY'
import re, sys
entry = re.search(r"^openrlhf==.*?(?=^\S)", open(sys.argv[1]).read(), re.M | re.S)
print(entry.group(0))
PY
pip download --no-deps --require-hashes -r "$VENV/openrlhf.req" -d "$VENV/wheels"
echo "[setup] openrlhf-3spo (editable) ..."
pip install --no-deps -e .
# The --cpu mode's flash_attn stand-in (OpenRLHF imports flash_attn at module level), on this
# environment's path too: the tests import OpenRLHF directly.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$(pwd)/openrlhf_3spo/plugin/cpu_shims" > "$site/openrlhf_3spo_cpu_shims.pth"
# openrlhf's wheel installs its tests as a top-level `tests` package; it must never shadow this
# project's tests (tests/conftest.py runs them from the kept wheel).
rm -rf "$site/tests"
touch "$STAMP"
echo "[setup] done: $VENV"
