"""The model grid of an ingested volume, and resampling of EBSD and PL onto it.

Frame: lengths in microns from the centre of the EBSD map's first pixel, y down the rows, x along
the columns. Native EBSD pixel ``(r, c)`` sits at ``(r dy, c dx)``; model pixel ``(i, j)`` at
``(i p, j p)`` for the stated model pixel size ``p``; PL pixel ``(u, v)`` at
``(u p_pl, v p_pl) - origin``, where ``origin`` is where the EBSD map's first pixel lies in the PL
image (registration then corrects what this nominal placement gets wrong).

The native EBSD pixels stay the observed grid: native row ``r`` is model row ``floor(r dy / p +
1/2)``. With ``p = dy / k`` that is every k-th model row, so a map measured at twice the model's
pixel size observes 1/4 of the model's pixels ("1/4 resolution"). Every model pixel also gets the
nearest native EBSD pixel's values (grain ids for boundary metrics; the orientations are only
observed at the lattice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ebsdray.data.volume import Volume


@dataclass(frozen=True)
class ModelGrid:
    """Where the model's pixels are, and where the native EBSD pixels land on them.

    Attributes
    ----------
    pixel_um : model pixel size (microns).
    shape : (H, W) model pixels covering the EBSD map's field.
    ebsd_step_um : (dy, dx) native EBSD step.
    rows, cols : (Hn,), (Wn,) model rows / columns of the native rows / columns.
    """

    pixel_um: float
    shape: tuple[int, int]
    ebsd_step_um: tuple[float, float]
    rows: np.ndarray
    cols: np.ndarray

    @property
    def ebsd_observed(self) -> np.ndarray:
        """(H, W) bool lattice of the native EBSD pixels."""
        out = np.zeros(self.shape, bool)
        out[np.ix_(self.rows, self.cols)] = True
        return out

    def positions_um(self) -> tuple[np.ndarray, np.ndarray]:
        """(H,) y and (W,) x positions of the model pixels."""
        return np.arange(self.shape[0]) * self.pixel_um, np.arange(self.shape[1]) * self.pixel_um


def model_grid(
    native_shape: tuple[int, int], ebsd_step_um: tuple[float, float], pixel_um: float | None
) -> ModelGrid:
    """The model grid over an EBSD map of ``native_shape`` pixels.

    Parameters
    ----------
    native_shape : (Hn, Wn) of the EBSD map.
    ebsd_step_um : (dy, dx) of the EBSD map.
    pixel_um : model pixel size; None = half the EBSD step (EBSD on every second row and column).

    Raises
    ------
    ValueError : a model pixel coarser than the EBSD step (native pixels would collide).
    """
    dy, dx = (float(v) for v in ebsd_step_um)
    p = min(dy, dx) / 2 if pixel_um is None else float(pixel_um)
    if not (math.isfinite(p) and p > 0):
        raise ValueError(f"grid.pixel_size_um must be a positive length; got {pixel_um}")
    if p > min(dy, dx) * (1 + 1e-9):
        raise ValueError(
            f"the model pixel ({p:g} um) is coarser than the EBSD step ({dy:g} x {dx:g} um): "
            "native EBSD pixels would share model pixels. Choose grid.pixel_size_um <= the step."
        )
    hn, wn = native_shape
    shape = (round(hn * dy / p), round(wn * dx / p))
    rows = np.floor(np.arange(hn) * dy / p + 0.5).astype(np.int64)
    cols = np.floor(np.arange(wn) * dx / p + 0.5).astype(np.int64)
    return ModelGrid(p, shape, (dy, dx), rows, cols)


def upsample_ebsd(section: Volume, grid: ModelGrid) -> Volume:
    """Nearest native EBSD pixel at every model pixel (grain ids, orientations, validity).

    Parameters
    ----------
    section : the native map, D = 1, (1, Hn, Wn).

    Returns
    -------
    Volume (1, H, W) on the model grid; attrs copied.
    """
    h, w = grid.shape
    dy, dx = grid.ebsd_step_um
    hn, wn = section.shape[1:]
    r = np.clip(np.floor(np.arange(h) * grid.pixel_um / dy + 0.5).astype(np.int64), 0, hn - 1)
    c = np.clip(np.floor(np.arange(w) * grid.pixel_um / dx + 0.5).astype(np.int64), 0, wn - 1)
    rr, cc = np.ix_(r, c)
    return Volume(
        section.grain_ids[0][rr, cc][None],
        section.quaternions[0][rr, cc][None],
        section.valid[0][rr, cc][None],
        dict(section.attrs),
    )


def resample_pl(
    images: np.ndarray,
    pl_pixel_um: float,
    origin_um: tuple[float, float],
    y_um: np.ndarray,
    x_um: np.ndarray,
) -> np.ndarray:
    """PL images at the positions ``y_um x x_um`` of the EBSD frame (anti-aliased, bilinear).

    Parameters
    ----------
    images : (Hp, Wp, R) PL images.
    pl_pixel_um : PL pixel size.
    origin_um : (y, x) of the EBSD map's first pixel in the PL image, from PL pixel (0, 0).
    y_um, x_um : (H,), (W,) target positions in the EBSD frame.

    Returns
    -------
    (H, W, R) float64.

    Raises
    ------
    ValueError : the PL field does not cover the targets (wrong pixel size or origin).
    """
    hp, wp = images.shape[:2]
    u = (np.asarray(y_um) + origin_um[0]) / pl_pixel_um
    v = (np.asarray(x_um) + origin_um[1]) / pl_pixel_um
    if u.min() < -0.5 or v.min() < -0.5 or u.max() > hp - 0.5 or v.max() > wp - 0.5:
        raise ValueError(
            f"the PL image ({hp} x {wp} px of {pl_pixel_um:g} um) does not cover the EBSD field "
            f"(needs PL pixels y {u.min():.1f}..{u.max():.1f}, x {v.min():.1f}..{v.max():.1f}); "
            "check pl.pixel_size_um and pl.origin_um"
        )
    spacing = min(np.diff(y_um).min(initial=np.inf), np.diff(x_um).min(initial=np.inf))
    ratio = spacing / pl_pixel_um if math.isfinite(spacing) else 1.0
    img = np.asarray(images, dtype=np.float64)
    if ratio > 1:
        # Sampling coarser than the PL pixels: low-pass first, so noise and scratches average
        # over the target pixel instead of aliasing into it.
        sigma = 0.5 * math.sqrt(ratio**2 - 1)
        img = ndimage.gaussian_filter(img, (sigma, sigma, 0), mode="nearest")
    uu, vv = np.meshgrid(u, v, indexing="ij")
    out = np.empty((u.size, v.size, img.shape[2]))
    for k in range(img.shape[2]):
        out[..., k] = ndimage.map_coordinates(img[..., k], [uu, vv], order=1, mode="nearest")
    return out
