rule preprocess:
    """Micrographs of one chunk → the tensor cache (one .npy + sidecar with metrics per
    micrograph); unchanged micrographs are reused from the cache."""
    input:
        table=chunk_table,
        micrographs=chunk_micrographs,
    output:
        f"{OUT}/{{dataset}}/preprocess/chunk_{{chunk}}.tsv",
    log:
        f"{OUT}/{{dataset}}/logs/preprocess_{{chunk}}.log",
    benchmark:
        f"{OUT}/{{dataset}}/benchmarks/preprocess_{{chunk}}.tsv"
    conda:
        "../../envs/miffi.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cache=lambda w: f"{OUT}/{w.dataset}/cache",
        channels=lambda w: setting(w, "channels"),
    shell:
        "miffi preprocess {input.table:q} --out={params.cache:q} --status={output:q} "
        "--channels={params.channels:q} --device=cpu --no-progress > {log:q} 2>&1 || test -s {output:q}"
