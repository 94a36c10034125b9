#!/usr/bin/env bash
# Run by Snakemake (--use-conda) in the new environment of envs/miffi.yaml, once, after
# creating it: installs the miffi package of this checkout into it. The dependencies come
# from the environment file (conda-forge), hence --no-deps. workflow/rules/common.smk sets
# MIFFI_SOURCE to the folder of the Snakefile.
set -euo pipefail
: "${MIFFI_SOURCE:?MIFFI_SOURCE is not set: run this through snakemake --use-conda, or set it to the miffi checkout}"
python -m pip install --no-deps --no-build-isolation -e "$MIFFI_SOURCE"
