"""Point group 622: operators, fundamental zone, disorientation (ebsdray.data.symmetry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_conjugate
from ebsdray.data.rotations import quaternion_multiply as qmul
from ebsdray.data.symmetry import (
    disorientation_deg,
    reduce_to_fundamental_zone,
    symmetry_operators,
)

# Largest disorientation of 622 (Mackenzie): the prism vertex r = (1, tan15, tan15) of the zone.
MACKENZIE_DEG = math.degrees(2 * math.acos(math.cos(math.pi / 12) / math.sqrt(2)))  # 93.841
ANGLE_TOL = {torch.float64: 1e-8, torch.float32: 2e-3}


def _qdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.minimum((a - b).abs().amax(-1), (a + b).abs().amax(-1))


def _brute_force_deg(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """min over s of the angle of s * q1 * conj(q2): the definition, 12 products per pair."""
    m = qmul(q1, quaternion_conjugate(q2))
    t = qmul(symmetry_operators()[:, None], m[None])[..., 0].abs().amax(0)
    return torch.rad2deg(2 * torch.acos(t.clamp(max=1)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_operators_form_the_group_622(dtype: torch.dtype) -> None:
    ops = symmetry_operators(dtype)
    assert ops.shape == (12, 4)
    assert ops.dtype == dtype
    assert (ops[:, 0] >= 0).all()
    torch.testing.assert_close(ops.norm(dim=-1), torch.ones(12, dtype=dtype))
    torch.testing.assert_close(ops[0], torch.tensor([1.0, 0, 0, 0], dtype=dtype))
    # Closure: every product is (+-) exactly one operator; every row of the table is a permutation.
    prod = qmul(ops[:, None], ops[None])  # (12, 12, 4)
    match = _qdist(prod[:, :, None], ops[None, None]) < 1e-6  # (12, 12, 12)
    assert (match.sum(-1) == 1).all()
    table = match.int().argmax(-1)
    for row in (table, table.T):
        assert (row.sort(-1).values == torch.arange(12)).all()
    # Six rotations about c by k * 60 deg, six 2-folds with axes in the basal plane.
    angles = torch.rad2deg(2 * torch.atan2(ops[:, 1:].norm(dim=-1), ops[:, 0])).double()
    expected = torch.tensor([0.0, 60, 120, 180, 120, 60] + [180] * 6, dtype=torch.float64)
    torch.testing.assert_close(angles, expected, atol=1e-4, rtol=0)
    assert (ops[6:, 3] == 0).all() and (ops[1:6, 1:3] == 0).all()


def test_operators_match_orix_d6() -> None:
    symmetry = pytest.importorskip("orix.quaternion.symmetry")
    ref = torch.from_numpy(symmetry.D6.data)
    ops = symmetry_operators()
    assert len(ref) == 12
    assert (_qdist(ops[:, None], ref[None]).min(-1).values < 1e-12).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equivalents_have_zero_disorientation(dtype: torch.dtype) -> None:
    q = random_quaternions(2000, 0, dtype=dtype)
    sq = qmul(symmetry_operators(dtype)[:, None], q[None])  # (12, N, 4)
    assert disorientation_deg(sq, q).abs().max() < ANGLE_TOL[dtype]
    assert disorientation_deg(q, -q).abs().max() < ANGLE_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reduce_to_fundamental_zone(dtype: torch.dtype) -> None:
    ops = symmetry_operators(dtype)
    q = random_quaternions(5000, 1, dtype=dtype)
    r = reduce_to_fundamental_zone(q)
    assert r.dtype == dtype
    assert r.shape == q.shape
    assert (r[:, 0] >= 0).all()
    assert disorientation_deg(r, q).max() < ANGLE_TOL[dtype]
    # Idempotent, and no equivalent has a larger scalar part.
    assert _qdist(reduce_to_fundamental_zone(r), r).max() < 1e-6
    best = qmul(ops[:, None], r[None])[..., 0].abs().amax(0)
    assert (best <= r[:, 0] + 1e-6).all()
    # The Rodrigues zone of 622: |r3| <= tan 15 deg, |r . n| <= 1 for the 12 in-plane normals.
    rod = (r[:, 1:] / r[:, :1]).double()
    assert (rod[:, 2].abs() <= math.tan(math.pi / 12) + 1e-5).all()
    phi = torch.arange(12, dtype=torch.float64) * math.pi / 6
    normals = torch.stack([phi.cos(), phi.sin()], -1)
    assert ((rod[:, :2] @ normals.T).abs() <= 1 + 1e-5).all()
    # Every equivalent of q reduces to the same point (generic q is off the zone's faces).
    sq = qmul(ops[:, None], q[None])
    assert _qdist(reduce_to_fundamental_zone(sq), r[None]).max() < 1e-5


def test_reduce_known_value() -> None:
    # 70 deg about c is 10 deg about c in the zone (70 - 60); 170 deg about x is 10 deg about -x.
    q = axis_angle_to_quaternion(np.array([[0, 0, 1.0], [1.0, 0, 0]]), np.radians([70.0, 170.0]))
    expected = axis_angle_to_quaternion(np.array([[0, 0, 1.0], [-1.0, 0, 0]]), np.radians(10.0))
    np.testing.assert_allclose(reduce_to_fundamental_zone(q), expected, atol=1e-15)


def test_disorientation_matches_orix() -> None:
    orix_q = pytest.importorskip("orix.quaternion")
    q1, q2 = random_quaternions(20_000, 2), random_quaternions(20_000, 3)
    d6 = orix_q.symmetry.D6
    o1 = orix_q.Orientation(q1.numpy(), symmetry=d6)
    o2 = orix_q.Orientation(q2.numpy(), symmetry=d6)
    ref = o1.angle_with(o2, degrees=True)
    got = disorientation_deg(q1, q2).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    # The 6/mmm Laue group gives the same angles (improper elements add nothing for rotations).
    o1h = orix_q.Orientation(q1.numpy()[:2000], symmetry=orix_q.symmetry.D6h)
    o2h = orix_q.Orientation(q2.numpy()[:2000], symmetry=orix_q.symmetry.D6h)
    np.testing.assert_allclose(got[:2000], o1h.angle_with(o2h, degrees=True), atol=1e-4, rtol=0)


def test_disorientation_matches_brute_force() -> None:
    q1, q2 = random_quaternions(20_000, 4), random_quaternions(20_000, 5)
    torch.testing.assert_close(
        disorientation_deg(q1, q2), _brute_force_deg(q1, q2), atol=1e-6, rtol=0
    )


def test_disorientation_properties() -> None:
    q1, q2 = random_quaternions(20_000, 6), random_quaternions(20_000, 7)
    d = disorientation_deg(q1, q2)
    torch.testing.assert_close(disorientation_deg(q2, q1), d, atol=1e-10, rtol=0)
    # Invariant under symmetry on either side and under a common change of sample frame (q * g).
    ops = symmetry_operators()
    g = random_quaternions(1, 8)
    d_sym = disorientation_deg(qmul(ops[3], qmul(q1, g)), qmul(ops[8], qmul(q2, g)))
    torch.testing.assert_close(d_sym, d, atol=1e-10, rtol=0)
    # Random pairs: mean ~60 deg and never beyond Mackenzie's maximum.
    assert 59.0 < d.mean().item() < 61.5
    assert 90.0 < d.max().item() <= MACKENZIE_DEG + 1e-9


def test_mackenzie_maximum() -> None:
    c, s = math.cos(math.pi / 12) / math.sqrt(2), math.sin(math.pi / 12) / math.sqrt(2)
    worst = torch.tensor([c, c, s, s], dtype=torch.float64)
    ident = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    assert disorientation_deg(worst, ident).item() == pytest.approx(MACKENZIE_DEG, abs=1e-12)
    assert MACKENZIE_DEG == pytest.approx(93.841, abs=1e-3)
    # A local maximum: nearby misorientations are all smaller; nothing exceeds 93.85.
    g = torch.Generator().manual_seed(9)
    near = worst + 1e-3 * torch.randn(20_000, 4, generator=g, dtype=torch.float64)
    near = near / near.norm(dim=-1, keepdim=True)
    d_near = disorientation_deg(near, ident)
    assert d_near.max() <= MACKENZIE_DEG + 1e-9
    d_rand = disorientation_deg(random_quaternions(100_000, 10), ident)
    assert d_rand.max() < 93.85


def test_disorientation_broadcasts_and_small_angles() -> None:
    q = random_quaternions((50, 1), 11)
    p = random_quaternions((1, 40), 12)
    assert disorientation_deg(q, p).shape == (50, 40)
    # Small rotations are resolved in float32 too (acos would give ~0.05 deg noise here).
    ang = torch.logspace(-4, 1, 50, dtype=torch.float64)
    dq = axis_angle_to_quaternion(torch.randn(50, 3, dtype=torch.float64), torch.deg2rad(ang))
    q1 = random_quaternions(50, 13)
    q2 = qmul(dq, q1)
    torch.testing.assert_close(disorientation_deg(q2, q1), ang, rtol=1e-9, atol=1e-12)
    d32 = disorientation_deg(q2.float(), q1.float())
    assert d32.dtype == torch.float32
    assert (d32.double() - ang).abs().max() < 2e-4


@pytest.mark.parametrize("fn", [disorientation_deg, lambda a, b: reduce_to_fundamental_zone(a)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_and_float32(fn, dtype) -> None:
    q1 = random_quaternions(3000, 14).numpy()
    q2 = random_quaternions(3000, 15).numpy()
    out = fn(q1.astype(dtype), q2.astype(dtype))
    assert isinstance(out, np.ndarray)
    assert out.dtype == dtype
    np.testing.assert_array_equal(
        out, fn(torch.from_numpy(q1.astype(dtype)), torch.from_numpy(q2.astype(dtype))).numpy()
    )
    if fn is disorientation_deg:
        np.testing.assert_allclose(
            out,
            fn(q1, q2),
            atol=ANGLE_TOL[torch.float32 if dtype == np.float32 else torch.float64] * 10,
        )
