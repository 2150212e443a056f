"""dl.report.plots.boxes writes a PNG."""

from dl.report import plots


def test_boxes_writes_a_png(tmp_path):
    path = plots.boxes(
        {"vanilla": [3.0, 3.1, 2.9], "NFG": [3.5, 3.4, 3.6, 3.7]},
        str(tmp_path / "b.png"),
        ylabel="perplexity",
        title="t",
        reference="vanilla",
    )
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
