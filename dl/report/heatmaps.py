"""Attention weights as heatmaps: rows of panels (one row per model, one panel per sentence),
target tokens down, source tokens across; matplotlib Agg."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

Panel = tuple[np.ndarray, Sequence[str], Sequence[str]]  # weights [T, S], source, target tokens


def attention_heatmaps(rows: dict[str, list[Panel]], path: str, *, title: str = "") -> str:
    """Draws ``{row label: [(weights [T, S], source tokens [S], target tokens [T]), ...]}``,
    every panel on the shared [0, 1] scale, so an exact zero is the same white everywhere."""
    labels = list(rows)
    cols = max(len(p) for p in rows.values())
    fig, axes = plt.subplots(
        len(labels), cols, figsize=(3.6 * cols, 3.4 * len(labels)), squeeze=False
    )
    for r, label in enumerate(labels):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(rows[label]):
                ax.axis("off")
                continue
            weights, src, tgt = rows[label][c]
            ax.imshow(np.asarray(weights), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(len(src)), src, rotation=90, fontsize=6)
            ax.set_yticks(range(len(tgt)), tgt, fontsize=6)
            if c == 0:
                ax.set_ylabel(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
