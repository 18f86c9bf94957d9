#!/usr/bin/env bash
# The crossbar router (PyPI) for the multi-master tests, in a virtualenv of its own
# (.venv-crossbar): crossbar pulls in web3, numpy and friends that have no place beside
# Buildbot in .venv. Idempotent: once `crossbar version` answers, nothing is installed again;
# pip's cache makes a fresh install quicker. Set BUILDBOT_STATS_CROSSBAR_VENV to put it
# elsewhere.
# Measured on the 2-core test machine: 3 min for a fresh install without pip's cache (about
# 375 MB of packages), 57 s with it, 2 s when crossbar is already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BUILDBOT_STATS_CROSSBAR_VENV:-$here/.venv-crossbar}"
python="${PYTHON:-python3}"
spec="${BUILDBOT_STATS_CROSSBAR_SPEC:-crossbar>=26}"
if "$venv/bin/crossbar" version >/dev/null 2>&1; then
    exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$venv/bin/python" -m pip install -q "$spec" 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/crossbar" version >/dev/null
