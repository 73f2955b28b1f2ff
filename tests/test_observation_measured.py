"""Observations of measured volumes: read, not simulated; EBSD only where measured and valid."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.volume import Measured, Volume
from ebsdray.observation import native_grid, observe

H, W = 20, 24


@pytest.fixture(scope="module")
def codec() -> ChannelCodec:
    q = synthetic_volume((1, 40, 40), seed=2, grain_size=5).quaternions[0].reshape(-1, 4)
    return ChannelCodec.fit(pl_intensities(q.astype(np.float64), stage_angles(36)))


def measured(seed: int = 0) -> Volume:
    """A 20 x 24 volume whose native EBSD grid is every second row and column (10 x 12)."""
    vol = synthetic_volume((2, H, W), seed=seed, grain_size=6)
    valid = vol.valid.copy()
    valid[:, 4, 6] = valid[:, 10, 10] = False  # two unindexed native pixels per section
    lattice = np.zeros((2, H, W), bool)
    lattice[:, ::2, ::2] = True
    rng = np.random.default_rng(seed)
    pl = pl_intensities(vol.quaternions.astype(np.float64), stage_angles(36))
    pl = pl * rng.uniform(0.9, 1.1, (2, H, W, 1))  # not the forward model's own numbers
    vol = Volume(vol.grain_ids, vol.quaternions, valid, {"ingest": {"pl_noise_intensity": 1e-5}})
    vol.measured = Measured(pl, stage_angles(36), lattice)
    return vol


def test_full_fraction_observes_exactly_the_measured_valid_pixels(codec):
    vol = measured()
    sec = observe(vol, ebsd_fraction=1, pl_noise=0.05).section(0, codec)
    obs = sec.observation
    expected = vol.measured.ebsd_observed[0] & vol.valid[0]
    np.testing.assert_array_equal(obs.ebsd_mask.numpy(), expected)
    assert not obs.ebsd_mask[4, 6] and not obs.ebsd_mask[1, 1]  # unindexed; not measured
    # measured PL encoded with the model's codec, no noise added; EBSD as measured
    pl = codec.encode_pl(vol.measured.pl_intensities[0])
    np.testing.assert_array_equal(obs.y[3:].numpy(), np.moveaxis(pl, -1, 0))
    ebsd = np.moveaxis(codec.encode_ebsd(vol.quaternions[0].astype(np.float64)), -1, 0)
    np.testing.assert_array_equal(obs.y[:3].numpy(), ebsd * expected)
    assert torch.equal(obs.sigma, torch.tensor([0.0] * 3 + [0.05] * codec.pl_channels))
    # the truth is the measured EBSD at held-out pixels: none at fraction 1
    assert sec.clean is None and not sec.truth.valid.any()


@pytest.mark.parametrize(
    ("fraction", "pattern", "native_count"),
    [(0.25, "grid", 5 * 6), (1 / 9, "grid", 4 * 4), (0.5, "random", 60), (0, "none", 0)],
)
def test_fraction_and_pattern_act_on_the_native_grid(codec, fraction, pattern, native_count):
    vol = measured()
    sec = observe(vol, ebsd_fraction=fraction, pattern=pattern).section(1, codec)
    mask = sec.observation.ebsd_mask.numpy()
    lattice, valid = vol.measured.ebsd_observed[1], vol.valid[1]
    assert not (mask & ~(lattice & valid)).any()
    assert native_count - 2 <= mask.sum() <= native_count  # less the unindexed ones
    if pattern == "grid":
        s = round(fraction**-0.5)
        np.testing.assert_array_equal(mask[:: 2 * s, :: 2 * s], valid[:: 2 * s, :: 2 * s])
    np.testing.assert_array_equal(sec.truth.valid[0], lattice & valid & ~mask)


def test_random_pattern_is_deterministic_per_seed_and_section(codec):
    vol = measured()
    masks = [
        observe(vol, ebsd_fraction=0.3, pattern="random", seed=s).section(i, codec)
        for s, i in ((0, 0), (0, 0), (1, 0), (0, 1))
    ]
    m = [x.observation.ebsd_mask for x in masks]
    assert torch.equal(m[0], m[1]) and not torch.equal(m[0], m[2]) and not torch.equal(m[0], m[3])


def test_measured_volume_errors(codec):
    vol = measured()
    with pytest.raises(ValueError, match=r"corruptions.*measured PL"):
        observe(vol, corruptions={"scratches": {"n": 2}})
    with pytest.raises(ValueError, match=r"1/s\^2 for an integer s <= 10"):
        observe(vol, ebsd_fraction=0.3)
    other = ChannelCodec.fit(
        pl_intensities(vol.quaternions[0].reshape(-1, 4).astype(np.float64), stage_angles(18)),
    )
    with pytest.raises(ValueError, match=r"ingested at 36 stage angles.*expects 18"):
        observe(vol).section(0, other)
    broken = measured()
    broken.measured.ebsd_observed[0, 1, 1] = True
    with pytest.raises(ValueError, match="not a lattice"):
        observe(broken).section(0, codec)


def test_pl_noise_below_the_ingest_estimate_warns(codec):
    vol = measured()
    floor = float(np.max(1e-5 / codec.pl_scale))
    with pytest.warns(UserWarning, match="below the PL noise estimated at ingest"):
        observe(vol, pl_noise=floor / 2).section(0, codec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        observe(vol, pl_noise=floor * 2).section(0, codec)


def test_native_grid_of_an_irregular_lattice():
    placed = np.zeros((9, 7), bool)
    placed[np.ix_([0, 3, 5, 8], [1, 2, 6])] = True
    rows, cols = native_grid(placed)
    np.testing.assert_array_equal(rows, [0, 3, 5, 8])
    np.testing.assert_array_equal(cols, [1, 2, 6])
