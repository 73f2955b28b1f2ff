"""Figures people look at: quick looks of data, samples and reconstructions (matplotlib, Agg).

They follow the field's conventions so a materials scientist reads them at a glance: orientation
maps in IPF-Z colours (:mod:`ebsdray.data.ipf`, 6/mmm standard triangle) with the colour key, a
scale bar from the pixel size (``attrs["step_size"]`` of a map read from a file, in µm; synthetic
volumes have none and are scaled in pixels), a colourbar with units on every scalar map, grain
boundaries as thin lines on pixel edges over the map, and the disorientation to the truth beside
the truth when it is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from ebsdray.data.ipf import CORNERS, ipf_colors, key_image
from ebsdray.data.symmetry import disorientation_deg
from ebsdray.metrics.orientation import disorientation_stats

PixelSize = tuple[float, str]  # (length of one pixel, unit), e.g. (2.0, "µm") or (1.0, "px")
BOUNDARY_DEG = 5.0  # neighbours further apart than this are drawn as a boundary (grain tolerance)
# Fixed scale of error and spread maps (the high-angle boundary limit): sections compare at a
# glance, and a few wrong pixels at 60 degrees do not turn the rest of the map black.
ANGLE_SCALE_DEG = 15.0
PL_LABEL = "PL intensity I / I₀ (×10⁻³)"  # reflected over incident, through the analyzer
PL_SCALE = 1e3  # Ti intensities lie in ~[1e-5, 2.2e-3]: shown in units of 1e-3
UNOBSERVED = 0.8  # grey of pixels without EBSD in an observation (unindexed pixels are black)
_KEY_LABEL = "ipf-key"  # Axes label of the key, so callers and tests can find it


def ebsd_rgb(ebsd: np.ndarray) -> np.ndarray:
    """EBSD channels (3, H, W) in [-1, 1] as an RGB image (H, W, 3) in [0, 1].

    The raw cubochoric channels, not an orientation colour key: kept for ``bench/quality_report``;
    figures use :func:`ipf_image`.
    """
    return np.clip((np.moveaxis(np.asarray(ebsd), 0, -1) + 1.0) / 2.0, 0.0, 1.0)


# --- building blocks ------------------------------------------------------------------------------
def pixel_size(attrs: Mapping[str, Any] | None) -> PixelSize:
    """Pixel size of a volume from its ``attrs``: ``step_size`` ([dy, dx], µm) or ``(1, "px")``.

    The EBSD readers record the file's step (OIM ``.ang`` and pymicro maps are in µm); the bar is
    horizontal, so dx is used.
    """
    step = (attrs or {}).get("step_size")
    if step is None:
        return 1.0, "px"
    dx = float(np.ravel(step)[-1])
    return (dx, "µm") if math.isfinite(dx) and dx > 0 else (1.0, "px")


def _nice_length(target: float) -> float:
    """The largest 1, 2 or 5 times a power of ten not above ``target`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def add_scale_bar(ax, width_px: int, pixel: PixelSize = (1.0, "px")) -> AnchoredSizeBar:
    """A scale bar of about a fifth of the image width, labelled in ``pixel``'s unit."""
    size, unit = pixel
    length = _nice_length(max(width_px * size / 5.0, size))
    bar = AnchoredSizeBar(
        ax.transData, length / size, f"{length:g} {unit}", "lower left", pad=0.25,
        borderpad=0.3, sep=2, frameon=True, size_vertical=max(width_px / 100, 0.5),
        fontproperties={"size": 6},
    )  # fmt: skip
    bar.patch.set(alpha=0.75, linewidth=0)
    ax.add_artist(bar)
    return bar


def add_colorbar(fig, image, ax, label: str, extend: str = "neither"):
    """A colourbar beside ``ax`` with its quantity and unit (``extend="max"``: values clip)."""
    cbar = fig.colorbar(image, ax=ax, shrink=0.85, pad=0.02, extend=extend)
    cbar.set_label(label, fontsize=7)
    cbar.ax.tick_params(labelsize=6)
    return cbar


def ipf_image(q: np.ndarray, valid: np.ndarray | None = None, fill: float = 0.0) -> np.ndarray:
    """IPF-Z colours (H, W, 3) of orientations (H, W, 4); pixels not ``valid`` get grey ``fill``."""
    rgb = ipf_colors(np.asarray(q, np.float64))
    if valid is not None:
        rgb[~np.asarray(valid, bool)] = fill
    return rgb


def label_edges(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel pairs across a grain boundary of a label map (H, W); label 0 (unindexed) is skipped.

    Returns ``(down, right)``: (H - 1, W) bool for pairs (i, j)-(i + 1, j) and (H, W - 1) bool for
    pairs (i, j)-(i, j + 1).
    """
    a = np.asarray(labels)
    down = (a[1:] != a[:-1]) & (a[1:] != 0) & (a[:-1] != 0)
    right = (a[:, 1:] != a[:, :-1]) & (a[:, 1:] != 0) & (a[:, :-1] != 0)
    return down, right


def orientation_edges(
    q: np.ndarray, threshold_deg: float = BOUNDARY_DEG
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel pairs of an orientation map (H, W, 4) whose disorientation exceeds ``threshold_deg``.

    Same layout as :func:`label_edges`; this is how EBSD software draws boundaries of a map that
    carries no grain ids.
    """
    q = np.asarray(q, np.float64)
    down = disorientation_deg(q[1:], q[:-1]) > threshold_deg
    right = disorientation_deg(q[:, 1:], q[:, :-1]) > threshold_deg
    return down, right


def edge_segments(edges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Boundary pixel pairs (:func:`label_edges` layout) -> (N, 2, 2) line segments
    ``[[x0, y0], [x1, y1]]`` on the shared pixel edges, in ``imshow`` data coordinates."""
    down, right = edges
    i, j = np.nonzero(down)  # edge between rows i and i + 1: horizontal, at y = i + 0.5
    horizontal = np.stack([np.c_[j - 0.5, i + 0.5], np.c_[j + 0.5, i + 0.5]], 1)
    i, j = np.nonzero(right)  # edge between columns j and j + 1: vertical, at x = j + 0.5
    vertical = np.stack([np.c_[j + 0.5, i - 0.5], np.c_[j + 0.5, i + 0.5]], 1)
    return np.concatenate([horizontal, vertical]).astype(float)


def draw_edges(ax, edges: tuple[np.ndarray, np.ndarray], color="black", lw: float = 0.5):
    """Draw boundary pixel pairs as thin segments on the shared pixel edge (imshow coordinates).

    One path of move-to/line-to pairs: a real map has ~1e5 edge segments, which as separate
    artists (a LineCollection) take seconds to build.
    """
    segments = edge_segments(edges)
    codes = np.tile([MplPath.MOVETO, MplPath.LINETO], len(segments))
    path = MplPath(segments.reshape(-1, 2), codes if len(segments) else None)
    patch = PathPatch(path, fill=False, edgecolor=color, linewidth=lw, capstyle="projecting")
    patch.set_label("boundaries")
    ax.add_patch(patch)
    return patch


def _miller_label(uvtw: str) -> str:
    """ "2-1-10" -> mathtext [2 1̄ 1̄ 0] with overbars for negative indices."""
    digits, neg = [], False
    for ch in uvtw:
        if ch == "-":
            neg = True
            continue
        digits.append(rf"\bar{{{ch}}}" if neg else ch)
        neg = False
    return "$[" + "".join(digits) + "]$"


def draw_ipf_key(ax, direction: str = "Z") -> None:
    """Draw the 6/mmm IPF colour key (standard triangle, corner labels) into ``ax``."""
    rgba, extent = key_image(240)
    ax.imshow(rgba, origin="lower", extent=extent, interpolation="bilinear")
    t = np.linspace(0.0, math.pi / 6, 32)
    ax.plot(np.r_[0.0, np.cos(t), 0.0], np.r_[0.0, np.sin(t), 0.0], color="black", lw=0.6)
    offsets = {"0001": (-0.04, -0.05, "right"), "2-1-10": (0.02, -0.05, "left")}
    for name, v in CORNERS.items():
        x, y = v[0] / (1 + v[2]), v[1] / (1 + v[2])  # stereographic projection
        dx, dy, ha = offsets.get(name, (0.02, 0.02, "left"))
        ax.text(x + dx, y + dy, _miller_label(name), fontsize=7, ha=ha, va="center")
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylim(-0.15, 0.62)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"IPF-{direction} (6/mmm)", fontsize=8)
    ax.set_label(_KEY_LABEL)


def _map_axes(ax, title: str, width_px: int, pixel: PixelSize | None) -> None:
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if pixel is not None:
        add_scale_bar(ax, width_px, pixel)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


# --- panels: each draws itself into (fig, ax) -----------------------------------------------------
Panel = Callable[[Any, Any], None]


def rgb_panel(
    rgb: np.ndarray,
    title: str,
    pixel: PixelSize | None,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    edge_color: str = "black",
) -> Panel:
    """An orientation map (H, W, 3) with optional thin boundaries and a scale bar."""

    def draw(fig, ax) -> None:
        ax.imshow(rgb, interpolation="nearest")
        if edges is not None:
            draw_edges(ax, edges, edge_color)
        _map_axes(ax, title, rgb.shape[1], pixel)

    return draw


def scalar_panel(
    img: np.ndarray,
    title: str,
    label: str,
    pixel: PixelSize | None,
    *,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    edge_color: str = "white",
    outline: np.ndarray | None = None,
    extend: str = "neither",
) -> Panel:
    """A scalar map (H, W) with a colourbar labelled ``label`` (quantity and unit).

    ``edges`` are drawn as pixel-edge segments, ``outline`` (an (H, W) bool band such as a
    thresholded boundary map) as its thin contour.
    """

    def draw(fig, ax) -> None:
        im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        add_colorbar(fig, im, ax, label, extend)
        if edges is not None:
            draw_edges(ax, edges, edge_color, lw=0.4)
        if outline is not None and outline.any():
            ax.contour(outline.astype(float), levels=[0.5], colors="tab:red", linewidths=0.5)
        _map_axes(ax, title, img.shape[1], pixel)

    return draw


def key_panel(fig, ax) -> None:
    draw_ipf_key(ax)


def panel_grid(rows: Sequence[Sequence[Panel]], title: str = "", size=(2.6, 2.3)):
    """A figure with one row of axes per panel row (short rows leave blank axes)."""
    rows = [r for r in rows if r]
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(size[0] * ncols, size[1] * len(rows) + 0.3),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for ax_row, panels in zip(axes, rows, strict=True):
        for ax, draw in zip(ax_row, panels, strict=False):
            draw(fig, ax)
        for ax in ax_row[len(panels) :]:
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _pixel_note(pixel: PixelSize) -> str:
    size, unit = pixel
    return "pixel size unknown (bars in px)" if unit == "px" else f"step {size:g} {unit}"


# --- one reconstructed section --------------------------------------------------------------------
def _error_panel(q: np.ndarray, truth, pixel: PixelSize) -> Panel:
    """Disorientation to the truth (degrees), with the true boundaries over it."""
    qt, ids, valid = truth.quaternions[0], truth.grain_ids[0], truth.valid[0]
    err = np.asarray(disorientation_deg(np.asarray(q, np.float64), qt.astype(np.float64)))
    err = np.where(valid, err, np.nan)
    stats = disorientation_stats(q, qt, ids, valid=valid)
    title = f"error vs truth: mean {stats['mean_deg']:.1f}°"
    if math.isfinite(stats["boundary_deg"]):  # NaN for a single grain
        title += f"\nnear boundaries {stats['boundary_deg']:.1f}°"
    return scalar_panel(
        err, title, "disorientation (°)", pixel, cmap="inferno", vmin=0.0,
        vmax=ANGLE_SCALE_DEG, extend="max", edges=label_edges(ids), edge_color="cyan",
    )  # fmt: skip


def _ebsd_panels(result, section, codec, pixel: PixelSize) -> list[Panel]:
    """Observed EBSD, super-resolved EBSD, truth, error to truth, spread over the samples."""
    obs, truth, panels = section.observation, section.truth, []
    ebsd = codec.layout().ebsd
    seen = obs.mask[ebsd].numpy().astype(bool).all(0)
    q = result.ebsd_quaternions
    if seen.any() and q is not None:  # a PL-only model never saw the EBSD
        q_obs = codec.decode_ebsd(np.moveaxis(np.nan_to_num(obs.y[ebsd].numpy()), 0, -1))
        rgb = ipf_image(q_obs, seen, UNOBSERVED)
        panels.append(rgb_panel(rgb, f"observed EBSD ({seen.mean():.0%} of pixels)", pixel))
    if q is not None:
        panels.append(rgb_panel(ipf_image(q), "super-resolved EBSD", pixel, orientation_edges(q)))
    if truth is not None:
        rgb = ipf_image(truth.quaternions[0], truth.valid[0])
        panels.append(rgb_panel(rgb, "true EBSD", pixel, label_edges(truth.grain_ids[0])))
        if q is not None:
            panels.append(_error_panel(q, truth, pixel))
    if "ebsd_spread_deg" in result.uncertainty:
        spread = result.uncertainty["ebsd_spread_deg"]
        panels.append(
            scalar_panel(spread, "EBSD spread over K", "disorientation to mean (°)", pixel,
                         cmap="magma", vmin=0.0, vmax=ANGLE_SCALE_DEG, extend="max")
        )  # fmt: skip
    return panels


def _pl_image(channels: np.ndarray, codec, stage_index: int = 0) -> np.ndarray:
    """PL channels (C_PL, H, W) decoded to the intensity (H, W) at one stage angle, in units of
    ``1 / PL_SCALE``."""
    pl = codec.decode_pl(np.moveaxis(np.asarray(channels, np.float64), 0, -1))[..., stage_index]
    return pl * PL_SCALE


def _pl_panels(result, section, codec, pixel: PixelSize) -> list[Panel]:
    """Observed and denoised PL (one shared intensity scale), boundary confidence and variance."""
    obs, truth, panels = section.observation, section.truth, []
    omega = float(codec.stage_angles_deg[0])
    pl, images = codec.layout().pl, []
    if obs.mask[pl].numpy().any() and result.pl_denoised is not None:  # the model saw the PL
        images.append((f"observed PL (ω = {omega:g}°)", _pl_image(obs.y[pl].numpy(), codec), None))
    if result.pl_denoised is not None:
        outline = None if result.boundary is None else np.asarray(result.boundary, bool)
        images.append(("denoised PL + boundaries", _pl_image(result.pl_denoised, codec), outline))
    if images:
        lo, hi = np.percentile(images[-1][1], [0.5, 99.5])  # the cleanest image sets the scale
        for title, img, outline in images:
            panels.append(
                scalar_panel(img, title, PL_LABEL, pixel, cmap="gray", vmin=lo, vmax=hi,
                             outline=outline)
            )  # fmt: skip
    true_edges = None if truth is None else label_edges(truth.grain_ids[0])
    if result.boundary_confidence is not None:
        title = "boundary confidence" + ("" if truth is None else " (cyan: truth)")
        panels.append(
            scalar_panel(result.boundary_confidence, title, "confidence (0-1)", pixel,
                         cmap="Greys", vmin=0.0, vmax=1.0, edges=true_edges, edge_color="cyan")
        )  # fmt: skip
    if "boundary_variance" in result.uncertainty:
        var = result.uncertainty["boundary_variance"]
        panels.append(scalar_panel(var, "boundary variance over K", "variance (-)", pixel,
                                   cmap="magma", vmin=0.0))  # fmt: skip
    return panels


def section_figure(
    result, section, codec, path: str | Path, pixel: PixelSize | None = None
) -> Path:
    """One reconstructed section: what was observed, what came out, how sure it is.

    Row 1 (EBSD, IPF-Z): observed EBSD (grey where unobserved), super-resolved EBSD with its
    boundaries, the true EBSD with the true boundaries and the disorientation error map (when the
    truth is known), the spread of the K samples. Row 2 (PL): observed and denoised PL at the
    first stage angle (the predicted boundary outlined in red), boundary confidence (true
    boundaries in cyan), boundary variance; then the IPF key. Panels the model's modalities do
    not give are left out.

    Parameters
    ----------
    result : a SectionResult.
    section : its ObservedSection (observation, truth).
    codec : the model's channel codec.
    path : PNG to write.
    pixel : (size, unit) of a pixel; default from the truth's ``attrs`` (:func:`pixel_size`).
    """
    truth_attrs = None if section.truth is None else section.truth.attrs
    pixel = pixel or pixel_size(truth_attrs)
    ebsd, pl = (
        _ebsd_panels(result, section, codec, pixel),
        _pl_panels(result, section, codec, pixel),
    )
    if ebsd:  # every EBSD row holds an IPF map: its key goes where there is room
        (pl if pl and len(pl) < len(ebsd) else ebsd).append(key_panel)
    k = result.info.get("samples", "?")
    title = f"section {result.index}  (K = {k}, {_pixel_note(pixel)})"
    return _save(panel_grid([ebsd, pl], title), path)


# --- a whole job ----------------------------------------------------------------------------------
# (panel title, y label with unit, lines: (legend, metric key, colour, style)); one colour per
# method, dashed = near boundaries.
_SUMMARY_GROUPS = (
    ("grain boundaries", "Chamfer distance (px²)",
     (("model", "chamfer", "C0", "-"), ("Sobel on PL", "sobel_chamfer", "C1", "-"))),
    ("orientations", "disorientation to truth (°)",
     (("model, mean", "disorientation_mean_deg", "C0", "-"),
      ("model, near boundaries", "disorientation_boundary_deg", "C0", "--"),
      ("bilinear, mean", "bilinear_disorientation_mean_deg", "C1", "-"),
      ("bilinear, near boundaries", "bilinear_disorientation_boundary_deg", "C1", "--"))),
    ("polarized light", "PSNR (dB)",
     (("denoised", "pl_psnr", "C0", "-"), ("observed", "observed_pl_psnr", "C1", "-"))),
)  # fmt: skip


def _micron_axis(ax, pixel: PixelSize) -> None:
    """A right-hand axis reading the Chamfer distance (a mean squared distance, px²) in the
    pixel's physical unit squared."""
    s = pixel[0] ** 2
    sec = ax.secondary_yaxis("right", functions=(lambda v: v * s, lambda v: v / s))
    sec.set_ylabel(f"({pixel[1]}²)", fontsize=8)
    sec.tick_params(labelsize=7)


def summary_figure(
    records: Sequence[dict], path: str | Path, title: str = "", pixel: PixelSize | None = None
) -> Path:
    """Metrics and cost per section: boundary error (model vs Sobel), orientation error (model vs
    bilinear upsampling, mean and near boundaries), PL PSNR, posterior samples drawn.

    ``records`` are per-section ``{"section", "info", "metrics"}`` dicts; panels and lines without
    data are left out. With a known ``pixel`` size the Chamfer axis also reads in its unit.
    """
    records = sorted(records, key=lambda r: r["section"])
    x = [r["section"] for r in records]

    def series(key: str) -> list[float] | None:
        vals = [r["metrics"].get(key, np.nan) for r in records]
        return None if np.all(np.isnan(vals)) else vals

    plots = []
    for name, ylabel, keys in _SUMMARY_GROUPS:
        lines = [(label, series(k), c, ls) for label, k, c, ls in keys]
        lines = [line for line in lines if line[1] is not None]
        if lines:
            plots.append((name, ylabel, lines))
    samples = [r["info"].get("samples", 0) for r in records]
    plots.append(("cost", "posterior samples K", [("K", samples, "C2", "-")]))
    fig, axes = plt.subplots(
        1, len(plots), figsize=(3.3 * len(plots), 2.9), squeeze=False, layout="constrained"
    )
    for ax, (name, ylabel, lines) in zip(axes[0], plots, strict=True):
        for label, vals, color, style in lines:
            ax.plot(x, vals, linestyle=style, color=color, marker="o", ms=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("section index", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if len(lines) > 1:
            ax.legend(fontsize=6)
        if ylabel.endswith("(px²)") and pixel is not None and pixel[1] != "px":
            _micron_axis(ax, pixel)
    axes[0, -1].set_ylim(bottom=0)  # K is a count: from zero, integer ticks
    axes[0, -1].yaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


# --- data and samples -----------------------------------------------------------------------------
def quicklook(
    rows: Sequence[dict], path: str | Path, stage_angle_indices: Sequence[int] = (0, 4, 9, 13)
) -> Path:
    """One row per section: IPF-Z map with grain boundaries, PL at some stage angles, PL channels.

    Parameters
    ----------
    rows : dicts with ``title``, ``grain_ids`` (H, W), ``quaternions`` (H, W, 4), ``channels``
        (3 + C_PL, H, W), ``intensities`` (H, W, R), ``stage_angles_deg`` (R,) and optionally
        ``pixel`` ((size, unit); default pixels).
    path : PNG to write.
    stage_angle_indices : which stage angles to show.

    The IPF key sits beside the first map; the PL panels share one intensity scale and
    colourbar, the PCA channels another.
    """
    n_pl, n_ang = max(r["channels"].shape[0] - 3 for r in rows), len(stage_angle_indices)
    pl_cols, pca_cols = slice(2, 2 + n_ang), slice(2 + n_ang, 2 + n_ang + n_pl)
    fig, axes = plt.subplots(
        len(rows), pca_cols.stop, figsize=(1.9 * pca_cols.stop, 2.0 * len(rows) + 0.4),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    all_pl = np.concatenate([r["intensities"].ravel() for r in rows]) * PL_SCALE
    lo, hi = np.percentile(all_pl, [0.5, 99.5])
    for ax_row, r in zip(axes, rows, strict=True):
        width, ids = r["grain_ids"].shape[1], r["grain_ids"]
        pixel = r.get("pixel", (1.0, "px"))
        rgb_panel(ipf_image(r["quaternions"]), "EBSD IPF-Z", pixel, label_edges(ids))(
            fig, ax_row[0]
        )
        ax_row[0].set_ylabel(r["title"], fontsize=8)
        for ax, k in zip(ax_row[pl_cols], stage_angle_indices, strict=True):
            img = r["intensities"][..., k] * PL_SCALE
            pl = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            _map_axes(ax, f"PL ω = {r['stage_angles_deg'][k]:.0f}°", width, None)
        for j, ax in enumerate(ax_row[pca_cols]):
            if j + 3 >= r["channels"].shape[0]:
                ax.set_axis_off()
                continue
            pca = ax.imshow(r["channels"][3 + j], cmap="RdBu_r", vmin=-1, vmax=1)
            _map_axes(ax, f"PL channel {j}", width, None)
        ax_row[1].set_axis_off()
    add_colorbar(fig, pl, axes[:, pl_cols], PL_LABEL)
    add_colorbar(fig, pca, axes[:, pca_cols], "PCA score (normalized)")
    draw_ipf_key(axes[0, 1])
    return _save(fig, path)


def samples_figure(samples: np.ndarray, codec, variant: str, stage_angle_index: int = 4):
    """Generated samples side by side: EBSD in IPF-Z colours and PL (decoded) at one stage angle.

    Parameters
    ----------
    samples : (B, C, H, W) network channels of ``variant`` ("multimodal", "ebsd" or "pl").
    codec : the :class:`~ebsdray.data.codec.ChannelCodec` of the model.
    stage_angle_index : which stage angle of the PL stack to show.

    Returns
    -------
    matplotlib Figure (caller saves or logs it, then closes it): one row per modality, the IPF
    key in an extra last column, one intensity colourbar for the PL row, a pixel scale bar on
    the first sample.
    """
    layout = codec.layout(variant)
    has_ebsd, has_pl = layout.has_ebsd, layout.has_pl
    rows, n = int(has_ebsd) + int(has_pl), samples.shape[0]
    fig, axes = plt.subplots(
        rows, n + 1, figsize=(1.6 * (n + 1), 1.8 * rows + 0.2), squeeze=False, layout="constrained"
    )
    width = samples.shape[-1]
    for i in range(n):
        bar = (1.0, "px") if i == 0 else None
        if has_ebsd:
            q = codec.decode_ebsd(np.moveaxis(np.asarray(samples[i, layout.ebsd]), 0, -1))
            axes[0, i].imshow(ipf_image(q), interpolation="nearest")
            _map_axes(axes[0, i], "", width, bar)
        if has_pl:
            pl = _pl_image(samples[i, layout.pl], codec, stage_angle_index)
            im = axes[rows - 1, i].imshow(pl, cmap="gray", vmin=0, vmax=2.2e-3 * PL_SCALE)
            _map_axes(axes[rows - 1, i], "", width, bar)
    if has_ebsd:
        axes[0, 0].set_ylabel("EBSD IPF-Z", fontsize=8)
        draw_ipf_key(axes[0, n])
    if has_pl:
        angle = codec.stage_angles_deg[stage_angle_index]
        axes[rows - 1, 0].set_ylabel(f"PL ω = {angle:.0f}°", fontsize=8)
        add_colorbar(fig, im, axes[rows - 1, :n], PL_LABEL)
    for ax in axes[int(has_ebsd) :, n]:
        ax.set_axis_off()
    return fig
