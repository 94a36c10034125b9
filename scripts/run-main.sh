#!/usr/bin/env bash
# The main job on a fresh machine: creates .venv if needed, simulates a small labelled
# dataset (no data or weights needed) and runs the whole pipeline on it with the
# weight-free classifier: preprocessing into the tensor cache, Fourier-space metrics,
# classification, categories and the RELION/cryoSPARC/list exports.
# Outputs go to results/demo/. Run it again: unchanged micrographs come from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
out=results/demo
.venv/bin/miffi simulate --out "$out/dataset" --n 12 --detector 2048x2048@1.0 --seed 1
.venv/bin/miffi run --input "$out/dataset/micrographs.star" --outdir "$out/run" --cache "$out/cache"
