"""Tests for xraygan_jax.viz image grids."""

import numpy as np
import pytest
from helpers import grid_tiles, read_grid_png
from PIL import Image

from xraygan_jax import pixels, viz


def test_tile_places_images_row_major_with_borders():
    images = np.arange(1, 6, dtype=np.uint8).reshape(5, 1, 1, 1) * np.ones((1, 3, 2, 1), np.uint8)
    mosaic = viz.tile(images, nrow=2)
    assert mosaic.shape == (3 * 5 + 2, 2 * 4 + 2, 1)
    assert mosaic[2, 2, 0] == 1 and mosaic[2, 6, 0] == 2 and mosaic[7, 2, 0] == 3
    assert mosaic[12, 2, 0] == 5 and mosaic[12, 6, 0] == 0  # the empty last cell stays black
    assert mosaic[0].max() == 0 and mosaic[:, 0].max() == 0
    with pytest.raises(ValueError, match=r"NHWC batch with 1 or 3 channels, got shape \(2, 4, 4\)"):
        viz.tile(np.zeros((2, 4, 4), np.uint8))


def test_save_image_grid_and_class_grids(tmp_path):
    images = np.linspace(-1, 1, 6 * 8 * 8).reshape(6, 8, 8, 1).astype(np.float32)
    path = viz.save_image_grid(images, tmp_path / "a/b/grid.png", title="a long title " * 5)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 7 * 20  # widened for the title
    paths = viz.save_class_grids(
        images,
        np.array([0, 1, 0, 1, 0, 0]),
        ("NORMAL", "PNEUMONIA", "COVID"),
        tmp_path,
        prefix="x_",
    )
    assert paths == {
        "NORMAL": str(tmp_path / "x_NORMAL.png"),
        "PNEUMONIA": str(tmp_path / "x_PNEUMONIA.png"),
    }
    # Each class's grid holds its own images, row-major, under the title.
    # (The gray colour map may round a level by one.)
    expected = pixels.to_uint8(images).astype(int)
    normal = grid_tiles(read_grid_png(paths["NORMAL"], 2 * (8 + 2) + 2), 8)
    np.testing.assert_allclose(normal, expected[[0, 2, 4, 5]], rtol=0, atol=1)
    pneumonia = grid_tiles(read_grid_png(paths["PNEUMONIA"], 2 * (8 + 2) + 2, 8 + 2 + 2), 8)
    np.testing.assert_allclose(pneumonia, expected[[1, 3]], rtol=0, atol=1)
