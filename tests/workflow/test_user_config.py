"""A user's own config replaces the shipped demo (config.yaml) instead of being merged into it.

Run as a user would: from the repository (where the demo config.yaml is), with
``--configfile my.yaml``. Only the user's datasets may be planned and run: no `demo`,
`demo_train` or training job. ``--config key=value`` alone still overrides the demo, and
naming both files layers them (the user's choice).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from tests.support.runners import ROOT, needs_snakemake, snakemake, succeeded

pytestmark = needs_snakemake


def run(cwd: Path, *args: str, timeout: int = 300) -> str:
    return succeeded(snakemake(None, *args, cores=None, cwd=cwd, timeout=timeout))


def planned(log: str) -> tuple[dict[str, int], set[str], list[str]]:
    """A dry run's jobs per rule, the datasets they are for, and every output they name."""
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", log.split("Job stats:")[1], flags=re.M)}
    datasets = set(re.findall(r"^\s*wildcards: dataset=([\w.-]+)", log, flags=re.M))
    outputs = [path for line in re.findall(r"^\s*output: (.*)$", log, flags=re.M) for path in line.split(", ")]
    return counts, datasets, outputs


def user_config(path: Path, outdir: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "outdir": str(outdir),
                "datasets": {
                    "mine": {"simulate": {"n": 2, "detector": "256x256@1.5", "seed": 1}, "chunks": 1, "device": "cpu"}
                },
            }
        )
    )
    return path


def test_user_configfile_plans_only_its_datasets(tmp_path):
    mine = user_config(tmp_path / "my.yaml", tmp_path / "out")
    log = run(ROOT, "-n", "--nolock", "--configfile", str(mine))
    counts, datasets, outputs = planned(log)
    assert datasets == {"mine"}, datasets
    assert "train" not in counts and counts["simulate"] == counts["intake"] == counts["report"] == 1, counts
    assert outputs and all(path.startswith(str(tmp_path / "out")) for path in outputs), outputs
    assert "is extended by additional config" not in log


def test_user_configfile_runs_only_its_datasets(tmp_path):
    """A real run, in a folder that holds the demo config.yaml beside the user's."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    mine = user_config(tmp_path / "my.yaml", Path("out"))
    log = run(tmp_path, "--cores", "2", "--configfile", str(mine), timeout=900)
    ran = set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M))
    assert "train" not in ran and {"simulate", "infer", "report", "summary"} <= ran, ran
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["logs", "mine", "summary_figures"]
    assert (tmp_path / "out" / "mine" / "report.html").is_file()
    assert not (tmp_path / "results").exists()  # the demo's outdir


def test_config_overrides_still_apply_to_the_demo(tmp_path):
    counts, datasets, outputs = planned(run(ROOT, "-n", "--nolock", "--config", f"outdir={tmp_path / 'o'}"))
    assert datasets == {"demo", "demo_train"} and counts["train"] == 1, (datasets, counts)
    assert outputs and all(path.startswith(str(tmp_path / "o")) for path in outputs), outputs


def test_naming_the_demo_and_a_user_config_layers_them(tmp_path):
    mine = user_config(tmp_path / "my.yaml", tmp_path / "out")
    counts, datasets, _ = planned(run(ROOT, "-n", "--nolock", "--configfile", "config.yaml", str(mine)))
    assert datasets == {"demo", "demo_train", "mine"} and counts["train"] == 1, (datasets, counts)
