"""Grain boundaries from the PL channels of a reconstruction set (design.md section 7).

Per sample, the Sobel gradient magnitude over the PL channels (root-sum-square over channels) is
min-max normalized to [0, 1]; the mean over the K samples is the boundary confidence P and their
variance the boundary uncertainty. The threshold is the elbow of P's sorted values, found with
``kneed``. The Sobel-on-observed-PL baseline is the same computation with K = 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kneed import KneeLocator
from scipy import ndimage

from ebsdray.data._arrays import as_numpy

_DERIVATIVE = np.array([-1.0, 0.0, 1.0])
_SMOOTHING = np.array([1.0, 2.0, 1.0])


def sobel_magnitude(images: Any) -> np.ndarray:
    """Sobel gradient magnitude, root-sum-square over channels and both image axes.

    ``scipy.ndimage.sobel`` smooths along every axis but the one it differentiates, which would
    blur across samples and channels of a stack; the two 1-D passes below touch only H and W.

    Parameters
    ----------
    images : (..., C, H, W).

    Returns
    -------
    (..., H, W) float64.
    """
    x = as_numpy(images, np.float64)
    if x.ndim < 3:
        raise ValueError(f"images must be (..., C, H, W); got shape {x.shape}")
    # mode="nearest": no invented edge at the image border.
    gh = ndimage.correlate1d(x, _DERIVATIVE, axis=-2, mode="nearest")
    gh = ndimage.correlate1d(gh, _SMOOTHING, axis=-1, mode="nearest")
    gw = ndimage.correlate1d(x, _DERIVATIVE, axis=-1, mode="nearest")
    gw = ndimage.correlate1d(gw, _SMOOTHING, axis=-2, mode="nearest")
    return np.sqrt((gh * gh + gw * gw).sum(axis=-3))


def edge_maps(pl_samples: Any) -> np.ndarray:
    """Per-sample Sobel magnitude, min-max normalized to [0, 1].

    Parameters
    ----------
    pl_samples : (K, C_PL, H, W) PL channels of K samples.

    Returns
    -------
    (K, H, W) float64; a sample with a constant magnitude (no edges at all) maps to zeros.
    """
    x = as_numpy(pl_samples, np.float64)
    if x.ndim != 4:
        raise ValueError(f"pl_samples must be (K, C_PL, H, W); got shape {x.shape}")
    g = sobel_magnitude(x)
    lo = g.min(axis=(1, 2), keepdims=True)
    span = g.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (g - lo) / np.where(span > 0, span, 1.0), 0.0)


def boundary_confidence(pl_samples: Any) -> np.ndarray:
    """Boundary confidence P (H, W) in [0, 1]: the mean over K of :func:`edge_maps`."""
    return edge_maps(pl_samples).mean(axis=0)


def boundary_uncertainty(pl_samples: Any) -> np.ndarray:
    """Per-pixel variance over K of the normalized edge maps, (H, W) (0 for K = 1)."""
    return edge_maps(pl_samples).var(axis=0)


def _odd_smooth(y: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a 1-D curve, extended beyond its ends by point reflection.

    Point (odd) reflection continues a curve's slope past its ends, so a straight stretch stays
    straight; the usual even reflection or edge padding flattens the ends and invents two knees.
    """
    pad = min(int(4 * sigma) + 1, y.size - 1)
    if sigma <= 0 or pad < 1:
        return y
    ext = np.concatenate([2 * y[0] - y[pad:0:-1], y, 2 * y[-1] - y[-2 : -pad - 2 : -1]])
    return ndimage.gaussian_filter1d(ext, sigma, mode="nearest")[pad:-pad]


def elbow_threshold(
    confidence: Any,
    smoothing: float = 0.01,
    max_points: int = 2000,
    sensitivity: float = 1.0,
    min_prominence: float = 0.02,
) -> float:
    """Threshold at the elbow of the sorted boundary confidence.

    P's values sorted in decreasing order form a convex decreasing curve: a steep head of edge
    pixels, then a long flat tail of grain interiors. The curve is subsampled to at most
    ``max_points`` evenly spaced ranks (kneed's cost grows with the length, and the elbow of a
    16k-point curve does not need every point), smoothed with a Gaussian of standard deviation
    ``smoothing`` times its length (stair steps from discrete values would otherwise make spurious
    local knees), and handed to ``kneed.KneeLocator(curve="convex", direction="decreasing")``;
    of its knees, the one farthest from the chord wins. The threshold is the raw P value at the
    knee's rank.

    Parameters
    ----------
    confidence : (H, W) (or any shape) boundary confidence.
    smoothing : Gaussian sigma as a fraction of the (subsampled) curve length.
    max_points : subsampling cap.
    sensitivity : kneed's ``S``.
    min_prominence : a knee counts only if the normalized curve departs from the chord between
        its ends by at least this much (kneed's difference curve); a nearly straight curve has no
        meaningful elbow.

    Returns
    -------
    float. ``inf`` for a constant map (nothing stands out, so no boundaries); the midpoint of the
    value range when there is no knee (a straight curve has no preferred cut).
    """
    v = np.sort(as_numpy(confidence, np.float64).ravel())[::-1]
    if v.size < 3 or v[0] - v[-1] <= 1e-12 * max(abs(v[0]), 1.0):
        return float("inf")
    ranks = np.unique(np.linspace(0, v.size - 1, min(v.size, max_points)).round().astype(np.int64))
    y = _odd_smooth(v[ranks], smoothing * ranks.size)
    kl = KneeLocator(ranks, y, S=sensitivity, curve="convex", direction="decreasing", online=True)
    if not kl.all_knees or np.max(kl.y_difference) < min_prominence:
        return float(0.5 * (v[0] + v[-1]))
    # Of the knees kneed detects, keep the most pronounced one (largest departure from the
    # chord): kneed's first knee can be a flat stretch at the head of the curve.
    at = np.searchsorted(ranks, np.asarray(kl.all_knees))
    return float(v[int(ranks[at[np.argmax(kl.y_difference[at])]])])


def threshold_boundaries(confidence: Any, threshold: float | None = None) -> np.ndarray:
    """(H, W) bool boundary map ``P >= threshold`` (default :func:`elbow_threshold`)."""
    p = as_numpy(confidence, np.float64)
    return p >= (elbow_threshold(p) if threshold is None else threshold)
