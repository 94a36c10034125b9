"""Resource errors are not micrograph errors: a full disk, a read-only file system or a
file where a folder should be stops the run with one line naming the folder, a non-zero
exit, and nothing half-written under a final name. Real tmpfs mounts (root only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.micrographs import structured_image, write_mrc
from tests.support.runners import checksums, cli, is_root, miffi, one_error_line


def _mount(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if not is_root():
        pytest.skip("needs root to mount a real tmpfs (full / read-only file systems)")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resource_inputs")
    for i in range(6):
        write_mrc(folder / f"m{i}.mrc", structured_image((512, 512), i), pixel_size=1.2)
    return folder


def _mounted(target: Path, options: str):
    _mount(target, options)
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A 3 MB file system: room for two cached tensors (1.2 MB each), not six."""
    yield from _mounted(tmp_path / "small", "size=3m")


@pytest.fixture
def read_only(tmp_path):
    yield from _mounted(tmp_path / "ro", "size=1m,ro")


def _no_half_written(folder: Path) -> None:
    """No temporary files, and every tensor under a final name has its sidecar."""
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]
    for tensor in folder.rglob("*.npy"):
        assert tensor.with_suffix(".json").is_file(), tensor


@pytest.mark.parametrize("command", ["preprocess", "run"])
def test_full_disk_stops_the_run_with_one_line(inputs, full_disk, capsys, command):
    before = checksums(inputs)
    out = full_disk / "out"
    argv = (
        ["preprocess", inputs, "--out", out]
        if command == "preprocess"
        else ["run", "--input", inputs, "--outdir", out, "--device", "cpu"]
    )
    outcome = cli(capsys, *argv, "--no-progress")
    line = one_error_line(outcome.err)
    assert outcome.code == 2
    assert line.startswith("miffi: error: no space left on ") and str(full_disk) in line, line
    assert "failed:" not in outcome.err  # no micrograph is blamed
    assert not (out / "results.tsv").exists() and not (out / "preprocess.tsv").exists()
    _no_half_written(full_disk)
    assert checksums(inputs) == before


def test_full_disk_exit_code_of_the_process(inputs, full_disk):
    result = miffi("preprocess", inputs, "--out", full_disk / "cache", "--no-progress")
    assert result.returncode == 2 and "no space left on" in one_error_line(result.stderr)


@pytest.mark.parametrize("command", ["preprocess", "run", "export", "report"])
def test_read_only_output_folder(inputs, read_only, capsys, tmp_path, command):
    results = tmp_path / "results.tsv"
    if command in ("export", "report"):
        assert (
            cli(
                capsys, "run", "--input", inputs / "m0.mrc", "--outdir", tmp_path, "--device", "cpu", "--no-progress"
            ).code
            == 0
        )
    argv = {
        "preprocess": ["preprocess", inputs, "--out", read_only / "cache", "--no-progress"],
        "run": ["run", "--input", inputs, "--outdir", read_only / "out", "--device", "cpu", "--no-progress"],
        "export": ["export", results, "--outdir", read_only / "export"],
        "report": ["report", "--results", results, "--out", read_only / "report.html"],
    }[command]
    outcome = cli(capsys, *argv)
    line = one_error_line(outcome.err)
    assert outcome.code == 2 and "is on a read-only file system" in line and str(read_only) in line, line


@pytest.mark.parametrize("where", ["outdir", "parent", "cache"])
def test_a_file_where_the_output_folder_should_be(inputs, tmp_path, capsys, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    outdir = {"outdir": blocker, "parent": blocker / "sub", "cache": tmp_path / "out"}[where]
    extra = ["--cache", blocker / "cache"] if where == "cache" else []
    outcome = cli(capsys, "run", "--input", inputs, "--outdir", outdir, *extra, "--device", "cpu", "--no-progress")
    line = one_error_line(outcome.err)
    assert outcome.code == 2 and f"{blocker} is a file, not a folder" in line, line
    assert blocker.read_text() == "not a folder"
