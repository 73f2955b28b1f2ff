"""IPF colours of the 6/mmm standard triangle (ebsdray.data.ipf).

Known values come from the lattice geometry, written out here independently of the module: the
hexagonal cell with a1 along x (orix, EMsoft), so [2-1-10] = a1 is x and [10-10] = 2 a1 + a2 lies
at azimuth 30 degrees. orix (GPL, test-only) is the reference for the colour scheme.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.ipf import (
    crystal_direction,
    ipf_colors,
    key_image,
    to_standard_triangle,
    triangle_colors,
)
from ebsdray.data.rotations import (
    axis_angle_to_quaternion,
    euler_to_quaternion,
    quaternion_multiply,
)
from ebsdray.data.symmetry import symmetry_operators

A1, A2, C = np.array([1.0, 0.0, 0.0]), np.array([-0.5, math.sqrt(3) / 2, 0.0]), np.eye(3)[2]
RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def miller_bravais(u: int, v: int, t: int, w: int) -> np.ndarray:
    """Unit Cartesian vector of the direction [uvtw] (c/a does not matter for these)."""
    assert u + v + t == 0
    big_u, big_v = 2 * u + v, 2 * v + u  # [uvtw] -> [UVW] = [2u + v, 2v + u, w] (times 1/3)
    d = big_u * A1 + big_v * A2 + w * C
    return d / np.linalg.norm(d)


def rotation_taking_z_to(h: np.ndarray) -> np.ndarray:
    """A quaternion whose passive matrix maps sample Z onto crystal direction ``h``: ``g z = h``."""
    axis = np.cross([0.0, 0.0, 1.0], h)
    if np.linalg.norm(axis) < 1e-12:  # h = +-z: identity or half a turn about x
        return np.array([1.0, 0.0, 0.0, 0.0] if h[2] > 0 else [0.0, 1.0, 0.0, 0.0])
    return axis_angle_to_quaternion(axis, np.arccos(np.clip(h[2], -1, 1)))


# --- known colours ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uvtw", "rgb"),
    [
        ((0, 0, 0, 1), RED),
        ((0, 0, 0, -1), RED),  # the inversion is in the Laue group
        ((2, -1, -1, 0), GREEN),
        ((-1, 2, -1, 0), GREEN),  # a2: the same family
        ((1, 0, -1, 0), BLUE),
        ((0, 1, -1, 0), BLUE),
        ((-1, 1, 0, 0), BLUE),
    ],
)
def test_corners_of_the_key(uvtw, rgb):
    q = rotation_taking_z_to(miller_bravais(*uvtw))
    np.testing.assert_allclose(crystal_direction(q), miller_bravais(*uvtw), atol=1e-12)
    np.testing.assert_allclose(ipf_colors(q), rgb, atol=1e-9)


def test_bunge_angles_put_the_expected_direction_along_z():
    """Passive Bunge: g z = (sin phi2 sin Phi, cos phi2 sin Phi, cos Phi) in the crystal frame."""
    e = np.radians([[0.0, 0.0, 0.0], [37.0, 0.0, 0.0], [0.0, 90.0, 90.0], [0.0, 90.0, 0.0]])
    got = ipf_colors(euler_to_quaternion(e))
    # c along Z (any phi1) -> red; [2-1-10] (x) -> green; crystal y, a <10-10> direction -> blue.
    np.testing.assert_allclose(got, [RED, RED, GREEN, BLUE], atol=1e-9)


def test_other_sample_directions():
    # A quarter turn about y: a1 along Z, -c along X; y stays y, a <10-10> direction.
    q = rotation_taking_z_to(miller_bravais(2, -1, -1, 0))
    np.testing.assert_allclose(ipf_colors(q, direction=(0, 0, 1)), GREEN, atol=1e-9)
    np.testing.assert_allclose(ipf_colors(q, direction=(1, 0, 0)), RED, atol=1e-9)
    np.testing.assert_allclose(ipf_colors(q, direction=(0, 5, 0)), BLUE, atol=1e-9)  # normalized


def test_centre_is_white_and_edges_are_fully_saturated():
    centre = (C + A1 + miller_bravais(1, 0, -1, 0)) / np.linalg.norm(
        C + A1 + miller_bravais(1, 0, -1, 0)
    )
    np.testing.assert_allclose(triangle_colors(centre), (1.0, 1.0, 1.0), atol=1e-9)
    t = np.linspace(0.0, math.pi / 2, 50)
    edges = np.concatenate(
        [
            np.stack([np.sin(t), 0 * t, np.cos(t)], -1),  # [0001] - [2-1-10]
            np.stack([np.sin(t) * math.cos(math.pi / 6), np.sin(t) / 2, np.cos(t)], -1),
            np.stack([np.cos(t / 3), np.sin(t / 3), 0 * t], -1),  # the equator
        ]
    )
    rgb = triangle_colors(edges)
    np.testing.assert_allclose(rgb.max(-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(rgb.min(-1), 0.0, atol=1e-9)


# --- symmetry, continuity, types -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equivalent_orientations_have_identical_colours(dtype):
    q = random_quaternions((4000,), 1, dtype=dtype)
    ops = symmetry_operators(dtype)
    assert len(ops) == 12
    equivalents = quaternion_multiply(ops[:, None], q[None])  # (12, N, 4): s * q, same orientation
    rgb = ipf_colors(equivalents)
    tol = 1e-9 if dtype == torch.float64 else 2e-5  # float32 rounding (measured 2.3e-6)
    assert (rgb - rgb[:1]).abs().max() < tol
    # and -q, the same rotation
    assert (ipf_colors(-q) - rgb[0]).abs().max() < 1e-9


def test_folding_keeps_the_direction_family():
    h = random_quaternions((3000,), 2).numpy()[:, 1:]
    folded = to_standard_triangle(h)
    polar, azimuth = (
        np.degrees(np.arccos(folded[:, 2])),
        np.degrees(np.arctan2(folded[:, 1], folded[:, 0])),
    )
    assert polar.max() <= 90 + 1e-9 and azimuth.min() >= -1e-9 and azimuth.max() <= 30 + 1e-9
    # Folding only permutes/negates: the angle to c and the multiset of |a-axis projections|.
    unit = h / np.linalg.norm(h, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.abs(unit[:, 2]), folded[:, 2], atol=1e-12)


def test_colours_are_continuous_in_the_orientation():
    q = random_quaternions((5000,), 3).numpy()
    axis = np.random.default_rng(0).normal(size=(5000, 3))
    dq = axis_angle_to_quaternion(axis, np.radians(0.2))
    jump = np.abs(ipf_colors(quaternion_multiply(dq, q)) - ipf_colors(q)).max()
    assert jump < 0.05  # no seams where the hue wheel or the fold lines wrap


def test_numpy_and_torch_agree_and_shapes_are_kept():
    q = random_quaternions((2, 3, 5), 4)
    rgb_t = ipf_colors(q)
    rgb_n = ipf_colors(q.numpy())
    assert isinstance(rgb_t, torch.Tensor) and isinstance(rgb_n, np.ndarray)
    assert rgb_n.shape == (2, 3, 5, 3)
    np.testing.assert_allclose(rgb_t.numpy(), rgb_n, atol=0)
    assert rgb_n.min() >= 0 and rgb_n.max() <= 1


# --- the key image ---------------------------------------------------------------------------------
def test_key_image_is_the_30_degree_sector_of_the_stereographic_disk():
    rgba, extent = key_image(400)
    assert rgba.shape == (200, 400, 4) and extent == (0.0, 1.0, 0.0, 0.5)
    alpha = rgba[..., 3]

    def at(x: float, y: float) -> np.ndarray:
        return rgba[int(y / 0.5 * 200), int(x * 400)]

    assert at(0.5, 0.1)[3] == 1  # inside
    assert at(0.5, 0.4)[3] == 0  # azimuth 39 degrees: beyond [10-10]
    assert at(0.9, 0.45)[3] == 0  # |r| > 1: beyond the equator
    assert alpha.mean() == pytest.approx((math.pi / 12) / 0.5, abs=0.01)  # sector / box area
    # Colours along the key: red at the origin, green at (1, 0), blue at (cos 30, sin 30).
    np.testing.assert_allclose(at(0.005, 0.001)[:3], RED, atol=0.03)
    np.testing.assert_allclose(at(0.995, 0.001)[:3], GREEN, atol=0.03)
    corner = (0.992 * math.cos(math.pi / 6), 0.99 * 0.5)
    np.testing.assert_allclose(at(*corner)[:3], BLUE, atol=0.08)


# --- the reference ---------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", [(0, 0, 1), (1, 0, 0), (0, 1, 0)])
def test_matches_orix_tsl_key(direction):
    plot = pytest.importorskip("orix.plot")
    orix_q = pytest.importorskip("orix.quaternion")
    orix_v = pytest.importorskip("orix.vector")
    q = random_quaternions((20_000,), 5).numpy()
    key = plot.IPFColorKeyTSL(orix_q.symmetry.D6h, direction=orix_v.Vector3d(direction))
    ref = key.orientation2color(orix_q.Orientation(q, symmetry=orix_q.symmetry.D6h))
    diff = np.abs(ipf_colors(q, direction=direction) - ref)
    # Measured: max 0.0076, mean 0.00058 (orix re-times the hue on a coarser 1000-step grid).
    assert diff.max() < 0.015
    assert diff.mean() < 0.002
