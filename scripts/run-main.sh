#!/usr/bin/env bash
# The main job on a fresh machine: creates .venv if needed, then runs the Snakemake
# workflow on the shipped config.yaml. That config needs no data and no weights: it
# simulates a small labelled dataset and runs every stage on it (intake, preprocessing
# into the tensor cache with the Fourier-space metrics, classification with the
# weight-free classifier, combination, categories, RELION/cryoSPARC/list exports).
# Outputs go to results/workflow/; run it again and only what changed is redone.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
exec snakemake --cores all "$@"
