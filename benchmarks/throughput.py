"""Throughput of ``miffi run`` against the raw read speed of the same files, and Miffi 1.0.1.

Writes ``--n`` micrographs (float32 MRC: K3 5760×4092 at 0.83 Å, or Falcon 4 / EER-sized
4096×4096 at 0.73 Å), a random-weight ``convnext_small`` with the published models'
shape saved as TorchScript, then prints, in one run:

- the raw read speed of the files, cold (dropped from the page cache with
  ``posix_fadvise``, after ``fsync``) and warm;
- ``miffi run`` end to end into a fresh cache, cold and warm, as micrographs per second
  and as a fraction of the raw read speed measured just before;
- a per-stage breakdown (warm): preprocessing as it runs (its stages overlapped), the
  model on cached tensors (float32, and what ``--fast`` picks), combine and export; and
  each preprocessing stage alone (read, transforms with the copies to and from the
  device, metrics, cache write);
- with ``--against-miffi`` (needs the reference package in ``.venv/miffi-1.0.1``, made by
  ``scripts/setup-venv.sh``): wall time of Miffi 1.0.1 and of ``miffi run`` (float32 and
  ``--fast``) as fresh processes on the same files, in alternating rounds, and the ratios.

On a GPU (``--device cuda``) the same figures; the CPU rows name the CPU and whether it
computes bfloat16 natively.

Usage: python benchmarks/throughput.py [--n 8] [--detector k3|falcon4] [--device cpu]
       [--rounds 2] [--against-miffi] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_speed import save_model  # noqa: E402

from miffi.classify.inference import inference_bf16, predict  # noqa: E402
from miffi.classify.models import load_classifier  # noqa: E402
from miffi.device import available_cores, native_bf16, resolve_device, retain_freed_memory  # noqa: E402
from miffi.intake import read_micrographs  # noqa: E402
from miffi.pipeline import RunOptions, run_pipeline  # noqa: E402
from miffi.preprocess.batch import preprocess_table  # noqa: E402
from miffi.preprocess.cache import TensorCache  # noqa: E402
from miffi.preprocess.recipe import Transformed, load_squares, transform_batch  # noqa: E402

DETECTORS = {"k3": ((4092, 5760), 0.83), "falcon4": ((4096, 4096), 0.73)}
REFERENCE = Path(sys.prefix) / "miffi-1.0.1"


def make_micrographs(folder: Path, n: int, detector: str) -> list[Path]:
    """``n`` float32 micrographs of counts-like noise (the content does not change the cost)."""
    shape, pixel_size = DETECTORS[detector]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{detector}_{i:03d}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(rng.normal(6800.0, 9.0, size=shape).astype(np.float32))
            mrc.voxel_size = pixel_size
        paths.append(path)
    return paths


def drop_from_page_cache(paths: list[Path]) -> None:
    """Make the next read of ``paths`` come from the disk (flushed first: dirty pages stay)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_all(paths: list[Path]) -> float:
    """Seconds to read every byte of ``paths``."""
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 24):
                pass
    return time.perf_counter() - start


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def preprocessing_stages(paths: list[Path], cache: TensorCache, device: torch.device) -> dict[str, float]:
    """Seconds per micrograph of each preprocessing stage alone, one micrograph at a time:
    read (the file opened; for a GPU its squares read into pinned memory), transforms (on
    the CPU they read the squares from the file's memory map; to a GPU and back, with the
    copies), metrics, cache write."""
    totals = dict.fromkeys(("read", "transforms", "metrics", "write"), 0.0)
    for path in paths:
        start = time.perf_counter()
        loaded = load_squares(path, None, cache.config, pin=device.type == "cuda")
        read = time.perf_counter()
        (transformed,) = transform_batch([loaded], cache.config, device)
        assert isinstance(transformed, Transformed)
        transforms = time.perf_counter()
        result = transformed.finish()
        metrics = time.perf_counter()
        cache.store(path.stem, path, None, result.tensor, transformed.layout, result.square_metrics)
        write = time.perf_counter()
        for name, seconds in zip(totals, (read - start, transforms - read, metrics - transforms, write - metrics)):
            totals[name] += seconds / len(paths)
    return totals


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def against_miffi(paths: list[Path], model: Path, work: Path, rounds: int, device: str) -> None:
    """Miffi 1.0.1 and ``miffi run`` as fresh processes on the same files, alternating."""
    script = ROOT / "tests" / "support" / "miffi_reference_run.py"
    env = {**os.environ, "PYTHONPATH": str(REFERENCE)}
    commands = {
        "Miffi 1.0.1": ([sys.executable, script, "--probabilities-only", model, work / "ref.npy", *paths], env),
        "miffi run (fp32)": ([sys.executable, "-m", "miffi", "run", "--model", model, "--device", device], None),
        "miffi run --fast": (
            [sys.executable, "-m", "miffi", "run", "--model", model, "--device", device, "--fast"],
            None,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(rounds):
        for name, (command, environment) in commands.items():
            args = [str(c) for c in command]
            if name != "Miffi 1.0.1":
                out = work / f"run_{round_}_{len(times[name])}_{'fast' if 'fast' in name else 'fp32'}"
                args += ["--input", *map(str, paths), "--outdir", str(out), "--no-progress", "-q"]
            start = time.perf_counter()
            subprocess.run(args, check=True, env=environment, cwd=ROOT, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    reference = statistics.median(times["Miffi 1.0.1"])
    for name, values in times.items():
        wall = statistics.median(values)
        print(
            f"{name:22s} {wall:7.1f} s for {len(paths)} micrographs ({wall / len(paths):.2f} s each; rounds: "
            + ", ".join(f"{v:.1f}" for v in values)
            + f"); {reference / wall:.2f}x Miffi 1.0.1's speed"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--detector", choices=sorted(DETECTORS), default="k3")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--against-miffi", action="store_true")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    retain_freed_memory()
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"{args.n} {args.detector} micrographs on {where}; {available_cores()} cores; native bf16: {native_bf16()}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        model = work / "convnext_small.pt"
        save_model(model, "convnext_small")
        paths = make_micrographs(work / "mics", args.n, args.detector)
        size = sum(p.stat().st_size for p in paths) / 1e6
        run_pipeline(paths[:1], work / "warmup", RunOptions(model=model, device=device, progress=False))

        drop_from_page_cache(paths)
        cold_read = read_all(paths)
        warm_read = read_all(paths)
        drop_from_page_cache(paths)
        cold = timed(run_pipeline, paths, work / "cold", RunOptions(model=model, device=device, progress=False))
        warm = timed(run_pipeline, paths, work / "warm", RunOptions(model=model, device=device, progress=False))
        n = args.n
        print(
            f"raw read, cold / warm        {n / cold_read:8.1f} / {n / warm_read:8.1f} micrographs/s "
            f"({size / cold_read:.0f} / {size / warm_read:.0f} MB/s)"
        )
        print(f"miffi run end to end, cold   {n / cold:8.2f} micrographs/s = {cold_read / cold:.1%} of the cold read")
        print(f"miffi run end to end, warm   {n / warm:8.2f} micrographs/s = {warm_read / warm:.1%} of the warm read")

        table = read_micrographs(paths)
        classifier = load_classifier(model, device=device)
        cache = TensorCache(work / "stages", classifier.config)
        preprocess = timed(preprocess_table, table, cache, device, progress=False)
        names = list(table["micrograph"])
        model_fp32 = timed(predict, classifier, cache, names, device, progress=False)
        model_fast = timed(
            predict, classifier, cache, names, device, bf16=inference_bf16(device, False, True), progress=False
        )
        rest = warm - preprocess - model_fp32
        print(
            f"stages (warm), per micrograph: preprocess {preprocess / n:.3f} s, model fp32 {model_fp32 / n:.3f} s "
            f"(--fast {model_fast / n:.3f} s), combine + export + intake {max(rest, 0) / n:.3f} s"
        )
        alone = preprocessing_stages(paths, TensorCache(work / "alone", classifier.config), device)
        print(
            "preprocessing stages alone, one micrograph at a time, per micrograph: "
            + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in alone.items())
            + f" (sum {sum(alone.values()):.3f} s; overlapped in preprocess above)"
        )
        if args.against_miffi:
            if not (REFERENCE / "miffi").is_dir():
                print(f"Miffi 1.0.1 not found in {REFERENCE} (scripts/setup-venv.sh installs it): skipped")
            else:
                against_miffi(paths, model, work, args.rounds, args.device)


if __name__ == "__main__":
    main()
