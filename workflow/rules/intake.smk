checkpoint intake:
    """Inputs → the micrograph table, split into stable chunks. A micrograph keeps its
    chunk when others are added, and a chunk's table is rewritten only when it changes,
    so new micrographs re-run only the chunks they fall into: the chunk tables are
    therefore no declared output (Snakemake would delete and rewrite them all); the
    preprocess and infer jobs find them through `chunk_table`."""
    input:
        dataset_inputs,
    output:
        table=f"{OUT}/{{dataset}}/micrographs.micrographs.tsv",
    log:
        f"{OUT}/{{dataset}}/logs/intake.log",
    conda:
        "../../envs/miffi.yaml"
    params:
        sources=dataset_sources,
        chunks=chunk_count,
        chunk_dir=chunk_dir,
        options=intake_options,
    shell:
        "mkdir -p {params.chunk_dir:q} && miffi intake --out={output.table:q} --chunks={params.chunks:q} "
        "--chunk-dir={params.chunk_dir:q} {params.options:q} -- {params.sources:q} > {log:q} 2>&1"
