"""Folder and glob inputs skip RELION's companion files; movies are refused, by name or
content, with what to do instead, and a movie among micrographs fails alone."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from miffi.cli import main
from miffi.errors import MicrographError
from miffi.intake import read_micrographs
from miffi.mrc import read_header
from tests.support.micrographs import structured_image, write_mrc

MOTION_CORRECT = "motion-correct first (e.g. RELION MotionCorr, cryoSPARC Patch Motion) and give the micrographs"
IMAGE = structured_image((256, 256), 1)


@pytest.fixture
def motioncorr(tmp_path: Path) -> Path:
    """A RELION MotionCorr output folder: two micrographs with their companions, and a
    non-dose-weighted sum whose micrograph is not there."""
    folder = tmp_path / "Movies"
    for stem in ("a", "a_PS", "a_noDW", "b", "b_PS", "c_noDW"):
        write_mrc(folder / f"{stem}.mrc", IMAGE)
    return folder


def _stems(table: pd.DataFrame) -> list[str]:
    return [Path(p).stem for p in table["path"]]


def test_folder_skips_companions_and_says_so(motioncorr, caplog):
    with caplog.at_level(logging.INFO, logger="miffi"):
        table = read_micrographs([motioncorr])
    assert _stems(table) == ["a", "b", "c_noDW"]
    assert (
        f"{motioncorr}: skipped 3 RELION companion file(s) of micrographs also found "
        "(2 *_PS power spectra, 1 *_noDW sums without dose weighting)"
    ) in caplog.text


def test_glob_skips_companions_unless_it_asks_for_them(motioncorr, caplog):
    assert _stems(read_micrographs([str(motioncorr / "*.mrc")])) == ["a", "b", "c_noDW"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="miffi"):
        assert _stems(read_micrographs([str(motioncorr / "*_noDW.mrc")])) == ["a_noDW", "c_noDW"]
    assert "companion" not in caplog.text


def test_companions_named_directly_or_listed_are_taken(motioncorr, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{motioncorr / 'a.mrc'}\n{motioncorr / 'a_PS.mrc'}\n")
    table = read_micrographs([listing, motioncorr / "a_noDW.mrc"])
    assert _stems(table) == ["a", "a_PS", "a_noDW"]


def _tiff_movie(path: Path, frames: int = 3) -> Path:
    images = [Image.fromarray(np.full((64, 64), i, np.uint16)) for i in range(frames)]
    images[0].save(path, format="TIFF", save_all=True, append_images=images[1:])
    return path


@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("movie.tif", _tiff_movie, f"is a .tif movie, not an MRC micrograph: {MOTION_CORRECT}"),
        ("movie.TIFF", _tiff_movie, f"is a .tiff movie, not an MRC micrograph: {MOTION_CORRECT}"),
        (
            "movie.eer",
            lambda p: p.write_bytes(b"II*\x00" + bytes(2048)),
            f"is a .eer movie, not an MRC micrograph: {MOTION_CORRECT}",
        ),
        ("movie.mrc", _tiff_movie, f"a TIFF file (a TIFF/EER movie), not an MRC micrograph: {MOTION_CORRECT}"),
        (
            "movie.mrcs",
            lambda p: write_mrc(p, np.stack([IMAGE] * 5)),
            f"is a movie (5 frames), not a 2-D micrograph: {MOTION_CORRECT}",
        ),
    ],
)
def test_movies_are_named_as_movies(tmp_path, name, make, problem):
    path = tmp_path / name
    make(path)
    with pytest.raises(MicrographError) as info:
        read_header(path)
    assert str(info.value) == f"{path}: {problem}"


def test_a_movie_given_directly_fails_clearly(tmp_path, caplog):
    movie = _tiff_movie(tmp_path / "movie.tif")
    table = read_micrographs([movie])  # not read as a (binary) list of paths
    assert table["path"].tolist() == [str(movie)]
    with caplog.at_level(logging.INFO):
        assert main(["preprocess", str(movie), "--out", str(tmp_path / "cache"), "--no-progress"]) == 1
    assert f"failed: {movie}: is a .tif movie, not an MRC micrograph: {MOTION_CORRECT}" in caplog.text


def test_movies_among_micrographs_fail_alone(tmp_path, caplog):
    good = [write_mrc(tmp_path / "mics" / f"good_{i}.mrc", structured_image((512, 512), i)) for i in (1, 2)]
    movies = [
        _tiff_movie(tmp_path / "mics" / "m1.tiff"),
        write_mrc(tmp_path / "mics" / "m2.mrcs", np.stack([IMAGE] * 4)),
    ]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in [good[0], *movies, good[1]]))
    with caplog.at_level(logging.INFO):
        assert main(["preprocess", str(listing), "--out", str(tmp_path / "cache"), "--no-progress"]) == 0
    status = pd.read_csv(tmp_path / "cache" / "preprocess.tsv", sep="\t").set_index("micrograph")
    assert status.loc[["good_1", "good_2"], "status"].tolist() == ["computed", "computed"]
    assert status.loc["m1", "error"] == f"is a .tiff movie, not an MRC micrograph: {MOTION_CORRECT}"
    assert status.loc["m2", "error"] == f"is a movie (4 frames), not a 2-D micrograph: {MOTION_CORRECT}"
    assert f"failed: {movies[0]}: is a .tiff movie" in caplog.text
    assert "4 micrographs: 2 computed, 0 cached, 2 failed" in caplog.text
