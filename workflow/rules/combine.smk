rule combine:
    """Predictions of all chunks → results.tsv (labels, categories, metrics, CTF baseline)."""
    input:
        table=f"{OUT}/{{dataset}}/micrographs.micrographs.tsv",
        predictions=lambda w: expand(f"{OUT}/{w.dataset}/predictions/chunk_{{chunk}}.tsv", chunk=chunks(w.dataset)),
    output:
        results=f"{OUT}/{{dataset}}/results.tsv",
        parquet=f"{OUT}/{{dataset}}/results.parquet",
    params:
        cache=lambda w: f"{OUT}/{w.dataset}/cache",
        model=lambda w: f"--model {model_path(w)}" if model_path(w) else "",
        rule=lambda w: setting(w, "rule"),
        good=lambda w: setting(w, "good_threshold"),
        bad=lambda w: setting(w, "bad_threshold"),
    log:
        f"{OUT}/{{dataset}}/logs/combine.log",
    shell:
        "{MIFFI} combine {input.table} --cache {params.cache} --predictions {input.predictions} "
        "--out {output.results} {params.model} --rule '{params.rule}' --good-threshold {params.good} "
        "--bad-threshold '{params.bad}' > {log} 2>&1"
