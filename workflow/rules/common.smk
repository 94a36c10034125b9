# Configuration, validated on load, and the input functions of the rules.

import pandas as pd
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

OUT = config["outdir"].rstrip("/")
DATASETS = config["datasets"]
MIFFI = "miffi"


def setting(wildcards, key):
    return DATASETS[wildcards.dataset][key]


def dataset_inputs(wildcards):
    """The dataset's input files: the simulated star file, or the configured inputs."""
    if "simulate" in DATASETS[wildcards.dataset]:
        return [f"{OUT}/{wildcards.dataset}/simulated/micrographs.star"]
    return DATASETS[wildcards.dataset]["input"]


def chunk_table(wildcards):
    """The table of one chunk, written by intake (known once intake has run)."""
    checkpoints.intake.get(dataset=wildcards.dataset)
    return f"{OUT}/{wildcards.dataset}/chunks/chunk_{wildcards.chunk}.micrographs.tsv"


def chunk_micrographs(wildcards):
    """The micrograph files of one chunk: a changed micrograph re-runs its chunk."""
    return pd.read_csv(chunk_table(wildcards), sep="\t", usecols=["path"])["path"].tolist()


def model_input(wildcards):
    model = setting(wildcards, "model")
    return [model] if model else []


def model_options(wildcards):
    ds = DATASETS[wildcards.dataset]
    return f"--model {ds['model']} --arch {ds['arch']}" if ds["model"] else ""


def chunks(dataset):
    return range(DATASETS[dataset]["chunks"])
