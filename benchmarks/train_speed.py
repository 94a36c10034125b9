"""Training throughput: one `miffi train` run on a simulated set, images/s per epoch.

Meant for a GPU machine (convnext_small at 384², bf16, data loaded by worker
processes), e.g.:

    python benchmarks/train_speed.py --n 2000 --detector 2048x2048@1.0 --arch convnext_small --epochs 2 --workers 12

Prints the per-epoch log (images/s, losses, validation accuracy).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/train_speed"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--detector", default="2048x2048@1.0")
    parser.add_argument("--arch", default="convnext_small")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    miffi = [sys.executable, "-m", "miffi"]
    started = time.perf_counter()
    subprocess.run(
        [
            *miffi,
            "simulate",
            "--out",
            str(args.out / "data"),
            "--n",
            str(args.n),
            "--detector",
            args.detector,
            "--seed",
            "7",
            "--no-progress",
            "-q",
        ],
        check=True,
    )
    print(f"simulated {args.n} micrographs in {time.perf_counter() - started:.0f} s", flush=True)
    run = args.out / f"{args.arch}_{args.size}"
    subprocess.run(
        [
            *miffi,
            "train",
            str(args.out / "data" / "micrographs.star"),
            "--labels",
            str(args.out / "data" / "labels.csv"),
            "--out",
            str(run),
            "--resume",
            "--preset",
            "scratch-1ch",
            "--channels",
            "2",
            "--arch",
            args.arch,
            "--size",
            str(args.size),
            "--epochs",
            str(args.epochs),
            "--warmup-epochs",
            "0.2",
            "--batch-size",
            str(args.batch_size),
            "--workers",
            str(args.workers),
            "--device",
            args.device,
            "--no-progress",
        ],
        check=True,
    )
    log = pd.read_csv(run / "log.tsv", sep="\t")
    print(log[["epoch", "images_per_s", "seconds", "train_loss", "val_loss", "val_accuracy"]].to_string(index=False))


if __name__ == "__main__":
    main()
