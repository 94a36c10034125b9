"""``miffi preprocess`` as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.support.micrographs import structured_image, write_mrc
from tests.support.runners import miffi


def test_preprocess_folder_with_a_bad_micrograph(tmp_path):
    mics = tmp_path / "mics"
    write_mrc(mics / "good a.mrc", structured_image((500, 700), 1), pixel_size=1.0)
    write_mrc(mics / "good_b.mrc", structured_image((500, 500), 2), pixel_size=1.0)
    (mics / "broken.mrc").write_bytes(b"\0" * 100)
    result = miffi("preprocess", mics, "--out", tmp_path / "cache", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert f"miffi: failed: {mics / 'broken.mrc'}: too short for an MRC header" in result.stderr
    status = pd.read_csv(tmp_path / "cache" / "preprocess.tsv", sep="\t").set_index("micrograph")
    assert status.loc["good a", "status"] == "computed"
    assert status.loc["broken", "status"] == "failed"
    assert np.load(tmp_path / "cache" / "good a.npy").shape == (2, 2, 384, 384)
    assert "3 micrographs: 2 computed, 0 cached, 1 failed" in result.stderr

    again = miffi("preprocess", mics, "--out", tmp_path / "cache", "--no-progress")
    assert "2 cached" in again.stderr


def test_single_bad_micrograph_fails_with_one_line(tmp_path):
    result = miffi("preprocess", tmp_path / "absent.mrc", "--out", tmp_path / "cache", "--no-progress", "-q")
    assert result.returncode == 1
    assert result.stderr.strip() == f"miffi: failed: {tmp_path / 'absent.mrc'}: file not found"


def test_star_input_with_pixel_size_and_one_channel(tmp_path, realdata):
    star = realdata / "relion_star" / "micrographs_ctf.star"
    movies = tmp_path / "MotionCorr" / "job002" / "Movies"
    write_mrc(movies / "20170629_00021_frameImage.mrc", structured_image((512, 640)), pixel_size=None)
    result = miffi(
        "preprocess",
        star,
        "--project-dir",
        tmp_path,
        "--out",
        tmp_path / "cache",
        "--pixel-size",
        "1.5",
        "--channels",
        "1",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "cache" / "20170629_00021_frameImage.npy").shape == (2, 1, 384, 384)
    status = pd.read_csv(tmp_path / "cache" / "preprocess.tsv", sep="\t")
    assert (status["status"] == "failed").sum() == 23  # the other 23 micrographs are not on disk
    assert status.loc[0, "pixel_size"] == 1.5


def test_bad_arguments_are_clear(tmp_path):
    result = miffi("preprocess", tmp_path / "x.star", "--out", tmp_path / "c")
    assert result.returncode == 2
    assert result.stderr.strip() == f"miffi: error: {tmp_path / 'x.star'}: file not found"
    result = miffi("preprocess", "a.mrc", "--out", tmp_path / "c", "--pixel-size", "-1")
    assert result.returncode == 2 and "must be > 0" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_requested_without_gpu_fails_loudly(tmp_path):
    path = write_mrc(tmp_path / "m.mrc", structured_image((128, 128)))
    result = miffi("preprocess", path, "--out", tmp_path / "c", "--device", "cuda")
    assert result.returncode == 2
    assert "device 'cuda' was requested but no CUDA GPU is visible" in result.stderr


# --- every option is checked before any work (in process: the CLI's own parsing) ----------


def _argv(command: str, tmp_path, *extra: str) -> list[str]:
    """A command line whose inputs exist, so that only the bad option stops it."""
    mrc = write_mrc(tmp_path / "mics" / "m.mrc", structured_image((256, 256)), pixel_size=1.0)
    out = tmp_path / "out"
    base = {
        "run": ["run", "--input", str(mrc), "--outdir", str(out), "--device", "cpu", "--no-progress"],
        "combine": [
            "combine",
            str(tmp_path / "t.micrographs.tsv"),
            "--cache",
            str(out / "cache"),
            "--predictions",
            str(tmp_path / "p.tsv"),
            "--out",
            str(out / "results.tsv"),
        ],
        "export": ["export", str(tmp_path / "results.tsv"), "--outdir", str(out)],
    }
    return [*base[command], *extra]


@pytest.mark.parametrize(
    ("commands", "option", "message"),
    [
        (
            ("run", "combine"),
            ["--rule", "strictt"],
            "argument --rule: 'strictt' is not a rule: malformed part 'strictt' (a rule is a preset, miffi, strict, "
            "lenient, mean, or Miffi's grammar",
        ),
        (
            ("run", "combine"),
            ["--rule", "0,111:5,000"],
            "argument --rule: '0,111:5,000' is not a rule: unknown group 5",
        ),
        (
            ("run", "combine"),
            ["--bad-threshold", "flim=0.8"],
            "argument --bad-threshold: 'flim=0.8': unknown group 'flim' (groups: film, drift, crystallinity, contamination)",  # noqa: E501
        ),
        (
            ("run", "combine"),
            ["--bad-threshold", "film=1.5"],
            "argument --bad-threshold: 'film=1.5': film: a confidence threshold must lie in [0, 1], got 1.5",
        ),
        (
            ("run", "combine"),
            ["--bad-threshold", "film=0.8,film=0.9"],
            "argument --bad-threshold: 'film=0.8,film=0.9': group 'film' given twice",
        ),
        (("run",), ["--bad-threshold", "high"], "argument --bad-threshold: 'high' is not a number"),
        (
            ("run", "combine"),
            ["--good-threshold", "nan"],
            "argument --good-threshold: a confidence threshold must lie in [0, 1], got nan",
        ),
        (
            ("run", "export"),
            ["--formats", "relion,star"],
            "argument --formats: unknown export format 'star'; choose from relion, cryosparc, lists",
        ),
        (("export",), ["--formats="], "argument --formats: unknown export format ''"),
        (
            ("run", "export"),
            ["--categories", "goood"],
            "argument --categories: unknown category 'goood'; choose from good, bad_film, bad_drift, "
            "bad_minor_crystalline, bad_major_crystalline, bad_contamination, bad_multiple, bad_single; "
            "<name>_high_conf and <name>_low_conf for <name> good, bad_single, bad_film",
        ),
        (
            ("export",),
            ["--categories", "good,bad_multiple_low_conf"],
            "argument --categories: unknown category 'bad_multiple_low_conf'",
        ),
    ],
)
def test_bad_options_fail_while_parsing(tmp_path, capsys, commands, option, message):
    from miffi.cli import main

    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main(_argv(command, tmp_path, *option))
        assert exit_.value.code == 2
        error = capsys.readouterr().err
        assert f"miffi {command}: error: {message}" in error, error
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--categories", "good_high_conf"],
            "miffi: error: unknown category 'good_high_conf'; choose from good, bad_film, bad_drift, bad_minor_crystalline, "  # noqa: E501
            "bad_major_crystalline, bad_contamination, bad_multiple, bad_single (with --split-confidence also "
            "<name>_high_conf and <name>_low_conf",
        ),
        (["--where", "water_rng < 1.3"], "miffi: error: --where 'water_rng < 1.3': no column 'water_rng' (columns: "),
        (["--where", "wf_category == good"], "no column 'wf_category'"),  # a second opinion needs a model
        (["--where", "water_ring ~ 1.3"], "miffi: error: --where 'water_ring ~ 1.3': expected COLUMN OP VALUE"),
    ],
)
def test_run_checks_its_export_settings_before_intake(tmp_path, capsys, option, message):
    from miffi.cli import main

    assert main(_argv("run", tmp_path, "--formats", "lists", *option)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # the control: with the option made right, the same run does its work
    fixed = {"good_high_conf": ["--split-confidence", "--categories", "good_high_conf"]}.get(
        option[1], ["--where", "water_ring < 1e9"]
    )
    assert main(_argv("run", tmp_path, "--formats", "lists", *fixed)) == 0
    assert (tmp_path / "out" / "results.tsv").is_file()
