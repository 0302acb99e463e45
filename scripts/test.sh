#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install, start services, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh dev
scripts/services.sh

# The tests on real MNIST / Fashion-MNIST read the prepared copies in the data cache;
# services.sh installed their sources where the machine allows. Without them those
# tests skip and say so, which is why this is not an error.
for name in mnist fashion-mnist; do
    timeout 300 .venv/bin/lorita data fetch "$name" >/dev/null 2>&1 ||
        echo "$name could not be prepared: its tests will skip (\`lorita data fetch $name\`)" >&2
done

export PYTHONUNBUFFERED=1
status=0
.venv/bin/python -m pytest "$@" || status=$?
# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
exit "$status"
