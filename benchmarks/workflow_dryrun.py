"""Time ``snakemake -n`` on a dataset of 20,000 micrographs.

Writes 20,000 tiny MRC files and a RELION star file listing them, runs the workflow's
intake (a checkpoint: the DAG of per-chunk jobs exists only after it), then times a dry
run of the whole workflow: the DAG with every micrograph as an input.

Usage: python benchmarks/workflow_dryrun.py [--n 20000] [--chunks 200] [--workdir DIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workflow_bench import environment, parse_args, snakemake, write_config  # noqa: E402


def main() -> None:
    args = parse_args(__doc__, n=20000, chunks=200)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        (work / "Movies").mkdir()
        template = work / "template.mrc"
        with mrcfile.new(template) as mrc:
            mrc.set_data(np.zeros((32, 32), np.float32))
            mrc.voxel_size = 0.83
        data = template.read_bytes()
        names = [f"Movies/mic_{i:06d}.mrc" for i in range(args.n)]
        for name in names:
            (work / name).write_bytes(data)
        optics = pd.DataFrame(
            {"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1], "rlnMicrographPixelSize": [0.83]}
        )
        starfile.write(
            {"optics": optics, "micrographs": pd.DataFrame({"rlnMicrographName": names, "rlnOpticsGroup": 1})},
            work / "micrographs.star",
        )
        write_config(work, "out", "big", "micrographs.star", args.chunks)
        env = environment()
        command = snakemake(work, cores=1)
        start = time.perf_counter()
        subprocess.run([*command, "--until", "intake"], check=True, env=env, capture_output=True)
        intake = time.perf_counter() - start
        start = time.perf_counter()
        result = subprocess.run([*command[:-1], "-n"], env=env, capture_output=True, text=True)
        dry = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(result.stdout[-2000:] + result.stderr[-2000:])
        text = result.stdout + result.stderr
        counts = {
            line.split()[0]: int(line.split()[1])
            for line in text.splitlines()  # the "Job stats" table
            if len(line.split()) == 2 and line.split()[0] in ("preprocess", "infer")
        }
        jobs = sum(counts.values())
        print(
            f"{args.n} micrographs, {args.chunks} chunks: intake {intake:.1f} s; "
            f"snakemake -n {dry:.1f} s ({jobs} preprocess+infer jobs in the DAG)"
        )


if __name__ == "__main__":
    main()
