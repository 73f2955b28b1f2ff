"""Grain-consistent EBSD: segmentation from pair probabilities, fragments, splits, one orientation
per grain; on synthetic sections whose samples err the way PL-conditioned samples do."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ebsdray.aggregate import aggregate
from ebsdray.aggregate.grains import (
    between_grains,
    fill_between_observations,
    grain_consistent,
    grain_means,
    merge_fragments,
    merge_unseen,
    observed_borders,
    refine_borders,
    segment_pairs,
    split_by_image,
    split_by_observations,
)
from ebsdray.aggregate.orientations import orientation_mean
from ebsdray.data.cubochoric import random_quaternions
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.data.symmetry import disorientation_deg
from ebsdray.metrics import disorientation_stats


def about_c(deg: float) -> np.ndarray:
    """(4,) rotation by ``deg`` about the crystal c-axis (applied on the left: PL cannot see it)."""
    return axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), np.array(np.deg2rad(deg)))


def two_grains(h: int = 16, w: int = 16, tilt: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) ids (1 left, 2 right) and (H, W, 4) orientations 30 deg apart about c (the PL cannot
    tell them apart), or with ``tilt`` about a crystal a-axis (their c-axes 30 deg apart)."""
    q1 = random_quaternions((1,), 11).numpy()[0].astype(np.float64)
    turn = axis_angle_to_quaternion(np.array([1.0, 0.0, 0.0]), np.array(np.deg2rad(30.0)))
    q2 = quaternion_multiply(turn if tilt else about_c(30.0), q1)
    ids = np.ones((h, w), np.int32)
    ids[:, w // 2 :] = 2
    return ids, np.where((ids == 1)[..., None], q1, q2)


def grid(shape: tuple[int, ...], step: int = 4) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[..., ::step, ::step] = True
    return m


def test_grain_consistent_output_beats_the_per_pixel_mean(codec, section, make_samples):
    # Samples that know each grain's c-axis (from PL) but not its turn about c, plus speckle:
    # the per-pixel mean blends the turns; observed pixels pin each grain down.
    x = make_samples(section, codec, 8, rotation_deg=1.0, grain_c_deg=20.0, speckle=0.05)
    mask = grid(section.channels.shape)
    mask[3:] = True
    out = aggregate(x, codec, observed=section.channels, mask=mask)
    err = {
        k: disorientation_stats(out[k], section.quaternions, section.grain_ids)["mean_deg"]
        for k in ("ebsd_quaternions", "ebsd_quaternions_mean")
    }
    assert err["ebsd_quaternions"] < 1.0 < 4.0 < err["ebsd_quaternions_mean"]
    labels = out["grain_labels"]
    assert labels.dtype == np.int32 and labels.shape == section.grain_ids.shape
    assert 0.8 * section.grain_ids.max() <= labels.max() <= 1.5 * section.grain_ids.max()
    # One orientation per grain at unobserved pixels; observed pixels keep their measurement.
    q = out["ebsd_quaternions"]
    seen = mask[0]
    free = q[~seen]
    first = {}
    for label, value in zip(labels[~seen], free, strict=True):
        assert np.array_equal(first.setdefault(label, value), value)
    observed_q = codec.decode_ebsd(np.moveaxis(section.channels[:3].astype(np.float64), 0, -1))
    assert np.allclose(q[seen], observed_q[seen])
    assert np.allclose(out["ebsd_channels"], np.moveaxis(codec.encode_ebsd(q), -1, 0))


def test_an_observed_pixel_sets_its_grain(codec, make_samples):
    ids, q = two_grains(tilt=True)  # the right grain's c-axis differs: the PL shows it
    section = SimpleNamespace(grain_ids=ids, quaternions=q, channels=codec.encode_section(q))
    x = make_samples(section, codec, 8, rotation_deg=1.0, grain_c_deg=20.0, pl_noise=0.1)
    observed = np.zeros(ids.shape, bool)
    observed[8, 3] = True  # one pixel inside the left grain
    out = aggregate(x, codec, observed=section.channels, mask=observed, align=False)
    left, right = out["ebsd_quaternions"][ids == 1], out["ebsd_quaternions"][ids == 2]
    assert np.all(disorientation_deg(left, q[8, 3]) < 1e-3)  # the observation, everywhere
    assert np.unique(out["grain_labels"][ids == 1]).size == 1
    # The unobserved grain keeps one posterior orientation: the mean over its pixels.
    assert np.unique(out["grain_labels"][ids == 2]).size == 1
    assert np.all(disorientation_deg(right, right[0]) < 1e-6)
    mean_right = orientation_mean(out["ebsd_quaternions_mean"][ids == 2])
    assert disorientation_deg(right[0], mean_right) < 0.5
    # Two grains of one c-axis: only the samples tell the unobserved one apart, and samples
    # one pixel from an observation are no evidence of a grain; it joins the observed one.
    ids, q = two_grains()
    section = SimpleNamespace(grain_ids=ids, quaternions=q, channels=codec.encode_section(q))
    x = make_samples(section, codec, 8, rotation_deg=1.0, grain_c_deg=20.0)
    out = aggregate(x, codec, observed=section.channels, mask=observed, align=False)
    assert np.unique(out["grain_labels"]).size == 1
    assert np.all(disorientation_deg(out["ebsd_quaternions"], q[8, 3]) < 1e-3)


def test_segment_pairs_cuts_at_a_strict_majority():
    v, h = np.zeros((3, 4)), np.zeros((4, 3))
    h[:, 1] = 0.75  # a wall between columns 1 and 2
    labels = segment_pairs(v, h)
    assert labels.dtype == np.int32
    assert np.array_equal(labels, np.repeat([[1, 1, 2, 2]], 4, axis=0))
    h[0, 1] = 0.5  # half the samples against half: no evidence, the grains join
    assert segment_pairs(v, h).max() == 1
    with pytest.raises(ValueError, match="fit one image"):
        segment_pairs(v, h[:, :2])


def test_fragments_join_the_closest_grain_unless_observed():
    ids, q = two_grains(8, 8)
    labels = ids.copy()
    labels[3, 3] = 3  # a one-pixel fragment in the left grain, but with the right grain's
    q = q.copy()  # orientation turned a little: it joins the right grain (closest), not the left
    q[3, 3] = quaternion_multiply(about_c(2.0), q[0, -1])
    merged = merge_fragments(labels, q)
    assert merged.max() == 2 and merged[3, 3] == merged[0, -1] != merged[3, 2]
    keep = np.zeros(ids.shape, bool)
    keep[3, 3] = True
    assert merge_fragments(labels, q, keep).max() == 3  # an observation is never merged away
    # Only fragments everywhere (every pair a boundary): nothing snowballs, labels stay.
    singles = np.arange(1, 65, dtype=np.int32).reshape(8, 8)
    assert np.array_equal(merge_fragments(singles, q), singles)


def test_a_merged_grain_is_split_at_its_weakest_link():
    ids, q = two_grains(8, 8)
    labels = np.ones_like(ids)  # the samples leaked: one grain
    v, h = np.zeros((7, 8)), np.zeros((8, 7))
    h[:, 3] = 0.4  # weak evidence at the true interface, below the cut
    observed = np.zeros(ids.shape, bool)
    observed[1, 1] = observed[6, 6] = observed[2, 0] = True
    split = split_by_observations(labels, v, h, q, observed)
    assert np.array_equal(split, ids)
    # Observations that agree keep the grain whole.
    assert (
        split_by_observations(labels, v, h, np.broadcast_to(q[0, 0], q.shape), observed).max() == 1
    )


def test_grain_means_are_robust_to_outliers():
    rng = np.random.default_rng(0)
    base = random_quaternions((1,), 3).numpy()[0].astype(np.float64)
    v = rng.standard_normal((40, 3)) * np.deg2rad(1.0)
    q = quaternion_multiply(axis_angle_to_quaternion(v, np.linalg.norm(v, axis=-1)), base)
    q[:4] = random_quaternions((4,), 4).numpy()  # 10 % wild pixels
    labels = np.ones((1, 40), np.int32)
    means, present = grain_means(labels, q[None])
    assert present.tolist() == [False, True]
    assert disorientation_deg(means[1], base) < 0.5
    # Selecting pixels: a label without selected pixels is absent (identity).
    sel = np.zeros((1, 40), bool)
    means, present = grain_means(labels, q[None], sel)
    assert not present.any() and np.allclose(means[1], [1, 0, 0, 0])


def test_grain_consistent_without_observations_uses_the_posterior():
    ids, q = two_grains(8, 8)
    v, h = np.zeros((7, 8)), np.zeros((8, 7))
    h[:, 3] = 1.0
    out = grain_consistent(v, h, q)
    assert np.array_equal(out["labels"], ids) and not out["from_observation"].any()
    assert np.all(disorientation_deg(out["quaternions"], q) < 1e-6)


def test_refine_borders_moves_a_border_to_the_image_edge():
    """A border the EBSD put 2 pixels off moves to the PL's edge; observed pixels and grains the
    image cannot tell apart keep their labels."""
    h, w = 12, 16
    truth = np.ones((h, w), np.int32)
    truth[:, 8:] = 2
    truth[:, 12:] = 3  # grain 3: the same PL as grain 2 (one c-axis), so no image edge
    image = np.stack([np.where(truth == 1, 0.2, 0.8), np.where(truth == 1, -0.5, 0.1)])
    image = image + np.random.default_rng(0).normal(0, 0.02, image.shape)
    labels = np.ones((h, w), np.int32)
    labels[:, 6:] = 2  # grain 1's border 2 pixels too far left
    labels[:, 11:] = 3  # the 2|3 border 1 pixel off, invisible in the image
    fixed = np.zeros((h, w), bool)
    fixed[0, 6] = True  # an observation that (wrongly) says grain 2 there
    out = refine_borders(labels, image, fixed)
    assert out.dtype == labels.dtype and set(np.unique(out)) <= {1, 2, 3}
    assert out[0, 6] == 2
    np.testing.assert_array_equal(out[1:, :11], truth[1:, :11])
    np.testing.assert_array_equal(out[:, 11:], labels[:, 11:])  # no evidence: not moved
    with pytest.raises(ValueError, match=r"image must be \(C, 12, 16\)"):
        refine_borders(labels, image[0])


def test_a_pixel_between_two_observations_of_one_grain_takes_it():
    """On a 1/4 grid, unobserved pixels between two observations of one grain are that grain
    (whatever the samples said); a pixel between observations of two grains stays free, as does
    a corner where two pairs name different grains."""
    truth = np.ones((16, 16), np.int32)
    truth[:, 8:] = 2  # the border between columns 7 and 8: column 7 lies between 1 and 2
    observed = grid(truth.shape, 2)
    labels = truth.copy()
    labels[1:15, 3] = 2  # a strip of grain 1 that the samples (and the PL) gave to grain 2
    labels[5, 5] = 3  # a speckle between diagonal observations
    out, placed = fill_between_observations(labels, observed)
    assert out.dtype == labels.dtype
    np.testing.assert_array_equal(out[:, :7], truth[:, :7])
    np.testing.assert_array_equal(out[:, 8:], truth[:, 8:])
    np.testing.assert_array_equal(out[:, 7], labels[:, 7])  # between grains 1 and 2: free
    free = observed.copy()
    free[:, 7] = free[-1] = free[:, -1] = True  # beyond the last grid row and column: no pair
    np.testing.assert_array_equal(placed, ~free)
    # a corner: up and down observed in grain 1, left and right in grain 2
    corner = np.array([[9, 1, 9], [2, 5, 2], [9, 1, 9]], np.int32)
    seen = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], bool)
    out, placed = fill_between_observations(corner, seen)
    assert out[1, 1] == 5 and not placed[1, 1]


def test_observations_on_both_sides_outrank_the_image(codec, make_samples):
    """Where the samples' PL says a strip of the left grain looks like the right grain but
    observations on both sides of each of its pixels say left, the strip stays left: no
    checkerboard of observed pixels in the right grain; the border between the last left and
    the first right observations is still the PL's to place."""
    # 1 left (columns 0-7), 2 right: c-axes 30 degrees apart, so the PL differs; 17 x 17, so that
    # the grid's last row and column are the section's
    ids, q = two_grains(17, 17, tilt=True)
    section = SimpleNamespace(grain_ids=ids, quaternions=q, channels=codec.encode_section(q))
    x = make_samples(section, codec, 8, rotation_deg=1.0, pl_noise=0.05)
    x[:, 3:, :, 3:8] = x[:, 3:, :, 8:13]  # columns 3-7 of the left grain: the right's PL
    observed = grid(ids.shape, 2)
    out = aggregate(x, codec, observed=section.channels, mask=observed, align=False)
    labels = out["grain_labels"]
    assert np.unique(labels[:, :7]).size == 1 and np.unique(labels[:, 8:]).size == 1
    assert labels[0, 0] != labels[0, 8]
    assert np.all(disorientation_deg(out["ebsd_quaternions"][:, :7], q[0, 0]) < 1.0)


def test_between_grains_is_where_observations_of_two_grains_meet():
    """On a 1/4 grid the pixels between observations of two grains are the column the border can
    run through; on a 1/16 grid no pixel has two observations among its neighbours."""
    labels = np.ones((16, 16), np.int32)
    labels[:, 8:] = 2  # observed columns 6 (grain 1) and 8 (grain 2): column 7 is between
    expected = np.zeros(labels.shape, bool)
    expected[:, 7] = True
    np.testing.assert_array_equal(between_grains(labels, grid(labels.shape, 2)), expected)
    assert not between_grains(labels, grid(labels.shape, 4)).any()
    assert not between_grains(labels, np.zeros(labels.shape, bool)).any()


def test_the_measured_pl_places_a_border_between_observations_of_two_grains(codec, make_samples):
    """Where all samples put the column between the last observations of the left grain and the
    first of the right one in the left grain, the measured PL, which shows it right, wins; the
    pixels the observations already place do not move."""
    ids, q = two_grains(17, 17, tilt=True)
    ids[:, 8] = 1  # the border between columns 8 and 9: column 9 lies between observed 8 and 10
    q = np.where((ids == 1)[..., None], q[0, 0], q[0, -1])
    section = SimpleNamespace(grain_ids=ids, quaternions=q, channels=codec.encode_section(q))
    x = make_samples(section, codec, 8, rotation_deg=1.0, pl_noise=0.05)
    x[:, :, :, 9] = x[:, :, :, 8]  # the samples, EBSD and PL, say the left grain
    y = section.channels.copy()
    y[3:] += np.random.default_rng(1).normal(0, 0.05, y[3:].shape)  # the measured PL's noise
    mask = np.ones(y.shape, bool)  # PL everywhere, EBSD on a 1/4 grid
    mask[:3] = grid(ids.shape, 2)
    labels = aggregate(x, codec, observed=y, mask=mask, align=False)["grain_labels"]
    assert np.unique(labels[:, :9]).size == 1 and np.unique(labels[:, 9:]).size == 1
    assert labels[0, 0] != labels[0, 9]
    # without a measured PL the samples' border stays where they put it
    mask[3:] = False
    labels = aggregate(x, codec, observed=y, mask=mask, align=False)["grain_labels"]
    assert np.all(labels[:, 9] == labels[0, 0])
    mask[3:] = True
    y[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="PL has NaN or inf at pixels the mask marks observed"):
        aggregate(x, codec, observed=y, mask=mask, align=False)


SLIVER_VALUES = np.array(  # the image of grains 1, 2, 3 of sliver_image (row 0 unused)
    [[0.0] * 4, [0.2, -0.5, 0.1, 0.3], [0.8, 0.1, 0.0, -0.2], [0.86, 0.04, 0.06, -0.14]]
)


def sliver_image(noise: float = 0.005, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) true ids of a 24 x 24 section and a (4, H, W) image of it: grains 1 (left) and 2
    (right), and grain 3, a 2-pixel sliver at the right edge inside grain 2 that differs from it
    by 0.12 in the image (a c-axis a few degrees off); the 1|2 border is blurred over a column
    of half-mixed pixels, as the posterior-mean PL blurs a border the samples disagree on."""
    ids = np.ones((24, 24), np.int32)
    ids[:, 12:] = 2
    ids[6:18, 22:] = 3
    values = SLIVER_VALUES
    image = np.moveaxis(values[ids], -1, 0)
    image[:, :, 12] = 0.5 * (values[1] + values[2])[:, None]
    rng = np.random.default_rng(seed)
    return ids, image + rng.normal(0.0, noise, image.shape)


def test_split_by_image_recovers_a_grain_no_observation_reached():
    ids, image = sliver_image()
    merged = np.where(ids == 3, 2, ids)  # what the samples made of it
    fixed = np.zeros(ids.shape, bool)
    fixed[::4, ::4] = True  # a 1/16 grid: columns 0, 4, ..., 20 miss the sliver
    out = split_by_image(merged, image, fixed)
    assert out.dtype == merged.dtype
    assert set(np.unique(out)) == {1, 2, 3}  # the new grain numbered from merged.max() + 1
    np.testing.assert_array_equal(out, ids)  # the sliver exactly; the blurred column no grain
    # an observation inside the sliver keeps its grain; the rest of the sliver still splits
    fixed[10, 22] = True
    out = split_by_image(merged, image, fixed)
    assert out[10, 22] == 2 and (out[ids == 3] == 3).sum() == (ids == 3).sum() - 1


def test_split_by_image_finds_a_grain_close_to_a_mix_of_its_neighbours():
    """A grain whose c-axis lies between its neighbours' has a PL near a mix of theirs, like the
    blur of a border, a few residual scales off it; unlike a scratch it is no change of
    brightness, so it splits off even where the image of no light is known."""
    dark = np.array([-0.4, -0.2, 0.1, -0.3])
    left, right = SLIVER_VALUES[1], SLIVER_VALUES[2]
    towards = left - right
    aside = np.array([0.06, -0.06, 0.06, 0.06])
    aside -= aside @ towards / (towards @ towards) * towards  # off the line of mixes
    for seed in range(3):
        ids, image = sliver_image(noise=0.02, seed=seed)
        image[:, ids == 3] += (right + 0.35 * towards + 0.5 * aside - SLIVER_VALUES[3])[:, None]
        merged = np.where(ids == 3, 2, ids)
        np.testing.assert_array_equal(split_by_image(merged, image, dark=dark), ids)


def test_split_by_image_leaves_noise_and_faint_regions_alone():
    # the sliver now within one noise level of its grain (0.06 rms per channel)
    ids, image = sliver_image(noise=0.06)
    merged = np.where(ids == 3, 2, ids)
    np.testing.assert_array_equal(split_by_image(merged, image), merged)
    flat = np.random.default_rng(1).normal(0.0, 0.05, (5, 32, 32))  # one grain, noise only
    one = np.ones((32, 32), np.int32)
    np.testing.assert_array_equal(split_by_image(one, flat), one)
    with pytest.raises(ValueError, match=r"image must be \(C, 32, 32\)"):
        split_by_image(one, flat[0])


def test_split_by_image_takes_a_scratch_for_no_grain_when_it_knows_the_dark():
    """A scratch scales the whole intensity stack: in an image affine in the intensities it is a
    mix of the grain's value with the image of no light, which ``dark`` gives."""
    ids, image = sliver_image()
    dark = np.array([-0.4, -0.2, 0.1, -0.3])  # where the channels of a zero stack would lie
    scratch = np.zeros(ids.shape, bool)
    scratch[4:6, 2:11] = True  # 2 pixels wide, inside grain 1, dimmed to 40 %
    image[:, scratch] = (0.4 * image[:, scratch].T + 0.6 * dark).T
    merged = np.where(ids == 3, 2, ids)
    out = split_by_image(merged, image, dark=dark)
    np.testing.assert_array_equal(out, ids)  # the sliver still splits off; the scratch does not
    blind = split_by_image(merged, image)[scratch]
    assert (blind == blind[0]).all() and blind[0] > 2  # without it: a false grain


def test_a_grain_only_the_samples_make_must_show_in_the_image():
    ids, image = sliver_image()
    grid4 = grid(ids.shape, 4)  # a 1/16 grid: columns 0, 4, ..., 20 miss the sliver
    # The PL shows the sliver (0.12 off its neighbour, noise 0.005): it stays a grain.
    np.testing.assert_array_equal(merge_unseen(ids, image, grid4), ids)
    # A strip of grain 2 the samples cut off between two grid columns: its PL is grain 2's.
    strip = ids.copy()
    strip[3:20, 14:16] = 4
    out = merge_unseen(strip, image, grid4)
    assert out.dtype == strip.dtype
    np.testing.assert_array_equal(out, ids)
    # an observation inside it makes it the observations' grain, not only the samples'
    seen = grid4.copy()
    seen[10, 15] = True
    np.testing.assert_array_equal(merge_unseen(strip, image, seen), strip)
    # The sliver within 2 noise levels of its neighbour: nothing shows it, it joins grain 2.
    ids, faint = sliver_image(noise=0.03)
    np.testing.assert_array_equal(merge_unseen(ids, faint, grid4), np.where(ids == 3, 2, ids))
    with pytest.raises(ValueError, match=r"image must be \(C, 24, 24\)"):
        merge_unseen(ids, image[0], grid4)


def test_a_wide_grain_of_low_contrast_stays_by_the_residual_it_saves():
    """Contrast is a per-pixel test: a grain under it that the PL shows over many pixels saves
    more squared residual standing apart than a strip does, and stays."""
    ids, image = sliver_image(noise=0.013)  # the sliver about 5 residual scales off grain 2
    grid4 = grid(ids.shape, 4)
    np.testing.assert_array_equal(merge_unseen(ids, image, grid4), ids)  # 24 pixels: it stays
    # contrast alone, as before the gain test: it joins grain 2
    joined = np.where(ids == 3, 2, ids)
    np.testing.assert_array_equal(merge_unseen(ids, image, grid4, gain=np.inf), joined)
    # the same contrast over 6 pixels saves less than MERGE_GAIN: it joins
    short = np.where((ids == 3) & (np.arange(24) >= 9)[:, None], 2, ids)
    np.testing.assert_array_equal(merge_unseen(short, image, grid4), joined)


def test_observed_borders_are_where_nearby_observations_disagree():
    ids, q = two_grains()  # the border between columns 7 and 8
    tilt = axis_angle_to_quaternion(np.array([1.0, 0.0, 0.0]), np.array(np.deg2rad(8.0)))
    q = np.where((ids == 2)[..., None], quaternion_multiply(tilt, q[0, 0]), q[0, 0])
    border = np.zeros(ids.shape, bool)
    border[:, 7:9] = True
    # A 1/4 grid (columns 6 and 8 observed): both sides of the border have an observation of
    # their own grain within a pixel.
    assert np.array_equal(observed_borders(ids, q, grid(ids.shape, 2)), border)
    # A 1/16 grid: column 7's nearest observations are two columns off; the border is the
    # samples' to place, not the observations'.
    assert not observed_borders(ids, q, grid(ids.shape, 4)).any()
    # Observations within the tolerance are one grain's.
    assert not observed_borders(ids, q, grid(ids.shape, 2), tolerance_deg=10.0).any()
    assert not observed_borders(ids, q, np.zeros(ids.shape, bool)).any()
