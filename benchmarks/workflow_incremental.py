"""What a re-run costs when new micrographs arrive: full run, no-op re-run, +5 %.

Simulates ``--n`` labelled micrographs (plus 5 % more, at least one), lists the first
``--n`` in a text file and runs the workflow on them (``--chunks`` chunks, weight-free,
with labels, so evaluation and the reports run too); then runs it again unchanged, and
again after appending the new micrographs to the list. Prints the three wall times side
by side, the ratios to the full run, and the jobs each run executed with their seconds
(from Snakemake's log, whose clock has 1 s steps), measured in one run.

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
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_bench import environment, snakemake  # noqa: E402

from miffi.simulate.config import parse_detector  # noqa: E402
from miffi.simulate.dataset import simulate_dataset  # noqa: E402

#: A job's start and end in Snakemake's log: a timestamp line, then the rule or checkpoint and (a few
#: lines on) its jobid; a timestamp line, then "Finished jobid: N".
STARTED = re.compile(r"^\[([^\]\n]+)\]\n(?:local)?(?:rule|checkpoint) (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", re.M)
FINISHED = re.compile(r"^\[([^\]\n]+)\]\nFinished jobid: (\d+)", re.M)


@dataclass
class Run:
    """One workflow run: its wall time, its jobs per rule, their seconds per rule, and the
    seconds from the start to its first job (Snakemake's own start-up)."""

    seconds: float
    jobs: Counter[str]
    job_seconds: dict[str, float]
    before_first_job: float


def _clock(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%a %b %d %H:%M:%S %Y"))


def timed_run(work: Path) -> Run:
    """One workflow run in ``work``, timed, with its jobs from Snakemake's log."""
    command = [*snakemake(work, cores=os.cpu_count() or 1)]
    command.remove("--quiet")
    started_at = time.time()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=work, env=environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stdout[-3000:] + result.stderr[-3000:])
    starts = {jobid: (rule, _clock(stamp)) for stamp, rule, jobid in STARTED.findall(result.stderr)}
    job_seconds: dict[str, float] = {}
    for stamp, jobid in FINISHED.findall(result.stderr):
        if jobid in starts:
            rule, began = starts[jobid]
            job_seconds[rule] = job_seconds.get(rule, 0.0) + _clock(stamp) - began
    first = min((began for _, began in starts.values()), default=started_at + seconds)
    jobs = Counter(rule for rule, _ in starts.values())
    return Run(seconds, jobs, job_seconds, max(0.0, first - started_at))


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
        full = timed_run(work)
        noop = timed_run(work)
        listing.write_text("".join(f"{p}\n" for p in micrographs))
        more = timed_run(work)
        print(
            f"{args.n} simulated {args.detector} micrographs, {args.chunks} chunks, weight-free, labels; "
            f"{os.cpu_count()} cores"
        )
        print(f"{'':24s}{'full run':>12s}{'no-op':>12s}{f'+{extra} ({extra / args.n:.0%})':>12s}")
        print(f"{'wall time (s)':24s}{full.seconds:12.1f}{noop.seconds:12.1f}{more.seconds:12.1f}")
        print(f"{'of the full run':24s}{1:12.0%}{noop.seconds / full.seconds:12.1%}{more.seconds / full.seconds:12.1%}")
        print(
            f"{'before the first job (s)':24s}{full.before_first_job:12.0f}{noop.before_first_job:12.0f}"
            f"{more.before_first_job:12.0f}"
        )
        for name, run in (("full run", full), ("no-op", noop), ("+new", more)):
            jobs = ", ".join(
                f"{rule} {count} ({run.job_seconds.get(rule, 0):.0f} s)" for rule, count in sorted(run.jobs.items())
            )
            print(f"jobs, {name}: {jobs or 'none'}")


if __name__ == "__main__":
    main()
