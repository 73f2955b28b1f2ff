"""Rotation representations: Bunge Euler angles, orientation matrices, unit quaternions.

Conventions in :mod:`ebsdray.conventions` (passive, scalar-first Hamilton quaternions, q0 >= 0).
Every function takes numpy arrays or torch tensors (any leading shape) and returns the same kind.
"""

from __future__ import annotations

import torch

from ebsdray.data._arrays import as_float_tensor, numpy_or_torch


@numpy_or_torch
def standardize(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion with ``q0 >= 0``.

    Parameters
    ----------
    q : (..., 4) quaternions, any norm > 0.
    """
    q = as_float_tensor(q)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


@numpy_or_torch
def quaternion_conjugate(q: torch.Tensor) -> torch.Tensor:
    """``(q0, -q1, -q2, -q3)`` for ``q`` of shape (..., 4)."""
    q = as_float_tensor(q)
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


@numpy_or_torch
def quaternion_multiply(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``p * q`` (broadcasting over leading dims), shapes (..., 4)."""
    p, q = as_float_tensor(p), as_float_tensor(q)
    p0, p1, p2, p3 = p.unbind(-1)
    q0, q1, q2, q3 = q.unbind(-1)
    return torch.stack(
        [
            p0 * q0 - p1 * q1 - p2 * q2 - p3 * q3,
            p0 * q1 + p1 * q0 + p2 * q3 - p3 * q2,
            p0 * q2 - p1 * q3 + p2 * q0 + p3 * q1,
            p0 * q3 + p1 * q2 - p2 * q1 + p3 * q0,
        ],
        dim=-1,
    )


@numpy_or_torch
def euler_to_quaternion(euler: torch.Tensor) -> torch.Tensor:
    """Bunge Euler angles (phi1, Phi, phi2) in radians (..., 3) -> quaternions (..., 4), q0 >= 0."""
    e = as_float_tensor(euler)
    phi1, Phi, phi2 = e.unbind(-1)
    sigma, delta = 0.5 * (phi1 + phi2), 0.5 * (phi1 - phi2)
    c, s = torch.cos(0.5 * Phi), torch.sin(0.5 * Phi)
    q = torch.stack(
        [c * torch.cos(sigma), -s * torch.cos(delta), -s * torch.sin(delta), -c * torch.sin(sigma)],
        dim=-1,
    )
    return torch.where(q[..., :1] < 0, -q, q)


@numpy_or_torch
def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Passive orientation matrix ``g`` (..., 3, 3) of unit quaternions (..., 4).

    ``g`` maps sample-frame vectors to crystal-frame vectors: ``v_c = g @ v_s``. In this convention
    ``g`` is the usual rotation matrix of ``q`` under the Hamilton product (``g v = q v q*``).
    """
    q = as_float_tensor(q)
    q0, q1, q2, q3 = q.unbind(-1)
    qbar = q0 * q0 - (q1 * q1 + q2 * q2 + q3 * q3)
    rows = [
        [qbar + 2 * q1 * q1, 2 * (q1 * q2 - q0 * q3), 2 * (q1 * q3 + q0 * q2)],
        [2 * (q1 * q2 + q0 * q3), qbar + 2 * q2 * q2, 2 * (q2 * q3 - q0 * q1)],
        [2 * (q1 * q3 - q0 * q2), 2 * (q2 * q3 + q0 * q1), qbar + 2 * q3 * q3],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


@numpy_or_torch
def matrix_to_quaternion(g: torch.Tensor) -> torch.Tensor:
    """Passive orientation matrices (..., 3, 3) -> unit quaternions (..., 4), q0 >= 0.

    Uses the largest-diagonal branch for every element, so it is accurate for all rotations.
    """
    g = as_float_tensor(g)
    m = g
    t = torch.stack(
        [
            1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
            1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
        ],
        dim=-1,
    )
    cands = torch.stack(
        [
            torch.stack(
                [
                    t[..., 0],
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                dim=-1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    t[..., 1],
                    m[..., 1, 0] + m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                dim=-1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] + m[..., 0, 1],
                    t[..., 2],
                    m[..., 2, 1] + m[..., 1, 2],
                ],
                dim=-1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 2, 1] + m[..., 1, 2],
                    t[..., 3],
                ],
                dim=-1,
            ),
        ],
        dim=-2,
    )  # (..., 4 branches, 4)
    best = t.argmax(dim=-1)
    q = torch.take_along_dim(cands, best[..., None, None].expand(*best.shape, 1, 4), dim=-2)
    return standardize(q.squeeze(-2))


@numpy_or_torch
def quaternion_to_euler(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) -> Bunge Euler angles (..., 3) in [0, 2pi) x [0, pi] x [0, 2pi)."""
    q = standardize(as_float_tensor(q))
    q0, q1, q2, q3 = q.unbind(-1)
    q03 = q0 * q0 + q3 * q3
    q12 = q1 * q1 + q2 * q2
    chi = torch.sqrt(q03 * q12)
    two_pi = 2 * torch.pi
    # General case: Phi in (0, pi). atan2 needs no division by chi (both arguments carry it).
    phi1 = torch.atan2(-q0 * q2 + q1 * q3, -q0 * q1 - q2 * q3)
    Phi = torch.atan2(2 * chi, q03 - q12)
    phi2 = torch.atan2(q0 * q2 + q1 * q3, -q0 * q1 + q2 * q3)
    # Degenerate cases: Phi = 0 (only phi1 + phi2 defined) or Phi = pi (only phi1 - phi2 defined).
    # The general formulas stay exact down to tiny q12 / q03; snapping below eps^2 / 4 moves q by at
    # most eps / 2. (The former threshold, 1e-12 / 1e-6, lost up to 5e-7 / 5e-4 of q near
    # Phi = 0 and pi.)
    eps = torch.finfo(q.dtype).eps ** 2 / 4
    at_zero = q12 < eps
    at_pi = q03 < eps
    phi1 = torch.where(at_zero, torch.atan2(-2 * q0 * q3, q0 * q0 - q3 * q3), phi1)
    phi1 = torch.where(at_pi, torch.atan2(2 * q1 * q2, q1 * q1 - q2 * q2), phi1)
    Phi = torch.where(
        at_zero, torch.zeros_like(Phi), torch.where(at_pi, torch.full_like(Phi, torch.pi), Phi)
    )
    phi2 = torch.where(at_zero | at_pi, torch.zeros_like(phi2), phi2)
    return torch.stack([torch.remainder(phi1, two_pi), Phi, torch.remainder(phi2, two_pi)], dim=-1)


@numpy_or_torch
def axis_angle_to_quaternion(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Quaternion of a rotation by ``angle`` (radians, (...)) about ``axis`` ((..., 3), any norm),
    broadcast against each other."""
    axis = as_float_tensor(axis)
    angle = torch.as_tensor(angle, dtype=axis.dtype)
    n = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    half = 0.5 * angle[..., None]
    vec = torch.sin(half) * n
    # Broadcast angle (...) against axis (..., 3), e.g. one angle for many axes.
    return standardize(torch.cat([torch.cos(half).expand(*vec.shape[:-1], 1), vec], dim=-1))


@numpy_or_torch
def c_axis_in_sample_frame(q: torch.Tensor) -> torch.Tensor:
    """The crystal c-axis [0001] expressed in the sample frame, ``g^T z``; (..., 4) -> (..., 3).

    This is the physically meaningful input of the PL model (EMsoftOO feeds ``g z`` instead).
    """
    g = quaternion_to_matrix(as_float_tensor(q))
    return g[..., 2, :]
