rule infer:
    """Cached tensors of one chunk → per-square probabilities (the model, or the
    weight-free classifier). Results are kept per micrograph, so a re-run evaluates only
    micrographs it has not seen. A GPU job unless the dataset's device is cpu."""
    input:
        table=chunk_table,
        preprocessed=f"{OUT}/{{dataset}}/preprocess/chunk_{{chunk}}.tsv",
        model=model_input,
    output:
        predictions=f"{OUT}/{{dataset}}/predictions/chunk_{{chunk}}.tsv",
        parquet=f"{OUT}/{{dataset}}/predictions/chunk_{{chunk}}.parquet",
    log:
        f"{OUT}/{{dataset}}/logs/infer_{{chunk}}.log",
    benchmark:
        f"{OUT}/{{dataset}}/benchmarks/infer_{{chunk}}.tsv"
    conda:
        "../../envs/miffi.yaml"
    threads: infer_threads
    resources:
        gpu=dataset_gpus,
        mem_mb=8000,
        runtime=60,
    params:
        cache=cache_dir,
        model=model_options,
        device=dataset_device,
    shell:
        "miffi infer {input.table:q} --cache={params.cache:q} --out={output.predictions:q} --device={params.device:q} "
        "{params.model:q} --no-progress > {log:q} 2>&1"
