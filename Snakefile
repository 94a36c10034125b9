# The miffi workflow: simulate (optional) → intake → preprocess (chunks) → infer (chunks,
# GPU jobs) → combine → export, for every dataset in config.yaml. Logic lives in the
# miffi package; the rules only call its command line.
configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/intake.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/combine.smk"
include: "workflow/rules/export.smk"


localrules:
    all,
    intake,
    combine,
    export,


rule all:
    input:
        expand(f"{OUT}/{{dataset}}/export", dataset=DATASETS),
