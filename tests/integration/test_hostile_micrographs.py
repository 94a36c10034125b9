"""Hostile micrograph files: every bad one is recorded with a reason naming what it is,
the good ones are processed, the inputs stay byte-identical, a lying header costs no
memory, and id generation terminates with distinct ids."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from miffi.intake import read_micrographs, unique_ids
from miffi.textfiles import read_tsv
from tests.support.micrographs import structured_image, write_mrc
from tests.support.runners import BIN, checksums, miffi


def _lying_header(good: bytes, nx: int, ny: int) -> bytes:
    header = bytearray(good[:1024])
    header[0:4] = np.int32(nx).tobytes()
    header[4:8] = np.int32(ny).tobytes()
    return bytes(header) + good[1024:]


GOOD = structured_image((512, 512), 3)


def _cases(good: bytes) -> dict[str, tuple[bytes | None, str]]:
    """File name → (content, or None when written by :func:`_write_special`; what the
    status table's error must say)."""
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("x.mrc", good)
    npy = io.BytesIO()
    np.save(npy, GOOD)
    return {
        "gzip.mrc": (gzip.compress(good), "gzip-compressed file, not an MRC file"),
        "small_gzip.mrc": (gzip.compress(b"x" * 10), "gzip-compressed file, not an MRC file"),
        "bzip2.mrc": (bz2.compress(good), "bzip2-compressed file, not an MRC file"),
        "zip.mrc": (zipped.getvalue(), "ZIP archive, not an MRC file"),
        "tiff.mrc": (
            b"II*\x00" + bytes(4096),
            "TIFF file (a TIFF/EER movie), not an MRC micrograph: motion-correct first",
        ),
        "big_endian_tiff.mrc": (b"MM\x00*" + bytes(4096), "TIFF file (a TIFF/EER movie)"),
        "bigtiff.mrc": (b"II+\x00" + bytes(4096), "BigTIFF file (a TIFF/EER movie)"),
        "png.mrc": (b"\x89PNG\r\n\x1a\n" + bytes(4096), "PNG image, not an MRC file"),
        "jpeg.mrc": (b"\xff\xd8\xff\xe0" + bytes(4096), "JPEG image, not an MRC file"),
        "numpy.mrc": (npy.getvalue(), "NumPy .npy array, not an MRC file"),
        "hdf5.mrc": (b"\x89HDF\r\n\x1a\n" + bytes(4096), "HDF5 file, not an MRC file"),
        "text.mrc": (b"data_micrographs\nloop_\n" * 200, "not an MRC file"),
        "empty.mrc": (b"", "empty file (0 bytes)"),
        "short.mrc": (good[:100], "too short for an MRC header (100 bytes < 1024)"),
        "truncated.mrc": (good[: len(good) // 2], "truncated or corrupt"),
        "liar.mrc": (_lying_header(good, 10000, 10000), "header claims 10000×10000×1 float32 values"),
        "huge_liar.mrc": (_lying_header(good, 60000, 60000), "header claims 60000×60000×1 float32 values"),
        "tiny.mrc": (None, "is too small to be a micrograph"),
        "stack.mrc": (None, "is a movie (3 frames), not a 2-D micrograph: motion-correct first"),
        "nan.mrc": (None, "contains NaN or Inf values"),
        "inf.mrc": (None, "contains NaN or Inf values"),
        "constant.mrc": (None, "has constant values (no contrast)"),
        "complex.mrc": (None, "MRC mode 4 is not supported"),
        "folder.mrc": (None, "is a directory, not an MRC file"),
        "missing.mrc": (None, "file not found"),
        "atlas.mrc": (None, "(400 megapixels) is larger than miffi takes"),
    }


def _write_special(folder: Path, name: str, good: bytes) -> Path:
    path = folder / name
    if name == "tiny.mrc":
        write_mrc(path, structured_image((16, 16), 1))
    elif name == "stack.mrc":
        write_mrc(path, np.stack([GOOD] * 3))
    elif name == "nan.mrc":
        data = GOOD.copy()
        data[10, 10] = np.nan
        write_mrc(path, data)
    elif name == "inf.mrc":
        data = GOOD.copy()
        data[5, 7] = np.inf
        write_mrc(path, data)
    elif name == "constant.mrc":
        write_mrc(path, np.zeros((512, 512), np.float32))
    elif name == "complex.mrc":
        write_mrc(path, np.ones((64, 64), np.complex64))
    elif name == "folder.mrc":
        path.mkdir()
    elif name == "atlas.mrc":  # a real 20000² float32 header over a sparse 1.6 GB file: no disk used
        path.write_bytes(_lying_header(good, 20000, 20000)[:1024])
        os.truncate(path, 1024 + 20000 * 20000 * 4)
    return path


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One `miffi preprocess` over two good micrographs and every hostile file."""
    root = tmp_path_factory.mktemp("hostile_mics")
    mics = root / "mics"
    good = [write_mrc(mics / f"good_{i}.mrc", structured_image((512, 512), i), pixel_size=1.2) for i in (1, 2)]
    cases = _cases(good[0].read_bytes())
    paths = {}
    for name, (content, _) in cases.items():
        if content is not None:
            (mics / name).write_bytes(content)
            paths[name] = mics / name
        elif name != "missing.mrc":
            paths[name] = _write_special(mics, name, good[0].read_bytes())
        else:
            paths[name] = mics / name
    listing = root / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in [good[0], *paths.values(), good[1]]))
    before = checksums(mics)
    result = miffi("preprocess", listing, "--out", root / "cache", "--pixel-size", "1.2", "--no-progress")
    status = read_tsv(root / "cache" / "preprocess.tsv", ["micrograph", "path", "status", "error"])
    return {
        "result": result,
        "status": status.set_index("micrograph"),
        "cases": cases,
        "before": before,
        "after": checksums(mics),
        "cache": root / "cache",
    }


@pytest.mark.parametrize("name", list(_cases(b"").keys()))
def test_hostile_micrograph_is_failed_with_its_reason(hostile_run, name):
    row = hostile_run["status"].loc[Path(name).stem]
    expected = hostile_run["cases"][name][1]
    assert row["status"] == "failed"
    assert expected in row["error"], row["error"]
    assert f"failed: {row['path']}: " in hostile_run["result"].stderr
    assert not (hostile_run["cache"] / f"{Path(name).stem}.npy").exists()


def test_the_rest_goes_on_without_a_traceback(hostile_run):
    result, status = hostile_run["result"], hostile_run["status"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert status.loc[["good_1", "good_2"], "status"].tolist() == ["computed", "computed"]
    assert (status["status"] == "failed").sum() == len(hostile_run["cases"])
    assert f"{len(status)} micrographs: 2 computed, 0 cached, {len(hostile_run['cases'])} failed" in result.stderr


def test_hostile_inputs_are_byte_identical_afterwards(hostile_run):
    assert hostile_run["after"] == hostile_run["before"]


def _peak_rss_mb(*argv: str) -> float:
    """Peak resident memory (MB) of one `miffi` process."""
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(BIN / "miffi"), *argv], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    return int(out[1]) / 1024


@pytest.mark.parametrize("name", ["liar.mrc", "huge_liar.mrc", "atlas.mrc"])
def test_rejecting_a_lying_header_allocates_nothing(hostile_run, tmp_path, name):
    """A 1 MB file claiming 400 MB / 14 GB, or a sparse 1.6 GB atlas: peak memory stays
    near that of a run on one small good micrograph."""
    mics = Path(hostile_run["status"].loc[Path(name).stem, "path"]).parent
    idle = _peak_rss_mb("preprocess", mics / "good_1.mrc", "--out", tmp_path / "idle", "--no-progress")
    peak = _peak_rss_mb("preprocess", mics / name, "--out", tmp_path / "bad", "--no-progress")
    assert peak < idle + 64, (peak, idle)


def test_same_stem_files_get_distinct_ids_and_entries(tmp_path):
    """x.mrc + x.mrcs, y.mrc + y.MRC in one folder: intake terminates (a process with a
    time limit), ids differ (also without case) and each file gets its own cache entry."""
    folder = tmp_path / "same"
    files = [
        write_mrc(folder / name, structured_image((256, 256), i), pixel_size=1.2)
        for i, name in enumerate(["x.mrc", "x.mrcs", "y.mrc", "y.MRC"])
    ]
    result = miffi("preprocess", *files, "--out", tmp_path / "cache", "--no-progress", timeout=120)
    assert result.returncode == 0, result.stderr
    ids = read_micrographs([str(p) for p in files])["micrograph"].tolist()
    assert len({i.casefold() for i in ids}) == 4
    assert sorted(p.stem for p in (tmp_path / "cache").glob("*.npy")) == sorted(ids)


@pytest.mark.parametrize(
    "paths",
    [
        ["/d/a/x.mrc", "/d/a/x.mrcs", "/d/a/x.map"],
        ["/y.mrc", "/y.MRC", "/Y.mrc"],
        ["/a/b/c.mrc", "/a/B/c.mrc", "/A/b/c.mrc"],
        ["/p/q.mrc", "/q.mrc", "/p/p/q.mrc"],
    ],
)
def test_id_generation_terminates_with_distinct_ids(paths):
    ids = unique_ids(paths)
    assert len(ids) == len(paths) and len({i.casefold() for i in ids}) == len(paths)
