"""What a re-run costs when new micrographs arrive: full run, no-op re-run, +5 %.

Simulates ``--n`` labelled micrographs (plus 5 % more, at least one), lists the first
``--n`` in a text file and runs the workflow on them (``--chunks`` chunks, weight-free,
with labels, so evaluation and the reports run too); then runs it again unchanged, and
again after appending the new micrographs to the list. Prints the three wall times side
by side, the ratios to the full run, and the jobs each re-run executed (from Snakemake's
log), measured in one run.

Usage: python benchmarks/workflow_incremental.py [--n 40] [--chunks 4] [--detector 1024x1024@1.0]
       [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_bench import environment, snakemake  # noqa: E402

from miffi.simulate.config import parse_detector  # noqa: E402
from miffi.simulate.dataset import simulate_dataset  # noqa: E402


def timed_run(work: Path) -> tuple[float, Counter[str]]:
    """Seconds of one workflow run in ``work`` and how many jobs of each rule it ran."""
    command = [*snakemake(work, cores=os.cpu_count() or 1)]
    command.remove("--quiet")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=work, env=environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stdout[-3000:] + result.stderr[-3000:])
    return seconds, Counter(re.findall(r"^(?:local)?rule (\w+):", result.stderr, flags=re.M))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--detector", default="1024x1024@1.0")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    extra = max(1, round(0.05 * args.n))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        simulate_dataset(work / "sim", args.n + extra, parse_detector(args.detector), seed=7, progress=False)
        micrographs = sorted((work / "sim" / "micrographs").glob("*.mrc"))
        listing = work / "mics.txt"
        listing.write_text("".join(f"{p}\n" for p in micrographs[: args.n]))
        dataset = {
            "input": [str(listing)],
            "chunks": args.chunks,
            "device": "cpu",
            "labels": str(work / "sim" / "labels.csv"),
        }
        (work / "config.yaml").write_text(yaml.safe_dump({"outdir": "out", "datasets": {"ds": dataset}}))
        full, full_jobs = timed_run(work)
        noop, noop_jobs = timed_run(work)
        listing.write_text("".join(f"{p}\n" for p in micrographs))
        more, more_jobs = timed_run(work)
        print(
            f"{args.n} simulated {args.detector} micrographs, {args.chunks} chunks, weight-free, labels; "
            f"{os.cpu_count()} cores"
        )
        print(f"{'':24s}{'full run':>12s}{'no-op':>12s}{f'+{extra} ({extra / args.n:.0%})':>12s}")
        print(f"{'wall time (s)':24s}{full:12.1f}{noop:12.1f}{more:12.1f}")
        print(f"{'of the full run':24s}{1:12.0%}{noop / full:12.1%}{more / full:12.1%}")
        for name, jobs in (("full run", full_jobs), ("no-op", noop_jobs), ("+new", more_jobs)):
            print(f"jobs, {name}: " + (", ".join(f"{rule} {count}" for rule, count in sorted(jobs.items())) or "none"))


if __name__ == "__main__":
    main()
