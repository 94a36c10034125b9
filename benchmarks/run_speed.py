"""Time inference and ``miffi run`` end to end on K3-size micrographs.

A random-weight ``convnext_small`` (two channels, 11 outputs: the published models'
architecture; weights do not change the cost) saved as TorchScript, like the published
``miffi_v1.pt``. Prints, in one run: inference alone on cached tensors (fp32 and bf16)
and the whole pipeline (intake → preprocess → infer → combine → export) into a fresh
cache, per K3 micrograph; on the GPU too when one is visible.

Usage: python benchmarks/run_speed.py [--n 6] [--arch convnext_small]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from preprocess_speed import make_micrographs  # noqa: E402

from miffi.classify.inference import predict  # noqa: E402
from miffi.classify.models import load_classifier  # noqa: E402
from miffi.device import available_cores, retain_freed_memory  # noqa: E402
from miffi.pipeline import RunOptions, run_pipeline  # noqa: E402
from miffi.preprocess.cache import TensorCache  # noqa: E402


def save_model(path: Path, arch: str) -> None:
    module = timm.create_model(arch, pretrained=False, in_chans=2, num_classes=11).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(path))


def bench(paths: list[Path], model: Path, work: Path, device: torch.device, label: str) -> None:
    n = len(paths)
    options = RunOptions(model=model, device=device, progress=False, cache_dir=work / f"cache_{label}")
    run_pipeline(
        paths[:1],
        work / f"warmup_{label}",
        RunOptions(model=model, device=device, progress=False, cache_dir=work / f"warm_{label}"),
    )
    start = time.perf_counter()
    run_pipeline(paths, work / f"out_{label}", options)
    end_to_end = (time.perf_counter() - start) / n
    classifier = load_classifier(model, device=device)
    cache = TensorCache(options.cache_dir, classifier.config)
    names = [p.stem for p in paths]
    for bf16 in (False, True):
        predict(classifier, cache, names[:1], device, bf16=bf16, progress=False)  # warm-up
        start = time.perf_counter()
        predict(
            classifier,
            cache,
            names,
            device,
            batch_size=32 if device.type == "cuda" else None,
            bf16=bf16,
            progress=False,
        )
        per = (time.perf_counter() - start) / n
        print(
            f"{label}: inference on cached tensors ({'bf16' if bf16 else 'fp32'}): {per:.3f} s per K3 "
            f"micrograph ({1 / per:.1f}/s, 2 squares each)"
        )
    print(
        f"{label}: miffi run end to end (fp32, fresh cache): {end_to_end:.3f} s per K3 micrograph "
        f"({1 / end_to_end:.2f}/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--arch", default="convnext_small")
    args = parser.parse_args()
    retain_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = make_micrographs(work / "mics", args.n)
        save_model(work / "model.pt", args.arch)
        print(f"{args.n} K3 micrographs, {args.arch}, CPU cores {available_cores()}, torch {torch.__version__}")
        bench(paths, work / "model.pt", work, torch.device("cpu"), "CPU")
        if torch.cuda.is_available():
            bench(paths, work / "model.pt", work, torch.device("cuda"), f"GPU {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
