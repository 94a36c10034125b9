#!/usr/bin/env bash
# GPU checks in one go, for a lent GPU machine whose Python lacks some of our
# dependencies: wheels in .whl/ are installed to /tmp/site first (see the README's
# "Development" section). Writes logs to $OUT when set.
set -uo pipefail
out=${OUT:-/tmp/miffi-gpu-check}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/integration/test_gpu.py tests/reference/test_preprocess_reference.py tests/unit/test_models.py "$@" 2>&1 | tee "$out/pytest.log"
python3 benchmarks/preprocess_speed.py --n 24 --reference 1 2>&1 | tee "$out/preprocess_speed.log"
python3 benchmarks/run_speed.py --n 24 2>&1 | tee "$out/run_speed.log"
python3 benchmarks/throughput.py --n 48 --device cuda 2>&1 | tee "$out/throughput.log"
