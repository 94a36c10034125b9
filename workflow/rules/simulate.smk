rule simulate:
    """A labelled synthetic dataset (datasets with a `simulate` section)."""
    output:
        star=f"{OUT}/{{dataset}}/simulated/micrographs.star",
        labels=f"{OUT}/{{dataset}}/simulated/labels.csv",
    log:
        f"{OUT}/{{dataset}}/logs/simulate.log",
    benchmark:
        f"{OUT}/{{dataset}}/benchmarks/simulate.tsv"
    conda:
        "../../envs/miffi.yaml"
    threads: 2
    params:
        folder=lambda w: f"{OUT}/{w.dataset}/simulated",
        n=lambda w: setting(w, "simulate")["n"],
        detector=lambda w: setting(w, "simulate").get("detector", "1024x1024@1.0"),
        seed=lambda w: setting(w, "simulate").get("seed", 0),
    shell:
        "miffi simulate --out={params.folder:q} --n={params.n:q} --detector={params.detector:q} "
        "--seed={params.seed:q} --no-progress > {log:q} 2>&1"
