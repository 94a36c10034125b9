rule simulate:
    """A labelled synthetic dataset (datasets with a `simulate` section)."""
    output:
        star=f"{OUT}/{{dataset}}/simulated/micrographs.star",
        labels=f"{OUT}/{{dataset}}/simulated/labels.csv",
        exposures=f"{OUT}/{{dataset}}/simulated/exposures.cs",
        exposures_group=f"{OUT}/{{dataset}}/simulated/exposures.csg",
    log:
        f"{OUT}/{{dataset}}/logs/simulate.log",
    benchmark:
        f"{OUT}/{{dataset}}/benchmarks/simulate.tsv"
    conda:
        "../../envs/miffi.yaml"
    threads: 2
    params:
        folder=simulated_dir,
        options=simulate_options,
    shell:
        "miffi simulate --out={params.folder:q} {params.options:q} --no-progress > {log:q} 2>&1"
