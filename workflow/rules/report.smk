rule evaluate:
    """results.tsv + labels → accuracy of every method (evaluation.json, matched.tsv,
    confusion matrices). Datasets with labels only (simulated ones always have them)."""
    input:
        results=f"{OUT}/{{dataset}}/results.tsv",
        labels=dataset_labels,
    output:
        evaluation=f"{OUT}/{{dataset}}/evaluation/evaluation.json",
        matched=f"{OUT}/{{dataset}}/evaluation/matched.tsv",
        summary=f"{OUT}/{{dataset}}/evaluation/summary.tsv",
        figures=report(directory(f"{OUT}/{{dataset}}/evaluation/figures"), patterns=["{name}.png"],
                       caption="../report/confusion.rst", category="{dataset}", subcategory="accuracy"),
    params:
        column=lambda w: f"--label-column {setting(w, 'label_column')}" if setting(w, "label_column") else "",
        folder=lambda w: f"{OUT}/{w.dataset}/evaluation",
    log:
        f"{OUT}/{{dataset}}/logs/evaluate.log",
    shell:
        "{MIFFI} evaluate --results {input.results} --labels {input.labels} {params.column} "
        "--dataset {wildcards.dataset} --out {params.folder} > {log} 2>&1"


rule report:
    """The dataset's self-contained HTML report (with accuracy when it has labels)."""
    input:
        results=f"{OUT}/{{dataset}}/results.tsv",
        evaluation=lambda w: [f"{OUT}/{w.dataset}/evaluation/evaluation.json"] if has_labels(w.dataset) else [],
    output:
        html=report(f"{OUT}/{{dataset}}/report.html", caption="../report/report.rst", category="{dataset}",
                    subcategory="report"),
        figures=report(directory(f"{OUT}/{{dataset}}/report_figures"), patterns=["{name}.png"],
                       caption="../report/figures.rst", category="{dataset}", subcategory="figures"),
    params:
        cache=lambda w: f"{OUT}/{w.dataset}/cache",
        evaluation=lambda w: f"--evaluation {OUT}/{w.dataset}/evaluation" if has_labels(w.dataset) else "",
    log:
        f"{OUT}/{{dataset}}/logs/report.log",
    shell:
        "{MIFFI} report --results {input.results} {params.evaluation} --cache {params.cache} "
        "--title 'Miffi report: {wildcards.dataset}' --figures {output.figures} --out {output.html} > {log} 2>&1"


rule summary:
    """One report across the labelled datasets: the Table 4/5-style summary and pooled matrices."""
    input:
        expand(f"{OUT}/{{dataset}}/evaluation/evaluation.json", dataset=LABELLED),
    output:
        html=report(f"{OUT}/summary.html", caption="../report/summary.rst", category="summary"),
        table=f"{OUT}/summary.tsv",
        figures=report(directory(f"{OUT}/summary_figures"), patterns=["{name}.png"],
                       caption="../report/summary.rst", category="summary"),
    params:
        evaluations=" ".join(f"{OUT}/{d}/evaluation" for d in LABELLED),
        links=" ".join(f"--link {d}={d}/report.html" for d in LABELLED),
    log:
        f"{OUT}/logs/summary.log",
    shell:
        "{MIFFI} report --summary --evaluation {params.evaluations} {params.links} "
        "--figures {output.figures} --out {output.html} > {log} 2>&1"
