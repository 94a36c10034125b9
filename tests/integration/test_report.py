"""The HTML reports, built from a real run on simulated data and opened in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from miffi.cli import main
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.browser import chromium_path, open_report


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """simulate → miffi run (weight-free) → evaluate → report, plus a summary over two datasets."""
    root = tmp_path_factory.mktemp("report")
    simulate_dataset(root / "sim", 10, parse_detector("512x512@1.2"), seed=3, progress=False, workers=1)
    (root / "sim" / "micrographs" / "sim_00009.mrc").write_bytes(b"not an MRC file at all")  # one bad micrograph
    run = root / "run"
    assert (
        main(["run", "--input", str(root / "sim" / "micrographs.star"), "--outdir", str(run), "--no-progress", "-q"])
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--results",
                str(run / "results.tsv"),
                "--labels",
                str(root / "sim" / "labels.csv"),
                "--dataset",
                "sim",
                "--out",
                str(root / "eval"),
                "--pdf",
                "-q",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "report",
                "--results",
                str(run / "results.tsv"),
                "--evaluation",
                str(root / "eval"),
                "--cache",
                str(run / "cache"),
                "--out",
                str(root / "report.html"),
                "-q",
            ]
        )
        == 0
    )
    other = json.loads((root / "eval" / "evaluation.json").read_text()) | {"dataset": "sim_copy"}
    (root / "eval2").mkdir()
    (root / "eval2" / "evaluation.json").write_text(json.dumps(other))
    shutil.copy(root / "eval" / "matched.tsv", root / "eval2")
    assert (
        main(
            [
                "report",
                "--summary",
                "--evaluation",
                str(root / "eval"),
                str(root / "eval2"),
                "--link",
                "sim=report.html",
                "--out",
                str(root / "summary.html"),
                "-q",
            ]
        )
        == 0
    )
    return root


def test_evaluation_outputs(reports):
    evaluation = json.loads((reports / "eval" / "evaluation.json").read_text())
    assert evaluation["failed"] == ["sim_00009"] and evaluation["evaluated"] == 9
    methods = evaluation["methods"]
    assert set(methods) == {"weight-free", "CTF baseline"}
    counts = methods["weight-free"]["counts"]
    assert counts["n"] == 9 == counts["tp"] + counts["fp"] + counts["tn"] + counts["fn"]
    matched = pd.read_csv(reports / "eval" / "matched.tsv", sep="\t")
    assert len(matched) == 9 and {"true_good", "weight-free:good", "CTF baseline:good"} <= set(matched)
    for stem in ("confusion_weight-free", "confusion_CTF_baseline"):
        assert (reports / "eval" / "figures" / f"{stem}.png").stat().st_size > 1000
        assert (reports / "eval" / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")


def test_report_is_self_contained(reports):
    text = (reports / "report.html").read_text()
    sources = re.findall(r"""(?:src|href)=["']([^"']+)""", text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Most confident errors" in text and "Failed micrographs" in text and "sim_00009" in text
    figures = reports / "report_figures"
    assert {p.stem for p in figures.glob("*.png")} >= {
        "categories",
        "confidence",
        "acquisition",
        "metrics",
        "confusion_weight-free",
    }
    assert not list(figures.glob("*.pdf"))  # PDFs only with --pdf (the evaluation above)
    summary = pd.read_csv(reports / "summary.tsv", sep="\t")
    assert summary["dataset"].tolist() == ["sim", "sim", "sim_copy", "sim_copy", "pooled", "pooled"]
    pooled = summary.set_index(["dataset", "method"]).loc[("pooled", "weight-free")]
    single = summary.set_index(["dataset", "method"]).loc[("sim", "weight-free")]
    assert pooled["TP"] == 2 * single["TP"] and pooled["accuracy"] == pytest.approx(single["accuracy"])


def test_report_copies_the_heat_maps_evaluate_saved(reports, tmp_path):
    """The report takes a confusion heat map from the evaluation's figures (here a marker
    PNG in place of one) instead of drawing it again, and draws one that is missing."""
    evaluation = tmp_path / "eval"
    shutil.copytree(reports / "eval", evaluation)
    marker = (reports / "report_figures" / "categories.png").read_bytes()
    (evaluation / "figures" / "confusion_weight-free.png").write_bytes(marker)
    (evaluation / "figures" / "confusion_CTF_baseline.png").unlink()
    run = reports / "run"
    arguments = ["report", "--results", str(run / "results.tsv"), "--evaluation", str(evaluation)]
    assert main([*arguments, "--out", str(tmp_path / "report.html"), "-q"]) == 0
    figures = tmp_path / "report_figures"
    assert (figures / "confusion_weight-free.png").read_bytes() == marker
    drawn = (figures / "confusion_CTF_baseline.png").read_bytes()
    assert drawn == (reports / "eval" / "figures" / "confusion_CTF_baseline.png").read_bytes()
    assert not list(figures.glob("*.pdf"))  # the evaluation's PDFs are copied only with --pdf
    text = (tmp_path / "report.html").read_text()
    assert text.count(base64.b64encode(marker).decode()) == 2  # the categories figure and the copy


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (scripts/install-system-tools.sh)")
@pytest.mark.parametrize("name", ["report.html", "summary.html"])
def test_report_renders_in_headless_chromium(reports, name):
    pytest.importorskip("playwright")
    with open_report(reports / name) as page:
        images = page.evaluate("""Array.from(document.images).map(i => ({
            alt: i.alt, ok: i.complete && i.naturalWidth > 0, width: i.getBoundingClientRect().width}))""")
        tables = page.locator("table").count()
        heading = page.inner_text("h1")
        body = page.inner_text("body")
        page.screenshot(path=str(reports / f"{name}.png"), full_page=True)
        errors = page.errors
    assert errors == []
    assert images and all(i["ok"] and i["width"] > 50 for i in images), images
    assert tables >= 2
    if name == "report.html":
        assert heading.startswith("Miffi report")
        assert sum("image and power spectrum" in i["alt"] for i in images) >= 9  # examples + errors
        assert "weight-free" in body and "CTF baseline" in body and "Accuracy against labels" in body
    else:
        assert "pooled" in body and "Pooled confusion matrices" in body
    assert (reports / f"{name}.png").stat().st_size > 20_000


def test_report_cli_errors(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "r.html")]) == 2
    assert "needs --results" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "r.html")]) == 2
    assert "missing.tsv: results table not found" in capsys.readouterr().err
