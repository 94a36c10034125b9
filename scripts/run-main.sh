#!/usr/bin/env bash
# The main job on a fresh machine: creates .venv if needed, then runs the Snakemake
# workflow on the shipped config.yaml. That config needs no data and no weights: it
# simulates a small labelled dataset and runs every stage on it (intake, preprocessing
# into the tensor cache with the Fourier-space metrics, classification with the
# weight-free classifier, combination, categories, RELION/cryoSPARC/list exports).
# Outputs go to results/workflow/; run it again and only what changed is redone.
#
# Safe to re-run after a crash or `kill -9`: the run holds an exclusive lock on
# .snakemake/run-main.lock (in the working directory: `--directory DIR` moves it), which the
# kernel drops when the run dies. Holding it, a Snakemake lock left behind is stale and is
# removed (snakemake --unlock), and jobs cut short are redone (--rerun-incomplete). While
# another run holds it, this one stops. (A snakemake started directly, not through this
# script, holds no such lock: do not run both in one folder.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
export PATH="$PWD/.venv/bin:$PATH"

if ! command -v flock > /dev/null; then
  echo "run-main.sh: no flock(1) here: after an interrupted run, run snakemake --unlock first" >&2
  exec snakemake --cores all --rerun-incomplete "$@"
fi
workdir=.
for ((i = 1; i <= $#; i++)); do
  case ${!i} in
    -d | --directory) j=$((i + 1)); workdir=${!j:-.} ;;
    --directory=*) workdir=${!i#--directory=} ;;
  esac
done
mkdir -p "$workdir/.snakemake"
exec 9>"$workdir/.snakemake/run-main.lock"
if ! flock -n 9; then
  echo "run-main.sh: another run is using $workdir (it holds $workdir/.snakemake/run-main.lock); not starting" >&2
  exit 1
fi
if [ -n "$(ls -A "$workdir/.snakemake/locks" 2>/dev/null)" ]; then
  echo "run-main.sh: removing the lock of an interrupted run in $workdir" >&2
  snakemake --unlock "$@"
fi
exec snakemake --cores all --rerun-incomplete "$@"
