"""Figures of the results report, drawn from plain arrays (the report extracts the numbers).

A curve is ``Curve(label, x, mean, se, style)``: points with standard-error bars; x positions are
indices into the panel's categories (EBSD fractions) or numbers (K, spread).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


@dataclass
class Curve:
    """One line of a panel.

    Attributes
    ----------
    x, mean, se : (N,) positions, means and standard errors (NaN: no bar / no point).
    style : matplotlib keyword arguments (``color``, ``linestyle``, ``marker``).
    """

    label: str
    x: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    style: dict = field(default_factory=dict)


@dataclass
class Panel:
    """One axes: curves, labels, optional categorical ticks, log axes and reference lines."""

    title: str
    ylabel: str
    curves: list[Curve]
    xlabel: str = "EBSD fraction"
    ticks: Sequence[str] | None = None
    logx: bool = False
    logy: bool = False
    references: list[Curve] = field(default_factory=list)  # drawn as plain lines, no bars


def _draw(ax, panel: Panel) -> None:
    for c in panel.curves:
        ok = np.isfinite(c.mean)
        if not ok.any():
            continue
        se = np.where(np.isfinite(c.se), c.se, 0.0)
        ax.errorbar(
            c.x[ok],
            c.mean[ok],
            yerr=se[ok],
            label=c.label,
            capsize=3,
            lw=1.4,
            ms=4,
            **({"marker": "o"} | c.style),
        )
    for r in panel.references:
        ax.plot(r.x, r.mean, label=r.label, lw=1.0, **({"color": "0.4", "ls": ":"} | r.style))
    if panel.ticks is not None:
        ax.set_xticks(range(len(panel.ticks)), panel.ticks)
    if panel.logx:  # K: powers of two, labelled as numbers
        ax.set_xscale("log", base=2)
        xs = sorted({float(v) for c in panel.curves for v in c.x})
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
    if panel.logy:
        ax.set_yscale("log")
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)


def figure(panels: list[Panel], path: Path, title: str, columns: int = 4) -> Path | None:
    """Draw ``panels`` in a grid and save a PNG; None (nothing written) when no panel has data."""
    if not any(np.isfinite(c.mean).any() for p in panels for c in p.curves):
        return None
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.1 * cols, 3.3 * rows + 0.5), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        _draw(ax, panel)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend(
        [handles[k] for k in labels],
        labels,
        loc="lower center",
        ncol=min(len(labels), 5),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, fontsize=11)
    legend_rows = -(-len(labels) // 5)
    fig.tight_layout(rect=(0, 0.06 * legend_rows / rows, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
