"""dl.report.plots.image_grid writes a PNG whose size follows the grid (rows of ncols panels)."""

import matplotlib.image
import numpy as np

from dl.report import plots


def test_image_grid_layout_and_empty(tmp_path):
    rng = np.random.default_rng(0)
    ims = [rng.random((28, 28, 1), dtype=np.float32) for _ in range(10)]
    wide = plots.image_grid(ims, str(tmp_path / "a.png"), titles=["7 -> 1"] * 10, ncols=5)
    tall = plots.image_grid(ims[:4], str(tmp_path / "b.png"), ncols=2)
    a, b = matplotlib.image.imread(wide), matplotlib.image.imread(tall)
    # figsize (1.2 * ncols, 1.4 * nrows) inches at 110 dpi: 5x2 panels vs 2x2 panels.
    assert a.shape[:2] == (round(1.4 * 2 * 110), round(1.2 * 5 * 110))
    assert b.shape[:2] == (round(1.4 * 2 * 110), round(1.2 * 2 * 110))
    empty = matplotlib.image.imread(plots.image_grid([], str(tmp_path / "c.png")))
    assert empty.shape[:2] == (round(1.4 * 110), round(1.2 * 110))
