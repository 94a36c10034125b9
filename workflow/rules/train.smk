rule train:
    """A model trained on a labelled dataset of this config (the `train:` section);
    datasets use it with `model: trained:NAME`. Per-epoch checkpoints, log and loss
    curves under models/NAME/; an interrupted run resumes where it stopped. What a resume
    reads (checkpoints, state, config.json, split.tsv) is no declared output, so Snakemake
    does not delete it before a re-run."""
    input:
        table=training_table,
        labels=training_labels_input,
    output:
        model=f"{OUT}/models/{{model}}/best.safetensors",
        log=f"{OUT}/models/{{model}}/log.tsv",
        iterations=f"{OUT}/models/{{model}}/iterations.tsv",
        figures=report(
            directory(f"{OUT}/models/{{model}}/figures"),
            patterns=["{name}.png"],
            caption="../report/train.rst",
            category="training",
            subcategory="{model}",
        ),
    log:
        f"{OUT}/logs/train_{{model}}.log",
    benchmark:
        f"{OUT}/benchmarks/train_{{model}}.tsv"
    conda:
        "../../envs/miffi.yaml"
    threads: 2
    resources:
        gpu=training_gpus,
        mem_mb=16000,
        runtime=720,
    params:
        folder=training_dir,
        labels=training_labels,
        options=train_options,
    shell:
        "miffi train {input.table:q} --labels={params.labels:q} --out={params.folder:q} --resume "
        "{params.options:q} --no-progress > {log:q} 2>&1"
