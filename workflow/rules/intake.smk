checkpoint intake:
    """Inputs → the micrograph table, split into stable chunks. A micrograph keeps its
    chunk when others are added, and a chunk's table is rewritten only when it changes,
    so new micrographs re-run only the chunks they fall into."""
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
        chunks=lambda w: setting(w, "chunks"),
        chunk_dir=lambda w: f"{OUT}/{w.dataset}/chunks",
        options=lambda w: option("project-dir", setting(w, "project_dir"))
        + option("pixel-size", setting(w, "pixel_size"))
        + (["--allow-outside-project"] if setting(w, "allow_outside_project") else []),
    shell:
        "mkdir -p {params.chunk_dir:q} && miffi intake --out={output.table:q} --chunks={params.chunks:q} "
        "--chunk-dir={params.chunk_dir:q} {params.options:q} -- {params.sources:q} > {log:q} 2>&1"
