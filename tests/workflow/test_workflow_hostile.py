"""Hostile values in the workflow's config and inputs, and kill -9 mid-run: real Snakemake runs.

Shell metacharacters in every configured value and path and in micrograph names never run
(no MARKER file appears) and never change an input; a run with them either succeeds or fails
naming the bad value. Names Snakemake cannot carry as input files (braces) and names pandas
would read as NaN or numbers keep their ids. Bad dataset/model names fail at load, named.
After kill -9, scripts/run-main.sh gives an uninterrupted run's results.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.models import tiny_model
from tests.support.runners import ENV, ROOT, needs_snakemake
from tests.support.runners import snakemake as run_snakemake

RUN_MAIN = ROOT / "scripts" / "run-main.sh"

pytestmark = needs_snakemake

#: Each would create a file MARKER if a shell ever read it as code (the last one closes a
#: hand-written '...' around the value).
PAYLOADS = {
    "subst": "$(touch MARKER)",
    "backtick": "`touch MARKER`",
    "semicolon": "; touch MARKER",
    "squote": "' ; touch MARKER ; '",
    "dquote": '" ; touch MARKER ; "',
    "unquote": "x' ; touch MARKER ; echo '",
}
#: Micrograph file stems: braces (Snakemake wildcards), pandas' NaN/number spellings, a space,
#: a leading dash, glob characters, and every payload.
ODD_NAMES = [
    "a{b}",
    "a{dataset}",
    "{x,y}",
    "NA",
    "null",
    "nan",
    "None",
    "1e3",
    "007",
    "x y",
    "-lead",
    "e[1]",
    *PAYLOADS.values(),
]
MISSING = "missing $(touch MARKER)"
LABEL_COLUMN = f"good {PAYLOADS['subst']}"
BAD_NAMES = [
    ("datasets", "a b"),
    ("datasets", PAYLOADS["subst"]),
    ("datasets", "../up"),
    ("datasets", "x{y}"),
    ("train", "m;touch MARKER"),
]


def snakemake(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *extra, timeout=300)


def run_main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUN_MAIN), *args], capture_output=True, text=True, env=ENV, timeout=300)


def markers(*folders: Path) -> list[Path]:
    found = [p for folder in folders for p in folder.rglob("MARKER")]
    return found + [p for p in (Path.cwd() / "MARKER", ROOT / "MARKER") if p.exists()]


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def venv_current() -> bool:
    """run-main.sh first runs setup-venv.sh, which reinstalls .venv unless its stamp is current."""
    stamp = ROOT / ".venv" / ".miffi-installed"
    want = hashlib.sha256(
        b"".join((ROOT / f).read_bytes() for f in ("pyproject.toml", "constraints.txt", "scripts/setup-venv.sh"))
    ).hexdigest()[:16]
    return stamp.is_file() and stamp.read_text().strip() == want and shutil.which("flock") is not None


needs_run_main = pytest.mark.skipif(not venv_current(), reason="run-main.sh would (re)install .venv, or no flock")


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sim")
    simulate_dataset(folder, 8, parse_detector("512x512@1.2"), seed=5, progress=False, workers=1)
    (folder / "mics.txt").write_text("".join(f"{p}\n" for p in sorted((folder / "micrographs").glob("*.mrc"))))
    return folder


def plain_config(sim: Path) -> dict:
    return {"outdir": "out", "datasets": {"ds": {"input": [str(sim / "mics.txt")], "chunks": 1, "device": "cpu"}}}


@pytest.fixture(scope="module")
def reference(sim, tmp_path_factory) -> Path:
    """An uninterrupted run on plain paths."""
    work = tmp_path_factory.mktemp("reference")
    write_config(work, plain_config(sim))
    result = snakemake(work)
    assert result.returncode == 0, output(result)[-3000:]
    return work


@pytest.fixture(scope="module")
def reference_categories(reference) -> dict[str, str]:
    results = read_tsv(reference / "out" / "ds" / "results.tsv")
    return dict(zip(results["micrograph"], results["category"]))


@pytest.fixture(scope="module")
def hostile(sim, tmp_path_factory):
    """One run with a payload in every path and value it can hold: outdir, the list file's
    folder and name, project_dir, the micrographs' folders and names, labels path and label
    column, model path; plus odd names and a listed micrograph that does not exist."""
    work = tmp_path_factory.mktemp("hostile")
    project = work / f"proj {PAYLOADS['subst']}"
    folder = project / "Krios 2 data" / f"run1 {PAYLOADS['backtick']}"
    folder.mkdir(parents=True)
    sources = sorted((sim / "micrographs").glob("*.mrc"))
    source_of = {}
    for source in sources:
        shutil.copyfile(source, folder / source.name)
        source_of[source.stem] = source.stem
    for i, name in enumerate(ODD_NAMES):
        shutil.copyfile(sources[i % len(sources)], folder / f"{name}.mrc")
        source_of[name] = sources[i % len(sources)].stem
    listed = [str((folder / f"{name}.mrc").relative_to(project)) for name in source_of] + [
        f"Krios 2 data/{MISSING}.mrc"
    ]
    mics = Path(f"lists {PAYLOADS['semicolon']}") / f"mics {PAYLOADS['dquote']}.txt"
    (work / mics).parent.mkdir()
    (work / mics).write_text("".join(f"{line}\n" for line in listed))
    labels = project / "Krios 2 data" / f"labels {PAYLOADS['squote']}.csv"
    pd.DataFrame({"micrograph": [s.stem for s in sources], LABEL_COLUMN: ["good", "bad"] * (len(sources) // 2)}).to_csv(
        labels, index=False
    )
    model = work / f"models {PAYLOADS['unquote']}" / f"m {PAYLOADS['dquote']}.pt"
    model.parent.mkdir()
    tiny_model(model)
    outdir = "/".join(
        [
            f"out {PAYLOADS['subst']}",
            PAYLOADS["backtick"],
            PAYLOADS["semicolon"],
            PAYLOADS["squote"],
            PAYLOADS["dquote"],
            PAYLOADS["unquote"],
        ]
    )
    write_config(
        work,
        {
            "outdir": outdir,
            "datasets": {
                "ds-1.x": {
                    "input": [str(mics)],
                    "project_dir": str(project),
                    "labels": str(labels),
                    "label_column": LABEL_COLUMN,
                    "model": str(model),
                    "arch": "convnext_atto",
                    "chunks": 1,
                    "device": "cpu",
                }
            },
        },
    )
    before = {"work": digests(work), "sim": digests(sim)}
    result = snakemake(work)
    return {
        "work": work,
        "out": work / outdir / "ds-1.x",
        "folder": folder,
        "model": model,
        "result": result,
        "source_of": source_of,
        "before": before,
    }


@pytest.fixture(scope="module")
def hostile_results(hostile) -> pd.DataFrame:
    assert hostile["result"].returncode == 0, output(hostile["result"])[-3000:]
    return read_tsv(hostile["out"] / "results.tsv")


# --- one run with payloads everywhere: it succeeds, runs none, changes no input ---------------


def test_hostile_run_succeeds_and_runs_no_payload(hostile, sim):
    assert hostile["result"].returncode == 0, output(hostile["result"])[-3000:]
    assert markers(hostile["work"], sim) == []


def test_hostile_run_leaves_inputs_byte_identical(hostile, sim):
    work, made = hostile["work"], (hostile["out"].relative_to(hostile["work"]).parts[0], ".snakemake")
    assert {k: v for k, v in digests(work).items() if not k.startswith(made)} == hostile["before"]["work"]
    assert digests(sim) == hostile["before"]["sim"]


@pytest.mark.parametrize("name", ODD_NAMES + ["sim_00003"])
def test_micrograph_keeps_its_id_and_is_classified(hostile, hostile_results, reference_categories, name):
    row = hostile_results[hostile_results["micrograph"] == name]
    assert len(row) == 1, sorted(hostile_results["micrograph"])
    assert row["path"].item() == str(hostile["folder"] / f"{name}.mrc")
    assert row["error"].item() == "" and row["category"].item() != ""
    # the same image as in the plain run: the same weight-free category
    assert row["wf_category"].item() == reference_categories[hostile["source_of"][name]]


def test_missing_listed_micrograph_is_recorded_and_the_rest_go_on(hostile_results):
    row = hostile_results[hostile_results["micrograph"] == MISSING]
    assert row["status"].tolist() == ["failed"] and "not found" in row["error"].item()
    assert (hostile_results["status"] != "failed").sum() == len(ODD_NAMES) + 8


def test_model_path_with_payloads_classifies(hostile, hostile_results):
    assert set(hostile_results["classifier"]) == {f"model:{hostile['model'].name}"}


def test_labels_path_and_label_column_with_payloads_evaluate(hostile, hostile_results):
    matched = read_tsv(hostile["out"] / "evaluation" / "matched.tsv")
    assert sorted(matched["micrograph"]) == [f"sim_{i:05d}" for i in range(8)]
    assert (hostile["out"] / "report.html").stat().st_size > 10_000
    assert (hostile["out"].parent / "summary.html").is_file()


def test_exports_list_every_micrograph_under_the_hostile_outdir(hostile, hostile_results):
    export = hostile["out"] / "export"
    listed = {p.stem: set(p.read_text().splitlines()) for p in (export / "lists").glob("*.txt")}
    for category, rows in hostile_results[hostile_results["status"] != "failed"].groupby("category"):
        assert set(rows["path"]) <= listed[category], category
    assert listed["failed"] == {str(hostile["folder"].parent / f"{MISSING}.mrc")}
    assert {p.stem for p in (export / "relion").glob("*.star")} == set(listed) - {"failed"}


# --- payloads in values that must be valid: the run fails, naming the value ---------------------


@pytest.fixture
def rerun(reference, sim, tmp_path):
    """A copy of the reference run with changed dataset settings, run again."""

    def run(**changes):
        work = tmp_path / "work"
        shutil.copytree(reference, work, symlinks=True)
        config = yaml.safe_load((work / "config.yaml").read_text())
        config["datasets"]["ds"].update(changes)
        write_config(work, config)
        before = digests(sim)
        result = snakemake(work)
        assert markers(work, sim, tmp_path) == []
        assert digests(sim) == before
        return work / "out" / "ds" / "logs", result

    return run


@pytest.mark.parametrize(
    "key, setting",
    [
        ("subst", "rule"),
        ("semicolon", "rule"),
        ("unquote", "rule"),
        ("backtick", "bad_threshold"),
        ("squote", "bad_threshold"),
    ],
)
def test_rule_and_threshold_payloads_fail_at_load_naming_the_key(rerun, key, setting):
    payload = PAYLOADS[key]
    _, result = rerun(**{setting: payload})
    assert result.returncode != 0
    assert f"datasets.ds.{setting}: " in result.stdout + result.stderr
    assert repr(payload) in result.stdout + result.stderr


def test_label_column_payload_fails_naming_it(rerun, sim):
    logs, result = rerun(labels=str(sim / "labels.csv"), label_column=PAYLOADS["semicolon"])
    assert result.returncode != 0
    assert f"no column {PAYLOADS['semicolon']!r}" in (logs / "evaluate.log").read_text()


def test_model_payload_path_that_is_no_model_fails_naming_it(rerun, tmp_path):
    model = tmp_path / f"m {PAYLOADS['subst']} {PAYLOADS['squote']}.pt"
    model.write_bytes(b"not a model")
    logs, result = rerun(model=str(model), arch="convnext_atto")
    assert result.returncode != 0
    log = "".join(p.read_text() for p in logs.glob("infer_*.log"))
    assert str(model) in log and "not a model file" in log


# --- names that are folder names and wildcards: refused at load, named --------------------------


@pytest.mark.parametrize(("section", "name"), BAD_NAMES, ids=[f"{s}:{n}" for s, n in BAD_NAMES])
def test_bad_dataset_or_model_name_is_refused_by_name(tmp_path, section, name):
    dataset = "ds" if section == "train" else name
    config = {"outdir": "out", "datasets": {dataset: {"input": ["x.txt"]}}}
    if section == "train":
        config["train"] = {name: {"dataset": "ds"}}
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert f"{section}.{name}: {name!r} is not a valid name" in output(result)
    assert markers(tmp_path) == []


def test_outdir_with_braces_is_refused_by_name(tmp_path):
    write_config(tmp_path, {"outdir": "out/{dataset}", "datasets": {"ds": {"input": ["x.txt"]}}})
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0 and "outdir: 'out/{dataset}' may not contain" in output(result)


# --- kill -9, then the README's main command again -----------------------------------------------


def same_exports(first: Path, second: Path) -> None:
    """Byte-identical exports but for creation times (star, csg) and cryoSPARC's fresh uids."""
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        a, b = first / name, second / name
        if name.suffix == ".cs":
            x, y = np.load(a), np.load(b)
            assert x.dtype == y.dtype and all(np.array_equal(x[f], y[f]) for f in x.dtype.names if f != "uid")
        else:

            def text(p):
                return [
                    line for line in p.read_text().splitlines() if not line.startswith(("# Created by", "created:"))
                ]

            assert text(a) == text(b), name


@needs_run_main
def test_kill_9_mid_run_then_run_main_gives_the_uninterrupted_results(reference, sim, tmp_path):
    work = tmp_path / "killed"
    work.mkdir()
    write_config(work, plain_config(sim))
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(
            [str(RUN_MAIN), "--directory", str(work)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while not list((work / "out" / "ds" / "logs").glob("preprocess_*.log")):
        assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
        time.sleep(0.05)
    time.sleep(0.5)  # a preprocess job is running
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert list((work / ".snakemake" / "locks").iterdir()), "the killed run left no lock"
    assert "cannot be locked" in output(snakemake(work, "-n"))  # what a plain re-run meets

    again = run_main("--directory", str(work))
    assert again.returncode == 0, output(again)[-3000:]
    assert "removing the lock of an interrupted run" in again.stderr
    ds, ref = work / "out" / "ds", reference / "out" / "ds"
    assert (ds / "results.tsv").read_text() == (ref / "results.tsv").read_text()
    assert (ds / "predictions.tsv").read_text() == (ref / "predictions.tsv").read_text()
    same_exports(ref / "export", ds / "export")
    assert markers(work) == []


@needs_run_main
@pytest.mark.parametrize("form", ["--directory", "-d", "--directory="])
def test_run_main_refuses_while_another_run_holds_the_folder(tmp_path, form):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("held by the other run")
    args = [f"{form}{tmp_path}"] if form.endswith("=") else [form, str(tmp_path)]
    with open(tmp_path / ".snakemake" / "run-main.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_main(*args, "-n")
    assert result.returncode != 0 and "another run is using" in result.stderr
    assert (locks / "0.input.lock").read_text() == "held by the other run"
