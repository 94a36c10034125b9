#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates .venv and installs the system tools
# the tests use if needed, then runs pytest. Extra arguments go to pytest
# (e.g. scripts/run-tests.sh -k intake).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
scripts/install-system-tools.sh
exec .venv/bin/python -m pytest -q "$@"
