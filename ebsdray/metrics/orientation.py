"""Orientation error of a reconstructed EBSD map: disorientation over all pixels and near boundaries."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ebsdray.data.symmetry import disorientation_deg
from ebsdray.metrics._arrays import as_numpy, check_image
from ebsdray.metrics.boundaries import grain_boundaries


def near_boundaries(grain_ids: Any, distance_px: float = 2.0) -> np.ndarray:
    """(H, W) bool: pixels within ``distance_px`` (Euclidean) of a true boundary pixel.

    Boundary pixels themselves are included; a map without boundaries gives all False.
    """
    b = grain_boundaries(grain_ids)
    if not b.any():
        return b
    return ndimage.distance_transform_edt(~b) <= distance_px


def disorientation_stats(
    q_pred: Any,
    q_true: Any,
    grain_ids: Any,
    valid: Any = None,
    near_boundary_px: float = 2.0,
) -> dict[str, float]:
    """Mean disorientation (622 symmetry) of predicted against true orientations.

    Parameters
    ----------
    q_pred, q_true : (H, W, 4) unit quaternions (scalar first).
    grain_ids : (H, W) true grain labels, for the boundary neighbourhood (id 0 = unindexed).
    valid : optional (H, W) bool of pixels to score; default ``grain_ids > 0``.
    near_boundary_px : pixels within this Euclidean distance of a true boundary pixel form the
        boundary set (2 = the boundary band plus two pixels on each side).

    Returns
    -------
    dict with float values
        ``mean_deg``: mean over valid pixels; ``boundary_deg``: mean over valid pixels near true
        boundaries (NaN when there are none, e.g. a single grain).
    """
    qp = check_image("q_pred", as_numpy(q_pred, np.float64), 3)
    qt = check_image("q_true", as_numpy(q_true, np.float64), 3)
    ids = check_image("grain_ids", as_numpy(grain_ids))
    if qp.shape != qt.shape or qp.shape[:2] != ids.shape or qp.shape[2] != 4:
        raise ValueError(
            f"q_pred {qp.shape}, q_true {qt.shape} must be (H, W, 4) and grain_ids (H, W); "
            f"got grain_ids {ids.shape}"
        )
    ok = ids > 0 if valid is None else as_numpy(valid, bool)
    angles = disorientation_deg(qp, qt)
    near = near_boundaries(ids, near_boundary_px) & ok
    return {
        "mean_deg": float(angles[ok].mean()) if ok.any() else float("nan"),
        "boundary_deg": float(angles[near].mean()) if near.any() else float("nan"),
    }
