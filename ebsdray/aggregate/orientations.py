"""Averaging orientations under 622 symmetry.

A set of orientations can only be averaged as quaternions once every member is written as the
symmetry-equivalent (and sign) closest to one common reference; otherwise two nearly identical
orientations on opposite faces of the fundamental zone (or with opposite quaternion signs) cancel
instead of agreeing. The blended 4-vector is then renormalized: for members within a few tens of
degrees this is the chordal L2 mean, within a fraction of a degree of the geodesic mean.
"""

from __future__ import annotations

import numpy as np

from ebsdray.data.rotations import quaternion_conjugate, quaternion_multiply, standardize
from ebsdray.data.symmetry import disorientation_deg, symmetry_operators


def align_to_reference(q: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The symmetry-equivalent ``s * q`` (s in 622, either sign) closest to ``reference``.

    Parameters
    ----------
    q : (..., 4) unit quaternions.
    reference : (..., 4) unit quaternions, broadcast against ``q``.

    Returns
    -------
    (..., 4) float64 quaternions with ``<s q, reference> >= 0`` maximal over the 12 operators.
    """
    q = np.asarray(q, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    ops = symmetry_operators().numpy()
    # <ref, s q> = <conj(s) ref, q> (left multiplication is orthogonal): rotate the reference, which
    # is usually K times smaller than q, instead of building all 12 equivalents of every member.
    ref_equiv = quaternion_multiply(quaternion_conjugate(ops), ref[..., None, :])  # (..., 12, 4)
    dots = (ref_equiv @ q[..., :, None])[..., 0]  # (..., 12)
    # The largest |dot| is the largest dot or the most negative one (then flip q's sign).
    positive = dots.max(axis=-1) >= -dots.min(axis=-1)
    best = np.where(positive, dots.argmax(axis=-1), dots.argmin(axis=-1))
    sign = np.where(positive, 1.0, -1.0)[..., None]
    return quaternion_multiply(ops[best], q) * sign


def medoid(q: np.ndarray) -> np.ndarray:
    """Per position, the member with the smallest summed disorientation to the others.

    Parameters
    ----------
    q : (n, ..., 4) unit quaternions, n members per position.

    Returns
    -------
    (..., 4) one of the members.
    """
    q = np.asarray(q, dtype=np.float64)
    cost = np.zeros(q.shape[:-1])
    for i in range(q.shape[0]):  # n small (K samples): n^2 / 2 angle maps, no (n, n, ...) buffer
        d = disorientation_deg(q[i][None], q[i + 1 :])  # (n - i - 1, ...)
        cost[i] += d.sum(axis=0)
        cost[i + 1 :] += d
    best = cost.argmin(axis=0)
    return np.take_along_axis(q, best[None, ..., None], axis=0)[0]


def orientation_mean(
    q: np.ndarray,
    weights: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    iterations: int = 2,
) -> np.ndarray:
    """Symmetry-aware (weighted) mean orientation over the first axis.

    Parameters
    ----------
    q : (n, ..., 4) unit quaternions.
    weights : optional (n, ...) non-negative weights (need not sum to 1); default equal.
    reference : optional (..., 4) starting reference; default the :func:`medoid`, which keeps one
        outlier (e.g. a sample from the neighbouring grain) from deciding the alignment.
    iterations : alignment passes; after the first, members are re-aligned to the current mean.

    Returns
    -------
    (..., 4) unit quaternions, ``q0 >= 0``.
    """
    q = np.asarray(q, dtype=np.float64)
    w = np.ones(q.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = medoid(q) if reference is None else np.asarray(reference, dtype=np.float64)
    for _ in range(max(iterations, 1)):
        s = (align_to_reference(q, mean[None]) * w[..., None]).sum(axis=0)
        # A zero sum needs exactly opposed members; keep the reference there.
        norm = np.linalg.norm(s, axis=-1, keepdims=True)
        mean = np.where(norm > 1e-12, s / np.maximum(norm, 1e-300), mean)
    return standardize(mean)


def orientation_spread_deg(q: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Mean disorientation in degrees of the members ``q`` (n, ..., 4) to ``mean`` (..., 4) -> (...)."""
    return disorientation_deg(np.asarray(q, np.float64), np.asarray(mean, np.float64)[None]).mean(0)
