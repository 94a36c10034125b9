# Configuration, validated on load, and the input functions of the rules.

import glob
import shlex

import pandas as pd
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

OUT = config["outdir"].rstrip("/")
DATASETS = config["datasets"]
TRAIN = config.get("train") or {}
TRAINED = "trained:"

for _name, _model in TRAIN.items():
    if _model["dataset"] not in DATASETS:
        raise ValueError(f"train.{_name}.dataset: {_model['dataset']!r} is not a dataset of this config")
for _name, _dataset in DATASETS.items():
    _model = _dataset.get("model") or ""
    if _model.startswith(TRAINED) and _model[len(TRAINED):] not in TRAIN:
        raise ValueError(f"datasets.{_name}.model: {_model!r} names no model of the train section")
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


def labels_of(dataset):
    """The simulator's labels.csv, or the configured labels file."""
    if "simulate" in DATASETS[dataset]:
        return f"{OUT}/{dataset}/simulated/labels.csv"
    return DATASETS[dataset]["labels"]


def dataset_labels(wildcards):
    return labels_of(wildcards.dataset)


def chunk_table(wildcards):
    """The table of one chunk, written by intake (known once intake has run)."""
    checkpoints.intake.get(dataset=wildcards.dataset)
    return f"{OUT}/{wildcards.dataset}/chunks/chunk_{wildcards.chunk}.micrographs.tsv"


def chunk_micrographs(wildcards):
    """The micrograph files of one chunk: a changed micrograph re-runs its chunk."""
    return pd.read_csv(chunk_table(wildcards), sep="\t", usecols=["path"])["path"].tolist()


def model_path(wildcards):
    """The dataset's model file: a path, or `trained:NAME` for a model the workflow trains."""
    model = setting(wildcards, "model")
    if model and model.startswith(TRAINED):
        return f"{OUT}/models/{model[len(TRAINED):]}/best.safetensors"
    return model


def model_input(wildcards):
    model = model_path(wildcards)
    return [model] if model else []


def model_options(wildcards):
    model = model_path(wildcards)
    return f"--model {model} --arch {setting(wildcards, 'arch')}" if model else ""


TRAIN_OPTIONS = ("preset", "arch", "channels", "epochs", "batch_size", "lr", "min_lr", "weight_decay",
                 "layer_decay", "warmup_epochs", "val_fraction", "train_size", "seed", "pretrained", "device", "workers")


def train_options(wildcards):
    """Command-line options of `miffi train` from the model's train settings."""
    settings = TRAIN[wildcards.model]
    return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(settings[key]))}"
                    for key in TRAIN_OPTIONS if settings.get(key) is not None)


def chunks(dataset):
    return range(DATASETS[dataset]["chunks"])
