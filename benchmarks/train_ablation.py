"""The paper's channel ablation on simulated data: one- vs two-channel ConvNeXt trained
from scratch on the CPU, evaluated on a held-out simulated set, for several seeds; and
the learning curve (accuracy vs training-set size) of the two-channel model.

Prints a Markdown table (and writes it, with the figures, under --out). Example:

    python benchmarks/train_ablation.py --out results/ablation --train 1500 --test 300 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

MIFFI = [sys.executable, "-m", "miffi"]


def miffi(*args: str) -> None:
    subprocess.run([*MIFFI, *args, "-q"], check=True)


def train(command: str, data: Path, out: Path, channels: int, seed: int, *options: str) -> None:
    """``miffi train`` or ``miffi learning-curve`` on the simulated set in ``data``."""
    miffi(
        command,
        str(data / "micrographs.star"),
        "--labels",
        str(data / "labels.csv"),
        "--out",
        str(out),
        "--channels",
        str(channels),
        "--seed",
        str(seed),
        *options,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/ablation"))
    parser.add_argument("--train", type=int, default=1500, help="simulated training micrographs")
    parser.add_argument("--test", type=int, default=300, help="simulated held-out micrographs")
    parser.add_argument("--detector", default="512x512@1.2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--arch", default="convnext_atto")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--curve",
        type=int,
        nargs="*",
        default=[100, 200, 400, 800],
        help="learning-curve sizes (two channels, first seed); none to skip",
    )
    args = parser.parse_args()
    out = args.out
    for name, n, seed in (("train", args.train, 101), ("test", args.test, 202)):
        miffi(
            "simulate",
            "--out",
            str(out / name),
            "--n",
            str(n),
            "--detector",
            args.detector,
            "--seed",
            str(seed),
            "--no-progress",
        )
    options = [
        "--preset",
        "scratch-1ch",
        "--arch",
        args.arch,
        "--size",
        str(args.size),
        "--epochs",
        str(args.epochs),
        "--warmup-epochs",
        "0.5",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--val-fraction",
        "0.1",
        "--no-progress",
    ]
    labels = pd.read_csv(out / "test" / "labels.csv")
    good = (
        labels["film"].isin(["no_film", "minor_film"])
        & (labels["drift"] == "no_crack_drift")
        & (labels["crystallinity"] == "not_crystalline")
        & (labels["contamination"] == "minor_contamination")
    )
    rows = []
    for seed in args.seeds:
        for channels in (2, 1):
            run = out / f"ch{channels}_seed{seed}"
            started = time.perf_counter()
            train("train", out / "train", run / "model", channels, seed, "--resume", *options)
            minutes = (time.perf_counter() - started) / 60
            miffi(
                "run",
                "--input",
                str(out / "test" / "micrographs.star"),
                "--model",
                str(run / "model" / "best.safetensors"),
                "--outdir",
                str(run / "test"),
                "--no-progress",
            )
            miffi(
                "evaluate",
                "--results",
                str(run / "test" / "results.tsv"),
                "--labels",
                str(out / "test" / "labels.csv"),
                "--dataset",
                run.name,
                "--out",
                str(run / "evaluation"),
            )
            evaluation = json.loads((run / "evaluation" / "evaluation.json").read_text())
            cnn = next(v for k, v in evaluation["methods"].items() if k.startswith("model:"))
            history = pd.read_csv(run / "model" / "log.tsv", sep="\t")
            rows.append(
                {
                    "channels": channels,
                    "seed": seed,
                    "accuracy": cnn["metrics"]["accuracy"],
                    **{f"{g}": s["accuracy"] for g, s in cnn["groups"].items()},
                    "weight-free": evaluation["methods"]["weight-free"]["metrics"]["accuracy"],
                    "train minutes": minutes,
                    "images/s": history["images_per_s"].median(),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    majority = max(good.mean(), 1 - good.mean())
    text = (
        f"held-out set: {len(labels)} simulated micrographs ({args.detector}), majority class "
        f"{'good' if good.mean() > 0.5 else 'bad'} = {majority:.3f}; training set {args.train}; "
        f"{args.arch} at {args.size}², {args.epochs} epochs from scratch\n\n"
        + table.to_markdown(index=False, floatfmt=".3f")
        + "\n\nmean per channel count:\n\n"
        + table.groupby("channels").mean(numeric_only=True).drop(columns="seed").to_markdown(floatfmt=".3f")
        + "\n"
    )
    (out / "ablation.md").write_text(text)
    print(text)
    if args.curve:
        train(
            "learning-curve",
            out / "train",
            out / "curve",
            2,
            args.seeds[0],
            "--sizes",
            ",".join(map(str, args.curve)),
            *options,
        )
        print(pd.read_csv(out / "curve" / "curve.tsv", sep="\t").to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
