"""Intake of RELION, cryoSPARC, list, glob and directory inputs into one micrograph table."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import starfile
import yaml
from cryosparc.dataset import Dataset

from miffi.errors import InputError
from miffi.intake import read_micrographs, unique_ids
from tests.support.micrographs import write_mrc

SMALL = np.zeros((64, 96), np.float32)


def test_relion31_star_with_optics(realdata, tmp_path):
    star = realdata / "relion_star" / "micrographs_ctf.star"
    table = read_micrographs([star], project_dir=tmp_path)
    assert len(table) == 24
    assert (table["pixel_size"] == 0.885).all()
    assert (table["pixel_size_source"] == "metadata").all()
    assert (table["optics_group"] == "opticsGroup1").all()
    assert table["path"].iloc[0] == str(tmp_path / "MotionCorr/job002/Movies/20170629_00021_frameImage.mrc")
    assert table["micrograph"].iloc[0] == "20170629_00021_frameImage"
    assert table["micrograph"].is_unique
    assert list(table["input_row"]) == list(range(24))
    assert set(table["input_block"]) == {"micrographs"}
    # every original column is kept for export
    original = starfile.read(star, always_dict=True)["micrographs"]
    assert table["rlnCtfMaxResolution"].tolist() == original["rlnCtfMaxResolution"].tolist()
    assert "rlnCtfFigureOfMerit" in table


def test_relion31_motioncorr_star(realdata, tmp_path):
    table = read_micrographs([realdata / "relion_star" / "corrected_micrographs.star"], project_dir=tmp_path)
    assert len(table) == 24
    assert (table["pixel_size"] == 0.885).all()
    assert "rlnAccumMotionTotal" in table


def test_single_block_star_uses_detector_pixel_and_magnification(realdata, tmp_path):
    star = realdata / "relion_star" / "topaz_empiar10025_ctf_params.star"
    table = read_micrographs([star], project_dir=tmp_path)
    assert len(table) == len(starfile.read(star))
    assert table["pixel_size"].to_numpy() == pytest.approx(2.5e4 / 38023)
    assert table["optics_group"].isna().all()
    assert table["micrograph"].iloc[0] == "14sep05c_c_00003gr_00014sq_00004hl_00004es_c"


def test_project_root_found_above_the_star(realdata, tmp_path, monkeypatch):
    project = tmp_path / "project"
    job = project / "CtfFind" / "job003"
    job.mkdir(parents=True)
    shutil.copy(realdata / "relion_star" / "micrographs_ctf.star", job / "micrographs_ctf.star")
    movies = project / "MotionCorr" / "job002" / "Movies"
    write_mrc(movies / "20170629_00021_frameImage.mrc", SMALL, pixel_size=2.0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    table = read_micrographs([job / "micrographs_ctf.star"])
    assert table["path"].iloc[0] == str(movies / "20170629_00021_frameImage.mrc")
    # metadata pixel size beats the header's; shape comes from the header when readable
    assert table["pixel_size"].iloc[0] == 0.885
    assert (table["height"].iloc[0], table["width"].iloc[0]) == (64, 96)
    assert pd.isna(table["height"].iloc[1])


def test_relative_paths_with_dot_slash_spaces_and_unicode(tmp_path, monkeypatch):
    names = ["./Movies/mic one.mrc", "Movies/mïcrø_2.mrc"]
    for name in names:
        write_mrc(tmp_path / name, SMALL, pixel_size=1.1)
    star = tmp_path / "mics.star"
    starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": names})}, star)
    monkeypatch.chdir(tmp_path)
    table = read_micrographs([star])
    assert list(table["path"]) == [str(tmp_path / "Movies" / "mic one.mrc"), str(tmp_path / "Movies" / "mïcrø_2.mrc")]
    assert list(table["micrograph"]) == ["mic one", "mïcrø_2"]
    assert list(table["pixel_size_source"]) == ["header", "header"]
    assert table["pixel_size"].tolist() == pytest.approx([1.1, 1.1])


def _write_cryosparc_project(root):
    """A cryoSPARC-like project: exposures split over a main and a passthrough .cs, and a .csg."""
    paths = ["J2/motioncorrected/mic 1 ü.mrc", "J2/motioncorrected/mic2.mrc", "J2/motioncorrected/mic3.mrc"]
    shapes = [(64, 96), (80, 80), (70, 120)]
    psizes = [0.83, 1.06, 0.83]
    for path, shape, psize in zip(paths, shapes, psizes):
        write_mrc(root / path, np.zeros(shape, np.float32), pixel_size=9.9)
    main = Dataset.allocate(
        3, fields=[("micrograph_blob/path", "O"), ("micrograph_blob/psize_A", "f4"), ("micrograph_blob/shape", "2u4")]
    )
    main["micrograph_blob/path"] = paths
    main["micrograph_blob/psize_A"] = psizes
    main["micrograph_blob/shape"] = np.array(shapes)
    passthrough = Dataset.allocate(3, fields=[("ctf/ctf_fit_to_A", "f4"), ("ctf/df1_A", "f4")])
    passthrough["uid"] = main["uid"]
    passthrough["ctf/ctf_fit_to_A"] = [3.1, 4.5, 12.0]
    job = root / "J5"
    job.mkdir(parents=True)
    main.save(str(job / "exposures_accepted.cs"))
    passthrough.save(str(job / "J5_passthrough_exposures_accepted.cs"))
    csg = {
        "created": "2026-11-26",
        "group": {"name": "exposures_accepted", "type": "exposure", "title": "Accepted exposures"},
        "results": {
            "micrograph_blob": {
                "metafile": ">exposures_accepted.cs",
                "num_items": 3,
                "type": "exposure.micrograph_blob",
            },
            "ctf": {"metafile": ">J5_passthrough_exposures_accepted.cs", "num_items": 3, "type": "exposure.ctf"},
        },
        "version": "v4.4.0",
    }
    (job / "exposures_accepted.csg").write_text(yaml.safe_dump(csg))
    return job, paths, psizes, shapes


def test_cryosparc_csg_joins_its_cs_files(tmp_path, monkeypatch):
    project = tmp_path / "P1"
    job, paths, psizes, shapes = _write_cryosparc_project(project)
    monkeypatch.chdir(tmp_path)
    table = read_micrographs([job / "exposures_accepted.csg"])
    assert list(table["path"]) == [str(project / p) for p in paths]
    assert table["pixel_size"].tolist() == pytest.approx(psizes)  # metadata beats the header's 9.9
    assert list(zip(table["height"], table["width"])) == shapes
    assert table["ctf/ctf_fit_to_A"].tolist() == pytest.approx([3.1, 4.5, 12.0])
    assert list(table["micrograph"]) == ["mic 1 ü", "mic2", "mic3"]


def test_cryosparc_cs_alone_with_project_dir(tmp_path):
    project = tmp_path / "P1"
    job, paths, _, _ = _write_cryosparc_project(project)
    table = read_micrographs([job / "exposures_accepted.cs"], project_dir=project)
    assert list(table["path"]) == [str(project / p) for p in paths]
    assert "uid" in table and "micrograph_blob/shape[1]" in table


def test_list_glob_directory_and_files(tmp_path, monkeypatch):
    data = tmp_path / "data"
    for name in ("a.mrc", "b.mrc", "c.mrc"):
        write_mrc(data / name, SMALL, pixel_size=1.0)
    (data / "notes.txt").write_text("not a micrograph")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my micrographs\ndata/a.mrc\n\n{data / 'b.mrc'}\n")
    monkeypatch.chdir(tmp_path)
    assert list(read_micrographs([listing])["micrograph"]) == ["a", "b"]
    assert list(read_micrographs([str(data / "*.mrc")])["micrograph"]) == ["a", "b", "c"]
    assert list(read_micrographs([data])["micrograph"]) == ["a", "b", "c"]
    assert list(read_micrographs([data], pattern="[bc].mrc")["micrograph"]) == ["b", "c"]
    both = read_micrographs([data / "c.mrc", listing])
    assert list(both["micrograph"]) == ["c", "a", "b"]
    assert list(both["input_row"]) == [0, 0, 1]


def test_pixel_size_precedence(tmp_path, realdata):
    with_header = write_mrc(tmp_path / "h.mrc", SMALL, pixel_size=1.3)
    without = write_mrc(tmp_path / "n.mrc", SMALL, pixel_size=None)
    table = read_micrographs([with_header, without])
    assert table["pixel_size_source"].tolist() == ["header", "none"]
    assert table["pixel_size"].iloc[0] == pytest.approx(1.3)
    assert np.isnan(table["pixel_size"].iloc[1])
    overridden = read_micrographs(
        [with_header, realdata / "relion_star" / "micrographs_ctf.star"], pixel_size=0.5, project_dir=tmp_path
    )
    assert (overridden["pixel_size"] == 0.5).all()
    assert (overridden["pixel_size_source"] == "user").all()


def test_colliding_stems_get_unique_ids(tmp_path):
    paths = [write_mrc(tmp_path / d / "mic.mrc", SMALL) for d in ("a/x", "b/x", "c")]
    table = read_micrographs(paths)
    assert list(table["micrograph"]) == ["a__x__mic", "b__x__mic", "c__mic"]
    assert unique_ids(["/p/one.mrc", "/q/two.mrc"]) == ["one", "two"]


def test_same_file_twice_is_kept_once(tmp_path):
    path = write_mrc(tmp_path / "m.mrc", SMALL)
    assert len(read_micrographs([path, tmp_path / "." / "m.mrc"])) == 1


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("data_\nloop_\n_rlnCoordinateX #1\n1.0\n", "picks.star", "holds the particle coordinates of one micrograph"),
        ("results: {}\n", "group.csg", "no 'results' section"),
        ("# only a comment\n", "list.txt", "no micrograph paths"),
    ],
)
def test_unusable_tables_name_the_file(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        read_micrographs([path])
    assert str(path) in str(info.value)


def test_missing_inputs_are_clear(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_micrographs([tmp_path / "nope.star"])
    with pytest.raises(InputError, match="matches no files"):
        read_micrographs([str(tmp_path / "*.mrc")])
    with pytest.raises(InputError, match="not a readable cryoSPARC"):
        (tmp_path / "bad.cs").write_bytes(b"junk")
        read_micrographs([tmp_path / "bad.cs"])


def test_a_one_micrograph_star_in_a_simple_block(tmp_path):
    """RELION writes a single row as a key-value block; it is one micrograph, not an error."""
    write_mrc(tmp_path / "a.mrc", np.zeros((600, 600), np.float32), pixel_size=1.1)
    (tmp_path / "one.star").write_text("data_micrographs\n\n_rlnMicrographName a.mrc\n_rlnOpticsGroup 1\n")
    table = read_micrographs([tmp_path / "one.star"])
    assert table["micrograph"].tolist() == ["a"] and table["pixel_size"].tolist() == [pytest.approx(1.1)]
