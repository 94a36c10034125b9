rule train:
    """A model trained on a labelled dataset of this config (the `train:` section);
    datasets use it with `model: trained:NAME`. Per-epoch checkpoints, log and loss
    curves under models/NAME/; an interrupted run resumes where it stopped."""
    input:
        table=lambda w: f"{OUT}/{TRAIN[w.model]['dataset']}/micrographs.micrographs.tsv",
        labels=lambda w: carried([labels_of(TRAIN[w.model]["dataset"])]),
    output:
        model=f"{OUT}/models/{{model}}/best.safetensors",
        log=f"{OUT}/models/{{model}}/log.tsv",
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
        gpu=lambda w: 0 if TRAIN[w.model].get("device", "auto") == "cpu" else 1,
        mem_mb=16000,
        runtime=720,
    params:
        folder=lambda w: f"{OUT}/models/{w.model}",
        labels=lambda w: labels_of(TRAIN[w.model]["dataset"]),
        options=train_options,
    shell:
        "miffi train {input.table:q} --labels={params.labels:q} --out={params.folder:q} --resume "
        "{params.options:q} --no-progress > {log:q} 2>&1"
