"""Cubochoric <-> quaternion maps and random rotations (ebsdray.data.cubochoric)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ebsdray.conventions import CUBE_SEMI_EDGE as A
from ebsdray.conventions import FZ_CUBOCHORIC_EXTENT
from ebsdray.data.cubochoric import (
    R1,
    cubochoric_to_homochoric,
    from_cubochoric,
    from_homochoric,
    random_quaternions,
    to_cubochoric,
    to_homochoric,
)
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.data.symmetry import reduce_to_fundamental_zone, symmetry_operators

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _qdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.minimum((a - b).abs().amax(-1), (a + b).abs().amax(-1))


def _cube_points(seed: int = 0) -> torch.Tensor:
    """Uniform points plus the hard places: near/on the surface, near the origin, pyramid edges,
    the axes (X = Y = 0 inside a pyramid) and the cube diagonals."""
    g = torch.Generator().manual_seed(seed)
    u = (2 * torch.rand(20_000, 3, generator=g, dtype=torch.float64) - 1) * A
    surface = u[:3000].clone()
    surface[:, 0] = (
        A * (1 - torch.logspace(-12, -1, 3000, dtype=torch.float64)) * surface[:, 0].sign()
    )
    on_surface = u[3000:4000].clone()
    on_surface[:, 2] = A
    near_origin = u[4000:7000] * torch.logspace(-9, -2, 3000, dtype=torch.float64)[:, None]
    edges = u[7000:8000].clone()
    edges[:, 1] = edges[:, 0] * (1 + 1e-9 * torch.randn(1000, generator=g, dtype=torch.float64))
    axes = torch.eye(3, dtype=torch.float64).repeat(100, 1) * torch.linspace(-A, A, 300)[:, None]
    diag = torch.linspace(-A, A, 101, dtype=torch.float64)[:, None].expand(101, 3)
    return torch.cat([u, surface, on_surface, near_origin, edges, axes, diag, torch.zeros(1, 3)])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cubochoric_round_trip(dtype: torch.dtype) -> None:
    c = _cube_points().to(dtype)
    q = from_cubochoric(c)
    assert q.dtype == dtype
    assert q.shape == (*c.shape[:-1], 4)
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones_like(q[:, 0]))
    c2 = to_cubochoric(q)
    # On the surface c and -c are the same rotation (q0 = 0): compare up to that antipode.
    on_surface = c.abs().amax(-1) > A * (1 - 1e-6)
    err = (c2 - c).abs().amax(-1)
    err = torch.where(on_surface, torch.minimum(err, (c2 + c).abs().amax(-1)), err)
    assert err.max() < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_quaternion_round_trip(dtype: torch.dtype) -> None:
    q = random_quaternions(20_000, 1)
    # Near identity and near 180 degrees, where the angle maps are least well conditioned.
    ang = torch.cat([torch.logspace(-9, -1, 2000), math.pi - torch.logspace(-9, -1, 2000)])
    axes = torch.randn(4000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    q = torch.cat([q, axis_angle_to_quaternion(axes, ang.double())]).to(dtype)
    c = to_cubochoric(q)
    assert c.dtype == dtype
    assert c.abs().max() <= A * (1 + 1e-6)
    assert _qdist(from_cubochoric(c), q).max() < TOL[dtype]


def test_identity_is_origin() -> None:
    np.testing.assert_array_equal(to_cubochoric(np.array([1.0, 0, 0, 0])), np.zeros(3))
    np.testing.assert_array_equal(to_cubochoric(np.array([-1.0, 0, 0, 0])), np.zeros(3))
    np.testing.assert_array_equal(from_cubochoric(np.zeros(3)), [1.0, 0, 0, 0])


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 1, 1), (1, 2, -3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_half_turns_lie_on_cube_surface(axis, dtype: torch.dtype) -> None:
    q = axis_angle_to_quaternion(
        torch.tensor(axis, dtype=dtype), torch.tensor(math.pi, dtype=dtype)
    )
    c = to_cubochoric(q)
    assert abs(c.abs().max().item() - A) < TOL[dtype] * 10
    # The antipodal quaternion (0, -v) is the same rotation and maps to the opposite point.
    torch.testing.assert_close(to_cubochoric(-q), c)
    torch.testing.assert_close(to_cubochoric(torch.cat([q[:1], -q[1:]])), -c)
    assert torch.linalg.vector_norm(to_homochoric(q)).item() == pytest.approx(R1, rel=1e-6)


def test_small_angle_scales_linearly() -> None:
    # |h| = (w/2)(1 - w^2/60 + ...), and on the z axis cu_z = |h| / (sqrt(6/pi) (pi/6)^(1/6)).
    w = 1e-6
    c = to_cubochoric(axis_angle_to_quaternion(np.array([0, 0, 1.0]), w))
    expected = (w / 2) / (math.sqrt(6 / math.pi) * (math.pi / 6) ** (1 / 6))
    np.testing.assert_allclose(c, [0, 0, expected], rtol=1e-12, atol=0)


@pytest.mark.parametrize("eps", [1e-12, 1e-9, 1e-6])
def test_near_surface_angle(eps: float) -> None:
    # On the x axis |h| = R1 (1 - eps); w - sin w = pi (1 - eps)^3 gives w = pi - 3 pi eps / 2 to
    # first order, so q0 = cos(w / 2) = 3 pi eps / 4.
    q = from_cubochoric(np.array([A * (1 - eps), 0.0, 0.0]))
    assert q[0] == pytest.approx(3 * math.pi * eps / 4, rel=1e-5)
    assert q[1] == pytest.approx(1.0)


def _angle_ks_pvalue(q: torch.Tensor) -> float:
    """KS test of the rotation angles against the Haar density (1 - cos w) / pi on [0, pi]."""
    w = (2 * torch.atan2(q[:, 1:].norm(dim=-1), q[:, 0].abs())).numpy()
    return stats.kstest(w, lambda x: (x - np.sin(x)) / np.pi).pvalue


def test_uniform_cube_gives_haar_angles() -> None:
    g = torch.Generator().manual_seed(3)
    c = (2 * torch.rand(100_000, 3, generator=g, dtype=torch.float64) - 1) * A
    assert _angle_ks_pvalue(from_cubochoric(c)) > 1e-3
    # Control: the test can fail (uniform angles are far from Haar).
    w = torch.rand(100_000, generator=g, dtype=torch.float64) * math.pi
    q_bad = axis_angle_to_quaternion(torch.randn(100_000, 3, generator=g, dtype=torch.float64), w)
    assert _angle_ks_pvalue(q_bad) < 1e-6


def test_random_quaternions() -> None:
    q = random_quaternions((200, 500), 4)
    assert q.shape == (200, 500, 4)
    assert q.dtype == torch.float64
    assert (q[..., 0] >= 0).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(200, 500, dtype=torch.float64))
    assert _angle_ks_pvalue(q.reshape(-1, 4)) > 1e-3
    # Haar: invariant under a fixed rotation, and axes uniform (mean ~ 0).
    p = quaternion_multiply(axis_angle_to_quaternion(torch.tensor([1.0, 2, 3]), 1.0), q)
    assert _angle_ks_pvalue(p.reshape(-1, 4)) > 1e-3
    assert q[..., 1:].mean(dim=(0, 1)).abs().max() < 0.01
    # Determined by the seed / generator; dtype only casts.
    torch.testing.assert_close(random_quaternions(10, 7), random_quaternions(10, 7))
    torch.testing.assert_close(
        random_quaternions(10, torch.Generator().manual_seed(7)), random_quaternions(10, 7)
    )
    assert not torch.equal(random_quaternions(10, 7), random_quaternions(10, 8))
    q32 = random_quaternions(10, 7, dtype=torch.float32)
    assert q32.dtype == torch.float32
    torch.testing.assert_close(q32, random_quaternions(10, 7).float())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_and_torch_agree(dtype) -> None:
    c = (np.random.default_rng(5).uniform(-A, A, size=(4, 6, 3))).astype(dtype)
    q = from_cubochoric(c)
    assert isinstance(q, np.ndarray)
    assert q.dtype == dtype
    assert q.shape == (4, 6, 4)
    np.testing.assert_array_equal(q, from_cubochoric(torch.from_numpy(c)).numpy())
    c2 = to_cubochoric(q)
    assert isinstance(c2, np.ndarray)
    assert c2.dtype == dtype
    np.testing.assert_array_equal(c2, to_cubochoric(torch.from_numpy(q)).numpy())


def test_agrees_with_orix() -> None:
    pytest.importorskip("orix")
    from orix.quaternion import Rotation
    from orix.quaternion._conversions import cu2ho

    c = _cube_points(6)
    h_ref = cu2ho(c.numpy())
    np.testing.assert_allclose(cubochoric_to_homochoric(c).numpy(), h_ref, atol=1e-12)
    q_ref = torch.from_numpy(Rotation.from_homochoric(h_ref).data)
    # orix's homochoric -> axis-angle is a polynomial fit and returns the identity for |h| < ~1e-4.
    # Its fit also saturates at |h| -> R1 (q0 = 0 for points within ~1e-9 of the cube surface, where
    # q0 is really ~ 3 pi eps / 4; see test_near_surface_angle), hence 1e-8 there.
    big = torch.from_numpy(np.linalg.norm(h_ref, axis=-1) > 1e-3)
    assert _qdist(from_cubochoric(c[big]), q_ref[big]).max() < 1e-8
    inner = big & (c.abs().amax(-1) < A * (1 - 1e-6))
    assert _qdist(from_cubochoric(c[inner]), q_ref[inner]).max() < 1e-10
    q = random_quaternions(5000, 7)
    h_orix = Rotation(q.numpy()).to_homochoric().data
    np.testing.assert_allclose(to_homochoric(q).numpy(), h_orix, atol=1e-10)
    assert _qdist(from_homochoric(torch.from_numpy(h_orix)), q).max() < 1e-12


def _rodrigues_to_quaternion(r: np.ndarray) -> torch.Tensor:
    q = torch.from_numpy(np.concatenate([np.ones_like(r[..., :1]), r], axis=-1))
    return q / q.norm(dim=-1, keepdim=True)


def test_fundamental_zone_extent() -> None:
    ext = torch.tensor(FZ_CUBOCHORIC_EXTENT, dtype=torch.float64)
    t15 = math.tan(math.pi / 12)
    # The maxima (see conventions.py): prism vertices for x, y; r = tan15 (1, 1, 1) for z.
    vertex_angles = np.pi / 12 + np.arange(12) * np.pi / 6
    radius = 1 / math.cos(math.pi / 12)
    vertices = np.stack(
        [radius * np.cos(vertex_angles), radius * np.sin(vertex_angles), np.full(12, t15)], -1
    )
    c_vertices = to_cubochoric(_rodrigues_to_quaternion(vertices))
    c_diag = to_cubochoric(_rodrigues_to_quaternion(t15 * np.array([[1.0, 1, 1], [-1, 1, -1]])))
    x_max = c_vertices[:, :2].abs().max()
    z_max = c_diag[:, 2].abs().max()
    scale = math.sqrt(6 / math.pi) * (math.pi / 6) ** (1 / 6)
    w_vertex = 2 * math.atan(math.sqrt(1 + 2 * t15 * t15))
    w_diag = 2 * math.atan(math.sqrt(3) * t15)
    h = lambda w: (0.75 * (w - math.sin(w))) ** (1 / 3)  # noqa: E731
    assert x_max.item() == pytest.approx(h(w_vertex) / scale, abs=1e-12)
    assert z_max.item() == pytest.approx(h(w_diag) / scale, abs=1e-12)
    # Tight upper bounds: above the maxima by less than the rounding in the third decimal.
    assert 0 < ext[0] - x_max < 1e-3 and ext[0] == ext[1]
    assert 0 < ext[2] - z_max < 1e-3
    # Everything reduced stays inside, in both precisions, and the zone's faces are reached.
    q = random_quaternions(100_000, 8)
    q = torch.cat([q, quaternion_multiply(symmetry_operators()[:, None], q[:100]).reshape(-1, 4)])
    for dtype in (torch.float64, torch.float32):
        c = to_cubochoric(reduce_to_fundamental_zone(q.to(dtype))).double()
        assert (c.abs().amax(0) <= ext).all()
    assert (c.abs().amax(0) > ext - 0.02).all()
