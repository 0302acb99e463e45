#!/usr/bin/env bash
# Create .venv and install the project with its pinned PyTorch.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
# Usage: scripts/setup.sh [dev]   ("dev" adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "LoRITa needs Python 3.10 or newer; set PYTHON=/path/to/python3.11 and retry." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv ..."
    "$python" -m venv .venv
fi

# The engine extra holds torch; the base install is only what the API image needs.
spec=".[engine]"
[ "$extras" = "dev" ] && spec=".[engine,dev]"
hash="$(sha256sum pyproject.toml | cut -c1-16)"
stamp=".venv/.installed-$hash-${extras:-base}"
# A dev install holds everything a base install does.
if [ ! -f "$stamp" ] && [ ! -f ".venv/.installed-$hash-dev" ]; then
    echo "Installing the project and PyTorch into .venv (first time: several minutes) ..."
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
    .venv/bin/python -m pip install --quiet -e "$spec"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
