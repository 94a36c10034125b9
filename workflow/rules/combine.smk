rule combine:
    """Predictions of all chunks → results.tsv (labels, categories, metrics, CTF baseline)
    and predictions.tsv (every square's probabilities), each with a Parquet copy."""
    input:
        table=f"{OUT}/{{dataset}}/micrographs.micrographs.tsv",
        predictions=chunk_predictions,
        overrides=overrides_input,
    output:
        results=f"{OUT}/{{dataset}}/results.tsv",
        results_parquet=f"{OUT}/{{dataset}}/results.parquet",
        predictions=f"{OUT}/{{dataset}}/predictions.tsv",
        predictions_parquet=f"{OUT}/{{dataset}}/predictions.parquet",
    log:
        f"{OUT}/{{dataset}}/logs/combine.log",
    conda:
        "../../envs/miffi.yaml"
    params:
        cache=cache_dir,
        model=model_option,
        options=combine_options,
        overrides=overrides_option,
    shell:
        "miffi combine {input.table:q} --cache={params.cache:q} --out={output.results:q} {params.model:q} "
        "{params.options:q} {params.overrides:q} --predictions {input.predictions:q} > {log:q} 2>&1"
