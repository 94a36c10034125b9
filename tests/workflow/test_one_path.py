"""``miffi run`` and the workflow are one orchestration: on the same input they write the
same results table and the same exports."""

from __future__ import annotations

import filecmp

import pandas as pd
import yaml
from cryosparc.dataset import Dataset

from miffi.cli import main
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.runners import needs_snakemake, snakemake, succeeded

pytestmark = needs_snakemake


def test_miffi_run_and_the_workflow_agree(tmp_path):
    simulate_dataset(tmp_path / "data", 6, parse_detector("640x512@1.2"), seed=7, progress=False, workers=1)
    star = tmp_path / "data" / "micrographs.star"
    assert (
        main(["run", "--input", str(star), "--outdir", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]) == 0
    )
    config = {"outdir": "out", "datasets": {"ds": {"input": [str(star)], "chunks": 2, "device": "cpu"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    succeeded(snakemake(tmp_path, "out/ds/export"))

    run, workflow = tmp_path / "run", tmp_path / "out" / "ds"
    ours = pd.read_csv(run / "results.tsv", sep="\t")
    assert len(ours) == 6 and set(ours["status"]) == {"cached"}
    pd.testing.assert_frame_equal(ours, pd.read_csv(workflow / "results.tsv", sep="\t"))
    exported = sorted(
        p.relative_to(run) for p in run.glob("*/*.*") if p.parent.name in ("relion", "lists", "cryosparc")
    )
    assert exported and exported == sorted(
        p.relative_to(workflow / "export") for p in (workflow / "export").glob("*/*.*")
    )
    for name in exported:
        mine, theirs = run / name, workflow / "export" / name
        if name.suffix == ".cs":  # new exposures get fresh uids: every other field agrees
            a, b = Dataset.load(str(mine)), Dataset.load(str(theirs))
            assert a.fields() == b.fields() and len(a) == len(b)
            for field in a.fields()[1:]:
                assert list(map(str, a[field])) == list(map(str, b[field])), field
        elif name.suffix == ".csg":
            drop = lambda group: {k: v for k, v in group.items() if k != "created"}  # noqa: E731
            assert drop(yaml.safe_load(mine.read_text())) == drop(yaml.safe_load(theirs.read_text()))
        elif name.suffix == ".star":  # starfile stamps its files with the time they were written
            assert mine.read_text().splitlines()[1:] == theirs.read_text().splitlines()[1:]
        else:
            assert filecmp.cmp(mine, theirs, shallow=False), name
