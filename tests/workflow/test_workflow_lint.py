"""The workflow's own checks: `snakemake --lint` and `snakefmt --check` are clean, every rule
runs in the conda environment envs/miffi.yaml, and that environment asks for what
pyproject.toml asks for (from conda-forge only)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.runners import BIN, ROOT, snakemake

RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
ENV = ROOT / "envs" / "miffi.yaml"
#: pyproject (PyPI) names whose conda-forge package is named otherwise
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN))
    if path is None:
        pytest.skip(f"{name} is not installed in this environment (scripts/setup-venv.sh installs it)")
    return path


def test_snakemake_lint_is_clean():
    tool("snakemake")
    result = snakemake(None, "--lint", "--nolock", cores=None, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_check_is_clean():
    result = subprocess.run(
        [tool("snakefmt"), "--check", "Snakefile", "workflow"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert "would be changed" not in result.stderr


def test_every_rule_that_runs_miffi_uses_the_conda_env():
    rules = 0
    for path in RULE_FILES:
        for block in re.split(r"^(?=(?:rule|checkpoint) \w+:)", path.read_text(), flags=re.M)[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+):", block)[1]
            shell = re.search(r"^    shell:\n((?:        .*\n?)+)", block, flags=re.M)
            if shell is None or not re.search(r"\bmiffi ", shell[1]):
                continue
            rules += 1
            conda = re.search(r"^    conda:\n        \"([^\"]+)\"", block, flags=re.M)
            assert conda, f"{path.name}: rule {name} runs miffi but has no conda: directive"
            # Snakemake resolves it relative to the rule's file.
            assert (path.parent / conda[1]).resolve() == ENV, (path.name, name, conda[1])
    assert rules >= 10
    assert (ENV.parent / "miffi.post-deploy.sh").is_file()  # installs this checkout into the env


def test_conda_env_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    env = yaml.safe_load(ENV.read_text())
    assert env["channels"] == ["conda-forge"]
    conda, pip = {}, {}
    for entry in env["dependencies"]:
        for spec, into in [(s, pip) for s in entry["pip"]] if isinstance(entry, dict) else [(entry, conda)]:
            name, bound = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
            into[name.lower()] = bound
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert conda["python"] == project["requires-python"]
    for requirement in project["dependencies"]:
        name, bound = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()
        name = name.lower()
        found = conda.get(CONDA_NAMES.get(name, name), pip.get(name))
        assert found == bound, f"{requirement}: envs/miffi.yaml has {found!r}"
    assert "torchvision" in conda  # timm needs it; from conda-forge, built against its pytorch
