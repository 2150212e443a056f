"""dl.report.grids.image_grid writes a PNG of the right size and refuses bad shapes."""

import numpy as np
import pytest
from PIL import Image

from dl.report.grids import image_grid


def test_image_grid_writes_a_png_with_one_cell_per_image(tmp_path):
    images = np.random.default_rng(0).uniform(size=(7, 5, 5, 1)).astype(np.float32)
    images[3] = 0.0  # a constant image must not divide by zero
    path = image_grid(images, str(tmp_path / "g.png"), cols=4, titles=list("abcdefg"))
    w, h = Image.open(path).size
    assert (w, h) == (480, 300)  # 4 columns of 1.2 in, 2 rows of 1.3 in + 0.4 in, at 100 dpi
    for normalize in ("none", "shared"):
        image_grid(images[..., 0], str(tmp_path / f"{normalize}.png"), normalize=normalize)


def test_image_grid_refuses_bad_shapes_and_modes(tmp_path):
    with pytest.raises(ValueError, match="n, H, W"):
        image_grid(np.zeros((2, 3)), str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="normalize"):
        image_grid(np.zeros((2, 3, 3)), str(tmp_path / "x.png"), normalize="bogus")


def test_image_grid_of_no_images_says_none(tmp_path):
    path = image_grid([], str(tmp_path / "none.png"))
    assert Image.open(path).size == (200, 100)
