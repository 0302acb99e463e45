#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install, start services, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh dev
scripts/services.sh

export PYTHONUNBUFFERED=1
status=0
.venv/bin/python -m pytest "$@" || status=$?
# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
exit "$status"
