"""Disorientation statistics: symmetry invariance, known angles, the near-boundary set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.data.symmetry import symmetry_operators
from ebsdray.metrics import disorientation_stats, grain_boundaries, near_boundaries


def test_symmetric_equivalents_have_zero_error(section):
    ids, q = section
    rng = np.random.default_rng(0)
    ops = symmetry_operators().numpy()
    sign = rng.choice([-1.0, 1.0], size=ids.shape)[..., None]
    equiv = quaternion_multiply(ops[rng.integers(0, 12, ids.shape)], q) * sign
    stats = disorientation_stats(equiv, q, ids)
    assert stats["mean_deg"] < 1e-5 and stats["boundary_deg"] < 1e-5


def test_known_rotation_angle(section):
    ids, q = section
    dq = axis_angle_to_quaternion(np.array([1.0, 2.0, 0.5]), math.radians(4.0))
    stats = disorientation_stats(quaternion_multiply(dq, q), q, ids)
    assert stats["mean_deg"] == pytest.approx(4.0, abs=1e-6)
    assert stats["boundary_deg"] == pytest.approx(4.0, abs=1e-6)


def test_boundary_mean_only_sees_pixels_near_boundaries(section):
    ids, q = section
    near = near_boundaries(ids, 2)
    dq = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), math.radians(10.0))
    pred = np.where(near[..., None], q, quaternion_multiply(dq, q))  # errors only far inside grains
    stats = disorientation_stats(pred, q, ids)
    assert stats["boundary_deg"] < 1e-6
    assert stats["mean_deg"] == pytest.approx(10.0 * (~near).mean(), rel=1e-6)


def test_near_boundaries_match_naive_loop():
    ids = np.ones((15, 15), int)
    ids[:, 7:] = 2
    ids[10:, :] = 3
    b = grain_boundaries(ids)
    pts = np.argwhere(b)
    naive = np.zeros_like(b)
    for i in range(15):
        for j in range(15):
            naive[i, j] = np.min((pts[:, 0] - i) ** 2 + (pts[:, 1] - j) ** 2) <= 2.0**2
    assert np.array_equal(near_boundaries(ids, 2.0), naive)


def test_single_grain_valid_mask_and_shapes():
    ids = np.ones((8, 8), int)
    q = random_quaternions((8, 8), 1).numpy()
    stats = disorientation_stats(q, q, ids)
    assert stats["mean_deg"] < 1e-6 and math.isnan(stats["boundary_deg"])
    ids[:2] = 0  # unindexed rows are not scored
    other = random_quaternions((8, 8), 2).numpy()
    pred = np.where(ids[..., None] == 0, other, q)
    assert disorientation_stats(pred, q, ids)["mean_deg"] < 1e-6
    with pytest.raises(ValueError, match=r"\(H, W, 4\)"):
        disorientation_stats(q[..., :3], q[..., :3], ids)
