rule export:
    """results.tsv → relion/<category>.star, cryosparc/<category>.cs + .csg, lists/."""
    input:
        f"{OUT}/{{dataset}}/results.tsv",
    output:
        directory(f"{OUT}/{{dataset}}/export"),
    log:
        f"{OUT}/{{dataset}}/logs/export.log",
    conda:
        "../../envs/miffi.yaml"
    params:
        formats=export_formats,
        options=export_options,
    shell:
        "miffi export {input:q} --outdir={output:q} --formats={params.formats:q} {params.options:q} > {log:q} 2>&1"
