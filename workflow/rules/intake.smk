checkpoint intake:
    """Inputs → the micrograph table, split into stable chunks. A micrograph keeps its
    chunk when others are added, new micrographs fill the chunk with the fewest (the
    tables already written are the assignment: miffi/intake/chunks.py), and a chunk's
    table is rewritten only when it changes, so a batch of new micrographs re-runs one
    chunk: the chunk tables are therefore no declared output (Snakemake would delete and
    rewrite them all); the preprocess and infer jobs find them through `chunk_table`."""
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
