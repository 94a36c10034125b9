"""The Snakemake workflow run locally: outputs, and re-running only what changed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import starfile
import yaml
from cryosparc.dataset import Dataset

from miffi.device import native_bf16
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.models import tiny_model
from tests.support.runners import ROOT, jobs, needs_snakemake, succeeded
from tests.support.runners import snakemake as run_snakemake

pytestmark = needs_snakemake


def snakemake(workdir: Path, *extra: str) -> str:
    """The log of a workflow run in ``workdir`` that must succeed."""
    return succeeded(run_snakemake(workdir, *extra))


def evaluated(workdir: Path, since: float) -> int:
    """Micrographs the classifier evaluated in the logs of infer jobs newer than ``since``."""
    total = 0
    for log in (workdir / "out" / "ds" / "logs").glob("infer_*.log"):
        if log.stat().st_mtime > since:
            total += sum(int(n) for n in re.findall(r"\((\d+) evaluated", log.read_text()))
    return total


@pytest.fixture(scope="module")
def micrographs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    simulate_dataset(folder, 8, parse_detector("512x512@1.2"), seed=5, progress=False, workers=1)
    return sorted((folder / "micrographs").glob("*.mrc"))


def write_config(
    workdir: Path,
    rule: str = "miffi",
    model: str | None = None,
    labels: Path | None = None,
    fast: bool = False,
    pdf: bool = False,
) -> None:
    config = {
        "outdir": "out",
        "pdf_figures": pdf,
        "datasets": {
            "ds": {
                "input": ["mics.txt"],
                "chunks": 3,
                "device": "cpu",
                "rule": rule,
                "model": model,
                "arch": "convnext_atto",
                "fast": fast,
                "labels": str(labels) if labels else None,
                "voltage": 200,
                "cs": 2.0,
                "cryosparc_project_dir": str(workdir),
            }
        },
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def test_workflow_runs_and_reruns_only_what_changed(tmp_path, micrographs):
    first, new = micrographs[:6], micrographs[6:]
    (tmp_path / "mics.txt").write_text("".join(f"{p}\n" for p in first))
    labels = micrographs[0].parent.parent / "labels.csv"
    write_config(tmp_path, labels=labels)
    log = snakemake(tmp_path)
    ran = jobs(log)
    assert ran["preprocess"] == ran["infer"] == 3
    assert ran["combine"] == ran["export"] == ran["evaluate"] == ran["report"] == ran["summary"] == 1
    summary = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    assert summary.loc[summary["method"] == "weight-free", "n"].tolist() == [6]
    assert (tmp_path / "out" / "ds" / "report.html").stat().st_size > 10_000
    figure_dirs = [tmp_path / "out" / d for d in ("ds/report_figures", "ds/evaluation/figures", "summary_figures")]
    assert all(list(d.glob("*.png")) and not list(d.glob("*.pdf")) for d in figure_dirs)
    results = pd.read_csv(tmp_path / "out" / "ds" / "results.tsv", sep="\t")
    assert sorted(results["micrograph"]) == sorted(p.stem for p in first)
    assert set(results["classifier"]) == {"weight-free"}
    export = tmp_path / "out" / "ds" / "export"
    for star in (export / "relion").glob("*.star"):  # the dataset's microscope settings, and the default
        optics = starfile.read(star, always_dict=True)["optics"].iloc[0]
        assert (optics["rlnVoltage"], optics["rlnSphericalAberration"], optics["rlnAmplitudeContrast"]) == (
            200,
            2.0,
            0.1,
        )
    assert "amplitude-contrast 0.1 (the defaults" in (tmp_path / "out" / "ds" / "logs" / "export.log").read_text()
    for cs in (export / "cryosparc").glob("*.cs"):  # paths relative to the cryoSPARC project
        assert all((tmp_path / p).is_file() for p in Dataset.load(str(cs))["micrograph_blob/path"])
    assert evaluated(tmp_path, 0) == 6

    assert "Nothing to be done" in snakemake(tmp_path)

    # new micrographs: they fill one chunk (the smallest), which alone is preprocessed and
    # classified again, and only they are evaluated
    chunks = tmp_path / "out" / "ds" / "chunks"
    sizes = {c: len(pd.read_csv(chunks / f"chunk_{c}.micrographs.tsv", sep="\t")) for c in range(3)}
    assert sum(sizes.values()) == 6
    before = max(p.stat().st_mtime for p in (tmp_path / "out" / "ds" / "logs").iterdir())
    (tmp_path / "mics.txt").write_text("".join(f"{p}\n" for p in micrographs))
    log = snakemake(tmp_path)
    ran = jobs(log)
    assert ran.get("preprocess", 0) == ran.get("infer", 0) == 1
    smallest = pd.read_csv(chunks / f"chunk_{min(sizes, key=sizes.get)}.micrographs.tsv", sep="\t")
    assert {p.stem for p in new} <= set(smallest["micrograph"])
    assert evaluated(tmp_path, before) == len(new)
    results = pd.read_csv(tmp_path / "out" / "ds" / "results.tsv", sep="\t")
    assert len(results) == 8

    # another combination rule: only combine and what follows it run again; `pdf_figures`
    # adds a PDF beside every figure
    write_config(tmp_path, rule="strict", labels=labels, pdf=True)
    ran = jobs(snakemake(tmp_path))
    assert set(ran) - {"all"} == {"combine", "export", "evaluate", "report", "summary"}
    assert all({p.stem for p in d.glob("*.pdf")} == {p.stem for p in d.glob("*.png")} for d in figure_dirs)

    # a model instead of the weight-free classifier: inference runs again, preprocessing does not;
    # `fast` runs it at this CPU's fastest precision
    tiny_model(tmp_path / "model.pt")
    write_config(tmp_path, rule="strict", model=str(tmp_path / "model.pt"), labels=labels, fast=True)
    before = max(p.stat().st_mtime for p in (tmp_path / "out" / "ds" / "logs").iterdir())
    ran = jobs(snakemake(tmp_path))
    assert ran["infer"] == 3 and "preprocess" not in ran
    precision = "bfloat16 autocast" if native_bf16() else "float32"
    assert f"on cpu, {precision}" in (tmp_path / "out" / "ds" / "logs" / "infer_0.log").read_text()
    assert evaluated(tmp_path, before) == 8
    results = pd.read_csv(tmp_path / "out" / "ds" / "results.tsv", sep="\t")
    assert set(results["classifier"]) == {"model:model.pt"} and "wf_category" in results

    # overrides where `miffi curate out/ds/results.tsv` writes them: combine and what follows re-run
    chosen = results["micrograph"].iloc[0]
    target = "good" if results["category"].iloc[0] != "good" else "bad_drift"
    (tmp_path / "out" / "ds" / "overrides.tsv").write_text(
        f"micrograph\tcategory_override\toverride_source\n{chosen}\t{target}\tmanual:me\n"
    )
    ran = jobs(snakemake(tmp_path))
    assert set(ran) - {"all"} == {"combine", "export", "evaluate", "report", "summary"}
    results = pd.read_csv(tmp_path / "out" / "ds" / "results.tsv", sep="\t").set_index("micrograph")
    assert results.loc[chosen, "category_override"] == target and results.loc[chosen, "override_source"] == "manual:me"
    assert results["category_override"].notna().sum() == 1
    listed = (tmp_path / "out" / "ds" / "export" / "lists" / f"{target}.txt").read_text().splitlines()
    assert any(line.endswith(f"{chosen}.mrc") for line in listed)


def test_workflow_trains_a_model_and_classifies_with_it(tmp_path):
    train = {
        "dataset": "tr",
        "preset": "scratch-1ch",
        "channels": 2,
        "arch": "convnext_atto",
        "epochs": 1,
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_epochs": 0,
        "val_fraction": 0.25,
        "device": "cpu",
    }
    config = {
        "outdir": "out",
        "train": {"m": train},
        "datasets": {
            "tr": {"simulate": {"n": 12, "detector": "256x256@1.5", "seed": 3}, "chunks": 1, "device": "cpu"},
            "ds": {
                "simulate": {"n": 6, "detector": "256x256@1.5", "seed": 4},
                "chunks": 1,
                "device": "cpu",
                "model": "trained:m",
            },
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    ran = jobs(snakemake(tmp_path))
    assert ran["train"] == 1 and ran["evaluate"] == ran["report"] == 2 and ran["summary"] == 1
    results = pd.read_csv(tmp_path / "out" / "ds" / "results.tsv", sep="\t")
    assert set(results["classifier"]) == {"model:m/best.safetensors"}
    evaluation = json.loads((tmp_path / "out" / "ds" / "evaluation" / "evaluation.json").read_text())
    assert {"model:m/best.safetensors", "weight-free"} <= set(evaluation["methods"])
    assert (tmp_path / "out" / "models" / "m" / "figures" / "loss.png").is_file()
    assert "Nothing to be done" in snakemake(tmp_path)

    config["datasets"]["ds"]["model"] = "trained:nope"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "-n", cores=None, timeout=300)
    assert result.returncode != 0 and "datasets.ds.model: 'trained:nope'" in result.stdout + result.stderr


def test_empiar_benchmark_config_plans_a_summary(tmp_path):
    """The shipped benchmark config, with its micrograph folders filled in, plans one
    evaluation and report per dataset and one summary across them."""
    config = yaml.safe_load((ROOT / "benchmarks" / "empiar" / "config.yaml").read_text())
    for name, dataset in config["datasets"].items():
        labels = pd.read_csv(ROOT / dataset["labels"].replace("_label_dict.pkl", "_labels.csv"))
        folder = tmp_path / name
        folder.mkdir()
        for micrograph in labels["micrograph"].head(2):
            (folder / micrograph).write_bytes(b"")
        dataset["input"] = [f"{folder}/*.mrc"]
        dataset["labels"] = str(ROOT / dataset["labels"])
        dataset["model"] = None
        assert Path(dataset["labels"]).is_file()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    log = snakemake(tmp_path, "-n", "--quiet", "rules")
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", log, flags=re.M))
    assert planned["evaluate"] == planned["report"] == "5" and planned["summary"] == "1"


@pytest.mark.parametrize(
    ("setting", "messages"),
    [
        ({"chunks": 0}, ["0 is less than the minimum of 1", "On instance['datasets']['ds']['chunks']"]),
        (
            {"rule": "strictt"},
            ["datasets.ds.rule: 'strictt' is not a rule: malformed part 'strictt' (a rule is a preset, miffi, strict"],
        ),
        (
            {"bad_threshold": "flim=0.8"},
            ["datasets.ds.bad_threshold: 'flim=0.8': unknown group 'flim' (groups: film, drift, crystallinity"],
        ),
        (
            {"bad_threshold": "film=1.5"},
            ["datasets.ds.bad_threshold: 'film=1.5': film: a confidence threshold must lie in [0, 1], got 1.5"],
        ),
        (
            {"bad_threshold": 1.5},
            ["1.5 is greater than the maximum of 1", "On instance['datasets']['ds']['bad_threshold']"],
        ),
        (
            {"formats": ["relion", "star"]},
            ["'star' is not one of ['relion', 'cryosparc', 'lists']", "On instance['datasets']['ds']['formats'][1]"],
        ),
        ({"formats": []}, ["[] should be non-empty", "On instance['datasets']['ds']['formats']"]),
    ],
)
def test_invalid_config_names_the_key(tmp_path, setting, messages):
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"outdir": "out", "datasets": {"ds": {"input": ["x.star"], **setting}}})
    )
    result = run_snakemake(tmp_path, "-n", cores=None, timeout=300)
    assert result.returncode != 0
    for message in messages:
        assert message in result.stderr + result.stdout
