"""Reading micrographs from MRC files, with checks that name the file and the problem.

Supported: modes 0 (int8), 1 (int16), 2 (float32), 6 (uint16) and 12 (float16), with
or without an extended header (FEI/EPU), as a 2D image or a single-section stack.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from miffi.errors import MicrographError

SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
HEADER_BYTES = 1024
#: Smallest side accepted; anything smaller is not a micrograph.
MIN_SIDE = 32


#: Largest image accepted (megapixels); EER super-resolution frames are 67 MP, atlases more.
MAX_PIXELS = 128_000_000
#: What to do with a movie; miffi classifies motion-corrected 2-D micrographs only.
MOTION_CORRECT = "motion-correct first (e.g. RELION MotionCorr, cryoSPARC Patch Motion) and give the micrographs"
#: Movie formats, refused by name whatever their content.
MOVIE_SUFFIXES = {".tif", ".tiff", ".eer"}
#: Leading bytes of files that are sometimes named .mrc, and what they are.
OTHER_FORMATS = {
    b"\x1f\x8b": "a gzip-compressed file, not an MRC file (decompress it first, e.g. gunzip)",
    b"BZh": "a bzip2-compressed file, not an MRC file (decompress it first, e.g. bunzip2)",
    b"\x28\xb5\x2f\xfd": "a zstd-compressed file, not an MRC file (decompress it first, e.g. unzstd)",
    b"PK\x03\x04": "a ZIP archive, not an MRC file",
    b"II*\x00": f"a TIFF file (a TIFF/EER movie), not an MRC micrograph: {MOTION_CORRECT}",
    b"MM\x00*": f"a TIFF file (a TIFF/EER movie), not an MRC micrograph: {MOTION_CORRECT}",
    b"II+\x00": f"a BigTIFF file (a TIFF/EER movie), not an MRC micrograph: {MOTION_CORRECT}",
    b"MM\x00+": f"a BigTIFF file (a TIFF/EER movie), not an MRC micrograph: {MOTION_CORRECT}",
    b"\x89PNG": "a PNG image, not an MRC file",
    b"\xff\xd8\xff": "a JPEG image, not an MRC file",
    b"\x93NUMPY": "a NumPy .npy array, not an MRC file",
    b"\x89HDF": "an HDF5 file, not an MRC file",
}


def _other_format(path: Path) -> str | None:
    """What a file is when its first bytes say it is not an MRC file, else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return next((what for magic, what in OTHER_FORMATS.items() if head.startswith(magic)), None)


#: The pixel size (Å) of a header whose cell was left at its default (cell = grid size, as
#: IMOD and older MotionCor2 runs without ``-PixSize`` write it): 1.0 may mean "not set".
UNSET_PIXEL_SIZE = 1.0


@dataclass(frozen=True)
class MrcHeader:
    """What the header of a micrograph file says, validated against the file size."""

    path: str
    height: int
    width: int
    mode: int
    pixel_size: float | None
    #: The header's minimum and maximum density (as the writer recorded them; equal when unset).
    minimum: float = 0.0
    maximum: float = 0.0


def read_header(path: str | Path) -> MrcHeader:
    """Read and validate the header of ``path``.

    Raises
    ------
    MicrographError
        For a missing or empty file, an unsupported mode, a movie (more than one
        section, a ``.tif``/``.tiff``/``.eer`` name or TIFF content), or a header whose
        dimensions the file is too short to hold.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MicrographError(path, "file not found") from None
    except OSError as exc:
        raise MicrographError(path, f"cannot be read ({exc.strerror})") from None
    if path.is_dir():
        raise MicrographError(path, "is a directory, not an MRC file")
    if path.suffix.lower() in MOVIE_SUFFIXES:
        raise MicrographError(path, f"is a {path.suffix.lower()} movie, not an MRC micrograph: {MOTION_CORRECT}")
    if size == 0:
        raise MicrographError(path, "empty file (0 bytes)")
    other = _other_format(path)  # (mrcfile itself would open compressed files: we read them as they are)
    if other:
        raise MicrographError(path, other)
    if size < HEADER_BYTES:
        raise MicrographError(path, f"too short for an MRC header ({size} bytes < {HEADER_BYTES})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                # a plain structured array: a field of mrcfile's record array costs ~20 µs,
                # most of a header's reading time (intake and export read every header)
                header = mrc.header.view(np.ndarray)
            with np.errstate(divide="ignore", invalid="ignore"):  # (mrcfile's voxel_size.x)
                voxel = float(header["cella"]["x"] / header["mx"])
    except (ValueError, OSError) as exc:
        raise MicrographError(path, f"not a readable MRC file ({exc})") from None

    mode = int(header["mode"])
    nx, ny, nz = int(header["nx"]), int(header["ny"]), int(header["nz"])
    if bytes(header["map"]) != b"MAP " and (mode not in SUPPORTED_MODES or min(nx, ny, nz) < 1):
        raise MicrographError(path, "not an MRC file (no 'MAP ' ID and an invalid header)")
    if mode not in SUPPORTED_MODES:
        names = ", ".join(f"{m} ({n})" for m, n in SUPPORTED_MODES.items())
        raise MicrographError(path, f"MRC mode {mode} is not supported (supported: {names})")
    if min(nx, ny, nz) < 1:
        raise MicrographError(path, f"header has invalid dimensions {nx}×{ny}×{nz}")
    if nz > 1:
        raise MicrographError(path, f"is a movie ({nz} frames), not a 2-D micrograph: {MOTION_CORRECT}")
    itemsize = np.dtype(SUPPORTED_MODES[mode]).itemsize
    needed = HEADER_BYTES + max(int(header["nsymbt"]), 0) + nx * ny * nz * itemsize
    if size < needed:
        raise MicrographError(
            path,
            f"truncated or corrupt: header claims {nx}×{ny}×{nz} {SUPPORTED_MODES[mode]} values "
            f"({needed} bytes with headers) but the file has {size} bytes",
        )
    if nx * ny > MAX_PIXELS:
        raise MicrographError(
            path,
            f"image of {nx}×{ny} pixels ({nx * ny / 1e6:.0f} megapixels) is larger than "
            f"miffi takes ({MAX_PIXELS / 1e6:.0f} megapixels): a montage or atlas, "
            "not a single exposure?",
        )
    if min(nx, ny) < MIN_SIDE:
        raise MicrographError(path, f"image of {nx}×{ny} pixels is too small to be a micrograph")
    pixel_size = voxel if math.isfinite(voxel) and voxel > 0 else None
    extremes = [float(header["dmin"]), float(header["dmax"])]
    minimum, maximum = extremes if all(map(math.isfinite, extremes)) else (0.0, 0.0)
    return MrcHeader(str(path), height=ny, width=nx, mode=mode, pixel_size=pixel_size, minimum=minimum, maximum=maximum)


def map_micrograph(path: str | Path) -> tuple[np.ndarray, MrcHeader]:
    """Memory-map a validated micrograph: its 2D data (rows = y, read-only, read from the
    file as it is used) and header.

    The map stays valid while the array is referenced, after the file is closed, so a
    micrograph can be opened ahead of its use without holding a copy of it in memory.
    """
    header = read_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
                data = mrc.data  # (a numpy memmap: it owns its mapping)
    except (ValueError, OSError) as exc:
        raise MicrographError(path, f"not a readable MRC file ({exc})") from None
    if data is None:
        raise MicrographError(path, "data block could not be read")
    return data.reshape(header.height, header.width), header


def read_ahead(path: str | Path, data: np.ndarray) -> None:
    """Read a memory-mapped micrograph ``data`` (of ``path``) into memory on this thread,
    so that its later use finds it there, mapped.

    The kernel is asked to read the whole file first (Linux), then one value of every
    page is read: some network file systems ignore the request. The request is only a
    hint: where the path no longer opens (the file deleted or moved since it was
    mapped), the map, which keeps the file it opened, is read all the same.
    """
    if hasattr(os, "posix_fadvise"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)
    flat = data.reshape(-1)
    np.array(flat[:: max(1, 4096 // flat.itemsize)])


#: Sampled content fingerprint: this many blocks of this many bytes, spread over the file.
SAMPLE_BLOCKS, SAMPLE_BYTES = 16, 4096


def file_fingerprint(path: str | Path, full: bool = False) -> dict[str, int | str]:
    """What decides whether a cached tensor still belongs to ``path``.

    The resolved path, size and modification time, and a BLAKE2 digest of the file's
    content: of the header and ``SAMPLE_BLOCKS`` blocks spread evenly over the file
    (about 68 kB read per file, whatever its size), or of every byte when ``full``. Two
    files of equal name, size and mtime (``rsync -a`` copies, two datasets) therefore
    differ unless their sampled pixels are identical too.
    """
    path = Path(path)
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if full:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        else:
            digest.update(handle.read(HEADER_BYTES + SAMPLE_BYTES))
            span = max(stat.st_size - SAMPLE_BYTES, 0)
            for i in range(SAMPLE_BLOCKS):
                handle.seek(span * i // (SAMPLE_BLOCKS - 1))
                digest.update(handle.read(SAMPLE_BYTES))
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "content": ("full:" if full else "sampled:") + digest.hexdigest(),
    }
