import pytest

from miffi.preprocess.squares import crop_size, layout_for, square_columns


@pytest.mark.parametrize(
    ("shape", "apix", "crop", "columns", "transposed"),
    [
        ((4092, 5760), 0.83, 2264, ((0, 4092), (1668, 5760)), False),  # K3
        ((5760, 4092), 0.83, 2264, ((0, 4092), (1668, 5760)), True),  # K3 stored transposed
        ((3710, 3838), 1.06, 2622, ((0, 3710), (128, 3838)), False),  # K2
        ((4096, 4096), 0.73, 1992, ((0, 4096),), False),  # Falcon
        ((1001, 2500), 1.0, 666, ((0, 1001), (1001, 2002), (1499, 2500)), False),
        ((999, 1200), 2.1, 998, ((0, 999), (201, 1200)), False),  # coarser than 1.5 Å: no crop
    ],
)
def test_layout_matches_the_recipe(shape, apix, crop, columns, transposed):
    layout = layout_for(shape, apix)
    assert layout.crop == crop
    assert layout.columns == columns
    assert layout.transposed is transposed
    assert layout.output_pixel_size == pytest.approx(layout.side * apix / crop)


def test_k3_crop_size_example_from_the_spec():
    assert crop_size(4092, 0.83, 1.5) == 2264


def test_max_squares_caps_from_the_left():
    assert square_columns(1000, 3500) == ((0, 1000), (1000, 2000), (2000, 3000), (2500, 3500))
    assert square_columns(1000, 3500, max_squares=2) == ((0, 1000), (1000, 2000))


def test_too_small_to_crop_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        layout_for((1, 1), 0.5)
