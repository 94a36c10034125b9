rule report:
    """The dataset's self-contained HTML report (with accuracy when it has labels)."""
    input:
        results=f"{OUT}/{{dataset}}/results.tsv",
        evaluation=dataset_evaluation,
    output:
        html=report(
            f"{OUT}/{{dataset}}/report.html",
            caption="../report/report.rst",
            category="{dataset}",
            subcategory="report",
        ),
        figures=report(
            directory(f"{OUT}/{{dataset}}/report_figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="{dataset}",
            subcategory="figures",
        ),
    log:
        f"{OUT}/{{dataset}}/logs/report.log",
    conda:
        "../../envs/miffi.yaml"
    params:
        cache=cache_dir,
        evaluation=evaluation_option,
        title=report_title,
        pdf=PDF_OPTION,
    shell:
        "miffi report --results={input.results:q} {params.evaluation:q} --cache={params.cache:q} "
        "--title={params.title:q} --figures={output.figures:q} --out={output.html:q} {params.pdf:q} "
        "> {log:q} 2>&1"


rule summary:
    """One report across the labelled datasets: the Table 4/5-style summary and pooled matrices."""
    input:
        expand(f"{OUT}/{{dataset}}/evaluation/evaluation.json", dataset=LABELLED),
    output:
        html=report(f"{OUT}/summary.html", caption="../report/summary.rst", category="summary"),
        table=f"{OUT}/summary.tsv",
        figures=report(
            directory(f"{OUT}/summary_figures"),
            patterns=["{name}.png"],
            caption="../report/summary.rst",
            category="summary",
        ),
    log:
        f"{OUT}/logs/summary.log",
    conda:
        "../../envs/miffi.yaml"
    params:
        evaluations=[f"{OUT}/{d}/evaluation" for d in LABELLED],
        links=[f"--link={d}={d}/report.html" for d in LABELLED],
        pdf=PDF_OPTION,
    shell:
        "miffi report --summary {params.links:q} --figures={output.figures:q} --out={output.html:q} "
        "{params.pdf:q} --evaluation {params.evaluations:q} > {log:q} 2>&1"
