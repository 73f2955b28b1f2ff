"""Boundary aggregation: Sobel against a naive loop, normalization, the kneed elbow threshold; EBSD
evidence: ramp, medoid filter, boundaries invisible to PL."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ebsdray.aggregate.boundaries import (
    DARK_LEVEL,
    boundary_confidence,
    ebsd_edge_maps,
    edge_maps,
    elbow_threshold,
    local_maxima,
    medoid_filter,
    pair_evidence,
    pair_steps,
    persistent_steps,
    pl_pair_edges,
    ramp,
    shading_invariant,
    sobel_magnitude,
    threshold_boundaries,
)
from ebsdray.aggregate.ebsd import decode_samples
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.rotations import quaternion_multiply
from ebsdray.data.symmetry import disorientation_deg
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
    assert not edge_maps(many).var(axis=0).any()  # identical samples: no uncertainty


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


# --- EBSD evidence ----------------------------------------------------------------------------


def block_in_grain(
    size: int = 12, block: tuple[int, int] = (4, 8)
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) ids (a square grain 2 inside grain 1) and (H, W, 4) orientations."""
    ids = np.ones((size, size), np.int32)
    ids[block[0] : block[1], block[0] : block[1]] = 2
    qg = random_quaternions((3,), 5).numpy().astype(np.float64)
    return ids, qg[ids]


def test_ramp_is_centred_on_the_threshold():
    got = ramp([3.0, 4.5, 5.0, 5.25, 7.0], 5.0, 1.0)
    assert np.allclose(got, [0.0, 0.0, 0.5, 0.75, 1.0])
    assert np.array_equal(ramp([4.99, 5.0], 5.0, 0.0), [0.0, 1.0])


def test_clean_maps_give_exactly_the_true_boundary(section):
    # Both pixels of a pair get its evidence: the two-sided band of grain_boundaries.
    true = grain_boundaries(section.grain_ids)
    assert np.array_equal(ebsd_edge_maps(section.quaternions[None], window=None)[0] > 0.5, true)
    # The medoids move one-pixel features only (10 and 24 of 4096 pixels here).
    for window, wrong in (("weighted", 10), ("square", 24)):
        e = ebsd_edge_maps(section.quaternions[None], window=window)[0] > 0.5
        assert (e != true).sum() <= wrong and chamfer(e, true)["bidirectional"] < 0.02
    v, h = pair_evidence(section.quaternions[None], window=None)
    assert v.shape == (1, 63, 64) and h.shape == (1, 64, 63)
    assert np.array_equal(v[0] > 0.5, section.grain_ids[1:] != section.grain_ids[:-1])


def test_medoid_removes_speckle_and_the_weighted_one_keeps_corners():
    _, q = block_in_grain()
    noisy = q.copy()
    noisy[[1, 1, 10], [1, 2, 9]] = random_quaternions(
        (3,), 9
    ).numpy()  # a 2-pixel and a 1-pixel speckle
    square, weighted = medoid_filter(noisy[None], ("square", "weighted"))
    assert np.all(disorientation_deg(weighted[0], q) < 1e-6)  # speckle gone, corners kept
    # The plain 3 x 3 medoid clips the block's four corners (4 of 9 window members), nothing else.
    wrong = disorientation_deg(square[0], q) > 1e-6
    assert wrong.sum() == 4 and wrong[[4, 4, 7, 7], [4, 7, 4, 7]].all()
    assert np.array_equal(medoid_filter(noisy[None], "square"), square)
    with pytest.raises(ValueError, match="window"):
        medoid_filter(noisy[None], "round")


def test_ebsd_evidence_sees_what_pl_cannot(codec, make_samples):
    # Two grains of one c-axis, turned 30 degrees about it: identical PL, a clear disorientation.
    q1 = random_quaternions((1,), 11).numpy()[0].astype(np.float64)
    turn = np.array([np.cos(np.pi / 12), 0.0, 0.0, np.sin(np.pi / 12)])
    ids = np.ones((24, 24), np.int32)
    ids[:, 12:] = 2
    q = np.where((ids == 1)[..., None], q1, quaternion_multiply(turn, q1))
    section = SimpleNamespace(grain_ids=ids, quaternions=q, channels=codec.encode_section(q))
    x = make_samples(section, codec, 8, rotation_deg=1.0, speckle=0.03, pl_noise=0.05)
    true = grain_boundaries(ids)
    p = ebsd_edge_maps(decode_samples(x[:, :3], codec)).mean(axis=0)
    assert chamfer(p > 0.5, true)["bidirectional"] < 0.05
    assert chamfer(threshold_boundaries(boundary_confidence(x[:, 3:])), true)["bidirectional"] > 5


def test_local_maxima_keep_one_pair_per_interface():
    """A soft edge spread over 3 pairs keeps only its largest step."""
    row = np.array([0.0, 0.0, 0.1, 0.6, 0.9, 1.0, 1.0])  # steps 0, .1, .5, .3, .1, 0 along W
    img = np.broadcast_to(row, (2, 5, 7)).copy()  # (C, H, W), constant down the rows
    vertical, horizontal = pair_steps(img)
    assert vertical.shape == (4, 7) and not vertical.any()
    expected = np.sqrt(2) * np.array([0.0, 0.1, 0.5, 0.3, 0.1, 0.0])
    np.testing.assert_allclose(horizontal, np.broadcast_to(expected, (5, 6)), atol=1e-12)
    _, keep = local_maxima(vertical, horizontal)
    assert keep[:, 2].all() and not np.delete(keep, 2, axis=1).any()
    v, h = pair_steps(np.ones((3, 2, 6, 6)))  # (K, C, H, W)
    assert v.shape == (3, 5, 6) and h.shape == (3, 6, 5)
    assert all(k.all() for k in local_maxima(v, h))  # a flat image: every pair ties


def test_pl_pair_edges_mark_both_sides_of_each_interface(codec, section, make_samples):
    """The two pixels either side of each interface, as the ground truth marks them: exactly for
    clean samples (where the Sobel band's elbow fails), and better than Sobel under noise."""
    true = grain_boundaries(section.grain_ids)
    clean = make_samples(section, codec, 4, pl_noise=0.0)[:, 3:]
    got = pl_pair_edges(clean, codec)
    assert got["maps"].shape == (4, *true.shape) and set(np.unique(got["maps"])) <= {0.0, 1.0}
    assert chamfer(got["boundary"], true)["bidirectional"] < 0.01
    noisy = make_samples(section, codec, 8, pl_noise=0.05)[:, 3:]
    c = chamfer(pl_pair_edges(noisy, codec)["boundary"], true)
    sobel = chamfer(threshold_boundaries(boundary_confidence(noisy)), true)
    assert c["backward"] < 0.05 and c["bidirectional"] < 0.75 * sobel["bidirectional"]
    flat = pl_pair_edges(np.ones((2, codec.pl_channels, 8, 8)), codec)
    assert flat["threshold"] == np.inf and not flat["boundary"].any() and not flat["maps"].any()


def test_persistent_steps_drop_thin_lines_and_keep_steps():
    """A line up to ``span`` pixels wide steps back within the span and scores 0; the step
    between two regions deeper than the span keeps its full height, in both directions."""
    profile = np.zeros(16)
    profile[8:] = 1.0  # a step between columns 7 and 8
    profile[2] = 0.5  # a line 1 pixel wide
    profile[4:6] = -0.5  # a line 2 pixels wide
    img = np.broadcast_to(profile, (1, 6, 16)).copy()  # (C, H, W)
    _, horizontal = persistent_steps(img, span=2)
    expected = np.zeros(15)
    expected[7] = 1.0
    np.testing.assert_allclose(horizontal, np.broadcast_to(expected, (6, 15)), atol=1e-12)
    vertical, _ = persistent_steps(np.swapaxes(img, 1, 2), span=2)
    np.testing.assert_allclose(vertical, np.broadcast_to(expected[:, None], (15, 6)), atol=1e-12)
    raw = pair_steps(img)[1]
    assert np.allclose(persistent_steps(img, span=0)[1], raw) and raw[0, 1] == 0.5


def test_shading_invariant_features_change_less_than_the_brightness(codec, section):
    """Halving an average pixel's brightness moves its features by 40 %, not 50 %; the brighter
    the pixel, the less."""
    stacks = codec.decode_pl(np.moveaxis(section.channels[3:], 0, -1))  # (H, W, R)
    half = np.moveaxis(codec.encode_pl(0.5 * stacks), -1, 0)
    f, g = shading_invariant(section.channels[3:], codec), shading_invariant(half, codec)
    assert f.shape == (len(codec.stage_angles_deg), *section.grain_ids.shape)
    change = np.linalg.norm(g - f, axis=0) / np.linalg.norm(f, axis=0)
    level = stacks.mean(axis=-1) / (DARK_LEVEL * codec.pl_mean.mean())
    np.testing.assert_allclose(change, 1 - 0.5 * (level + 1) / (0.5 * level + 1), atol=1e-6)
    at_mean = np.abs(stacks.mean(axis=-1) / codec.pl_mean.mean() - 1) < 0.1
    assert at_mean.any() and np.allclose(change[at_mean], 0.4, atol=0.03)
    assert change.max() < 0.5
