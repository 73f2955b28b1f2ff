"""EBSD super-resolution: which mean, the alignment MLP, the spread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebsdray.aggregate.alignment import AlignmentConfig, fit_alignment, unwrapped_targets
from ebsdray.aggregate.ebsd import mean_orientation, super_resolve
from ebsdray.data.rotations import axis_angle_to_quaternion, quaternion_multiply
from ebsdray.data.symmetry import disorientation_deg, reduce_to_fundamental_zone
from ebsdray.metrics import disorientation_stats


def error(q, section) -> float:
    return disorientation_stats(q, section.quaternions, section.grain_ids)["mean_deg"]


def grid(shape, s):
    m = np.zeros(shape, bool)
    m[::s, ::s] = True
    return m


def test_orientation_mean_beats_channel_mean(codec, section, make_samples):
    # Samples turned by small rotations: many straddle a zone face, where channels jump.
    x = make_samples(section, codec, 8, rotation_deg=5.0)[:, :3]
    by_orientation = error(mean_orientation(x, codec, "orientation"), section)
    by_channel = error(mean_orientation(x, codec, "channel"), section)
    single = error(codec.decode_ebsd(np.moveaxis(x[0], 0, -1)), section)
    assert by_orientation < 0.4 * single  # 8 samples: ~1/sqrt(8) of the error of one
    assert by_orientation < 0.3 * by_channel
    # Gaussian noise on the channels themselves: the two means are close.
    x = make_samples(section, codec, 8, rotation_deg=0.0, channel_noise=0.05)[:, :3]
    by_orientation = error(mean_orientation(x, codec, "orientation"), section)
    assert by_orientation < 1.05 * error(mean_orientation(x, codec, "channel"), section)
    with pytest.raises(ValueError, match="method"):
        mean_orientation(x, codec, "median")


def test_alignment_mlp_removes_a_systematic_offset(codec, section, make_samples):
    x = make_samples(section, codec, 8)[:, :3]
    shape = section.grain_ids.shape
    obs = section.channels[:3] + 0.01 * np.random.default_rng(5).standard_normal((3, *shape))
    mask = grid(shape, 4)  # EBSD fraction 1/16
    plain = super_resolve(x, codec, obs, mask, seed=0)
    assert error(plain["quaternions"], section) < 1.05 * error(plain["mean_quaternions"], section)

    shifted = x + np.array([0.05, -0.05, 0.05], np.float32)[:, None, None]
    out = super_resolve(shifted, codec, obs, mask, seed=0)
    before, after = error(out["mean_quaternions"], section), error(out["quaternions"], section)
    assert after < 0.6 * before
    assert out["alignment"]["holdout_loss_after"] < out["alignment"]["holdout_loss_before"]
    with torch.inference_mode():  # as a sampler may call it
        again = super_resolve(shifted, codec, obs, mask, seed=0)
    assert np.array_equal(again["quaternions"], out["quaternions"])  # seeded


def test_alignment_skipped_without_enough_observations(codec, section, make_samples):
    x = make_samples(section, codec, 2)[:, :3]
    mask = np.zeros(section.grain_ids.shape, bool)
    mask[0, :5] = True
    out = super_resolve(x, codec, section.channels[:3], mask)
    assert out["alignment"]["steps"] == 0
    assert np.array_equal(out["quaternions"], out["mean_quaternions"])
    rec = np.zeros((3, 4, 4))
    aligned, info = fit_alignment(rec, rec, np.zeros((4, 4), bool), codec, AlignmentConfig())
    assert aligned is rec and info["pixels"] == 0


def test_targets_across_a_zone_face_are_small_residuals(codec):
    base = axis_angle_to_quaternion(np.array([1.0, 0.0, 0.0]), math.radians(50.0))
    turns = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), np.radians([29.5, 30.5]))
    q = reduce_to_fundamental_zone(quaternion_multiply(turns, base))  # on either side of the face
    c = codec.encode_ebsd(q).astype(np.float64)
    assert np.abs(c[0] - c[1]).max() > 1.0  # the channels jump...
    target = unwrapped_targets(c[:1], q[1:], codec)
    assert np.abs(target[0] - c[0]).max() < 0.05  # ...the unwrapped target does not
    assert disorientation_deg(codec.decode_ebsd(np.clip(target, -1, 1)), q[1]) < 1.5


def test_spread_measures_the_sample_disagreement(codec, section, make_samples):
    x = make_samples(section, codec, 6, rotation_deg=4.0)[:, :3]
    spread = super_resolve(x, codec)["spread_deg"]
    # Rotation angles of a 3-D Gaussian rotation vector average 4 * sqrt(8 / pi) ~ 6.4 degrees.
    assert 4.0 < spread.mean() < 7.0
    assert np.allclose(super_resolve(x[:1], codec)["spread_deg"], 0.0, atol=1e-5)
