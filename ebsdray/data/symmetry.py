"""Crystal symmetry of alpha-Ti: the 12 proper rotations of point group 622, fundamental-zone
reduction and the disorientation angle.

Symmetry acts on the left (``s * q`` is the same orientation as ``q``; see
:mod:`ebsdray.conventions`). The scalar part of ``s * q`` equals that of ``q * s``, so the Rodrigues
fundamental zone (largest ``|q0|``: ``|r3| <= tan 15 deg`` and the twelve faces ``|r . n| <= 1`` of
the dodecagonal prism) is the same set for either side; only which equivalent is picked differs.
"""

from __future__ import annotations

import math

import torch

from ebsdray.data._arrays import as_float_tensor, numpy_or_torch
from ebsdray.data.rotations import quaternion_conjugate, quaternion_multiply, standardize

_HALF_SQRT3 = math.sqrt(3.0) / 2.0
_TAN15 = 2.0 - math.sqrt(3.0)


def _exact(x: float) -> float:
    """Snap the trigonometric values of multiples of 15 degrees that should be exactly 0."""
    return 0.0 if abs(x) < 1e-12 else x


def symmetry_operators(
    dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """The 12 rotations of point group 622 as unit quaternions, shape (12, 4), ``q0 >= 0``.

    Rows 0-5: ``k * 60`` degrees about the c-axis (z), k = 0..5 (row 0 is the identity).
    Rows 6-11: 180 degrees about the in-plane axes at ``j * 30`` degrees from x, j = 0..5 (these
    include both x and y, so the set does not depend on whether a1 or a1* lies along x).
    """
    ops = []
    for k in range(6):
        half = k * math.pi / 6.0
        q = (_exact(math.cos(half)), 0.0, 0.0, _exact(math.sin(half)))
        ops.append(q if q[0] >= 0 else tuple(-v for v in q))
    for j in range(6):
        phi = j * math.pi / 6.0
        ops.append((0.0, _exact(math.cos(phi)), _exact(math.sin(phi)), 0.0))
    return torch.tensor(ops, dtype=dtype, device=device)


@numpy_or_torch
def reduce_to_fundamental_zone(q: torch.Tensor) -> torch.Tensor:
    """The equivalent ``s * q`` (s in 622) with the largest ``|scalar part|``, standardized.

    Parameters
    ----------
    q : (..., 4) unit quaternions.

    Returns
    -------
    (..., 4) quaternions in the Rodrigues fundamental zone of 622, ``q0 >= 0``. On zone faces ties
    go to the first operator in :func:`symmetry_operators` order.
    """
    q = as_float_tensor(q)
    ops = symmetry_operators(q.dtype, q.device)
    # Scalar part of s * q is <conj(s), q>: one (.., 4) x (4, 12) product, no (.., 12, 4) buffer.
    scores = (q @ quaternion_conjugate(ops).T).abs()
    best = scores.argmax(dim=-1)
    return standardize(quaternion_multiply(ops[best], q))


@numpy_or_torch
def disorientation_deg(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Disorientation angle in degrees between orientations ``q1`` and ``q2`` under 622.

    Closed form: with ``M = q1 * conj(q2)`` (Hamilton) and
    ``m1 = max(|M0|, |M3|)``, ``m4 = min(|M0|, |M3|)``, ``m2 = max(|M1|, |M2|)``,
    ``m3 = min(|M1|, |M2|)``, the best scalar part over the 12 equivalents ``s * M`` is
    ``t = max(m1, m2, (sqrt3/2) m1 + m4/2, (sqrt3/2) m2 + m3/2)``, and the angle is
    ``2 acos(t)``. It is evaluated as ``2 atan2(|vector part|, t)`` of that same equivalent (its
    vector part is known in closed form too), which equals ``2 acos(min(t, 1))`` for unit inputs
    but needs no clamp and keeps float32 accurate near 0 degrees, where ``acos`` loses ~0.05 deg.

    Parameters
    ----------
    q1, q2 : (..., 4) unit quaternions, broadcast against each other.

    Returns
    -------
    (...) angles in degrees, in [0, ~93.84].
    """
    q1, q2 = as_float_tensor(q1), as_float_tensor(q2)
    a = quaternion_multiply(q1, quaternion_conjugate(q2)).abs()
    m1, m4 = torch.maximum(a[..., 0], a[..., 3]), torch.minimum(a[..., 0], a[..., 3])
    m2, m3 = torch.maximum(a[..., 1], a[..., 2]), torch.minimum(a[..., 1], a[..., 2])
    # The operators rotate the (M0, M3) and (M1, M2) planes by multiples of 30 degrees (and the
    # 2-folds swap the planes): the best scalar is the best projection of either pair onto
    # directions 30 degrees apart; the rest of the pair and the whole other pair form the vector.
    p2, q2_ = m1 * m1 + m4 * m4, m2 * m2 + m3 * m3

    def best_in_plane(big, small, other2):
        tilt = small >= _TAN15 * big  # the 30-degree direction beats the axis itself
        t = torch.where(tilt, _HALF_SQRT3 * big + 0.5 * small, big)
        perp = torch.where(tilt, 0.5 * big - _HALF_SQRT3 * small, small)
        return t, perp * perp + other2

    t_a, w2_a = best_in_plane(m1, m4, q2_)
    t_b, w2_b = best_in_plane(m2, m3, p2)
    use_a = t_a >= t_b
    t = torch.where(use_a, t_a, t_b)
    w = torch.sqrt(torch.where(use_a, w2_a, w2_b))
    return torch.rad2deg(2.0 * torch.atan2(w, t))
