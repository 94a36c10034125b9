"""``miffi preprocess`` as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import structured_image, write_mrc


def miffi(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "miffi", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


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
    result = miffi("preprocess", star, "--project-dir", tmp_path, "--out", tmp_path / "cache",
                   "--pixel-size", "1.5", "--channels", "1", "--no-progress")
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
