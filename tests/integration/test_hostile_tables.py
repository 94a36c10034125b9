"""Hostile tables and settings files: one line naming the file and the problem, no
traceback; Windows/Excel text read as intended; entries outside the project refused;
names such as NA or null kept as names."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from cryosparc.dataset import Dataset

from miffi.evaluate.label_files import read_labels
from miffi.intake import read_micrographs
from miffi.textfiles import read_tsv
from tests.support.micrographs import structured_image, write_mrc
from tests.support.runners import checksums, cli, one_error_line


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A RELION-like project: Movies/ with three micrographs, and a clean star file."""
    root = tmp_path_factory.mktemp("project")
    for i in range(3):
        write_mrc(root / "Movies" / f"m{i}.mrc", structured_image((256, 256), i), pixel_size=1.2)
    star = root / "micrographs.star"
    starfile.write(
        {
            "optics": pd.DataFrame(
                {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["g1"], "rlnMicrographPixelSize": [1.2]}
            ),
            "micrographs": pd.DataFrame(
                {"rlnMicrographName": [f"Movies/m{i}.mrc" for i in range(3)], "rlnOpticsGroup": [1, 1, 1]}
            ),
        },
        star,
    )
    return root


def _windows(text: str) -> bytes:
    return b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")


# ---- tables that cannot be used: one line naming the file and the problem -----------------


def _bad_tables(root: Path) -> dict[str, tuple[Path, str]]:
    clean = (root / "micrographs.star").read_text()
    header = clean[: clean.index("Movies/m0.mrc")]
    cases = {
        "star without rows": ("empty.star", header, "has no rows (no micrographs)"),
        "star cut mid-row": ("cut.star", clean.rstrip()[:-3], "fields (the file is cut off or damaged)"),
        "star of coordinates": (
            "coords.star",
            "data_\nloop_\n_rlnCoordinateX\n1\n",
            "holds the particle coordinates of one micrograph: give the micrographs star",
        ),
        "star without micrograph column": (
            "other.star",
            "data_\nloop_\n_rlnAngleRot\n1\n",
            "no data block with a rlnMicrographName column",
        ),
        "star with unbalanced quote": ("quote.star", header + "'Movies/m0.mrc 1\n", "not a readable star file"),
        "star that is binary": ("binary.star", gzip.compress(clean.encode()), "is not a UTF-8 star file"),
        "star with bad optics group": (
            "optics.star",
            clean.replace("m1.mrc\t1\n", "m1.mrc\tone\n"),
            "unreadable optics group or rlnMicrographPixelSize values",
        ),
        "list that is binary": (
            "binary.txt",
            b"\x00\xff\xfe" * 50,
            "is not a UTF-8 list of micrograph paths (undecodable byte",
        ),
        "list without paths": ("comments.txt", "# nothing\n\n", "list contains no micrograph paths"),
        "csg that is not YAML": ("bad.csg", "results: [unclosed\n", "not valid YAML at line"),
        "csg that is a list": ("list.csg", "- a\n- b\n", "must be a mapping of NAME: VALUE lines, not a list"),
        "csg without results": ("nores.csg", "group: {}\n", "no 'results' section"),
        "csg pointing at a missing cs": (
            "missing.csg",
            "results:\n  micrograph_blob:\n    metafile: '>gone.cs'\n",
            "refers to a missing .cs file",
        ),
        "cs with a lying header": ("liar.cs", None, "truncated or damaged: its header claims 1000000000 rows"),
        "cs that is text": ("text.cs", "hello\n", "not a readable cryoSPARC .cs file"),
        "missing input": ("nothing.star", None, "file not found"),
    }
    out = {}
    for name, (file, content, expected) in cases.items():
        path = root / "bad" / file
        path.parent.mkdir(exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif file == "liar.cs":
            header = np.lib.format.header_data_from_array_1_0(np.zeros(1, [("uid", "<u8")]))
            header["shape"] = (1_000_000_000,)
            with open(path, "wb") as handle:
                np.lib.format.write_array_header_1_0(handle, header)
                handle.write(bytes(64))
        out[name] = (path, expected)
    return out


BAD_TABLES = [
    "star without rows",
    "star cut mid-row",
    "star without micrograph column",
    "star with unbalanced quote",
    "star that is binary",
    "star with bad optics group",
    "list that is binary",
    "list without paths",
    "csg that is not YAML",
    "csg that is a list",
    "csg without results",
    "csg pointing at a missing cs",
    "cs with a lying header",
    "cs that is text",
    "missing input",
]


@pytest.fixture(scope="module")
def bad_tables(project):
    return _bad_tables(project)


@pytest.mark.parametrize("case", BAD_TABLES)
def test_unusable_table_is_one_line_naming_it(bad_tables, project, capsys, tmp_path, case):
    path, expected = bad_tables[case]
    before = checksums(path.parent)
    outcome = cli(capsys, "intake", path, "--out", tmp_path / "t.micrographs.tsv", "--project-dir", project)
    line = one_error_line(outcome.err)
    assert outcome.code == 2
    assert str(path) in line and expected in line, line
    assert not (tmp_path / "t.micrographs.tsv").exists()
    assert checksums(path.parent) == before


# ---- settings files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, expected",
    [
        ("drift_anisotropy: [0.1\n", "not valid YAML at line"),
        ("- 0.1\n- 0.2\n", "must be a mapping of NAME: VALUE lines, not a list"),
        ("just a sentence\n", "must be a mapping of NAME: VALUE lines, not a str"),
        ("drift_anisotropy: fast\n", "threshold drift_anisotropy: 'fast' is not a finite number"),
        ("drift_anisotropy: .nan\n", "is not a finite number"),
        ("drift_anisotropy: true\n", "is not a finite number"),
        ("no_such_threshold: 1\n", "unknown weight-free threshold(s) ['no_such_threshold']"),
    ],
)
def test_bad_thresholds_file_is_one_line_naming_it(tmp_path, capsys, content, expected):
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(content)
    table = tmp_path / "t.micrographs.tsv"
    outcome = cli(
        capsys,
        "combine",
        table,
        "--cache",
        tmp_path,
        "--predictions",
        tmp_path / "p.tsv",
        "--thresholds",
        thresholds,
        "--out",
        tmp_path / "results.tsv",
    )
    line = one_error_line(outcome.err)
    assert outcome.code == 2 and str(thresholds) in line and expected in line, line


def test_bad_simulation_settings_file_is_one_line(tmp_path, capsys):
    settings = tmp_path / "sim.yaml"
    settings.write_text("[1, 2]\n")
    outcome = cli(capsys, "simulate", "--out", tmp_path / "sim", "--n", "1", "--config", settings)
    line = one_error_line(outcome.err)
    assert outcome.code == 2 and str(settings) in line and "must be a mapping" in line


# ---- Windows / Excel text ------------------------------------------------------------------


def test_star_with_bom_and_crlf_reads_like_the_clean_one(project, tmp_path):
    windows = tmp_path / "windows.star"
    windows.write_bytes(_windows((project / "micrographs.star").read_text()))
    clean = read_micrographs([project / "micrographs.star"], project)
    read = read_micrographs([windows], project)
    assert read["path"].tolist() == clean["path"].tolist()
    assert read["pixel_size"].tolist() == [1.2] * 3 and read["optics_group"].tolist() == ["g1"] * 3


def test_list_with_bom_and_crlf(project, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(_windows("".join(f"{project}/Movies/m{i}.mrc\n" for i in range(3))))
    table = read_micrographs([listing])
    assert table["micrograph"].tolist() == ["m0", "m1", "m2"]
    assert all(Path(p).is_file() for p in table["path"])


@pytest.mark.parametrize("separator", [",", "\t"])
def test_label_csv_with_bom_and_crlf(tmp_path, separator):
    rows = [
        ["micrograph", "film", "drift", "crystallinity", "contamination"],
        ["NA.mrc", "no_film", "no_crack_drift", "not_crystalline", "minor_contamination"],
        ["m1.mrc", "film", "crack_drift_empty", "major_crystalline", "major_contamination"],
    ]
    labels = tmp_path / "labels.csv"
    labels.write_bytes(_windows("".join(separator.join(r) + "\n" for r in rows)))
    table = read_labels(labels)
    assert table["micrograph"].tolist() == ["NA.mrc", "m1.mrc"]
    assert table["good"].tolist() == [True, False]


def test_label_star_with_bom_and_crlf(tmp_path):
    text = (
        "data_labels\n\nloop_\n_rlnMicrographName #1\n_rlnMiffiFilm #2\n_rlnMiffiDrift #3\n"
        "_rlnMiffiCrystallinity #4\n_rlnMiffiContamination #5\n"
        "a.mrc no_film no_crack_drift not_crystalline minor_contamination\n"
    )
    labels = tmp_path / "labels.star"
    labels.write_bytes(_windows(text))
    assert read_labels(labels)["good"].tolist() == [True]


# ---- entries outside the project -----------------------------------------------------------


@pytest.mark.parametrize("entry", ["../../../../etc/passwd", "Movies/../../outside.mrc", "/etc/passwd"])
@pytest.mark.parametrize("kind", ["star", "cs"])
def test_entry_outside_the_project_is_refused(project, tmp_path, capsys, entry, kind):
    table = _table_with(project, tmp_path, kind, entry)
    outcome = cli(capsys, "intake", table, "--out", tmp_path / "t.micrographs.tsv", "--project-dir", project)
    line = one_error_line(outcome.err)
    assert outcome.code == 2
    assert str(table) in line and f"row 2: {entry!r} lies outside the project directory" in line, line


def test_outside_entries_are_accepted_when_allowed(project, tmp_path, capsys):
    outside = write_mrc(tmp_path / "elsewhere" / "far.mrc", structured_image((256, 256), 9), pixel_size=1.2)
    table = _table_with(project, tmp_path, "star", str(outside))
    out = tmp_path / "t.micrographs.tsv"
    outcome = cli(capsys, "intake", table, "--out", out, "--project-dir", project, "--allow-outside-project")
    assert outcome.code == 0, outcome.err
    assert read_tsv(out, ["path"])["path"].tolist()[1] == str(outside)


def test_symlinked_folder_inside_the_project_is_fine(project, tmp_path):
    """RELION projects link Movies/ to the storage: judged by the path as written."""
    linked = tmp_path / "linked_project"
    linked.mkdir()
    (linked / "Movies").symlink_to(project / "Movies")
    star = linked / "micrographs.star"
    star.write_text((project / "micrographs.star").read_text())
    table = read_micrographs([star], linked)
    assert table["path"].tolist() == [str(linked / "Movies" / f"m{i}.mrc") for i in range(3)]


def _table_with(project: Path, folder: Path, kind: str, entry: str) -> Path:
    names = ["Movies/m0.mrc", entry, "Movies/m2.mrc"]
    if kind == "star":
        path = folder / "with_entry.star"
        starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": names})}, path)
        return path
    dataset = Dataset.allocate(3, fields=[("micrograph_blob/path", "O"), ("micrograph_blob/psize_A", "f4")])
    dataset["micrograph_blob/path"] = names
    dataset["micrograph_blob/psize_A"] = [1.2] * 3
    path = folder / "with_entry.cs"
    dataset.save(str(path))
    return path


# ---- names that look like missing values or numbers ----------------------------------------

NAMES = ["NA", "null", "nan", "None", "N/A", "1e3", "007", "TRUE", "-"]


def test_names_like_missing_values_keep_their_ids_through_the_stages(tmp_path, capsys):
    mics = [
        write_mrc(tmp_path / "mics" / f"{name.replace('/', '_')}.mrc", structured_image((256, 256), i), pixel_size=1.2)
        for i, name in enumerate(NAMES)
    ]
    ids = [p.stem for p in mics]
    table = tmp_path / "ds.micrographs.tsv"
    assert cli(capsys, "intake", *mics, "--out", table).code == 0
    assert read_tsv(table, ["micrograph"])["micrograph"].tolist() == ids
    assert cli(capsys, "preprocess", table, "--out", tmp_path / "cache", "--no-progress").code == 0
    assert (
        cli(capsys, "infer", table, "--cache", tmp_path / "cache", "--out", tmp_path / "p.tsv", "--no-progress").code
        == 0
    )
    results = tmp_path / "results.tsv"
    assert (
        cli(
            capsys,
            "combine",
            table,
            "--cache",
            tmp_path / "cache",
            "--predictions",
            tmp_path / "p.tsv",
            "--out",
            results,
        ).code
        == 0
    )
    assert read_tsv(results, ["micrograph"])["micrograph"].tolist() == ids
    results.with_suffix(".parquet").unlink()  # the TSV alone (hand-kept copies) reads the same
    from miffi.pipeline import read_results

    frame = read_results(results)
    assert frame["micrograph"].tolist() == ids
    assert (frame["status"] != "failed").all()
