"""Baselines: Sobel on observed PL, nearest and symmetry-aware linear upsampling of EBSD."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ebsdray.aggregate import aggregate
from ebsdray.aggregate.baselines import (
    bilinear_upsample,
    ebsd_baselines,
    nearest_upsample,
    sobel_baseline,
)
from ebsdray.aggregate.boundaries import boundary_confidence, threshold_boundaries
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.data.symmetry import disorientation_deg, reduce_to_fundamental_zone
from ebsdray.metrics import chamfer, grain_boundaries


def gradient_field(h: int = 24, w: int = 40) -> np.ndarray:
    """(h, w, 4) orientations turning smoothly about c from 20 to ~40 degrees along the columns:
    they cross the fundamental zone's face at 30 degrees (the base orientation has no c
    component), where the reduced quaternions and the cubochoric channels jump."""
    base = axis_angle_to_quaternion(np.array([1.0, 0.0, 0.0]), math.radians(50.0))
    angle = np.radians(20.0 + 0.5 * np.arange(w))[None, :].repeat(h, 0)
    turn = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), angle)
    return reduce_to_fundamental_zone(quaternion_multiply(turn, base))


def grid_mask(h: int, w: int, s: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[::s, ::s] = True
    return m


def test_nearest_takes_a_nearest_observed_pixel():
    rng = np.random.default_rng(0)
    q = gradient_field()
    mask = rng.random(q.shape[:2]) < 0.1
    up = nearest_upsample(q, mask)
    obs = np.argwhere(mask)
    for i, j in [(0, 0), (5, 17), (23, 39), (12, 3)]:
        d2 = ((obs - [i, j]) ** 2).sum(1)
        nearest = obs[d2 == d2.min()]
        assert any(np.array_equal(up[i, j], q[a, b]) for a, b in nearest)
    assert np.array_equal(up[mask], q[mask])


@pytest.mark.parametrize("pattern", ["grid", "random"])
def test_linear_upsampling_follows_a_gradient_across_the_zone_face(pattern):
    q = gradient_field()
    if pattern == "grid":
        mask = grid_mask(*q.shape[:2], 4)
        inside = np.ones(q.shape[:2], bool)
        inside[:, 37:] = False  # beyond the last observed column: constant extrapolation
    else:
        mask = np.random.default_rng(1).random(q.shape[:2]) < 0.15
        mask[[0, 0, -1, -1], [0, -1, 0, -1]] = True  # corners: the hull covers the image
        inside = np.ones(q.shape[:2], bool)
    err = disorientation_deg(bilinear_upsample(q, mask), q)
    assert err[mask].max() < 1e-6
    assert err[inside].max() < 0.05  # a linear field is recovered up to the chordal blend
    nearest = disorientation_deg(nearest_upsample(q, mask), q)
    assert err[inside].mean() < 0.2 * nearest[inside].mean()


def test_random_pattern_matches_griddata_where_no_alignment_is_needed():
    interpolate = pytest.importorskip("scipy.interpolate")
    # Orientations within a few degrees of one another, far from any zone face: the aligned
    # quaternions are the raw ones, so linear interpolation is griddata's, renormalized.
    back = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), math.radians(-45.0))
    # -25 to -13.5 degrees about c: inside the zone, at least 5 degrees from its faces.
    q = reduce_to_fundamental_zone(quaternion_multiply(back, gradient_field(20, 24)))
    mask = np.random.default_rng(4).random(q.shape[:2]) < 0.2
    pts = np.argwhere(mask)
    pix = np.argwhere(np.ones(mask.shape, bool))
    ref = interpolate.griddata(pts, q[mask], pix, method="linear").reshape(q.shape)
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    inside = np.isfinite(ref).all(-1)
    assert inside.mean() > 0.6
    assert np.allclose(bilinear_upsample(q, mask)[inside], ref[inside], atol=1e-9)


def test_channel_interpolation_would_fail_where_symmetry_aware_blending_does_not(codec):
    q = gradient_field()
    c = codec.encode_ebsd(q)
    # Channels of the two columns that straddle 30 degrees (20 + 0.5 * 20) are far apart...
    assert np.abs(c[:, 19] - c[:, 21]).max() > 0.5
    naive = codec.decode_ebsd(0.5 * (c[:, 19] + c[:, 21]))
    assert disorientation_deg(naive, q[:, 20]).min() > 5.0
    # ...while the blended quaternion is right.
    mask = np.zeros(q.shape[:2], bool)
    mask[:, 19] = mask[:, 21] = True
    assert disorientation_deg(bilinear_upsample(q, mask)[:, 20], q[:, 20]).max() < 0.01


def test_degenerate_random_patterns_fall_back_to_nearest():
    q = gradient_field(8, 8)
    line = np.zeros((8, 8), bool)
    line[3, ::2] = True  # collinear: no triangulation
    assert np.array_equal(bilinear_upsample(q, line), nearest_upsample(q, line))
    with pytest.raises(ValueError, match="no observed pixel"):
        nearest_upsample(q, np.zeros((8, 8), bool))


def test_ebsd_baselines_from_channels(codec, section):
    ids, q = section
    obs = np.moveaxis(codec.encode_ebsd(q), -1, 0)
    mask = grid_mask(*ids.shape, 4)
    out = ebsd_baselines(obs, np.broadcast_to(mask, (3, *ids.shape)), codec)
    for up in out.values():
        assert up.shape == (*ids.shape, 4)
        assert disorientation_deg(up[mask], q[mask]).max() < 0.01
    # Grain maps: most pixels take their own grain's orientation.
    assert np.median(disorientation_deg(out["nearest"], q)) < 0.01


def test_sobel_baseline_is_the_sobel_route_with_one_sample(codec, section):
    """The baseline is Sobel + elbow on the observation itself (design.md's PL route with K = 1).
    On a clean image the model's own PL route marks the two pixels of each interface, where a
    Sobel band is 3-4 pixels wide. (On one noisy image it is no better than Sobel; it is made
    for the posterior mean of K samples.)"""
    ids, q = section
    true = grain_boundaries(ids)
    pl = codec.encode_section(q)[3:]
    noisy = pl + 0.05 * np.random.default_rng(2).standard_normal(pl.shape)
    base = sobel_baseline(noisy)
    p = boundary_confidence(noisy[None])
    assert np.allclose(base["boundary_confidence"], p)
    assert np.array_equal(base["boundary"], threshold_boundaries(p))
    sobel = chamfer(base["boundary"], true)["bidirectional"]
    assert sobel < 2.0
    clean_sobel = chamfer(sobel_baseline(pl)["boundary"], true)["bidirectional"]
    agg = aggregate(pl[None], codec, variant="pl")
    assert chamfer(agg["boundary"], true)["bidirectional"] < 0.1 * clean_sobel
