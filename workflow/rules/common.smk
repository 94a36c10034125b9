# Configuration, validated on load, and the input functions of the rules.
#
# Quoting: every value that reaches a shell command is quoted there with Snakemake's `:q`
# (a list param is quoted element by element; an empty list adds nothing), and options take
# their value as `--name=VALUE`, so a value that starts with `-` is not read as an option.

import glob
import os
import re
import sys

import pandas as pd
from snakemake.utils import validate

sys.path.append(workflow.basedir)  # the miffi beside the Snakefile, for a Snakemake without it (--use-conda)
from miffi.classify.combine import group_rules, parse_thresholds  # light: no torch at load
from miffi.classify import registry  # the published models (light: no torch)

#: Dataset and model names: they are folder names, wildcards and report titles.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Names first, with a plainer message than the schema's (which checks them too).
for _section in ("datasets", "train"):
    _names = config.get(_section)
    for _name in _names if isinstance(_names, dict) else ():
        if not re.fullmatch(NAME_PATTERN, str(_name)):
            raise ValueError(
                f"{_section}.{_name}: {str(_name)!r} is not a valid name "
                f"(letters, digits, '_', '.', '-', starting with a letter or digit: {NAME_PATTERN})"
            )

validate(config, "../schemas/config.schema.yaml")

OUT = config["outdir"].rstrip("/")
if re.search(r"[{}]", OUT) or OUT.startswith("-"):
    raise ValueError(
        f"outdir: {config['outdir']!r} may not contain '{{' or '}}' (Snakemake reads them as "
        "wildcards) or start with '-'"
    )
DATASETS = config["datasets"]
# `--pdf` of the evaluate, report and summary jobs: PDFs cost about as much again as the PNGs.
PDF_OPTION = ["--pdf"] if config.get("pdf_figures") else []
TRAIN = config.get("train") or {}
TRAINED = "trained:"

for _name, _model in TRAIN.items():
    if _model["dataset"] not in DATASETS:
        raise ValueError(f"train.{_name}.dataset: {_model['dataset']!r} is not a dataset of this config")
for _name, _dataset in DATASETS.items():
    _model = _dataset.get("model") or ""
    if _model.startswith(TRAINED) and _model[len(TRAINED) :] not in TRAIN:
        raise ValueError(f"datasets.{_name}.model: {_model!r} names no model of the train section")
    # what the schema cannot say, checked as the command line checks it
    for _key, _check in (("rule", group_rules), ("bad_threshold", parse_thresholds)):
        try:
            _check(_dataset[_key])
        except ValueError as _error:
            raise ValueError(f"datasets.{_name}.{_key}: {_error}") from None
# With --use-conda, envs/miffi.post-deploy.sh installs this checkout (the miffi package beside
# the Snakefile) into the rules' environment; it finds the checkout here (set, not read: no
# user has to define it, so it is no `envvars:` entry).
os.environ.update(MIFFI_SOURCE=workflow.basedir)


def setting(wildcards, key):
    return DATASETS[wildcards.dataset][key]


def dataset_sources(wildcards):
    """The dataset's inputs as configured (globs unexpanded): the simulated star file, or
    the configured star/cs/csg/list files, directories, MRC files and globs."""
    if "simulate" in DATASETS[wildcards.dataset]:
        return [f"{OUT}/{wildcards.dataset}/simulated/micrographs.star"]
    return DATASETS[wildcards.dataset]["input"]


def carried(paths):
    """The paths Snakemake can take as input files. It reads `{...}` in a file name as a
    wildcard (`a{b}.mrc` fails, `a{dataset}.mrc` becomes another name), and `{{` is no
    escape there, so files with braces are left out: the commands still get them (from the
    tables, or as params); only a change to such a file re-runs nothing."""
    return [p for p in paths if "{" not in p and "}" not in p]


def dataset_inputs(wildcards):
    """The input files, globs expanded: a micrograph added to a globbed folder re-runs
    intake (a glob matching nothing stays, so Snakemake reports it as missing)."""
    files = []
    for source in dataset_sources(wildcards):
        matches = sorted(glob.glob(source)) if glob.has_magic(source) else []
        files += matches or [source]
    return carried(files)


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


def labels_input(wildcards):
    return carried([labels_of(wildcards.dataset)])


def chunk_table(wildcards):
    """The table of one chunk, written by intake (known once intake has run)."""
    checkpoints.intake.get(dataset=wildcards.dataset)
    return f"{OUT}/{wildcards.dataset}/chunks/chunk_{wildcards.chunk}.micrographs.tsv"


def chunk_micrographs(wildcards):
    """The micrograph files of one chunk: a changed micrograph re-runs its chunk. Paths are
    read as text (no NaN or numbers: `NA.mrc`, `null`, `1e3` stay what they are). A missing
    file is left to preprocess, which records it as failed while the others go on (it re-runs
    the chunk when the file appears)."""
    table = pd.read_csv(chunk_table(wildcards), sep="\t", usecols=["path"], dtype=str, keep_default_na=False)
    return [path for path in carried(table["path"]) if os.path.exists(path)]


def model_file(dataset):
    """The dataset's model file: a path; `trained:NAME` for a model the workflow trains; or a
    published model's name (`miffi_v1`) for its downloaded file in the models folder
    ($MIFFI_MODELS, default models/; a missing download stops the plan, naming the
    `miffi download` command)."""
    model = DATASETS[dataset].get("model")
    if model and model.startswith(TRAINED):
        return f"{OUT}/models/{model[len(TRAINED):]}/best.safetensors"
    if registry.is_model_name(model):
        try:
            return str(registry.resolve_model(model))
        except registry.ModelError as error:
            raise ValueError(f"datasets.{dataset}.model: {error}") from None
    return model


def model_path(wildcards):
    return model_file(wildcards.dataset)


def model_input(wildcards):
    model = model_path(wildcards)
    return carried([model]) if model else []


def published_model(dataset):
    """The registry entry of the dataset's model when it names a published one, else None."""
    model = DATASETS[dataset].get("model")
    return registry.get_model(model) if registry.is_model_name(model) else None


# A published model says its input channels; a dataset's `channels` may only repeat them.
for _name in DATASETS:
    _published = published_model(_name)
    _channels = DATASETS[_name].get("channels")
    if _published and _channels is not None and _channels != _published.channels:
        raise ValueError(
            f"datasets.{_name}.channels: {_channels} does not fit model {_published.name!r}, which takes "
            f"{_published.channels} channel(s); leave `channels` out for a published model"
        )


def model_options(wildcards):
    """`--model=PATH --arch=ARCH` (and `--fast`) for a dataset with a model; none for the
    weight-free classifier."""
    model = model_path(wildcards)
    if not model:
        return []
    return [
        f"--model={model}",
        f"--arch={setting(wildcards, 'arch')}",
        *(["--fast"] if setting(wildcards, "fast") else []),
    ]


def option(name, value):
    """`[--name=VALUE]`, or no option when the value is unset (None or empty)."""
    return [f"--{name}={value}"] if value is not None and value != "" else []


def export_options(wildcards):
    """The microscope and cryoSPARC project options of the dataset's export."""
    keys = ("voltage", "cs", "amplitude_contrast", "cryosparc_project_dir")
    return [flag for key in keys for flag in option(key.replace("_", "-"), setting(wildcards, key))]


TRAIN_OPTIONS = (
    "preset",
    "arch",
    "channels",
    "epochs",
    "batch_size",
    "lr",
    "min_lr",
    "weight_decay",
    "layer_decay",
    "warmup_epochs",
    "val_fraction",
    "train_size",
    "seed",
    "pretrained",
    "device",
    "workers",
)


def train_options(wildcards):
    """Command-line options of `miffi train` from the model's train settings."""
    settings = TRAIN[wildcards.model]
    return [f"--{key.replace('_', '-')}={settings[key]}" for key in TRAIN_OPTIONS if settings.get(key) is not None]


def chunks(dataset):
    return range(DATASETS[dataset]["chunks"])


# Folders, inputs, params and resources the rules name (one function each, no lambdas in rules).


def dataset_dir(wildcards):
    """The dataset's output folder."""
    return f"{OUT}/{wildcards.dataset}"


def simulated_dir(wildcards):
    """Where `miffi simulate` writes the dataset's micrographs, star file and labels."""
    return f"{dataset_dir(wildcards)}/simulated"


def simulate_options(wildcards):
    """`--n`, `--detector` and `--seed` of the dataset's `simulate` section."""
    settings = setting(wildcards, "simulate")
    return [
        f"--n={settings['n']}",
        f"--detector={settings.get('detector', '1024x1024@1.0')}",
        f"--seed={settings.get('seed', 0)}",
    ]


def chunk_count(wildcards):
    """How many chunks the dataset's micrographs are split into."""
    return setting(wildcards, "chunks")


def chunk_dir(wildcards):
    """The folder of the chunk tables intake writes."""
    return f"{dataset_dir(wildcards)}/chunks"


def intake_options(wildcards):
    """The project folder, pixel size and outside-project options of the dataset's intake."""
    outside = ["--allow-outside-project"] if setting(wildcards, "allow_outside_project") else []
    project_dir = option("project-dir", setting(wildcards, "project_dir"))
    return project_dir + option("pixel-size", setting(wildcards, "pixel_size")) + outside


def cache_dir(wildcards):
    """The dataset's tensor cache (written by preprocess, read by infer, combine and report)."""
    return f"{dataset_dir(wildcards)}/cache"


def dataset_channels(wildcards):
    """Input channels of the dataset's tensors: 2 (image + power spectrum) or 1 (image only):
    a published model's own; else the dataset's `channels` (default 2)."""
    published = published_model(wildcards.dataset)
    if published:
        return published.channels
    channels = setting(wildcards, "channels")
    return 2 if channels is None else channels


def dataset_device(wildcards):
    """The dataset's inference device: auto, cpu, cuda or cuda:N."""
    return setting(wildcards, "device")


def infer_threads(wildcards):
    """Scheduler threads of an inference job: two for a model (its batches use them); one
    for the weight-free classifier, which reads the chunk's metrics and runs no model, so
    that the jobs of several chunks run side by side."""
    return 2 if model_path(wildcards) else 1


def dataset_gpus(wildcards):
    """GPUs an inference job asks for: none when the dataset's device is cpu."""
    return 0 if dataset_device(wildcards) == "cpu" else 1


def chunk_predictions(wildcards):
    """The per-square predictions of every chunk of the dataset (the infer outputs)."""
    return expand(f"{dataset_dir(wildcards)}/predictions/chunk_{{chunk}}.tsv", chunk=chunks(wildcards.dataset))


def model_option(wildcards):
    """`--model=PATH` for a dataset with a model; none for the weight-free classifier."""
    return option("model", model_path(wildcards))


def overrides_of(wildcards):
    """The dataset's overrides file: as configured, else the one `miffi curate` writes
    beside its results when it exists (its appearance or a change re-runs combine)."""
    configured = setting(wildcards, "overrides")
    default = f"{dataset_dir(wildcards)}/overrides.tsv"
    return configured or (default if os.path.exists(default) else None)


def overrides_input(wildcards):
    path = overrides_of(wildcards)
    return carried([path]) if path else []


def overrides_option(wildcards):
    """`--overrides=FILE` when the dataset has overrides; else none."""
    return option("overrides", overrides_of(wildcards))


def combine_options(wildcards):
    """The dataset's combination rule and good/bad thresholds."""
    return [
        f"--rule={setting(wildcards, 'rule')}",
        f"--good-threshold={setting(wildcards, 'good_threshold')}",
        f"--bad-threshold={setting(wildcards, 'bad_threshold')}",
    ]


def export_formats(wildcards):
    """The dataset's export formats, comma-separated (`relion,cryosparc,lists`)."""
    return ",".join(setting(wildcards, "formats"))


def label_column_option(wildcards):
    """`--label-column=NAME` when the dataset names the column of its labels file."""
    return option("label-column", setting(wildcards, "label_column"))


def evaluation_dir(wildcards):
    """The folder `miffi evaluate` writes the dataset's accuracy into."""
    return f"{dataset_dir(wildcards)}/evaluation"


def dataset_evaluation(wildcards):
    """The dataset's evaluation.json when it has labels (its report shows accuracy); else none."""
    return [f"{evaluation_dir(wildcards)}/evaluation.json"] if has_labels(wildcards.dataset) else []


def evaluation_option(wildcards):
    """`--evaluation=DIR` of the dataset's report when it has labels; else none."""
    return option("evaluation", evaluation_dir(wildcards)) if has_labels(wildcards.dataset) else []


def report_title(wildcards):
    return f"Miffi report: {wildcards.dataset}"


def training_dataset(wildcards):
    """The dataset a model of the `train` section is trained on."""
    return TRAIN[wildcards.model]["dataset"]


def training_table(wildcards):
    """The micrograph table of the training dataset."""
    return f"{OUT}/{training_dataset(wildcards)}/micrographs.micrographs.tsv"


def training_labels(wildcards):
    """The labels file of the training dataset."""
    return labels_of(training_dataset(wildcards))


def training_labels_input(wildcards):
    return carried([training_labels(wildcards)])


def training_dir(wildcards):
    """The model's folder: best.safetensors, per-epoch checkpoints, log.tsv, figures/."""
    return f"{OUT}/models/{wildcards.model}"


def training_gpus(wildcards):
    """GPUs a training job asks for: none when the model's device is cpu."""
    return 0 if TRAIN[wildcards.model].get("device", "auto") == "cpu" else 1
