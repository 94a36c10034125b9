"""kill -9 of `miffi run` mid-run, then the same command again: the same results and
tensors as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd

from tests.support.micrographs import structured_image, write_mrc
from tests.support.runners import BIN, checksums, miffi

#: Columns that must not depend on whether the run was interrupted (``status`` says
#: ``cached`` for what the killed run had finished, so it is left out).
COMPARED = [
    "micrograph",
    "path",
    "film",
    "drift",
    "crystallinity",
    "contamination",
    "category",
    "confidence",
    "confidence_level",
    "squares",
    "flatness",
    "anisotropy",
    "ice_peak",
    "dark_fraction",
]


def _content(path) -> list[str]:
    """An export's lines without the writer's time stamp."""
    return [line for line in path.read_text().splitlines() if not line.startswith("# Created")]


def test_kill_9_then_the_same_command_gives_the_same_results(tmp_path):
    kill_after = 4
    mics = tmp_path / "mics"
    for i in range(12):
        write_mrc(mics / f"m{i:02d}.mrc", structured_image((1024, 1024), i), pixel_size=1.0)
    before = checksums(mics)
    command = ["run", "--input", mics, "--device", "cpu", "--no-progress"]
    reference = miffi(*command, "--outdir", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen(
        [str(BIN / "miffi"), *map(str, command), "--outdir", str(out)],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list((out / "cache").glob("*.json"))) < kill_after and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "results.tsv").exists()

    again = miffi(*command, "--outdir", out)
    assert again.returncode == 0, again.stderr
    resumed = pd.read_parquet(out / "results.parquet")
    expected = pd.read_parquet(tmp_path / "reference" / "results.parquet")
    pd.testing.assert_frame_equal(resumed[COMPARED], expected[COMPARED])
    assert (resumed["status"] == "cached").sum() >= kill_after
    for name in expected["micrograph"]:
        np.testing.assert_array_equal(
            np.load(out / "cache" / f"{name}.npy"), np.load(tmp_path / "reference" / "cache" / f"{name}.npy")
        )
    for folder in ("relion", "lists"):
        for exported in (tmp_path / "reference" / folder).iterdir():
            assert _content(out / folder / exported.name) == _content(exported)
    assert checksums(mics) == before
