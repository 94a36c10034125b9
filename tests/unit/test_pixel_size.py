"""Pixel sizes as users meet them: coarse (binned) micrographs, and headers without one.

``miffi preprocess`` and ``miffi intake`` run in-process (``miffi.cli.main``) on MRC
files the tests write.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from miffi.cli import main
from miffi.intake import read_micrographs
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.recipe import load_squares, preprocess_loaded
from tests.support.micrographs import structured_image, write_mrc
from tests.support.spec_reference import max_difference, reference_variants

TOO_COARSE = (
    "pixel size 12 Å is coarser than the 6 Å miffi takes (the power spectrum would end at 24 Å, "
    "before the Thon rings); if the pixel size is wrong, give the right one with --pixel-size, "
    "else use micrographs binned less"
)
NO_PIXEL_SIZE = "no pixel size in the header or the metadata; give --pixel-size"


def miffi(caplog, *args) -> int:
    """``miffi ARGS`` in-process; its log lands in ``caplog``."""
    with caplog.at_level(logging.INFO, logger="miffi"):
        return main([*map(str, args)])


def status_of(cache: Path) -> pd.DataFrame:
    return pd.read_csv(cache / "preprocess.tsv", sep="\t").set_index("micrograph")


def test_coarse_micrographs_are_used_uncropped_up_to_6_A(tmp_path, caplog):
    pixel_sizes = {"m1.2": 1.2, "m2.0": 2.0, "m3.0": 3.0, "m4.0": 4.0, "m6.0": 6.0, "m12": 12.0}
    images = {name: structured_image((512, 640), seed=i) for i, name in enumerate(pixel_sizes)}
    images["binned6"] = structured_image((256, 300), seed=9)  # smaller than 384: upsampled
    pixel_sizes["binned6"] = 6.0
    mics = tmp_path / "mics"
    for name, image in images.items():
        write_mrc(mics / f"{name}.mrc", image, pixel_size=pixel_sizes[name])
    cache = tmp_path / "cache"

    assert miffi(caplog, "preprocess", mics, "--out", cache, "--no-progress") == 0

    status = status_of(cache)
    assert status.loc["m12", "status"] == "failed"
    assert status.loc["m12", "error"] == TOO_COARSE
    assert f"failed: {mics / 'm12.mrc'}: {TOO_COARSE}" in caplog.text
    assert not (cache / "m12.npy").exists()
    assert "7 micrographs: 6 computed, 0 cached, 1 failed" in caplog.text
    for name, apix in pixel_sizes.items():
        if name == "m12":
            continue
        assert status.loc[name, "status"] == "computed", status.loc[name, "error"]
        assert status.loc[name, "pixel_size"] == pytest.approx(apix)
        tensor = np.load(cache / f"{name}.npy")
        assert tensor.shape == (2, 2, 384, 384)
        assert np.isfinite(tensor).all() and tensor.min() >= -2.5 and tensor.max() <= 2.5
        assert max_difference(tensor, reference_variants(images[name], apix)) <= 1e-3
        layout = json.loads((cache / f"{name}.json").read_text())["layout"]
        if apix > 1.5:  # coarser than the target: no Fourier crop
            assert layout["crop"] == layout["side"] == min(images[name].shape)
        # the crystalline-ice band (3.3–4 Å) lies beyond Nyquist above 2.8 Å per pixel
        assert math.isnan(status.loc[name, "ice_peak"]) == (apix >= 3.0)
        assert np.isfinite(status.loc[name, "anisotropy"])


def test_a_wrong_header_pixel_size_is_fixed_with_the_option(tmp_path, caplog):
    path = write_mrc(tmp_path / "binned.mrc", structured_image((400, 400), seed=2), pixel_size=12.0)
    assert miffi(caplog, "preprocess", path, "--out", tmp_path / "c", "--no-progress") == 1  # all failed
    assert status_of(tmp_path / "c").loc["binned", "error"] == TOO_COARSE
    assert miffi(caplog, "preprocess", path, "--out", tmp_path / "c", "--pixel-size", "3", "--no-progress") == 0
    assert status_of(tmp_path / "c").loc["binned", "status"] == "computed"
    assert np.load(tmp_path / "c" / "binned.npy").shape == (1, 2, 384, 384)


@pytest.mark.gpu
def test_gpu_coarse_micrograph_matches_cpu(tmp_path, cuda):
    image = structured_image((700, 900), seed=5)
    path = write_mrc(tmp_path / "m.mrc", image, pixel_size=4.0)
    loaded = load_squares(path, None, PreprocessConfig())
    on_gpu = preprocess_loaded(loaded, PreprocessConfig(), cuda).tensor
    on_cpu = preprocess_loaded(loaded, PreprocessConfig(), torch.device("cpu")).tensor
    assert max_difference(on_gpu, reference_variants(image, 4.0)) <= 1e-3
    assert np.abs(on_gpu[:, 0] - on_cpu[:, 0]).max() <= 1e-3


def test_unset_header_pixel_size_is_used_with_a_warning(tmp_path, caplog):
    mics = tmp_path / "mics"
    for i in range(7):
        write_mrc(mics / f"a{i}.mrc", structured_image((300, 300), seed=i), pixel_size=1.0)
    write_mrc(mics / "set.mrc", structured_image((300, 300), seed=8), pixel_size=1.3)
    table = tmp_path / "all.micrographs.tsv"

    assert miffi(caplog, "intake", mics, "--out", table) == 0
    assert (
        "7 micrograph(s) use pixel size 1.0 Å from the MRC header, which is the value of an unset header "
        "(a0.mrc, a1.mrc, a2.mrc, a3.mrc, a4.mrc and 2 more); give --pixel-size if that is wrong"
    ) in caplog.text
    written = pd.read_csv(table, sep="\t").set_index("micrograph")
    assert written.loc["a0", "pixel_size_source"] == "header_default"
    assert written.loc["a0", "pixel_size"] == 1.0
    assert written.loc["set", "pixel_size_source"] == "header"

    caplog.clear()
    assert miffi(caplog, "preprocess", table, "--out", tmp_path / "cache", "--no-progress") == 0
    assert (status_of(tmp_path / "cache")["status"] == "computed").all()
    assert "unset header" not in caplog.text  # said once, at intake

    caplog.clear()
    assert miffi(caplog, "intake", mics, "--out", table, "--pixel-size", "1.0") == 0
    assert "unset header" not in caplog.text
    assert (pd.read_csv(table, sep="\t")["pixel_size_source"] == "user").all()


def test_real_micrograph_with_the_default_header_warns(realdata, caplog):
    with caplog.at_level(logging.WARNING, logger="miffi"):
        table = read_micrographs([realdata / "micrographs" / "Ucsf_stack_1142_DW.mrc"])
    assert table.loc[0, "pixel_size_source"] == "header_default"
    assert "1 micrograph(s) use pixel size 1.0 Å from the MRC header" in caplog.text
    assert "(Ucsf_stack_1142_DW.mrc)" in caplog.text


def test_no_pixel_size_anywhere_stops_with_one_line(tmp_path, caplog, capsys):
    mics = tmp_path / "mics"
    for name in ("a", "b"):
        write_mrc(mics / f"{name}.mrc", structured_image((300, 300)), pixel_size=None)  # header: 0
    assert miffi(caplog, "preprocess", mics, "--out", tmp_path / "cache", "--no-progress") == 2
    assert capsys.readouterr().err == (
        "miffi: error: --pixel-size: needed: none of the 2 micrographs has a pixel size in its MRC header "
        "(which holds 0) or in metadata (a.mrc, b.mrc)\n"
    )
    assert not (tmp_path / "cache").exists()  # stopped before any work

    assert miffi(caplog, "preprocess", mics / "a.mrc", "--out", tmp_path / "cache", "--no-progress") == 2
    assert "the micrograph has no pixel size in its MRC header" in capsys.readouterr().err

    assert miffi(caplog, "preprocess", mics, "--out", tmp_path / "cache", "--pixel-size", "1.5", "--no-progress") == 0
    assert (status_of(tmp_path / "cache")["pixel_size"] == 1.5).all()


def test_micrographs_without_pixel_size_fail_and_the_rest_goes_on(tmp_path, caplog):
    mics = tmp_path / "mics"
    write_mrc(mics / "good.mrc", structured_image((300, 300), seed=1), pixel_size=1.3)
    write_mrc(mics / "unset.mrc", structured_image((300, 300), seed=2), pixel_size=None)
    (mics / "broken.mrc").write_bytes(b"\0" * 100)  # unreadable: fails for its own reason

    assert miffi(caplog, "preprocess", mics, "--out", tmp_path / "cache", "--no-progress") == 0
    assert (
        "1 micrograph(s) have no pixel size in the MRC header (0) or the metadata and will be recorded as "
        "failed (unset.mrc); give --pixel-size"
    ) in caplog.text
    status = status_of(tmp_path / "cache")
    assert status.loc["good", "status"] == "computed"
    assert status.loc["unset", "status"] == "failed"
    assert status.loc["unset", "error"] == NO_PIXEL_SIZE
    assert status.loc["broken", "error"].startswith("too short for an MRC header")
