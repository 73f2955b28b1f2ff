"""aggregate(): every variant, better than one sample on a synthetic section, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ebsdray import ChannelCodec
from ebsdray.aggregate import aggregate, infer_variant
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
    assert np.allclose(ebsd["ebsd_quaternions"], full["ebsd_quaternions"])


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
