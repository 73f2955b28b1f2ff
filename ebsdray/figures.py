"""Figures people look at: quick looks of data, samples and reconstructions (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def ebsd_rgb(ebsd: np.ndarray) -> np.ndarray:
    """EBSD channels (3, H, W) in [-1, 1] as an RGB image (H, W, 3) in [0, 1]."""
    return np.clip((np.moveaxis(np.asarray(ebsd), 0, -1) + 1.0) / 2.0, 0.0, 1.0)


def grain_colors(grain_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Random but fixed colour per grain id, (H, W) -> (H, W, 3); id 0 is black."""
    table = np.random.default_rng(seed).uniform(0.15, 1.0, size=(int(grain_ids.max()) + 1, 3))
    table[0] = 0.0
    return table[grain_ids]


def quicklook(
    rows: Sequence[dict], path: str | Path, stage_angle_indices: Sequence[int] = (0, 4, 9, 13)
) -> Path:
    """One row per section: grain ids, EBSD as RGB, PL at four stage angles, PL PCA channels.

    Parameters
    ----------
    rows : dicts with ``title``, ``grain_ids`` (H, W), ``channels`` (3 + C_PL, H, W),
        ``intensities`` (H, W, R) and ``stage_angles_deg`` (R,).
    path : PNG to write.
    stage_angle_indices : which stage angles to show.
    """
    n_pl = max(r["channels"].shape[0] - 3 for r in rows)
    ncols = 2 + len(stage_angle_indices) + n_pl
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(1.9 * ncols, 2.0 * len(rows)), squeeze=False
    )
    for ax_row, r in zip(axes, rows, strict=True):
        ax_row[0].imshow(grain_colors(r["grain_ids"]), interpolation="nearest")
        ax_row[0].set_ylabel(r["title"], fontsize=8)
        ax_row[1].imshow(ebsd_rgb(r["channels"][:3]), interpolation="nearest")
        lo, hi = np.percentile(r["intensities"], [0.5, 99.5])
        for j, k in enumerate(stage_angle_indices):
            ax = ax_row[2 + j]
            ax.imshow(r["intensities"][..., k], cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(f"PL {r['stage_angles_deg'][k]:.0f}°", fontsize=8)
        for j in range(r["channels"].shape[0] - 3):
            ax = ax_row[2 + len(stage_angle_indices) + j]
            ax.imshow(r["channels"][3 + j], cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(f"PCA {j}", fontsize=8)
        ax_row[0].set_title("grains", fontsize=8)
        ax_row[1].set_title("EBSD (cubochoric RGB)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def samples_figure(samples: np.ndarray, codec, variant: str, stage_angle_index: int = 4):
    """Generated samples side by side: EBSD as RGB and PL (decoded) at one stage angle.

    Parameters
    ----------
    samples : (B, C, H, W) network channels of ``variant`` ("multimodal", "ebsd" or "pl").
    codec : the :class:`~ebsdray.data.codec.ChannelCodec` of the model.

    Returns
    -------
    matplotlib Figure (caller saves or logs it, then closes it).
    """
    has_ebsd = variant in ("multimodal", "ebsd")
    has_pl = variant in ("multimodal", "pl")
    pl_start = 3 if variant == "multimodal" else 0
    rows = int(has_ebsd) + int(has_pl)
    n = samples.shape[0]
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.7 * rows), squeeze=False)
    for i in range(n):
        r = 0
        if has_ebsd:
            axes[r, i].imshow(ebsd_rgb(samples[i, :3]), interpolation="nearest")
            r += 1
        if has_pl:
            pl = codec.decode_pl(np.moveaxis(samples[i, pl_start:], 0, -1))[..., stage_angle_index]
            axes[r, i].imshow(pl, cmap="gray", vmin=0, vmax=2.2e-3)
    if has_ebsd:
        axes[0, 0].set_ylabel("EBSD", fontsize=8)
    if has_pl:
        angle = codec.stage_angles_deg[stage_angle_index]
        axes[rows - 1, 0].set_ylabel(f"PL {angle:.0f}°", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
