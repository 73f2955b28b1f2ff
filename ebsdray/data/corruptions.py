"""Test-time corruptions of PL image stacks: the troubles of real data.

Layout: images ``(..., H, W, R)``, stage angle last, as :func:`ebsdray.data.pl.pl_intensities`
returns for a section (``(H, W, R)``). A 2-D image ``(H, W)`` works too: pass it as
``img[..., None]``. Every function is pure (returns a new float array, never writes its input)
and draws all randomness from ``rng`` (a ``numpy.random.Generator`` or a seed). Spatial patterns
(scratches, illumination, warps) are the same at every stage angle and every leading index,
because they belong to the sample or the optics, not to one exposure.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

Rng = np.random.Generator | int | None


def _check(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim < 3:
        raise ValueError(f"images must be (..., H, W, R); got shape {img.shape}")
    return img.astype(np.result_type(img.dtype, np.float32), copy=True)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:h, 0:w].astype(np.float64)


def gaussian_noise(img: np.ndarray, sigma: float, rng: Rng = None) -> np.ndarray:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` (units of ``img``).

    Parameters
    ----------
    img : (..., H, W, R) images.

    Returns
    -------
    (..., H, W, R) noisy images.
    """
    out = _check(img)
    rng = np.random.default_rng(rng)
    return out + rng.normal(0.0, sigma, out.shape).astype(out.dtype)


def scratches(
    img: np.ndarray,
    n: int = 3,
    width: float = 1.5,
    rng: Rng = None,
    *,
    contrast: tuple[float, float] = (0.3, 0.8),
) -> np.ndarray:
    """Long thin straight streaks (polishing scratches), darker or brighter, at every stage angle.

    Each scratch is a segment of random direction, 0.6-1.5 image diagonals long, with a soft
    profile of full width ``width`` pixels; inside it the image is multiplied by ``1 - c``
    (dark, probability 2/3) or ``1 + c`` (bright) with ``c`` uniform in ``contrast``.

    Parameters
    ----------
    img : (..., H, W, R) images.
    n : number of scratches.
    width : full width at half maximum of a scratch, pixels.

    Returns
    -------
    (..., H, W, R) scratched images.
    """
    out = _check(img)
    rng = np.random.default_rng(rng)
    h, w = out.shape[-3:-1]
    yy, xx = _grid(h, w)
    diag = math.hypot(h, w)
    factor = np.ones((h, w))
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        theta = rng.uniform(0, math.pi)
        half_len = 0.5 * diag * rng.uniform(0.6, 1.5)
        c = rng.uniform(*contrast) * (-1.0 if rng.random() < 2 / 3 else 1.0)
        ux, uy = math.cos(theta), math.sin(theta)
        along = (xx - cx) * ux + (yy - cy) * uy
        across = -(xx - cx) * uy + (yy - cy) * ux
        # Distance to the segment, so scratches end (they need not cross the whole field).
        dist = np.hypot(across, np.clip(np.abs(along) - half_len, 0, None))
        factor *= 1 + c * np.exp(-4 * math.log(2) * (dist / width) ** 2)
    return out * factor[..., None].astype(out.dtype)


def illumination_gradient(img: np.ndarray, strength: float = 0.3, rng: Rng = None) -> np.ndarray:
    """Multiply by a smooth illumination field: a linear ramp plus a broad off-centre hot spot.

    The field has mean ~1 and spans about ``1 - strength/2`` to ``1 + strength/2``.

    Parameters
    ----------
    img : (..., H, W, R) images.
    strength : peak-to-peak relative variation of the illumination.

    Returns
    -------
    (..., H, W, R) images; the field is the same at every stage angle.
    """
    out = _check(img)
    rng = np.random.default_rng(rng)
    h, w = out.shape[-3:-1]
    yy, xx = _grid(h, w)
    yy, xx = yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5
    phi = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(phi) * xx + math.sin(phi) * yy
    cy, cx = rng.uniform(-0.5, 0.5, 2)
    spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(0.3, 0.6) ** 2))
    field = rng.uniform(0.3, 0.7) * ramp / max(np.ptp(ramp), 1e-12) + rng.uniform(0.3, 0.7) * spot
    field = (field - field.min()) / max(np.ptp(field), 1e-12) - 0.5  # [-0.5, 0.5]
    return out * (1 + strength * field)[..., None].astype(out.dtype)


def smooth_displacement(
    shape: tuple[int, int], max_shift_px: float, rng: Rng = None, smoothness: float | None = None
) -> np.ndarray:
    """A smooth random displacement field whose largest displacement is ``max_shift_px``.

    Parameters
    ----------
    shape : (H, W).
    smoothness : correlation length in pixels (Gaussian filter sigma); default ``min(H, W) / 6``.

    Returns
    -------
    (2, H, W) float64 displacements (dy, dx) in pixels, ``max |(dy, dx)| == max_shift_px``.
    """
    rng = np.random.default_rng(rng)
    h, w = shape
    sigma = smoothness if smoothness is not None else max(min(h, w) / 6, 1.0)
    field = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap") for _ in (0, 1)]
    )
    peak = np.hypot(field[0], field[1]).max()
    return field * (max_shift_px / peak) if peak > 0 else field


def misregistration_warp(
    img: np.ndarray,
    max_shift_px: float = 2.0,
    rng: Rng = None,
    *,
    smoothness: float | None = None,
    order: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp images by a smooth random displacement (EBSD-to-PL misregistration).

    ``out[y, x] = img[y + dy(y, x), x + dx(y, x)]`` with linear interpolation (``order``) and
    edge values repeated outside the image.

    Parameters
    ----------
    img : (..., H, W, R) images.
    max_shift_px : largest displacement in pixels.
    smoothness : correlation length of the field in pixels (see :func:`smooth_displacement`).

    Returns
    -------
    warped : (..., H, W, R) images.
    field : (2, H, W) displacements (dy, dx) in pixels.
    """
    out = _check(img)
    h, w = out.shape[-3:-1]
    field = smooth_displacement((h, w), max_shift_px, rng, smoothness)
    yy, xx = _grid(h, w)
    coords = np.stack([yy + field[0], xx + field[1]])
    planes = np.moveaxis(out, -1, -3).reshape(-1, h, w)  # every stage angle and leading index
    warped = np.stack(
        [ndimage.map_coordinates(p, coords, order=order, mode="nearest") for p in planes]
    )
    warped = np.moveaxis(warped.reshape(*out.shape[:-3], out.shape[-1], h, w), -3, -1)
    return warped.astype(out.dtype, copy=False), field
