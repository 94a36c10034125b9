"""The workflow on a real single-node SLURM cluster, through the shipped workflow profile.

The run uses ``profiles/slurm`` unchanged, as ``--workflow-profile``, beneath a global
profile standing for a site's (status via squeue: the test cluster keeps no accounting; no
account). The cluster's GPU is a scheduling fake (gres on /dev/null), so the GPU dataset
uses ``device: auto`` (its jobs compute on the CPU). SLURM's own records (``scontrol show
job``) must show that the inference job of a ``device: cpu`` dataset asked for no GPU and
went to the CPU partition, that the other dataset's asked for one GPU and went to the GPU
partition, and that no other job asked for a GPU.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support import slurm_cluster
from tests.support.runners import ROOT, needs_snakemake
from tests.support.runners import snakemake as run_snakemake

WORKFLOW_PROFILE = ROOT / "profiles" / "slurm"

needs_cluster = pytest.mark.skipif(
    slurm_cluster.available() is not None, reason=f"no test cluster: {slurm_cluster.available()}"
)


def slurm_jobs() -> list[dict[str, str]]:
    """Every job slurmctld still remembers, as ``scontrol show job`` fields."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))
        if fields:
            jobs.append(fields)
    return jobs


def gpu_request(job: dict[str, str]) -> str:
    """What a job asked of GPUs, as scontrol shows it ("" for nothing)."""
    return ",".join(
        value
        for key in ("TresPerJob", "TresPerNode", "TresPerTask", "TresPerSocket", "TRES")
        for value in job.get(key, "").split(",")
        if "gpu" in value
    )


def two_datasets(micrographs: str | None = None) -> dict:
    """One dataset on the CPU, one on a GPU where there is one (auto)."""
    source = {"input": [micrographs]} if micrographs else {"simulate": {"n": 2}}
    return {
        "outdir": "out",
        "datasets": {
            "oncpu": {**source, "chunks": 1, "device": "cpu"},
            "ongpu": {**source, "chunks": 1, "device": "auto"},
        },
    }


def site_profile(folder: Path, settings: dict) -> Path:
    """A global profile as a site keeps it."""
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    return folder


def snakemake(workdir: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """A workflow run whose cores and jobs the profiles set."""
    return run_snakemake(workdir, *args, cores=None, timeout=timeout)


@needs_snakemake
def test_shipped_profile_composes_with_a_site_profile(tmp_path):
    """Dry run: the site's account (its global profile's default-resources) survives the
    workflow profile, and only the GPU dataset's inference job asks for a GPU."""
    shipped = yaml.safe_load((WORKFLOW_PROFILE / "config.yaml").read_text())
    assert "slurm-status-command" not in shipped and "default-resources" not in shipped
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(two_datasets()))
    site = site_profile(tmp_path / "site", {"default-resources": {"slurm_account": "siteacct"}})
    result = snakemake(
        tmp_path,
        "--configfile",
        str(tmp_path / "my.yaml"),
        "--profile",
        str(site),
        "--workflow-profile",
        str(WORKFLOW_PROFILE),
        "-n",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = {}
    for block in re.split(r"^(?=\s*(?:local)?rule \w+:$)", result.stdout, flags=re.M):
        rule = re.match(r"\s*(?:local)?rule (\w+):", block)
        dataset = re.search(r"^\s*wildcards: dataset=([\w.-]+)", block, flags=re.M)
        resources = re.search(r"^\s*resources: (.*)$", block, flags=re.M)
        if rule and dataset and resources:
            planned[rule[1], dataset[1]] = resources[1]
    assert {"simulate", "preprocess", "infer"} <= {rule for rule, _ in planned}, result.stdout[-3000:]
    for (rule, dataset), resources in planned.items():
        assert "slurm_account=siteacct" in resources, (rule, dataset, resources)
        assert (re.search(r"\bgpu=[1-9]", resources) is not None) == (rule == "infer" and dataset == "ongpu"), (
            rule,
            dataset,
            resources,
        )


@needs_snakemake
@needs_cluster
def test_workflow_on_slurm_requests_gpus_only_for_gpu_inference(tmp_path):
    simulate_dataset(tmp_path / "sim", 2, parse_detector("384x384@1.2"), seed=3, progress=False, workers=1)
    (tmp_path / "mics.txt").write_text("".join(f"{p}\n" for p in sorted((tmp_path / "sim").glob("micrographs/*.mrc"))))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(two_datasets("mics.txt")))
    site = site_profile(
        tmp_path / "site",
        {"slurm-status-command": "squeue", "slurm-no-account": True, "slurm-init-seconds-before-status-checks": 2},
    )
    with slurm_cluster.cluster(tmp_path / "slurm"):
        before = {job["JobId"] for job in slurm_jobs()}
        result = snakemake(
            tmp_path,
            "--profile",
            str(site),
            "--workflow-profile",
            str(WORKFLOW_PROFILE),
            "out/oncpu/results.tsv",
            "out/ongpu/results.tsv",
            timeout=600,
        )
        jobs = [job for job in slurm_jobs() if job["JobId"] not in before]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    for dataset in ("oncpu", "ongpu"):
        assert (tmp_path / "out" / dataset / "results.tsv").is_file(), result.stdout[-4000:] + result.stderr[-4000:]
        results = pd.read_csv(tmp_path / "out" / dataset / "results.tsv", sep="\t")
        assert len(results) == 2 and (results["status"] == "cached").all()  # combine reads the cache
    infer: dict[str, dict[str, str]] = {}
    preprocess = []
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        # The plugin's comment: rule_<name>_wildcards_<values>.
        comment = job.get("Comment", "")
        if match := re.fullmatch(r"rule_infer_wildcards_(\w+)_0", comment):
            assert match[1] not in infer, job
            infer[match[1]] = job
        else:
            assert comment.startswith("rule_preprocess"), job
            preprocess.append(job)
    assert sorted(infer) == ["oncpu", "ongpu"] and len(preprocess) == 2, (sorted(infer), preprocess)
    assert gpu_request(infer["oncpu"]) == "" and infer["oncpu"]["Partition"] == "cpu", infer["oncpu"]
    assert "gres:gpu:1" in gpu_request(infer["ongpu"]).split(","), infer["ongpu"]
    assert infer["ongpu"]["Partition"] == "gpu", infer["ongpu"]
    for job in preprocess:
        assert gpu_request(job) == "" and job["Partition"] == "cpu", job
