"""``miffi run`` end to end on simulated data: outputs, exports read by RELION and cryosparc-tools."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import starfile
import yaml
from cryosparc.dataset import Dataset

from miffi.device import native_bf16
from miffi.labels import GROUPS, LABELS
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.consumers import relion_reads
from tests.support.models import tiny_model
from tests.support.runners import checksums, miffi


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A simulated dataset (mixed labels) and a random-weight two-channel TorchScript model."""
    root = tmp_path_factory.mktemp("project")
    simulate_dataset(root / "data", 8, parse_detector("640x512@1.2"), seed=4, progress=False, workers=1)
    tiny_model(root / "model.pt")
    return root


def run(project, out, *extra, source=None):
    """``miffi run`` of the project's model on the CPU, on its star file unless ``source``."""
    source = project / "data" / "micrographs.star" if source is None else source
    return miffi("run", "--input", source, "--model", project / "model.pt", "--outdir", out, "--device", "cpu",
                 "--no-progress", *extra)  # fmt: skip


def relion_count(star):
    """Rows RELION itself reads from a micrographs star file (and writes back out)."""
    return len(relion_reads(star, "micrographs")["micrographs"])


def test_run_on_a_star_file(project, tmp_path):
    before = checksums(project / "data")
    out = tmp_path / "out"
    result = run(project, out)
    assert result.returncode == 0, result.stderr
    assert checksums(project / "data") == before  # inputs untouched

    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert list(predictions.columns) == ["micrograph", "square", *LABELS]
    assert len(predictions) == 8 * 2  # 640×512: two squares each
    results = pd.read_csv(out / "results.tsv", sep="\t")
    assert len(results) == 8 and set(results["status"]) == {"cached"}  # results say what the cache holds
    assert {"film", "drift", "crystallinity", "contamination", "category", "confidence"} <= set(results)
    for group, labels in GROUPS.items():
        assert set(results[group]) <= set(labels)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), results, check_dtype=False)

    source = starfile.read(project / "data" / "micrographs.star", always_dict=True)
    counts = results["category"].value_counts().to_dict()
    counts["bad_single"] = int(
        results["category"]
        .isin(["bad_film", "bad_drift", "bad_minor_crystalline", "bad_major_crystalline", "bad_contamination"])
        .sum()
    )
    written = sorted(p.stem for p in (out / "relion").glob("*.star"))
    assert written == sorted(k for k, v in counts.items() if v)
    for name in written:
        exported = starfile.read(out / "relion" / f"{name}.star", always_dict=True)
        pd.testing.assert_frame_equal(exported["optics"], source["optics"])
        assert list(exported["micrographs"].columns) == list(source["micrographs"].columns)
        wanted = (
            results.loc[results["category"] == name, "micrograph"]
            if name != "bad_single"
            else results.loc[
                results["category"].str.startswith("bad_") & (results["category"] != "bad_multiple"), "micrograph"
            ]
        )
        assert sorted(exported["micrographs"]["rlnMicrographName"]) == sorted(f"micrographs/{m}.mrc" for m in wanted)
        cs = Dataset.load(str(out / "cryosparc" / f"{name}.cs"))
        assert len(cs) == counts[name]
        group = yaml.safe_load((out / "cryosparc" / f"{name}.csg").read_text())
        for entry in group["results"].values():
            assert (out / "cryosparc" / entry["metafile"].lstrip(">")).is_file()
            assert entry["num_items"] == counts[name]
        lines = (out / "lists" / f"{name}.txt").read_text().splitlines()
        assert len(lines) == counts[name]


needs_relion = pytest.mark.skipif(
    not shutil.which("relion_star_handler"), reason="RELION is not installed (scripts/install-system-tools.sh)"
)


@needs_relion
def test_relion_reads_every_export(project, tmp_path):
    assert relion_count(project / "data" / "micrographs.star") == 8  # the input, as a control
    out = tmp_path / "out"
    for extra in ([], ["--rule", "lenient"], ["--rule", "strict"]):  # re-runs must not leave stale files
        result = run(project, out, "--formats", "relion", *extra)
        assert result.returncode == 0, result.stderr
        results = pd.read_csv(out / "results.tsv", sep="\t")
        single = results["category"].str.startswith("bad_") & (results["category"] != "bad_multiple")
        expected_files = set(results["category"]) | ({"bad_single"} if single.any() else set())
        assert {star.stem for star in (out / "relion").glob("*.star")} == expected_files  # none empty, none missing
        for star in (out / "relion").glob("*.star"):
            expected = (
                results["category"]
                .isin(
                    [c for c in results["category"].unique() if c.startswith("bad_") and c != "bad_multiple"]
                    if star.stem == "bad_single"
                    else [star.stem]
                )
                .sum()
            )
            assert relion_count(star) == expected


def test_run_on_a_csg_keeps_all_cryosparc_fields(project, tmp_path):
    out = tmp_path / "out"
    result = run(
        project, out, "--formats", "cryosparc,lists", "--rule", "mean", source=project / "data" / "exposures.csg"
    )
    assert result.returncode == 0, result.stderr
    source = Dataset.load(str(project / "data" / "exposures.cs"))
    total = 0
    for cs_file in (out / "cryosparc").glob("*.cs"):
        exported = Dataset.load(str(cs_file))
        assert set(exported.fields()) == set(source.fields())
        assert set(exported["uid"]) <= set(source["uid"])
        if cs_file.stem != "bad_single":
            total += len(exported)
    assert total == 8
    assert not (out / "relion").exists()


def test_missing_micrographs_are_recorded_and_the_rest_exported(project, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(project / "data", data)
    gone = ["sim_00002", "sim_00005"]
    for name in gone:
        (data / "micrographs" / f"{name}.mrc").unlink()
    out = tmp_path / "out"
    result = run(project, out, source=data / "micrographs.star")
    assert result.returncode == 0, result.stderr
    for name in gone:
        assert f"failed: {data / 'micrographs' / name}.mrc: file not found" in result.stderr
    results = pd.read_csv(out / "results.tsv", sep="\t").set_index("micrograph")
    assert results.loc[gone, "status"].tolist() == ["failed", "failed"]
    assert results.loc[gone, "category"].isna().all()
    failed = (out / "lists" / "failed.txt").read_text().splitlines()
    assert sorted(failed) == sorted(str(data / "micrographs" / f"{n}.mrc") for n in gone)
    exported = sum(
        len(starfile.read(p, always_dict=True)["micrographs"])
        for p in (out / "relion").glob("*.star")
        if p.stem != "bad_single"
    )
    assert exported == 6


def test_thresholds_rule_and_categories_options(project, tmp_path):
    out = tmp_path / "out"
    result = run(
        project,
        out,
        "--rule",
        "strict",
        "--good-threshold",
        "0.9",
        "--bad-threshold",
        "film=0.95",
        "--categories",
        "bad_multiple",
        "--formats",
        "lists",
        "--split-confidence",
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (out / "lists").iterdir()] in ([], ["bad_multiple.txt"])
    bad_rule = miffi(
        "run",
        "--input",
        project / "data" / "micrographs.star",
        "--model",
        project / "model.pt",
        "--outdir",
        out,
        "--rule",
        "9,000",
    )
    assert bad_rule.returncode == 2 and "unknown group 9" in bad_rule.stderr


def test_results_are_reproducible_from_the_cache(project, tmp_path):
    first = run(project, tmp_path / "a", "--cache", tmp_path / "cache")
    again = run(project, tmp_path / "b", "--cache", tmp_path / "cache")
    assert first.returncode == again.returncode == 0
    a = pd.read_csv(tmp_path / "a" / "predictions.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "b" / "predictions.tsv", sep="\t")
    assert np.allclose(a[list(LABELS)], b[list(LABELS)], atol=1e-6)


def test_fast_keeps_the_labels_and_bf16_warns_where_it_is_emulated(project, tmp_path):
    cache = tmp_path / "cache"
    plain, fast, bf16 = (run(project, tmp_path / name, "--cache", cache, *extra)
                         for name, extra in (("fp32", ()), ("fast", ("--fast",)), ("bf16", ("--bf16",))))  # fmt: skip
    assert plain.returncode == fast.returncode == bf16.returncode == 0, (fast.stderr, bf16.stderr)
    columns = [*GROUPS, "category"]
    results = {name: pd.read_csv(tmp_path / name / "results.tsv", sep="\t")[columns] for name in ("fp32", "fast")}
    pd.testing.assert_frame_equal(results["fast"], results["fp32"])
    assert ("slower than float32" in bf16.stderr) is not native_bf16()
    assert "slower than float32" not in fast.stderr


def test_run_without_a_model_uses_the_weight_free_classifier(project, tmp_path):
    out = tmp_path / "out"
    result = miffi(
        "run",
        "--input",
        project / "data" / "micrographs.star",
        "--outdir",
        out,
        "--device",
        "cpu",
        "--no-progress",
        "--formats",
        "lists",
    )
    assert result.returncode == 0, result.stderr
    results = pd.read_csv(out / "results.tsv", sep="\t")
    assert set(results["classifier"]) == {"weight-free"}
    assert {"water_ring", "ice_peak", "anisotropy", "dark_fraction", "ctf_fit_resolution", "ctf_baseline"} <= set(
        results
    )
    assert results["ctf_baseline"].isin(["good", "bad"]).all()  # the simulated star has rlnCtfMaxResolution
    written = sum(len((out / "lists" / f"{c}.txt").read_text().splitlines()) for c in results["category"].unique())
    assert written == 8

    # with a model, the weight-free labels are a second opinion; --where filters the exports
    filtered = tmp_path / "filtered"
    result = run(
        project, filtered, "--formats", "lists", "--where", "ctf_baseline == good", "--where", "dark_fraction < 0.2"
    )
    assert result.returncode == 0, result.stderr
    results = pd.read_csv(filtered / "results.tsv", sep="\t")
    assert {"wf_film", "wf_category"} <= set(results)
    keep = results[(results["ctf_baseline"] == "good") & (results["dark_fraction"] < 0.2)]
    listed = sorted(
        line
        for c in results["category"].unique()
        if (filtered / "lists" / f"{c}.txt").exists()
        for line in (filtered / "lists" / f"{c}.txt").read_text().splitlines()
    )
    assert listed == sorted(keep["path"])
    bad = miffi("run", "--input", project / "data" / "micrographs.star", "--outdir", filtered, "--where", "nope > 1")
    assert bad.returncode == 2 and "no column 'nope'" in bad.stderr
