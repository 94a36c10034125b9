rule evaluate:
    """results.tsv + labels → accuracy of every method (evaluation.json, matched.tsv,
    confusion matrices). Datasets with labels only (simulated ones always have them)."""
    input:
        results=f"{OUT}/{{dataset}}/results.tsv",
        labels=labels_input,
    output:
        evaluation=f"{OUT}/{{dataset}}/evaluation/evaluation.json",
        matched=f"{OUT}/{{dataset}}/evaluation/matched.tsv",
        summary=f"{OUT}/{{dataset}}/evaluation/summary.tsv",
        figures=report(
            directory(f"{OUT}/{{dataset}}/evaluation/figures"),
            patterns=["{name}.png"],
            caption="../report/confusion.rst",
            category="{dataset}",
            subcategory="accuracy",
        ),
    log:
        f"{OUT}/{{dataset}}/logs/evaluate.log",
    conda:
        "../../envs/miffi.yaml"
    params:
        labels=dataset_labels,
        column=label_column_option,
        folder=evaluation_dir,
        pdf=PDF_OPTION,
    shell:
        "miffi evaluate --results={input.results:q} --labels={params.labels:q} {params.column:q} "
        "--dataset={wildcards.dataset:q} --out={params.folder:q} {params.pdf:q} > {log:q} 2>&1"
