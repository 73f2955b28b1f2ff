"""Baselines the model is compared against.

- Boundaries: Sobel directly on the observed PL channels, with the aggregator's normalization and
  elbow threshold (the aggregation of a single "sample", the observation itself).
- EBSD: nearest and (bi)linear upsampling of the observed pixels. Orientations are blended as
  quaternions after writing every neighbour as the symmetry-equivalent closest to the nearest
  (largest-weight) neighbour, then renormalized. Interpolating the cubochoric channels instead would
  be wrong wherever neighbours lie on opposite faces of the fundamental zone: their channels are
  near +1 and -1 and the blend is an unrelated orientation.

The unimodal-model baselines are the models themselves (``ebsdray.aggregate.aggregate`` with the
EBSD-only or PL-only samples). This is the one module of ``ebsdray.metrics`` that imports
``ebsdray.aggregate`` (to share the Sobel/elbow code); ``ebsdray.aggregate`` never imports metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from ebsdray.aggregate.boundaries import edge_maps, elbow_threshold
from ebsdray.aggregate.orientations import orientation_mean
from ebsdray.data.codec import ChannelCodec
from ebsdray.metrics._arrays import as_numpy


def sobel_baseline(pl_observed: Any) -> dict[str, Any]:
    """Boundaries by Sobel on the observed PL channels.

    Parameters
    ----------
    pl_observed : (C_PL, H, W) observed (noisy) PL channels.

    Returns
    -------
    dict with ``boundary`` (H, W) bool, ``boundary_confidence`` (H, W) in [0, 1] and
    ``boundary_threshold`` (float), as :func:`ebsdray.aggregate.aggregate` names them.
    """
    pl = as_numpy(pl_observed, np.float64)
    if pl.ndim != 3:
        raise ValueError(f"pl_observed must be (C_PL, H, W); got shape {pl.shape}")
    p = edge_maps(pl[None])[0]
    threshold = elbow_threshold(p)
    return {"boundary": p >= threshold, "boundary_confidence": p, "boundary_threshold": threshold}


def _check(q_obs: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    q = as_numpy(q_obs, np.float64)
    m = as_numpy(mask, bool)
    if q.ndim != 3 or q.shape[-1] != 4 or m.shape != q.shape[:2]:
        raise ValueError(f"q_obs must be (H, W, 4) and mask (H, W); got {q.shape} and {m.shape}")
    if not m.any():
        raise ValueError("no observed pixel: nothing to upsample")
    return q, m


def nearest_upsample(q_obs: Any, mask: Any) -> np.ndarray:
    """Every pixel takes the orientation of the nearest observed pixel (any pattern).

    Parameters
    ----------
    q_obs : (H, W, 4) quaternions; only entries where ``mask`` is True are read.
    mask : (H, W) bool observed pixels.

    Returns
    -------
    (H, W, 4) float64. Ties between equidistant observed pixels are broken by the distance
    transform's scan order.
    """
    q, m = _check(q_obs, mask)
    idx = ndimage.distance_transform_edt(~m, return_distances=False, return_indices=True)
    return q[idx[0], idx[1]]


def _grid_axes(m: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Observed rows and columns if ``m`` is a rectilinear grid (their outer product), else None."""
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    grid = np.zeros_like(m)
    grid[np.ix_(rows, cols)] = True
    return (rows, cols) if np.array_equal(grid, m) else None


def _bracket(nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For positions 0..n-1: the nodes below and above (clamped at the ends) and the weight of the
    upper one. Outside the first/last node both brackets are that node (constant extrapolation)."""
    i = np.arange(n)
    hi = np.clip(np.searchsorted(nodes, i, side="left"), 0, len(nodes) - 1)
    lo = np.clip(np.searchsorted(nodes, i, side="right") - 1, 0, len(nodes) - 1)
    lo_v, hi_v = nodes[lo], nodes[hi]
    span = hi_v - lo_v
    w = np.where(span > 0, (i - lo_v) / np.where(span > 0, span, 1), 0.0)
    return lo_v, hi_v, w


def _blend(neighbours: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted orientation mean of (n, ..., 4) neighbours with weights (n, ...), aligned to the
    largest-weight neighbour."""
    best = weights.argmax(axis=0)
    ref = np.take_along_axis(neighbours, best[None, ..., None], axis=0)[0]
    return orientation_mean(neighbours, weights, reference=ref, iterations=1)


def _bilinear(q: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    h, w = q.shape[:2]
    r0, r1, wr = _bracket(rows, h)
    c0, c1, wc = _bracket(cols, w)
    R0, C0 = np.meshgrid(r0, c0, indexing="ij")
    R1, C1 = np.meshgrid(r1, c1, indexing="ij")
    WR, WC = np.meshgrid(wr, wc, indexing="ij")
    neighbours = np.stack([q[R0, C0], q[R0, C1], q[R1, C0], q[R1, C1]])  # (4, H, W, 4)
    weights = np.stack([(1 - WR) * (1 - WC), (1 - WR) * WC, WR * (1 - WC), WR * WC])
    return _blend(neighbours, weights)


def _locate(points: np.ndarray, simplices: np.ndarray, shape: tuple[int, int]):
    """Triangle and barycentric weights of every pixel of an (H, W) image.

    ``scipy.spatial.Delaunay.find_simplex`` needs the triangulation's ``transform``, which scipy
    computes with one small LAPACK solve per triangle; under a multi-threaded BLAS on a busy
    machine that took seconds for 2000 triangles. The closed-form 2-D solve below, one bounding box
    per triangle, takes milliseconds. A pixel on a shared edge goes to the first triangle (either
    gives the same blend up to the alignment reference).

    Returns
    -------
    owner : (H * W,) triangle index, -1 outside the convex hull.
    weights : (H * W, 3) barycentric weights of the triangle's vertices.
    """
    h, w = shape
    owner = np.full(h * w, -1, dtype=np.int64)
    weights = np.zeros((h * w, 3))
    a, b, c = (points[simplices[:, i]] for i in range(3))  # (T, 2) each
    ab, ac = b - a, c - a
    det = ab[:, 0] * ac[:, 1] - ac[:, 0] * ab[:, 1]
    lo = np.floor(np.minimum(np.minimum(a, b), c)).astype(np.int64)
    hi = np.ceil(np.maximum(np.maximum(a, b), c)).astype(np.int64)
    eps = 1e-9
    for t in np.flatnonzero(np.abs(det) > eps):  # skip degenerate slivers
        rr, cc = np.mgrid[lo[t, 0] : hi[t, 0] + 1, lo[t, 1] : hi[t, 1] + 1]
        pr, pc = rr - a[t, 0], cc - a[t, 1]
        l1 = (pr * ac[t, 1] - ac[t, 0] * pc) / det[t]
        l2 = (ab[t, 0] * pc - pr * ab[t, 1]) / det[t]
        l0 = 1.0 - l1 - l2
        inside = (l0 >= -eps) & (l1 >= -eps) & (l2 >= -eps)
        idx = (rr * w + cc)[inside]
        free = owner[idx] < 0
        owner[idx[free]] = t
        weights[idx[free]] = np.stack([l0[inside], l1[inside], l2[inside]], axis=1)[free]
    return owner, weights.clip(0.0, 1.0)


def _barycentric(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation on the Delaunay triangulation of the observed pixels; pixels
    outside their convex hull (or every pixel, for a degenerate point set) take the nearest."""
    out = nearest_upsample(q, m)
    points = np.argwhere(m).astype(np.float64)
    if len(points) < 3:
        return out
    try:
        tri = Delaunay(points)
    except QhullError:  # all observed pixels on one line
        return out
    owner, weights = _locate(points, tri.simplices, m.shape)
    inside = np.flatnonzero(owner >= 0)
    vertices = points[tri.simplices[owner[inside]]].astype(np.int64)  # (P, 3, 2)
    neighbours = q[vertices[..., 0], vertices[..., 1]]  # (P, 3, 4)
    blended = _blend(np.moveaxis(neighbours, 1, 0), weights[inside].T)
    flat = out.reshape(-1, 4)
    flat[inside] = blended
    return flat.reshape(out.shape)


def bilinear_upsample(q_obs: Any, mask: Any) -> np.ndarray:
    """Linear upsampling of observed orientations, symmetry-aware.

    A grid pattern (observed pixels = observed rows x observed columns, e.g. every s-th row and
    column) is interpolated bilinearly between the 4 surrounding grid nodes, with constant
    extrapolation beyond the last row/column. Any other pattern (random pixels) is interpolated
    linearly inside the triangles of the observed pixels' Delaunay triangulation (what
    ``scipy.interpolate.griddata(method="linear")`` does, but with the symmetry alignment done per
    triangle, which griddata cannot do); pixels outside the convex hull take the nearest.

    Parameters
    ----------
    q_obs : (H, W, 4) quaternions; only entries where ``mask`` is True are read.
    mask : (H, W) bool observed pixels.

    Returns
    -------
    (H, W, 4) float64 unit quaternions, ``q0 >= 0``; equal to the observation at observed pixels.
    """
    q, m = _check(q_obs, mask)
    axes = _grid_axes(m)
    if axes is not None and min(len(axes[0]), len(axes[1])) >= 2:
        return _bilinear(q, *axes)
    return _barycentric(q, m)


def ebsd_baselines(observed: Any, mask: Any, codec: ChannelCodec) -> dict[str, np.ndarray]:
    """Nearest and bilinear upsampling from an observation in channel space.

    Parameters
    ----------
    observed : (3, H, W) observed EBSD channels (or (C, H, W) with the EBSD channels first).
    mask : (H, W) or per-channel (C, H, W) bool observation mask.
    codec : decodes the channels.

    Returns
    -------
    ``{"nearest": (H, W, 4), "bilinear": (H, W, 4)}`` quaternions.
    """
    ebsd = codec.layout().ebsd
    obs = as_numpy(observed, np.float64)[ebsd]
    m = as_numpy(mask, bool)
    m = m[ebsd].all(axis=0) if m.ndim == 3 else m
    q = codec.decode_ebsd(np.moveaxis(obs, 0, -1))
    return {"nearest": nearest_upsample(q, m), "bilinear": bilinear_upsample(q, m)}
