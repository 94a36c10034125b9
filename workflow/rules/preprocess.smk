rule preprocess:
    """Micrographs of one chunk → the tensor cache (one .npy + sidecar with metrics per
    micrograph); unchanged micrographs are reused from the cache.

    Exit contract: `miffi preprocess` exits 0 when at least one micrograph is usable and 1
    when none is (every micrograph of the chunk failed, or the chunk has none); either way
    it has written the status table, which records each failure with its reason, and the
    dataset goes on (infer and combine record those micrographs as failed). Any other
    status (2: unusable arguments, inputs or output folders; 3: a bug) fails the job."""
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
    # One thread to the scheduler, although the FFTs use every core the job may use: a
    # job spends its first seconds importing torch on one core, and two jobs that overlap
    # there finish sooner (2 cores, 40 micrographs in 4 chunks: 29 s instead of 37 s).
    # On SLURM, where a job gets only its threads' cores, profiles/slurm sets 2.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cache=cache_dir,
        channels=dataset_channels,
    # `|| [ $? -eq 1 ]`: exit status 1 (no usable micrograph, each failure recorded) is no error
    shell:
        "miffi preprocess {input.table:q} --out={params.cache:q} --status={output:q} "
        "--channels={params.channels:q} --device=cpu --no-progress > {log:q} 2>&1 || [ $? -eq 1 ]"
