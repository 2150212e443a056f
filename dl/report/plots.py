"""Plots as PNG files; matplotlib's Agg backend so that no display is ever needed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def learning_curves(
    history: Sequence[dict[str, Any]],
    path: str,
    *,
    keys: Sequence[str] = ("loss", "val_loss", "val_accuracy"),
    title: str = "",
) -> str:
    """One panel per key, plotted against `step`; rows of `history` lacking a key are skipped."""
    keys = [k for k in keys if any(k in row for row in history)]
    fig, axes = plt.subplots(
        1, max(len(keys), 1), figsize=(4.5 * max(len(keys), 1), 3.5), squeeze=False
    )
    for ax, key in zip(axes[0], keys):
        rows = [r for r in history if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows])
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logy: bool = False,
    logx: bool = False,
) -> str:
    """Several named (x, y) lines on one axis."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def boxes(
    groups: dict[str, Sequence[float]],
    path: str,
    *,
    ylabel: str,
    title: str = "",
    reference: str | None = None,
) -> str:
    """One box per named group (median, quartiles, whiskers at 1.5 IQR) with the points over
    it, as in Greff et al. 2015's fig. 3; `reference` names a group whose median is drawn as a
    dashed line across the plot."""
    names = list(groups)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(names) + 1.5), 4))
    ax.boxplot([list(groups[n]) for n in names], tick_labels=names)
    for i, n in enumerate(names, start=1):
        ax.plot([i] * len(groups[n]), list(groups[n]), "o", ms=3, alpha=0.6, color="C1")
    if reference is not None:
        values = sorted(groups[reference])
        mid = len(values) // 2
        median = values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])
        ax.axhline(median, ls="--", lw=0.8, color="gray")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bands(
    series: dict[str, tuple[Sequence[float], Any]],
    path: str,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logy: bool = False,
) -> str:
    """Named runs over seeds on one axis: for each label, x [T] and y [seeds, T]; the line is
    the mean over seeds and the band spans the lowest to the highest seed (NaNs skipped)."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, (x, y)) in enumerate(series.items()):
        y = np.asarray(y, dtype=float)
        ax.plot(x, np.nanmean(y, axis=0), label=label, color=f"C{i}")
        ax.fill_between(x, np.nanmin(y, axis=0), np.nanmax(y, axis=0), color=f"C{i}", alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
