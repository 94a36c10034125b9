"""Throughput of the workflow run locally against ``miffi run``, on the same micrographs.

K3-size micrographs (as in preprocess_speed.py) listed in a text file; both start from
an empty cache and use the weight-free classifier. ``--rounds`` alternate the two (each
round into fresh output folders), so a slow spell of a shared machine falls on both.
Prints every wall time and the workflow's throughput as a fraction of ``miffi run``'s
(from the summed times), measured in one run.

Usage: python benchmarks/workflow_throughput.py [--n 24] [--chunks 1] [--rounds 2] [--workdir DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from preprocess_speed import make_micrographs  # noqa: E402
from workflow_bench import BIN, environment, parse_args, snakemake, write_config  # noqa: E402


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(result.stdout[-2000:] + result.stderr[-2000:])
    return time.perf_counter() - start


def main() -> None:
    args = parse_args(__doc__, n=24, chunks=1, rounds=2)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        paths = make_micrographs(work / "mics", args.n)
        (work / "mics.txt").write_text("".join(f"{p}\n" for p in paths))
        runs, workflows = [], []
        for i in range(args.rounds):
            command = [str(BIN / "miffi"), "run", "--input", "mics.txt", "--outdir", f"run{i}", "--device", "cpu"]
            runs.append(timed([*command, "--no-progress", "-q"], work))
            write_config(work, f"wf{i}", "k3", "mics.txt", args.chunks)
            workflows.append(timed(snakemake(work, cores=os.cpu_count()), work))
        run, workflow = sum(runs), sum(workflows)
        print(
            f"{args.n} K3 micrographs, weight-free, CPU cores {os.cpu_count()}, {args.rounds} alternating rounds: "
            f"miffi run {', '.join(f'{t:.1f}' for t in runs)} s ({run / args.n / args.rounds:.3f} s each); "
            f"workflow ({args.chunks} chunk(s)) {', '.join(f'{t:.1f}' for t in workflows)} s "
            f"({workflow / args.n / args.rounds:.3f} s each); workflow throughput = {run / workflow:.0%} of miffi run's"
        )


if __name__ == "__main__":
    main()
