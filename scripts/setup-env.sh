#!/usr/bin/env bash
# Shared set-up for run-demo and run-tests: a virtualenv in .venv with the package
# installed in development mode. Idempotent; safe to run again. pip runs only when setup.py
# (or the extra asked for) changed since the last install, and its output is shown only
# when it fails (a successful editable install prints a page of setuptools warnings).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BUILDBOT_STATS_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
extra="${1:-test}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.buildbot_stats-install"
want="$(cat "$here/setup.py" | sha256sum | cut -d' ' -f1) $extra $here"
installed_here() {
    # the package this venv imports is this checkout's (an editable install of it)
    [ "$("$venv/bin/python" -c 'import buildbot_stats, os; print(os.path.dirname(os.path.dirname(os.path.abspath(buildbot_stats.__file__))))' 2>/dev/null)" = "$here" ]
}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! installed_here; then
    log="$(mktemp)"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    if ! "$venv/bin/python" -m pip install -q -e "$here[$extra]" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "scripts/setup-env.sh: pip install -e '.[$extra]' failed (above)" >&2
        exit 1
    fi
    rm -f "$log"
    printf '%s\n' "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import buildbot_stats' # fails loudly if the install did not work
