#!/usr/bin/env bash
# Shared set-up for run-demo and run-tests: a virtualenv in .venv with the package
# installed in development mode. Idempotent; safe to run again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BUILDBOT_STATS_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$venv/bin/python" -m pip install -q -e "$here[${1:-test}]" 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/python" -c 'import buildbot_stats' # fails loudly if the install did not work
