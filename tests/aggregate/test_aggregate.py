"""aggregate(): every variant, better than one sample on a synthetic section, input checks; the
boundary source (EBSD where observed, else PL) and the grain-consistent EBSD options."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

from ebsdray import ChannelCodec, synthetic_volume
from ebsdray.aggregate import aggregate, infer_variant
from ebsdray.aggregate.baselines import sobel_baseline
from ebsdray.aggregate.boundaries import ebsd_edge_maps, pl_pair_edges
from ebsdray.aggregate.ebsd import decode_samples
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.metrics import chamfer, disorientation_stats, grain_boundaries, psnr


def test_multimodal_set_beats_a_single_sample(codec, section, make_samples):
    x = make_samples(section, codec, 8)
    true = grain_boundaries(section.grain_ids)
    many, one = aggregate(x, codec), aggregate(x[:1], codec)
    c_many = chamfer(many["boundary"], true)["bidirectional"]
    assert c_many < 1.5
    assert c_many < 0.8 * chamfer(one["boundary"], true)["bidirectional"]
    d_many = disorientation_stats(many["ebsd_quaternions"], section.quaternions, section.grain_ids)
    d_one = disorientation_stats(one["ebsd_quaternions"], section.quaternions, section.grain_ids)
    assert d_many["mean_deg"] < 0.5 * d_one["mean_deg"]
    # PL noise 0.3 per sample; the mean of 8 gains ~9 dB.
    truth = section.channels[3:]
    assert psnr(many["pl_denoised"], truth, 2.0) > psnr(one["pl_denoised"], truth, 2.0) + 7.0

    h, w = section.grain_ids.shape
    assert many["boundary"].dtype == bool and many["boundary"].shape == (h, w)
    assert many["ebsd_quaternions"].shape == (h, w, 4) and many["ebsd_channels"].shape == (3, h, w)
    assert many["pl_intensities"].shape == (36, h, w)
    assert set(many["uncertainty"]) == {"boundary_variance", "pl_std", "ebsd_spread_deg"}
    assert all(u.shape == (h, w) for u in many["uncertainty"].values())
    assert np.allclose(one["uncertainty"]["boundary_variance"], 0.0)


def test_observations_feed_the_alignment(codec, section, make_samples):
    x = make_samples(section, codec, 4)
    x[:, :3] += 0.05
    mask = np.zeros_like(section.channels, dtype=bool)
    mask[:, ::4, ::4] = True  # per-channel mask as the observation operator makes it
    mask[3:] = True
    out = aggregate(x, codec, observed=section.channels, mask=mask)
    plain = aggregate(x, codec)
    err = [
        disorientation_stats(o["ebsd_quaternions"], section.quaternions, section.grain_ids)[
            "mean_deg"
        ]
        for o in (out, plain)
    ]
    assert out["alignment"]["pixels"] == 256 and err[0] < 0.75 * err[1]


def test_unimodal_sets_get_only_their_outputs(codec, section, make_samples):
    x = make_samples(section, codec, 3)
    ebsd = aggregate(x[:, :3], codec)
    assert ebsd["variant"] == "ebsd"
    assert "boundary" not in ebsd and "pl_denoised" not in ebsd
    assert set(ebsd["uncertainty"]) == {"ebsd_spread_deg"}
    pl = aggregate(x[:, 3:], codec)
    assert pl["variant"] == "pl"
    assert "ebsd_quaternions" not in pl and "alignment" not in pl
    assert set(pl["uncertainty"]) == {"boundary_variance", "pl_std"}
    full = aggregate(x, codec)
    assert np.array_equal(pl["boundary"], full["boundary"])
    # the per-pixel mean is the EBSD samples' alone; the grains' borders also follow the PL
    assert np.allclose(ebsd["ebsd_quaternions_mean"], full["ebsd_quaternions_mean"])
    moved = ebsd["grain_labels"] != full["grain_labels"]
    assert 0 < moved.mean() < 0.2


def test_torch_inputs_give_the_numpy_result(codec, section, make_samples):
    x = make_samples(section, codec, 2)
    ref = aggregate(x, codec)
    got = aggregate(torch.from_numpy(x), codec)
    assert np.array_equal(got["boundary"], ref["boundary"])
    assert np.allclose(got["ebsd_quaternions"], ref["ebsd_quaternions"])
    assert (
        aggregate(torch.from_numpy(x).bfloat16(), codec)["boundary"].shape == ref["boundary"].shape
    )


def test_bad_inputs_are_refused(codec, section, make_samples):
    x = make_samples(section, codec, 2)
    with pytest.raises(ValueError, match="match no variant"):
        aggregate(x[:, :4], codec)
    with pytest.raises(ValueError, match=r"\(K, C, H, W\)"):
        aggregate(x[0], codec)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        aggregate(bad, codec)
    with pytest.raises(ValueError, match="channels"):
        aggregate(x, codec, variant="pl")
    y, mask = section.channels, np.ones(section.grain_ids.shape, bool)
    with pytest.raises(ValueError, match=r"observed must be \(C, H, W\) = \(8, 64, 64\)"):
        aggregate(x, codec, observed=y[:7], mask=mask)
    with pytest.raises(ValueError, match=r"mask must be \(H, W\) = \(64, 64\) or"):
        aggregate(x, codec, observed=y, mask=mask[:32])
    # A codec with 3 PL channels makes 3 channels ambiguous: the caller must say.
    three = ChannelCodec(
        **{
            **codec.__dict__,
            "pl_components": codec.pl_components[:3],
            "pl_scale": codec.pl_scale[:3],
            "explained_variance_ratio": codec.explained_variance_ratio[:3],
        }
    )
    with pytest.raises(ValueError, match="variant="):
        infer_variant(3, three)
    assert aggregate(x[:, :3], three, variant="ebsd")["variant"] == "ebsd"


@pytest.fixture(scope="module")
def one_c_axis(codec) -> SimpleNamespace:
    """A 48 x 48 section whose grains share nearly one c-axis (3 deg spread), uniform about it."""
    texture = {"kind": "macrozones", "n_zones": 1, "zone_size": 500.0, "spread_deg": 3.0}
    vol = synthetic_volume((1, 48, 48), seed=3, grain_size=10, texture=texture)
    q = vol.quaternions[0].astype(np.float64)
    return SimpleNamespace(
        grain_ids=vol.grain_ids[0], quaternions=q, channels=codec.encode_section(q)
    )


def about_c(deg: float) -> np.ndarray:
    """(4,) rotation by ``deg`` about the crystal c-axis (applied on the left: PL cannot see it)."""
    return axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), np.array(np.deg2rad(deg)))


def grid_mask(channels: np.ndarray, step: int = 4) -> np.ndarray:
    """(C, H, W) mask: EBSD on every ``step``-th row and column, PL everywhere."""
    m = np.zeros(channels.shape, bool)
    m[:3, ::step, ::step] = True
    m[3:] = True
    return m


def test_boundaries_come_from_ebsd_where_it_was_observed(codec, one_c_axis, make_samples):
    s = one_c_axis
    x = make_samples(s, codec, 8, rotation_deg=1.0, speckle=0.03, pl_noise=0.1)
    rng = np.random.default_rng(1)
    y = s.channels + 0.05 * rng.standard_normal(s.channels.shape).astype(np.float32)
    true = grain_boundaries(s.grain_ids)
    out = aggregate(x, codec, observed=y, mask=grid_mask(s.channels))
    assert out["boundary_source"] == "ebsd" and out["boundary_threshold"] == 0.5
    c = {
        "ebsd": chamfer(out["boundary"], true)["bidirectional"],
        "pl": chamfer(aggregate(x, codec, boundary_source="pl")["boundary"], true)["bidirectional"],
        "sobel": chamfer(sobel_baseline(y[3:])["boundary"], true)["bidirectional"],
    }
    # PL barely sees these boundaries; the few below 5 degrees are lost to EBSD too.
    assert c["ebsd"] < 1.0 and c["ebsd"] < 0.2 * min(c["pl"], c["sobel"])
    # The variance is that of the evidence the boundaries average.
    e = ebsd_edge_maps(decode_samples(x[:, :3], codec))
    assert np.allclose(out["boundary_confidence"], e.mean(axis=0))
    assert np.allclose(out["uncertainty"]["boundary_variance"], e.var(axis=0))
    # Both modalities on one scale, cut at >= 0.5: what EBSD alone is sure of stays a boundary.
    both = aggregate(x, codec, observed=y, mask=grid_mask(s.channels), boundary_source="both")
    assert both["boundary_source"] == "both"
    assert both["boundary"][e.mean(axis=0) == 1].all()
    assert chamfer(both["boundary"], true)["bidirectional"] < 0.5 * min(c["pl"], c["sobel"])


def test_no_observed_ebsd_falls_back_to_pl(codec, section, make_samples):
    x = make_samples(section, codec, 4)
    mask = grid_mask(section.channels)
    mask[:3] = False  # EBSD fraction 0: PL only
    out = aggregate(x, codec, observed=section.channels, mask=mask)
    ref = aggregate(x, codec)
    assert out["boundary_source"] == ref["boundary_source"] == "pl"
    assert np.array_equal(out["boundary"], ref["boundary"])
    maps = pl_pair_edges(x[:, 3:], codec)["maps"]
    assert np.allclose(out["uncertainty"]["boundary_variance"], maps.var(axis=0))
    assert out["boundary_threshold"] == ref["boundary_threshold"] < np.inf


def test_saturated_ebsd_evidence_falls_back_to_pl(codec, section, make_samples):
    # Samples turned 5 deg rms per pixel: nearly every neighbour pair of a sample differs by more
    # than 5 deg, so EBSD marks everything; "auto" keeps the PL route then.
    x = make_samples(section, codec, 8, rotation_deg=5.0)
    mask = grid_mask(section.channels)
    forced = aggregate(x, codec, observed=section.channels, mask=mask, boundary_source="ebsd")
    assert (forced["boundary_confidence"] > 0.5).mean() > 0.9
    auto = aggregate(x, codec, observed=section.channels, mask=mask)
    assert auto["boundary_source"] == "pl"
    assert np.array_equal(auto["boundary"], aggregate(x, codec)["boundary"])


def test_boundary_source_and_grain_options(codec, section, make_samples):
    x = make_samples(section, codec, 2, rotation_deg=1.0)
    mask = grid_mask(section.channels)
    # The EBSD-only model: boundaries only on request (its stores hold none).
    ebsd = aggregate(x[:, :3], codec, observed=section.channels[:3], mask=mask[:3])
    assert "boundary" not in ebsd and "boundary_variance" not in ebsd["uncertainty"]
    asked = aggregate(x[:, :3], codec, mask=mask[:3], boundary_source="ebsd")
    assert asked["boundary_source"] == "ebsd" and "boundary_variance" in asked["uncertainty"]
    with pytest.raises(ValueError, match="lack"):
        aggregate(x[:, 3:], codec, boundary_source="ebsd")
    with pytest.raises(ValueError, match="boundary_source"):
        aggregate(x, codec, boundary_source="sobel")
    # Per-pixel mean on request; it is always there as ebsd_quaternions_mean.
    plain = aggregate(x, codec, observed=section.channels, mask=mask, grain_consistent=False)
    assert "grain_labels" not in plain
    assert np.array_equal(plain["ebsd_quaternions"], plain["ebsd_quaternions_mean"])
    full = aggregate(x, codec, observed=section.channels, mask=mask)
    assert np.allclose(full["ebsd_quaternions_mean"], plain["ebsd_quaternions_mean"])


def test_a_grain_only_the_pl_shows_gets_its_own_border(codec, make_samples):
    """A 2-pixel sliver between the 1/16 grid's columns, its c-axis 20 deg off its neighbour's:
    the samples' EBSD merges it (as real samples do), their PL shows it. It becomes a grain of
    its own and its border a boundary, though no sample's EBSD supports that border."""
    vol = synthetic_volume((1, 32, 32), seed=5, grain_size=10)
    ids, q = vol.grain_ids[0].copy(), vol.quaternions[0].astype(np.float64)
    sliver = np.zeros(ids.shape, bool)
    sliver[8:20, 30:] = True  # columns 30-31: the grid has columns 0, 4, ..., 28
    host = np.bincount(ids[sliver]).argmax()
    ids[sliver], q[sliver] = ids.max() + 1, q[sliver][0]  # one grain, then tilted off c
    tilt = axis_angle_to_quaternion(np.array([1.0, 0.0, 0.0]), np.array(np.deg2rad(20.0)))
    q[sliver] = quaternion_multiply(tilt, q[sliver])
    merged_q = np.where(sliver[..., None], q[ids == host][0], q)
    merged = SimpleNamespace(
        grain_ids=np.where(sliver, host, ids),
        quaternions=merged_q,
        channels=codec.encode_section(merged_q),
    )
    truth = codec.encode_section(q)
    x = make_samples(merged, codec, 8, rotation_deg=1.0, pl_noise=0.0)
    rng = np.random.default_rng(2)
    x[:, 3:] = truth[3:] + rng.normal(0.0, 0.02, x[:, 3:].shape).astype(np.float32)
    y = truth + 0.02 * rng.standard_normal(truth.shape).astype(np.float32)
    out = aggregate(x, codec, observed=y, mask=grid_mask(truth))
    labels = out["grain_labels"]
    assert len(np.unique(labels[sliver])) == 1 and labels[8, 29] != labels[8, 30]
    border = grain_boundaries(ids) & ndimage.binary_dilation(sliver)
    assert out["boundary"][border].mean() > 0.9


def test_a_low_angle_border_between_observations_is_a_boundary(codec):
    """Two grains 8 deg apart about c (the PL cannot see it), EBSD on a 1/4 grid (columns 6 and 8
    observed, the border between 7 and 8): samples that spread the step over column 7 in two
    4-deg steps support no border pair, yet the observations place the border to within a
    pixel."""
    h, w = 16, 16
    q1 = axis_angle_to_quaternion(np.array([0.3, 0.5, 0.8]), np.array(0.7))
    q = np.tile(q1, (h, w, 1))
    q[:, 8:] = quaternion_multiply(about_c(8.0), q1)
    spread = q.copy()
    spread[:, 7] = quaternion_multiply(about_c(4.0), q1)
    truth = codec.encode_section(q)
    x = np.repeat(codec.encode_section(spread)[None], 4, axis=0).astype(np.float32)
    out = aggregate(x, codec, observed=truth, mask=grid_mask(truth, 2))
    found = np.flatnonzero(out["boundary"].any(axis=0))
    assert found.tolist() in ([6, 7], [7, 8])  # the border, one pixel off at most
    assert out["boundary"][:, found].all()
    ids = np.where(np.arange(w) < 8, 1, 2)[None].repeat(h, axis=0)
    assert chamfer(out["boundary"], grain_boundaries(ids))["bidirectional"] <= 1.0


def test_a_lower_grain_tolerance_finds_a_low_angle_border_the_observations_show(codec):
    """Two grains 3 deg apart about c (a low-angle boundary), EBSD everywhere, noise-free: at the
    usual 5-deg tolerance they are one grain; at 2 deg the border is found exactly, and the
    samples' own per-pixel noise (1.5 deg rms) marks nothing else."""
    h, w = 16, 16
    q1 = axis_angle_to_quaternion(np.array([0.3, 0.5, 0.8]), np.array(0.7))
    q = np.tile(q1, (h, w, 1))
    q[:, 8:] = quaternion_multiply(about_c(3.0), q1)
    truth = codec.encode_section(q)
    rng = np.random.default_rng(0)
    x = []
    for _ in range(4):
        axes = rng.normal(size=(h, w, 3))
        angles = np.deg2rad(rng.normal(0.0, 1.5, (h, w)))
        x.append(
            codec.encode_section(quaternion_multiply(axis_angle_to_quaternion(axes, angles), q))
        )
    x = np.stack(x).astype(np.float32)
    mask = grid_mask(truth, 1)
    assert not aggregate(x, codec, observed=truth, mask=mask)["boundary"].any()
    out = aggregate(x, codec, observed=truth, mask=mask, grain_tolerance_deg=2.0)
    ids = np.where(np.arange(w) < 8, 1, 2)[None].repeat(h, axis=0)
    np.testing.assert_array_equal(out["boundary"], grain_boundaries(ids))


@pytest.mark.parametrize("tolerance", [0.0, -1.0, float("nan"), 95.0])
def test_a_grain_tolerance_that_is_no_angle_is_refused(codec, tolerance):
    x = np.zeros((2, codec.channels, 8, 8), np.float32)
    with pytest.raises(ValueError, match="grain_tolerance_deg must be an angle"):
        aggregate(x, codec, grain_tolerance_deg=tolerance)
