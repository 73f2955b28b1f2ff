"""Symmetry-aware alignment and averaging of orientations, against naive loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ebsdray.aggregate.orientations import (
    align_to_reference,
    medoid,
    orientation_mean,
    orientation_spread_deg,
)
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.data.symmetry import disorientation_deg, symmetry_operators


def test_alignment_matches_naive_search():
    q = random_quaternions((50,), 0).numpy()
    ref = random_quaternions((50,), 1).numpy()
    got = align_to_reference(q, ref)
    ops = symmetry_operators().numpy()
    for i in range(50):
        cands = [sign * quaternion_multiply(s, q[i]) for s in ops for sign in (1.0, -1.0)]
        best = max(cands, key=lambda c: float(c @ ref[i]))
        assert np.allclose(got[i], best, atol=1e-12)
    # Aligning does not change the orientation.
    assert disorientation_deg(got, q).max() < 1e-5


def test_mean_of_symmetric_equivalents_is_the_orientation():
    rng = np.random.default_rng(0)
    q = random_quaternions((10, 10), 2).numpy()
    ops = symmetry_operators().numpy()
    members = np.stack(
        [
            quaternion_multiply(ops[rng.integers(0, 12, (10, 10))], q)
            * rng.choice([-1.0, 1.0], (10, 10, 1))
            for _ in range(6)
        ]
    )
    assert disorientation_deg(orientation_mean(members), q).max() < 1e-5


def test_mean_of_opposite_turns_is_the_centre():
    q = random_quaternions((200,), 3).numpy()
    axis = np.array([0.2, -0.5, 1.0])
    turns = [axis_angle_to_quaternion(axis, math.radians(a)) for a in (-8.0, 8.0, -3.0, 3.0)]
    members = np.stack([quaternion_multiply(t, q) for t in turns])
    assert disorientation_deg(orientation_mean(members), q).max() < 1e-5
    spread = orientation_spread_deg(members, q)
    assert spread == pytest.approx(np.full(200, 5.5), abs=1e-5)


def test_weights_and_medoid():
    q = random_quaternions((5, 7), 4).numpy()  # 5 members at 7 positions
    w = np.zeros((5, 7))
    w[2] = 1.0
    assert disorientation_deg(orientation_mean(q, w), q[2]).max() < 1e-5
    got = medoid(q)
    for j in range(7):
        cost = [sum(disorientation_deg(q[i, j], q[m, j]) for m in range(5)) for i in range(5)]
        assert np.array_equal(got[j], q[int(np.argmin(cost)), j])
