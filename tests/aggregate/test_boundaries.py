"""Boundary aggregation: Sobel against a naive loop, normalization, the kneed elbow threshold."""

from __future__ import annotations

import numpy as np
import pytest

from ebsdray.aggregate.boundaries import (
    boundary_confidence,
    boundary_uncertainty,
    edge_maps,
    elbow_threshold,
    sobel_magnitude,
    threshold_boundaries,
)
from ebsdray.metrics import chamfer, grain_boundaries


def naive_sobel(img: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W), explicit 3 x 3 kernels with edge replication."""
    kh = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float)  # d/d row
    kw = kh.T
    c, h, w = img.shape
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            total = 0.0
            for ch in range(c):
                win = pad[ch, i : i + 3, j : j + 3]
                total += (kh * win).sum() ** 2 + (kw * win).sum() ** 2
            out[i, j] = np.sqrt(total)
    return out


def test_sobel_matches_naive_loop_and_ignores_other_axes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 9, 11))  # (K, C, H, W)
    got = sobel_magnitude(x)
    for k in range(3):
        assert np.allclose(got[k], naive_sobel(x[k]), atol=1e-12)


def test_edge_maps_are_normalized_per_sample():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5, 16, 16))
    x[1] *= 10.0  # scale does not matter after min-max normalization
    m = edge_maps(x)
    assert m.shape == (4, 16, 16)
    assert np.allclose(m.min(axis=(1, 2)), 0.0) and np.allclose(m.max(axis=(1, 2)), 1.0)
    assert np.allclose(m[1], edge_maps(x[1:2] / 10.0)[0])
    assert not edge_maps(np.ones((2, 5, 8, 8))).any()  # flat samples: no edges


def test_identical_samples_have_the_single_sample_confidence_and_no_variance():
    x = np.random.default_rng(2).standard_normal((1, 5, 12, 12))
    many = np.repeat(x, 4, axis=0)
    assert np.allclose(boundary_confidence(many), boundary_confidence(x))
    assert np.allclose(boundary_uncertainty(many), 0.0)


def test_elbow_special_cases():
    assert elbow_threshold(np.full((8, 8), 0.3)) == np.inf
    assert not threshold_boundaries(np.zeros((8, 8))).any()
    # A straight sorted curve has no elbow: the midpoint of the range.
    assert elbow_threshold(np.linspace(0.0, 1.0, 4096)) == pytest.approx(0.5)
    # Two levels (100 high values): the elbow is where the smoothed drop flattens out, a little
    # after the step (the smoothing is 1% of the curve, i.e. 10 values here).
    two = np.r_[np.ones(100), np.zeros(900)] + np.linspace(0, 1e-3, 1000)
    assert 100 <= (two >= elbow_threshold(two)).sum() <= 140


def test_elbow_picks_a_sensible_fraction_on_a_sobel_map(codec, section, make_samples):
    true = grain_boundaries(section.grain_ids)
    p = boundary_confidence(make_samples(section, codec, 8, pl_noise=0.15)[:, 3:])
    picked = p >= elbow_threshold(p)
    # Sobel responds on both sides of the 2-pixel band: a little more than the band itself.
    assert 0.8 * true.mean() < picked.mean() < 1.6 * true.mean()
    c = chamfer(picked, true)["bidirectional"]
    assert c < 1.0  # squared pixels: on average within a pixel of the truth both ways
    # Much better than cutting at half or twice the picked fraction.
    for frac in (0.5 * picked.mean(), 2.0 * picked.mean()):
        assert c < 0.5 * chamfer(p >= np.quantile(p, 1 - frac), true)["bidirectional"]
    # Subsampling the sorted curve changes little.
    full = p >= elbow_threshold(p, max_points=p.size)
    assert abs(full.mean() - picked.mean()) < 0.03
