"""Grain-boundary metrics on rasters: ground truth from grain ids, Chamfer distances, blurred BCE.

Boundary maps are boolean images ``(H, W)``; a boundary pixel stands for the point at its (row,
column) coordinates, in pixel units.

Chamfer has pytorch3d's semantics (``pytorch3d.loss.chamfer_distance`` with squared Euclidean
distances, ``point_reduction="mean"``) for the two point sets "predicted boundary pixels" and
"true boundary pixels". On a raster both directions are exact in linear time: the Euclidean distance
transform gives, for every pixel, the distance to the nearest pixel of a set, so each direction is
one transform plus a masked mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ebsdray.metrics._arrays import as_numpy, check_image


def grain_boundaries(grain_ids: Any) -> np.ndarray:
    """Ground-truth boundary map from grain labels.

    A pixel is a boundary pixel if one of its face-sharing (4-)neighbours carries another grain id.
    Id 0 (unindexed) is ignored on both sides: a 0 pixel is never a boundary pixel, and a 0
    neighbour does not make a pixel a boundary. Both sides of an interface are marked, which is
    also where a Sobel filter responds (it differentiates across the pixel).

    Parameters
    ----------
    grain_ids : (H, W) integer labels.

    Returns
    -------
    (H, W) bool.
    """
    ids = check_image("grain_ids", as_numpy(grain_ids))
    out = np.zeros(ids.shape, dtype=bool)
    for axis in (0, 1):
        a = np.moveaxis(ids, axis, 0)
        o = np.moveaxis(out, axis, 0)  # a view: writes land in ``out``
        differ = (a[1:] != a[:-1]) & (a[1:] != 0) & (a[:-1] != 0)
        o[1:] |= differ
        o[:-1] |= differ
    return out


def _squared_distance_to(mask: np.ndarray, empty: float) -> np.ndarray:
    """(H, W) squared Euclidean distance from every pixel to the nearest True pixel of ``mask``;
    ``empty`` everywhere when ``mask`` has no True pixel."""
    if not mask.any():
        return np.full(mask.shape, empty, dtype=np.float64)
    # The transform measures the distance to the nearest zero: make the set the zeros.
    return ndimage.distance_transform_edt(~mask) ** 2


def chamfer(
    pred_mask: Any, true_mask: Any, empty_distance: float | None = None
) -> dict[str, float]:
    """Chamfer distances between predicted and true boundary pixels (pytorch3d semantics).

    Parameters
    ----------
    pred_mask : (H, W) bool, predicted boundary pixels (point set X).
    true_mask : (H, W) bool, true boundary pixels (point set Y).
    empty_distance : the distance from any point to an empty set, in pixels. Default: the image
        diagonal ``sqrt(H^2 + W^2)``, an upper bound on every real distance in the image, so a
        prediction with no boundary pixel scores no better than any prediction with some, while
        averages over many sections stay finite (``math.inf`` is the strict alternative).

    Returns
    -------
    dict with float values
        ``forward``: mean over X of the squared distance to the nearest point of Y (false positives
        far from any boundary cost here); ``backward``: mean over Y of the squared distance to the
        nearest point of X (missed boundaries cost here); ``bidirectional``: their sum, the value
        ``pytorch3d.loss.chamfer_distance`` returns. A mean over an empty set is 0 (nothing to
        penalize), so two empty maps give 0.
    """
    pred = check_image("pred_mask", as_numpy(pred_mask, bool))
    true = check_image("true_mask", as_numpy(true_mask, bool))
    if pred.shape != true.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {true.shape}")
    h, w = pred.shape
    empty_sq = float(h * h + w * w) if empty_distance is None else float(empty_distance) ** 2
    forward = _squared_distance_to(true, empty_sq)[pred].sum() / max(int(pred.sum()), 1)
    backward = _squared_distance_to(pred, empty_sq)[true].sum() / max(int(true.sum()), 1)
    return {
        "forward": float(forward),
        "backward": float(backward),
        "bidirectional": float(forward + backward),
    }


def blurred_target(true_mask: Any, sigma: float = 3.0, radius: int = 5) -> np.ndarray:
    """Ground-truth boundary map blurred by a Gaussian and scaled so its maximum is 1.

    The scaling matters: a 2-pixel-wide boundary blurred with sigma 3 peaks near 0.25, and a BCE
    target that never reaches 1 would reward hedged, low confidences on the boundaries themselves.
    Dividing by the map's maximum makes boundary centres targets of ~1 and keeps the Gaussian's
    shape (the tolerance to small misregistration) unchanged.

    Parameters
    ----------
    true_mask : (H, W) bool.
    sigma : Gaussian standard deviation in pixels.
    radius : kernel half-width in pixels (the Gaussian is truncated there).

    Returns
    -------
    (H, W) float64 in [0, 1] (all zeros when ``true_mask`` is empty).
    """
    true = check_image("true_mask", as_numpy(true_mask, np.float64))
    # mode="reflect": a boundary at the image edge continues outside rather than fading.
    blurred = ndimage.gaussian_filter(true, sigma, radius=radius, mode="reflect")
    peak = blurred.max()
    return blurred / peak if peak > 0 else blurred


def blurred_bce(
    confidence: Any,
    true_mask: Any,
    sigma: float = 3.0,
    radius: int = 5,
    valid: Any = None,
    eps: float = 1e-6,
) -> float:
    """Binary cross-entropy between a boundary confidence and the blurred true boundary map.

    Parameters
    ----------
    confidence : (H, W) boundary confidence P in [0, 1].
    true_mask : (H, W) bool true boundaries; blurred by :func:`blurred_target`.
    sigma, radius : the blur (the task's definition: sigma 3, radius 5).
    valid : optional (H, W) bool; the mean runs over these pixels only.
    eps : P is clipped to ``[eps, 1 - eps]`` so the logarithms stay finite.

    Returns
    -------
    float, the mean over pixels of ``-(t log P + (1 - t) log(1 - P))``.
    """
    p = check_image("confidence", as_numpy(confidence, np.float64))
    t = blurred_target(true_mask, sigma, radius)
    if p.shape != t.shape:
        raise ValueError(f"confidence {p.shape} and true_mask {t.shape} differ in shape")
    p = np.clip(p, eps, 1.0 - eps)
    bce = -(t * np.log(p) + (1.0 - t) * np.log1p(-p))
    if valid is not None:
        bce = bce[as_numpy(valid, bool)]
    return float(bce.mean())
