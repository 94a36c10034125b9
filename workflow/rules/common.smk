# Configuration, validated on load, and the input functions of the rules.

import glob
import shlex

import pandas as pd
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

OUT = config["outdir"].rstrip("/")
DATASETS = config["datasets"]
MIFFI = "miffi"


def setting(wildcards, key):
    return DATASETS[wildcards.dataset][key]


def dataset_sources(wildcards):
    """The dataset's inputs as configured (globs unexpanded): the simulated star file, or
    the configured star/cs/csg/list files, directories, MRC files and globs."""
    if "simulate" in DATASETS[wildcards.dataset]:
        return [f"{OUT}/{wildcards.dataset}/simulated/micrographs.star"]
    return DATASETS[wildcards.dataset]["input"]


def dataset_inputs(wildcards):
    """The input files, globs expanded: a micrograph added to a globbed folder re-runs
    intake (a glob matching nothing stays, so Snakemake reports it as missing)."""
    files = []
    for source in dataset_sources(wildcards):
        matches = sorted(glob.glob(source)) if glob.has_magic(source) else []
        files += matches or [source]
    return files


def has_labels(dataset):
    return "simulate" in DATASETS[dataset] or bool(DATASETS[dataset].get("labels"))


#: Datasets evaluated against labels (and summarised together).
LABELLED = [d for d in DATASETS if has_labels(d)]


def dataset_labels(wildcards):
    """The simulator's labels.csv, or the configured labels file."""
    if "simulate" in DATASETS[wildcards.dataset]:
        return f"{OUT}/{wildcards.dataset}/simulated/labels.csv"
    return DATASETS[wildcards.dataset]["labels"]


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
