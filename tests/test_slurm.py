"""The workflow on a real single-node SLURM cluster, through a Snakemake profile.

The cluster's GPU is a scheduling fake (gres on /dev/null), so the run uses
``device: auto`` (the jobs compute on the CPU); SLURM's own records must show that the
inference jobs asked for a GPU and the other jobs did not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import slurm_cluster

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(slurm_cluster.available() is not None,
                                reason=f"no test cluster: {slurm_cluster.available()}")


def slurm_jobs() -> list[dict[str, str]]:
    """Every job slurmctld still remembers, as ``scontrol show job`` fields."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))
        if fields:
            jobs.append(fields)
    return jobs


def test_workflow_on_slurm_requests_gpus_only_for_inference(tmp_path):
    config = {"outdir": "out", "datasets": {"ds": {"simulate": {"n": 4, "detector": "384x384@1.2", "seed": 3},
                                                    "chunks": 2, "device": "auto"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    profile = tmp_path / "profile"
    profile.mkdir()
    with slurm_cluster.cluster(tmp_path / "slurm") as partition:
        (profile / "config.yaml").write_text(yaml.safe_dump({
            "executor": "slurm", "jobs": 4, "latency-wait": 5, "slurm-status-command": "squeue",
            "slurm-no-account": True, "slurm-init-seconds-before-status-checks": 2,
            "default-resources": {"slurm_partition": partition, "mem_mb": 1000, "runtime": 30},
        }))
        before = {job["JobId"] for job in slurm_jobs()}
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        result = subprocess.run(
            ["timeout", "-k", "10", "600", str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
             "--directory", str(tmp_path), "--profile", str(profile)],
            capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        jobs = [job for job in slurm_jobs() if job["JobId"] not in before]

    results = pd.read_csv(tmp_path / "out" / "ds" / "results.tsv", sep="\t")
    assert len(results) == 4 and (results["status"] == "cached").all()  # combine reads the cache
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in jobs:
        rule = re.match(r"rule_([a-z]+)", job.get("Comment", ""))  # the plugin's comment: rule_<name>_...
        assert rule, job
        by_rule.setdefault(rule[1], []).append(job)
    assert len(by_rule["infer"]) == 2 and len(by_rule["preprocess"]) == 2 and len(by_rule["simulate"]) == 1
    for rule, rule_jobs in by_rule.items():
        for job in rule_jobs:
            assert job["JobState"] == "COMPLETED", job
            wants_gpu = "gpu" in job.get("TresPerJob", "") + job.get("TresPerNode", "") + job.get("TRES", "")
            assert wants_gpu == (rule == "infer"), (rule, job)
