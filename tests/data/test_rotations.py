"""Euler angles, orientation matrices and quaternions (ebsdray.data.rotations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebsdray.data.rotations import (
    axis_angle_to_quaternion,
    c_axis_in_sample_frame,
    euler_to_quaternion,
    matrix_to_quaternion,
    quaternion_conjugate,
    quaternion_multiply,
    quaternion_to_euler,
    quaternion_to_matrix,
    standardize,
)

TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def _random_euler(n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 3, generator=g, dtype=torch.float64)
    # Phi = arccos(uniform) makes the rotations uniform; phi1, phi2 uniform in [0, 2pi).
    e = torch.stack([2 * math.pi * u[:, 0], torch.acos(1 - 2 * u[:, 1]), 2 * math.pi * u[:, 2]], -1)
    return e.to(dtype)


def _qdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest componentwise distance between quaternions, up to the sign of the whole vector."""
    return torch.minimum((a - b).abs().amax(-1), (a + b).abs().amax(-1))


def _bunge_matrix(e: np.ndarray) -> np.ndarray:
    """Textbook passive Bunge matrix g = R_z(phi2) R_x(Phi) R_z(phi1) (Bunge 1982, eq. 2.39)."""
    p1, P, p2 = e
    c1, s1, c, s, c2, s2 = np.cos(p1), np.sin(p1), np.cos(P), np.sin(P), np.cos(p2), np.sin(p2)
    return np.array(
        [
            [c1 * c2 - s1 * s2 * c, s1 * c2 + c1 * s2 * c, s2 * s],
            [-c1 * s2 - s1 * c2 * c, -s1 * s2 + c1 * c2 * c, c2 * s],
            [s1 * s, -c1 * s, c],
        ]
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_euler_quaternion_round_trip(dtype: torch.dtype) -> None:
    e = _random_euler(5000, 0, dtype)
    q = euler_to_quaternion(e)
    assert q.dtype == dtype
    torch.testing.assert_close(q.norm(dim=-1), torch.ones_like(q[:, 0]))
    assert (q[:, 0] >= 0).all()
    q2 = euler_to_quaternion(quaternion_to_euler(q))
    assert _qdist(q, q2).max() < TOL[dtype] * 10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matrix_quaternion_round_trip(dtype: torch.dtype) -> None:
    q = euler_to_quaternion(_random_euler(5000, 1, dtype))
    g = quaternion_to_matrix(q)
    eye = torch.eye(3, dtype=dtype).expand_as(g)
    torch.testing.assert_close(g @ g.transpose(-1, -2), eye, atol=TOL[dtype] * 10, rtol=0)
    torch.testing.assert_close(torch.linalg.det(g), torch.ones_like(q[:, 0]), atol=1e-5, rtol=0)
    assert _qdist(matrix_to_quaternion(g), q).max() < TOL[dtype] * 10


def test_matrix_is_textbook_bunge_matrix() -> None:
    e = _random_euler(50, 2).numpy()
    g = quaternion_to_matrix(euler_to_quaternion(e))
    np.testing.assert_allclose(g, np.stack([_bunge_matrix(x) for x in e]), atol=1e-14)


@pytest.mark.parametrize("Phi", [0.0, math.pi])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_degenerate_phi(Phi: float, dtype: torch.dtype) -> None:
    e = torch.tensor([[0.3, Phi, 1.1], [5.0, Phi, 2.0], [0.0, Phi, 0.0]], dtype=dtype)
    q = euler_to_quaternion(e)
    e2 = quaternion_to_euler(q)
    # Only phi1 +- phi2 is defined: the convention puts it all in phi1 and sets phi2 = 0.
    assert (e2[:, 1] == torch.full_like(e2[:, 1], Phi)).all()
    assert (e2[:, 2] == 0).all()
    assert _qdist(euler_to_quaternion(e2), q).max() < TOL[dtype] * 10


@pytest.mark.parametrize("Phi", [1e-9, 1e-6, 1e-3, math.pi - 1e-6, math.pi - 1e-9])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_near_degenerate_phi_keeps_precision(Phi: float, dtype: torch.dtype) -> None:
    # Regression: a too-large degeneracy threshold used to set Phi = 0 for Phi < 2e-3 in float32.
    e = torch.tensor([[0.3, Phi, 1.1], [5.0, Phi, 2.0]], dtype=torch.float64)
    q = euler_to_quaternion(e).to(dtype)
    assert _qdist(euler_to_quaternion(quaternion_to_euler(q)), q).max() < TOL[dtype]


def test_known_values_90_degrees_about_z() -> None:
    s = math.sqrt(0.5)
    # Passive: phi1 = 90 deg takes the sample x axis to the crystal -y axis.
    q = euler_to_quaternion(np.array([math.pi / 2, 0.0, 0.0]))
    np.testing.assert_allclose(q, [s, 0, 0, -s], atol=1e-15)
    g = quaternion_to_matrix(q)
    np.testing.assert_allclose(g, [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(g @ [1.0, 0, 0], [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(axis_angle_to_quaternion(np.array([0, 0, 1.0]), -math.pi / 2), q)
    np.testing.assert_allclose(quaternion_to_euler(q), [math.pi / 2, 0, 0], atol=1e-15)
    # Phi = 90 deg about x: the crystal c-axis lies along -y of the sample.
    qx = euler_to_quaternion(np.array([0.0, math.pi / 2, 0.0]))
    np.testing.assert_allclose(c_axis_in_sample_frame(qx), [0, -1, 0], atol=1e-15)


def test_quaternion_algebra() -> None:
    q = euler_to_quaternion(_random_euler(1000, 3))
    p = euler_to_quaternion(_random_euler(1000, 4))
    ident = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(quaternion_multiply(q, quaternion_conjugate(q)), ident.expand_as(q))
    # The matrix of a product is the product of the matrices (Hamilton convention).
    torch.testing.assert_close(
        quaternion_to_matrix(quaternion_multiply(p, q)),
        quaternion_to_matrix(p) @ quaternion_to_matrix(q),
    )
    torch.testing.assert_close(standardize(-3.0 * q), q)


FUNCTIONS = [
    (euler_to_quaternion, 3),
    (quaternion_to_euler, 4),
    (quaternion_to_matrix, 4),
    (standardize, 4),
    (quaternion_conjugate, 4),
    (c_axis_in_sample_frame, 4),
]


@pytest.mark.parametrize(("fn", "width"), FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_and_torch_agree(fn, width: int, dtype) -> None:
    x = np.random.default_rng(5).uniform(0.1, 1.0, size=(7, 5, width)).astype(dtype)
    out_np = fn(x)
    out_t = fn(torch.from_numpy(x))
    assert isinstance(out_np, np.ndarray)
    assert isinstance(out_t, torch.Tensor)
    assert out_np.dtype == dtype
    assert out_t.dtype == torch.from_numpy(x).dtype
    np.testing.assert_array_equal(out_np, out_t.numpy())


def test_matrix_to_quaternion_numpy() -> None:
    g = quaternion_to_matrix(euler_to_quaternion(_random_euler(10, 6).numpy()))
    assert isinstance(matrix_to_quaternion(g), np.ndarray)
    np.testing.assert_array_equal(
        matrix_to_quaternion(g), matrix_to_quaternion(torch.from_numpy(g))
    )


def test_euler_matches_orix() -> None:
    orix_q = pytest.importorskip("orix.quaternion")
    e = _random_euler(2000, 7).numpy()
    ref = orix_q.Rotation.from_euler(e).data
    ref = np.where(ref[:, :1] < 0, -ref, ref)
    np.testing.assert_allclose(euler_to_quaternion(e), ref, atol=1e-14)


def test_axis_angle_broadcasts() -> None:
    axes = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 2.0, 0]])
    q = axis_angle_to_quaternion(axes, math.pi / 3)
    assert q.shape == (3, 4)
    np.testing.assert_allclose(q[:, 0], math.cos(math.pi / 6))
    np.testing.assert_allclose(q[:, 1:], axes / np.linalg.norm(axes, axis=1)[:, None] * 0.5)
    q2 = axis_angle_to_quaternion(axes[0], np.array([0.1, 0.2]))
    assert q2.shape == (2, 4)
