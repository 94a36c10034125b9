"""Reading micrographs in every supported mode, and clear errors for bad files."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from miffi.errors import MicrographError
from miffi.mrc import map_micrograph, read_ahead, read_header
from tests.support.micrographs import structured_image, write_mrc

MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


@pytest.mark.parametrize("mode", MODES)
def test_reads_every_supported_mode(tmp_path, mode):
    rng = np.random.default_rng(mode)
    dtype = MODES[mode]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -100), min(info.max, 100) + 1, size=(64, 80)).astype(dtype)
    else:
        data = rng.normal(size=(64, 80)).astype(dtype)
    path = write_mrc(tmp_path / f"m{mode}.mrc", data, pixel_size=0.83)
    header = read_header(path)
    assert header.mode == mode
    assert (header.height, header.width) == (64, 80)
    assert header.pixel_size == pytest.approx(0.83)
    array, _ = map_micrograph(path)
    assert np.array_equal(array, data)


def test_extended_header_is_skipped(tmp_path):
    data = structured_image((96, 128))
    ext = np.zeros(4, dtype=[("metadata", "u1", 768)])  # FEI-style block of 3 KiB
    ext["metadata"][:] = 7
    path = write_mrc(tmp_path / "epu.mrc", data, pixel_size=1.06, extended_header=ext)
    with mrcfile.open(path) as mrc:
        assert mrc.header.nsymbt == ext.nbytes
    array, header = map_micrograph(path)
    assert np.array_equal(array, data)
    assert header.pixel_size == pytest.approx(1.06)


def test_single_section_stack_reads_as_2d(tmp_path):
    data = structured_image((64, 96))[None]
    path = tmp_path / "stack.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.header.ispg = 0  # an image stack of one section
    array, header = map_micrograph(path)
    assert array.shape == (64, 96)
    assert np.array_equal(array, data[0])


def test_a_map_outlives_the_open_file_and_keeps_what_it_mapped(tmp_path):
    # Preprocessing opens micrographs ahead of their transforms and reads them later: the
    # map must stay valid with the file closed, and a file replaced meanwhile (an atomic
    # rename, as a re-export does) must not mix into what was opened.
    import gc

    path = write_mrc(tmp_path / "m.mrc", structured_image((64, 96), seed=1), pixel_size=1.0)
    array, _ = map_micrograph(path)
    first = np.array(array)
    gc.collect()
    write_mrc(tmp_path / "new.mrc", structured_image((64, 96), seed=2), pixel_size=1.0).replace(path)
    read_ahead(path, array)  # (the readers' call: the new file hinted, the old map read)
    assert np.array_equal(array, first)
    assert not array.flags.writeable
    assert not np.array_equal(map_micrograph(path)[0], first)


def test_a_micrograph_deleted_after_its_opening_is_still_read_from_its_map(tmp_path):
    # (a reader hints the kernel by path; the path may be gone by then, the map is not)
    path = write_mrc(tmp_path / "m.mrc", structured_image((64, 96), seed=3), pixel_size=1.0)
    array, _ = map_micrograph(path)
    expected = np.array(array)
    path.unlink()
    read_ahead(path, array)
    assert np.array_equal(array, expected)


def test_unset_header_pixel_size_is_none(tmp_path):
    path = write_mrc(tmp_path / "m.mrc", structured_image((64, 64)), pixel_size=None)
    assert read_header(path).pixel_size is None


def _truncated(tmp_path):
    path = write_mrc(tmp_path / "full.mrc", structured_image((256, 256)))
    cut = tmp_path / "truncated.mrc"
    cut.write_bytes(path.read_bytes()[:50_000])
    return cut


def _absurd(tmp_path):
    path = write_mrc(tmp_path / "absurd.mrc", structured_image((64, 64)))
    with mrcfile.open(path, mode="r+", permissive=True) as mrc:
        mrc.header.nx = 2_000_000_000
        mrc.header.ny = 2_000_000_000
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.mrc"
    path.touch()
    return path


def _stack(tmp_path):
    return write_mrc(tmp_path / "stack3.mrc", np.zeros((3, 64, 64), np.float32))


def _complex_mode(tmp_path):
    return write_mrc(tmp_path / "complex.mrc", np.zeros((64, 64), np.complex64))


def _not_mrc(tmp_path):
    path = tmp_path / "text.mrc"
    path.write_text("hello " * 400)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.mrc", "file not found"),
        (_empty, "empty file"),
        (_truncated, "truncated or corrupt"),
        (_absurd, "truncated or corrupt: header claims 2000000000×2000000000"),
        (_stack, "is a movie (3 frames), not a 2-D micrograph: motion-correct first"),
        (_complex_mode, "MRC mode 4 is not supported"),
        (_not_mrc, "not an MRC file"),
        (lambda tmp: write_mrc(tmp / "tiny.mrc", np.zeros((8, 8), np.float32)), "too small"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(MicrographError) as info:
        read_header(path)
    text = str(info.value)
    assert text.startswith(str(path) + ": ")
    assert message in text
    assert "\n" not in text
