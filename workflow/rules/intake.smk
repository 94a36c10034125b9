checkpoint intake:
    """Inputs → the micrograph table, split into stable chunks. A micrograph keeps its
    chunk when others are added, and a chunk's table is rewritten only when it changes,
    so new micrographs re-run only the chunks they fall into."""
    input:
        dataset_inputs,
    output:
        table=f"{OUT}/{{dataset}}/micrographs.micrographs.tsv",
    params:
        sources=lambda w: " ".join(shlex.quote(s) for s in dataset_sources(w)),
        chunks=lambda w: setting(w, "chunks"),
        chunk_dir=lambda w: f"{OUT}/{w.dataset}/chunks",
        options=lambda w: " ".join(
            [f"--project-dir {setting(w, 'project_dir')}" if setting(w, "project_dir") else "",
             f"--pixel-size {setting(w, 'pixel_size')}" if setting(w, "pixel_size") else ""]
        ),
    log:
        f"{OUT}/{{dataset}}/logs/intake.log",
    shell:
        "mkdir -p {params.chunk_dir} && {MIFFI} intake {params.sources} --out {output.table} --chunks {params.chunks} "
        "--chunk-dir {params.chunk_dir} {params.options} > {log} 2>&1"
