"""dl.report.heatmaps.attention_heatmaps writes one panel per sentence and model."""

import numpy as np
from PIL import Image

from dl.report.heatmaps import attention_heatmaps


def test_attention_heatmaps_writes_a_png(tmp_path):
    w = np.full((2, 3), 1 / 3)
    rows = {
        "softmax": [(w, list("abc"), ["x", "y"])] * 2,
        "sparsemax": [(np.eye(2, 3), list("abc"), ["x", "y"])],
    }
    path = attention_heatmaps(rows, str(tmp_path / "a.png"), title="t")
    assert Image.open(path).size == (int(3.6 * 2 * 110), int(3.4 * 2 * 110))
