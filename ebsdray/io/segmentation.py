"""Grain segmentation of orientation maps by flood fill over face neighbours.

Two neighbouring valid pixels belong to the same grain when their disorientation (622 symmetry) is
below a tolerance; grains are the connected components of that graph. This is the neighbour-to-
neighbour criterion of DREAM.3D's "Segment Features (Misorientation)" filter (default 5 degrees), so
a slow orientation gradient can chain into one grain, exactly as a flood fill would.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DEFAULT_TOLERANCE_DEG = 5.0


def segment_grains(
    quaternions: np.ndarray,
    valid: np.ndarray | None = None,
    tolerance_deg: float = DEFAULT_TOLERANCE_DEG,
) -> np.ndarray:
    """Label grains: connected components of face neighbours closer than ``tolerance_deg``.

    Parameters
    ----------
    quaternions : (*S, 4) array
        Unit quaternions on a grid of any spatial shape ``S`` (e.g. (H, W) or (D, H, W)).
    valid : (*S,) bool array, optional
        Pixels to segment; the others get label 0 and never connect grains. Default: all.
    tolerance_deg : float
        Largest disorientation (degrees, 622 symmetry) between neighbours of one grain.

    Returns
    -------
    (*S,) int32
        0 for invalid pixels, grains numbered 1..N in raster order of their first pixel.
    """
    # Imported here: the symmetry module belongs to the data layer and is the heavier import.
    from ebsdray.data.symmetry import disorientation_deg

    q = np.asarray(quaternions, dtype=np.float64)
    spatial = q.shape[:-1]
    if q.shape[-1] != 4 or len(spatial) == 0:
        raise ValueError(f"quaternions must be (*S, 4); got {q.shape}")
    valid = np.ones(spatial, bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != spatial:
        raise ValueError(f"valid must have shape {spatial}; got {valid.shape}")
    n = valid.size
    # A zero tolerance joins nothing, even identical orientations (angle < 0 is never true).
    cos_tol = np.cos(np.deg2rad(tolerance_deg) / 2) if tolerance_deg > 0 else np.inf
    index = np.arange(n).reshape(spatial)
    rows, cols = [], []
    for axis in range(len(spatial)):
        lo = tuple(slice(None, -1) if a == axis else slice(None) for a in range(len(spatial)))
        hi = tuple(slice(1, None) if a == axis else slice(None) for a in range(len(spatial)))
        both = valid[lo] & valid[hi]
        qa, qb = q[lo][both], q[hi][both]
        # The disorientation never exceeds the plain misorientation 2 acos|qa.qb|, so most pairs
        # (inside grains) are decided without the 12-operator symmetry search.
        dot = np.abs(np.einsum("ij,ij->i", qa, qb))
        close = dot > cos_tol
        unsure = ~close
        if unsure.any():
            angle = np.asarray(disorientation_deg(qa[unsure], qb[unsure]))
            close[unsure] = angle < tolerance_deg
        rows.append(index[lo][both][close])
        cols.append(index[hi][both][close])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    labels = np.zeros(n, np.int32)
    flat_valid = valid.ravel()
    comp = component[flat_valid]
    if comp.size:
        # Renumber so labels do not depend on scipy's internal order: first pixel in raster order.
        _, first, inverse = np.unique(comp, return_index=True, return_inverse=True)
        rank = np.empty(first.size, np.int64)
        rank[np.argsort(first)] = np.arange(first.size)
        labels[flat_valid] = rank[inverse] + 1
    return labels.reshape(spatial)
