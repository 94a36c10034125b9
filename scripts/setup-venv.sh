#!/usr/bin/env bash
# Create (or bring up to date) the virtual environment .venv with miffi and its tests.
# torch/torchvision are pinned by constraints.txt and installed first, so no later
# install can pull another (multi-GB) build. Miffi 1.0.1 (the reference implementation
# the tests compare against) goes into .venv/miffi-1.0.1, apart: it has our import name.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.miffi-installed
want=$(cat pyproject.toml constraints.txt scripts/setup-venv.sh | sha256sum | cut -c1-16)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (first run: a few minutes; torch is large)" >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt torch torchvision
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test,workflow]"
.venv/bin/python -m pip install -q --no-deps --upgrade --target .venv/miffi-1.0.1 miffi==1.0.1
echo "$want" > "$stamp"
