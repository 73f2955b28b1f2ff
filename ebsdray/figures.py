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


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section_figure(result, section, codec, path: str | Path) -> Path:
    """One reconstructed section: what was observed, what came out, how sure it is.

    Panels (those the model's modalities allow): observed PL (channel 0), observed EBSD (grey
    where unobserved), super-resolved EBSD, boundary confidence with the thresholded boundary
    (and the true one, when known, in cyan), EBSD spread or boundary variance, true grains.

    Parameters
    ----------
    result : a SectionResult.
    section : its ObservedSection (observation, truth).
    codec : the model's channel codec.
    """
    obs = section.observation
    panels: list[tuple[str, np.ndarray, dict]] = []
    y, m = obs.y.numpy(), obs.mask.numpy()
    if result.pl_denoised is not None or obs.mask[3:].any():
        panels.append(("observed PL (ch 0)", np.nan_to_num(y[3]), {"cmap": "gray"}))
    if m[:3].any():
        seen = np.where(m[:3].all(0)[..., None], ebsd_rgb(np.nan_to_num(y[:3])), 0.5)
        panels.append((f"observed EBSD ({m[0].mean():.0%})", seen, {}))
    if result.ebsd_quaternions is not None:
        channels = codec.encode_ebsd(np.asarray(result.ebsd_quaternions, np.float64))  # (H, W, 3)
        rgb = ebsd_rgb(np.moveaxis(channels, -1, 0))
        panels.append(("super-resolved EBSD", rgb, {}))
    if result.boundary_confidence is not None:
        conf = np.asarray(result.boundary_confidence)
        overlay = np.stack([conf, conf, conf], -1)
        overlay[np.asarray(result.boundary)] = (1.0, 0.2, 0.1)
        panels.append(("boundary confidence + boundary", overlay, {}))
    if "ebsd_spread_deg" in result.uncertainty:
        panels.append(
            ("EBSD spread (deg)", result.uncertainty["ebsd_spread_deg"], {"cmap": "magma"})
        )
    elif "boundary_variance" in result.uncertainty:
        panels.append(
            ("boundary variance", result.uncertainty["boundary_variance"], {"cmap": "magma"})
        )
    if section.truth is not None:
        panels.append(("true grains", grain_colors(section.truth.grain_ids[0]), {}))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6), squeeze=False)
    for ax, (title, img, kw) in zip(axes[0], panels, strict=True):
        im = ax.imshow(img, interpolation="nearest", **kw)
        if img.ndim == 2 and "cmap" in kw and kw["cmap"] != "gray":
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    k = result.info.get("samples", "?")
    fig.suptitle(f"section {result.index}  (K = {k})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def summary_figure(records: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Metrics and cost per section: Chamfer (model vs Sobel), mean disorientation (model vs
    bilinear), posterior samples drawn. ``records`` are per-section ``{"section", "info",
    "metrics"}`` dicts; panels without data are left out."""
    records = sorted(records, key=lambda r: r["section"])
    x = [r["section"] for r in records]

    def series(key: str) -> list[float] | None:
        vals = [r["metrics"].get(key, np.nan) for r in records]
        return None if np.all(np.isnan(vals)) else vals

    groups = [
        ("Chamfer distance (px)", [("model", "chamfer"), ("Sobel on PL", "sobel_chamfer")]),
        (
            "mean disorientation (deg)",
            [
                ("model", "disorientation_mean_deg"),
                ("bilinear", "bilinear_disorientation_mean_deg"),
            ],
        ),
    ]
    plots = []
    for label, keys in groups:
        lines = [(name, series(k)) for name, k in keys]
        lines = [(n, v) for n, v in lines if v is not None]
        if lines:
            plots.append((label, lines))
    plots.append(("posterior samples", [("K", [r["info"].get("samples", 0) for r in records])]))
    fig, axes = plt.subplots(1, len(plots), figsize=(3.6 * len(plots), 2.8), squeeze=False)
    for ax, (label, lines) in zip(axes[0], plots, strict=True):
        for name, vals in lines:
            ax.plot(x, vals, marker="o", ms=3, label=name)
        ax.set_xlabel("section")
        ax.set_ylabel(label, fontsize=8)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
