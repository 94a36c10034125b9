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
        "{MIFFI} export {input} --outdir {output} --formats {params.formats} > {log} 2>&1"
