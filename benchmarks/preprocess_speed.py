"""Time preprocessing of K3-size micrographs (5760×4092 float32 at 0.83 Å, two squares each).

Prints the median wall time per micrograph of ``miffi`` preprocessing into a fresh
cache (read, squares, transforms, resize, normalise, atomic write), on the CPU and,
when one is visible, on the GPU; and, in the same run for comparison, the literal
transcription of the recipe used by the tests (numpy FFTs). Files are freshly written,
so reads come from the page cache, as on a machine that just wrote its motion-corrected
micrographs.

Usage: python benchmarks/preprocess_speed.py [--n 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miffi.device import available_cores, retain_freed_memory  # noqa: E402
from miffi.intake import read_micrographs  # noqa: E402
from miffi.preprocess.batch import preprocess_table  # noqa: E402
from miffi.preprocess.cache import TensorCache  # noqa: E402
from miffi.preprocess.config import PreprocessConfig  # noqa: E402
from tests.support.spec_reference import reference_variants  # noqa: E402

K3 = (4092, 5760)


def make_micrographs(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        data = rng.normal(6800.0, 9.0, size=K3).astype(np.float32)  # counts-like offset
        path = folder / f"k3_{i:03d}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = 0.83
        paths.append(path)
    return paths


def time_miffi(paths: list[Path], cache_dir: Path, device: torch.device) -> tuple[float, float]:
    table = read_micrographs(paths)
    cache = TensorCache(cache_dir, PreprocessConfig())
    # warm-up on the first file (FFT plans, thread pools), not counted
    preprocess_table(table.iloc[:1], TensorCache(cache_dir / "warmup", PreprocessConfig()), device, progress=False)
    start = time.perf_counter()
    status = preprocess_table(table, cache, device, progress=False)
    total = time.perf_counter() - start
    assert (status["status"] == "computed").all(), status
    return float(status["seconds"].median()), total / len(paths)


def time_reference(paths: list[Path], repeats: int) -> float:
    times = []
    for path in paths[:repeats]:
        start = time.perf_counter()
        with mrcfile.open(path) as mrc:
            reference_variants(np.asarray(mrc.data, dtype=np.float32), float(mrc.voxel_size.x))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="micrographs to time (default 8)")
    parser.add_argument("--workdir", type=Path, help="where to write the test micrographs (default: a temp dir)")
    parser.add_argument("--reference", type=int, default=2, help="micrographs for the literal reference (0: skip)")
    args = parser.parse_args()
    retain_freed_memory()  # as the miffi command line does

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        paths = make_micrographs(tmp / "mics", args.n)
        print(
            f"K3 micrographs {K3[1]}×{K3[0]} float32 @ 0.83 Å: {args.n}; CPU cores: {available_cores()}; "
            f"torch {torch.__version__}"
        )
        median, mean = time_miffi(paths, tmp / "cache_cpu", torch.device("cpu"))
        print(
            f"miffi preprocess, CPU: median {median:.3f} s/micrograph, mean wall {mean:.3f} s "
            f"({1 / mean:.2f} micrographs/s)"
        )
        if torch.cuda.is_available():
            median_gpu, mean_gpu = time_miffi(paths, tmp / "cache_gpu", torch.device("cuda"))
            print(
                f"miffi preprocess, GPU ({torch.cuda.get_device_name()}): median {median_gpu:.3f} "
                f"s/micrograph, mean wall {mean_gpu:.3f} s ({1 / mean_gpu:.1f} micrographs/s)"
            )
        if args.reference:
            ref = time_reference(paths, args.reference)
            print(
                f"literal recipe transcription (numpy float64 FFTs), CPU: median {ref:.3f} s/micrograph; "
                f"miffi CPU is {ref / median:.1f}x faster"
            )


if __name__ == "__main__":
    main()
