rule combine:
    """Predictions of all chunks → results.tsv (labels, categories, metrics, CTF baseline)."""
    input:
        table=f"{OUT}/{{dataset}}/micrographs.micrographs.tsv",
        predictions=lambda w: expand(f"{OUT}/{w.dataset}/predictions/chunk_{{chunk}}.tsv", chunk=chunks(w.dataset)),
    output:
        results=f"{OUT}/{{dataset}}/results.tsv",
        parquet=f"{OUT}/{{dataset}}/results.parquet",
    log:
        f"{OUT}/{{dataset}}/logs/combine.log",
    conda:
        "../../envs/miffi.yaml"
    params:
        cache=lambda w: f"{OUT}/{w.dataset}/cache",
        model=lambda w: option("model", model_path(w)),
        rule=lambda w: setting(w, "rule"),
        good=lambda w: setting(w, "good_threshold"),
        bad=lambda w: setting(w, "bad_threshold"),
    shell:
        "miffi combine {input.table:q} --cache={params.cache:q} --out={output.results:q} {params.model:q} "
        "--rule={params.rule:q} --good-threshold={params.good:q} --bad-threshold={params.bad:q} "
        "--predictions {input.predictions:q} > {log:q} 2>&1"
