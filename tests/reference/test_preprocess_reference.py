"""The fast preprocessing against a literal transcription of the miffi_v1 recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miffi.preprocess import recipe
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.recipe import load_squares, power_spectrum_image, preprocess_loaded, robust_normalise
from tests.support.micrographs import structured_image, write_mrc
from tests.support.spec_reference import max_difference, reference_normalise, reference_squares, reference_variants

CPU = torch.device("cpu")
TOLERANCE = 1e-3

SHAPES = {
    "k3": ((4092, 5760), 0.83),
    "k3_transposed": ((5760, 4092), 0.83),
    "k2": ((3710, 3838), 1.06),
    "falcon": ((4096, 4096), 0.73),
    "odd": ((1001, 2500), 1.0),
    "coarse_odd": ((999, 1277), 2.1),
}


@pytest.mark.parametrize("name", SHAPES)
def test_tensor_matches_reference(tmp_path, name):
    shape, apix = SHAPES[name]
    image = structured_image(shape, seed=len(name))
    path = write_mrc(tmp_path / f"{name}.mrc", image, pixel_size=apix)
    loaded = load_squares(path, None, PreprocessConfig())  # pixel size from the header
    tensor = preprocess_loaded(loaded, PreprocessConfig(), CPU).tensor

    columns, crop, transposed = reference_squares(image, apix)
    assert loaded.layout.columns == tuple(columns)
    assert loaded.layout.crop == crop
    assert loaded.layout.transposed == transposed
    expected = reference_variants(image, apix)
    assert tensor.shape == (len(columns), 2, 384, 384) and expected.shape[2:] == tensor.shape[1:]
    assert tensor.dtype == np.float32
    assert max_difference(tensor, expected) <= TOLERANCE
    assert tensor.min() >= -2.5 and tensor.max() <= 2.5


def test_one_channel_config_is_the_image_channel(tmp_path):
    image = structured_image((1200, 1500), seed=3)
    path = write_mrc(tmp_path / "m.mrc", image, pixel_size=1.2)
    one = preprocess_loaded(
        load_squares(path, None, PreprocessConfig(power_spectrum=False)), PreprocessConfig(power_spectrum=False), CPU
    ).tensor
    assert one.shape == (2, 1, 384, 384)
    assert max_difference(one, reference_variants(image, 1.2, power_spectrum=False)) <= TOLERANCE


def test_given_pixel_size_overrides_header(tmp_path):
    image = structured_image((1000, 1000), seed=4)
    path = write_mrc(tmp_path / "m.mrc", image, pixel_size=3.0)
    loaded = load_squares(path, 0.75, PreprocessConfig())
    assert loaded.layout.crop == 500
    tensor = preprocess_loaded(loaded, PreprocessConfig(), CPU).tensor
    assert max_difference(tensor, reference_variants(image, 0.75)) <= TOLERANCE


def test_power_spectrum_layout_follows_the_spec():
    rng = np.random.default_rng(0)
    crop = 8
    amplitude = torch.from_numpy(rng.random((crop, crop // 2 + 1)))
    image = power_spectrum_image(amplitude).numpy()
    a = amplitude.numpy()
    half = crop // 2
    assert np.array_equal(image[half:, half:], a[:half, :half])
    assert np.array_equal(image[:half, half:], a[half:, :half])
    assert np.array_equal(image[:, :half], image[:, half:][::-1, ::-1])
    assert image[half, half] == a[0, 0]  # DC in the centre


def test_robust_normalise_matches_reference_per_plane():
    rng = np.random.default_rng(1)
    planes = rng.standard_cauchy(size=(3, 64, 64)).astype(np.float32)  # heavy tails
    ours = robust_normalise(torch.from_numpy(planes)).numpy()
    for plane, got in zip(planes, ours):
        assert np.abs(got - reference_normalise(plane)).max() <= 1e-4


def test_real_micrograph_matches_reference(realdata):
    path = realdata / "micrographs" / "Ucsf_stack_1142_DW.mrc"
    loaded = load_squares(path, None, PreprocessConfig())
    assert loaded.layout.columns == ((0, 927), (32, 959))
    assert loaded.layout.crop == 618  # header pixel size reads as 1.0 Å
    import mrcfile

    with mrcfile.open(path) as mrc:
        image = mrc.data.astype(np.float32)
    tensor = preprocess_loaded(loaded, PreprocessConfig(), CPU).tensor
    assert max_difference(tensor, reference_variants(image, 1.0)) <= TOLERANCE


def test_row_blocks_give_the_transform_of_one_call(monkeypatch):
    # The CPU path stores the kept columns of the row transforms block by block; blocks
    # that do not divide the side (and one block for everything) must give the same bits.
    squares = np.random.default_rng(3).normal(size=(2, 1001, 1001)).astype(np.float32)
    monkeypatch.setattr(recipe, "ROW_BLOCK", 1001)
    whole = recipe.cropped_spectrum(squares, 540, CPU)
    monkeypatch.setattr(recipe, "ROW_BLOCK", 64)
    blocks = recipe.cropped_spectrum(squares, 540, CPU)
    assert torch.equal(whole, blocks)
    expected = np.fft.rfft2(squares.astype(np.float64))[:, np.r_[0:270, 731:1001], :271]
    assert np.abs(blocks.numpy() - expected).max() < 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("name", ["k2", "k3_transposed"])
def test_squares_read_from_the_file_in_blocks_are_the_squares(tmp_path, monkeypatch, name):
    # The transforms read a micrograph's squares from its memory map, rows at a time (of
    # the transposed array for a tall one): the same spectrum as from the squares copied
    # out whole, and the same as two micrographs transformed at once.
    shape, apix = SHAPES[name]
    monkeypatch.setattr(recipe, "ROW_BLOCK", 700)
    image = structured_image(shape, seed=5) + 5000.0
    loaded = load_squares(write_mrc(tmp_path / "m.mrc", image, pixel_size=apix), None, PreprocessConfig())
    crop = loaded.layout.crop
    copied = recipe.cropped_spectrum(loaded.squares(), crop, CPU)
    assert torch.equal(recipe.cropped_spectrum([loaded], crop, CPU), copied)
    assert torch.equal(recipe.cropped_spectrum([loaded, loaded], crop, CPU), torch.cat([copied, copied]))
    assert abs(float(loaded.squares().mean())) < 1.0  # the offset (~5000) was subtracted


def test_float16_counts_keep_their_offset_exactly(tmp_path):
    # The offset is subtracted in float32 whatever the file's type: in float16 (MRC mode
    # 12) the offset itself would be rounded to a multiple of 4 near 5000 counts, while the
    # DC amplitude adds back the exact one.
    image = (structured_image((256, 256), seed=8) * 20 + 5001.3).astype(np.float16)
    loaded = load_squares(write_mrc(tmp_path / "m.mrc", image, pixel_size=1.5), None, PreprocessConfig())
    amplitude = recipe.cropped_transform([loaded], loaded.layout.crop, CPU, loaded.offset, 384).amplitude
    total = float(image.astype(np.float64).sum())
    assert abs(float(amplitude[0, 0, 0]) - total) < 1e-6 * total


def test_image_views_are_the_full_image_resized_and_in_blocks():
    # The image channel and the metrics' block means are reduced from the column
    # transform, without the full image: the values of the full image's, up to rounding.
    squares = np.stack([structured_image((1000, 1000), seed=s) for s in (6, 7)])
    fc = torch.from_numpy(np.fft.rfft2(squares).astype(np.complex64))
    full = torch.from_numpy(np.fft.irfft2(fc.numpy().astype(np.complex128), s=(1000, 1000)))
    expected_image = torch.nn.functional.interpolate(
        full[:, None], size=(384, 384), mode="bilinear", antialias=True, align_corners=False
    )[:, 0]
    expected_blocks = torch.nn.functional.avg_pool2d(full[:, None], 7)[:, 0]  # (a remainder of 6 dropped)
    image, blocks = recipe.image_views(fc.clone(), 384, 7)
    assert image.shape == (2, 384, 384) and blocks.shape == (2, 142, 142)
    scale = float(full.abs().max())
    assert float((image - expected_image).abs().max()) < 1e-5 * scale
    assert float((blocks - expected_blocks).abs().max()) < 1e-5 * scale
    image_only, none = recipe.image_views(fc.clone(), 384)
    assert none is None and torch.equal(image_only, image)
