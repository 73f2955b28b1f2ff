"""Grain segmentation: the vectorized graph version against a deliberately naive flood fill."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply, standardize
from ebsdray.data.symmetry import disorientation_deg
from ebsdray.io.segmentation import segment_grains


def _naive_flood_fill(q: np.ndarray, valid: np.ndarray, tol: float) -> np.ndarray:
    labels = np.zeros(valid.shape, np.int32)
    n = 0
    for start in np.ndindex(valid.shape):
        if not valid[start] or labels[start]:
            continue
        n += 1
        labels[start] = n
        todo = deque([start])
        while todo:
            p = todo.popleft()
            for axis in range(valid.ndim):
                for step in (-1, 1):
                    nb = list(p)
                    nb[axis] += step
                    nb = tuple(nb)
                    if not all(0 <= c < s for c, s in zip(nb, valid.shape, strict=True)):
                        continue
                    if valid[nb] and not labels[nb] and disorientation_deg(q[p], q[nb]) < tol:
                        labels[nb] = n
                        todo.append(nb)
    return labels


def _noisy_map(shape, n_orientations: int, noise_deg: float, seed: int):
    """Few orientations in blocks, noise per pixel, some invalid pixels."""
    rng = np.random.default_rng(seed)
    base = standardize(rng.normal(size=(n_orientations, 4)))
    coarse = rng.integers(0, n_orientations, tuple(max(1, s // 3) for s in shape))
    pick = coarse[
        tuple(np.minimum(np.indices(shape)[a] // 3, coarse.shape[a] - 1) for a in range(len(shape)))
    ]
    axis = rng.normal(size=(*shape, 3))
    angle = np.deg2rad(rng.uniform(0, noise_deg, shape))
    q = standardize(quaternion_multiply(axis_angle_to_quaternion(axis, angle), base[pick]))
    valid = rng.uniform(size=shape) > 0.1
    return q, valid


@pytest.mark.parametrize(("shape", "noise"), [((12, 14), 3.0), ((12, 14), 8.0), ((4, 6, 7), 4.0)])
def test_matches_naive_flood_fill(shape, noise):
    q, valid = _noisy_map(shape, n_orientations=4, noise_deg=noise, seed=len(shape))
    expected = _naive_flood_fill(q, valid, 5.0)
    np.testing.assert_array_equal(segment_grains(q, valid, 5.0), expected)


def test_symmetry_equivalent_neighbours_join():
    q = standardize(np.random.default_rng(0).normal(size=4))
    sixty = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), np.pi / 3)
    row = np.stack([q, q, quaternion_multiply(sixty, q), quaternion_multiply(sixty, q)])
    assert disorientation_deg(row[0], row[2]) < 1e-6
    np.testing.assert_array_equal(segment_grains(row[None]), [[1, 1, 1, 1]])
    np.testing.assert_array_equal(segment_grains(row[None], tolerance_deg=0.0), [[1, 2, 3, 4]])


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\(\*S, 4\)"):
        segment_grains(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="valid"):
        segment_grains(np.ones((3, 3, 4)), np.ones((3, 2), bool))
