"""Boundary metrics: ground truth from grain ids, Chamfer against brute force, blurred BCE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebsdray.metrics import blurred_bce, blurred_target, chamfer, grain_boundaries


def naive_grain_boundaries(ids: np.ndarray) -> np.ndarray:
    h, w = ids.shape
    out = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            if ids[i, j] == 0:
                continue
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                a, b = i + di, j + dj
                if 0 <= a < h and 0 <= b < w and ids[a, b] != 0 and ids[a, b] != ids[i, j]:
                    out[i, j] = True
    return out


def naive_chamfer(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Brute force over all point pairs (both sets non-empty)."""
    p, t = np.argwhere(pred), np.argwhere(true)

    def one_way(src, dst):
        total = 0.0
        for a in src:
            total += min(float((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) for b in dst)
        return total / len(src)

    f, b = one_way(p, t), one_way(t, p)
    return {"forward": f, "backward": b, "bidirectional": f + b}


@pytest.mark.parametrize("seed", range(4))
def test_grain_boundaries_match_naive_loop(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, size=(13, 17))  # includes unindexed 0 pixels
    assert np.array_equal(grain_boundaries(ids), naive_grain_boundaries(ids))


def test_straight_boundary_marks_both_sides():
    ids = np.ones((6, 8), int)
    ids[:, 4:] = 2
    b = grain_boundaries(ids)
    expected = np.zeros_like(b)
    expected[:, 3:5] = True
    assert np.array_equal(b, expected)


def test_single_grain_and_unindexed_pixels_give_no_boundary():
    assert not grain_boundaries(np.full((9, 9), 7)).any()
    ids = np.full((9, 9), 7)
    ids[4, 4] = 0  # a hole of unindexed pixels is not a grain boundary
    assert not grain_boundaries(ids).any()
    assert not grain_boundaries(torch.ones(5, 5, dtype=torch.int32)).any()


@pytest.mark.parametrize("seed, density", [(0, 0.02), (1, 0.1), (2, 0.3), (3, 0.05)])
def test_chamfer_matches_brute_force(seed, density):
    rng = np.random.default_rng(seed)
    pred = rng.random((23, 31)) < density
    true = rng.random((23, 31)) < density / 2
    pred[0, 0] = true[-1, -1] = True  # both non-empty
    got, want = chamfer(pred, true), naive_chamfer(pred, true)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12)


def test_chamfer_known_values_for_shifted_lines():
    true = np.zeros((32, 32), bool)
    true[:, 10] = True
    pred = np.roll(true, 3, axis=1)
    assert chamfer(pred, true) == {"forward": 9.0, "backward": 9.0, "bidirectional": 18.0}
    assert chamfer(true, true)["bidirectional"] == 0.0
    part = true.copy()
    part[16:] = False  # a subset: no false positive, half of the boundary missed
    c = chamfer(part, true)
    assert c["forward"] == 0.0
    assert c["backward"] == pytest.approx(np.mean(np.arange(1, 17) ** 2) / 2)


def test_chamfer_empty_sets():
    true = np.zeros((30, 40), bool)
    true[5, 5] = True
    empty = np.zeros_like(true)
    assert chamfer(empty, empty)["bidirectional"] == 0.0
    c = chamfer(empty, true)
    assert c["forward"] == 0.0 and c["backward"] == 30**2 + 40**2
    assert chamfer(true, empty)["forward"] == 30**2 + 40**2
    assert chamfer(empty, true, empty_distance=math.inf)["backward"] == math.inf


def test_chamfer_accepts_torch_and_checks_shapes():
    a = torch.zeros(8, 8, dtype=torch.bool)
    a[2, 2] = True
    assert chamfer(a, a)["bidirectional"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        chamfer(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_chamfer_matches_pytorch3d():
    p3d = pytest.importorskip("pytorch3d.loss")
    rng = np.random.default_rng(7)
    pred, true = rng.random((20, 24)) < 0.1, rng.random((20, 24)) < 0.05
    x = torch.tensor(np.argwhere(pred), dtype=torch.float32)[None]
    y = torch.tensor(np.argwhere(true), dtype=torch.float32)[None]
    ours = chamfer(pred, true)
    loss, _ = p3d.chamfer_distance(x, y, point_reduction="mean")
    assert ours["bidirectional"] == pytest.approx(float(loss), rel=1e-5)
    forward, _ = p3d.chamfer_distance(x, y, point_reduction="mean", single_directional=True)
    assert ours["forward"] == pytest.approx(float(forward), rel=1e-5)


def test_blurred_target_is_a_truncated_gaussian_scaled_to_one():
    true = np.zeros((31, 31), bool)
    true[15, 15] = True
    t = blurred_target(true)
    assert t.max() == pytest.approx(1.0)
    support = np.argwhere(t > 0)
    assert support.min(0).tolist() == [10, 10] and support.max(0).tolist() == [20, 20]  # radius 5
    assert t[15, 18] == pytest.approx(math.exp(-9 / 18))  # sigma 3
    assert not blurred_target(np.zeros((5, 5), bool)).any()


def test_blurred_bce_prefers_a_near_miss_to_a_far_prediction():
    true = np.zeros((64, 64), bool)
    true[:, 30:32] = True
    near = np.roll(true, 1, axis=1).astype(float)
    far = np.roll(true, 15, axis=1).astype(float)
    exact = blurred_bce(true.astype(float), true)
    assert exact < blurred_bce(near, true) < blurred_bce(far, true)
    soft = blurred_target(true)
    assert blurred_bce(soft, true) < exact  # the blurred map itself is the optimum
    assert np.isfinite(blurred_bce(np.ones((64, 64)), true))  # clipped logs
