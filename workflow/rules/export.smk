rule export:
    """results.tsv → relion/<category>.star, cryosparc/<category>.cs + .csg, lists/."""
    input:
        f"{OUT}/{{dataset}}/results.tsv",
    output:
        directory(f"{OUT}/{{dataset}}/export"),
    params:
        formats=lambda w: ",".join(setting(w, "formats")),
    log:
        f"{OUT}/{{dataset}}/logs/export.log",
    shell:
        "{MIFFI} export {input:q} --outdir={output:q} --formats={params.formats:q} > {log:q} 2>&1"
