# The miffi workflow: simulate (optional) → intake → [train] → preprocess (chunks) → infer (chunks,
# GPU jobs) → combine → export → evaluate (datasets with labels) → report, for every
# dataset in config.yaml, and a summary report across the labelled datasets. Logic lives in the
# miffi package; the rules only call its command line.
#
# config.yaml (the demo) is the default run. A user's `--configfile my.yaml` replaces it rather
# than being merged into it (Snakemake would otherwise run the demo's datasets and training
# job as well); `--config key=value` alone still overrides keys of the demo.
from snakemake.utils import min_version

min_version("9.0")  # pyproject.toml: snakemake>=9


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/intake.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/combine.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    intake,
    combine,
    export,
    evaluate,
    report,
    summary,


rule all:
    input:
        expand(f"{OUT}/{{dataset}}/export", dataset=DATASETS),
        expand(f"{OUT}/{{dataset}}/report.html", dataset=DATASETS),
        [f"{OUT}/summary.html"] if LABELLED else [],
