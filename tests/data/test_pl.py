"""PL forward model, camera model and test-time corruptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebsdray.data import corruptions
from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.pl import camera_image, pl_from_c_axis, pl_intensities, stage_angles, volume_pl
from ebsdray.data.rotations import (
    axis_angle_to_quaternion,
    c_axis_in_sample_frame,
    quaternion_multiply,
)

FINE = np.arange(0, 180, 0.25)  # fine stage sampling to find extrema


def _random_q(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


def _literal(d: np.ndarray, omega_deg: np.ndarray) -> np.ndarray:
    """design.md section 4, written out term by term for one c-axis d."""
    eps_o, eps_e = 6.676 + 34.954j, -20.377 + 30.405j
    theta = math.acos(abs(d[2]))
    gamma = math.atan2(d[1], d[0]) + np.radians(omega_deg)
    n_o = np.sqrt(eps_o)
    n_e = np.sqrt(eps_o * eps_e / (eps_o + (eps_e - eps_o) * math.cos(theta) ** 2))
    r_o, r_e = (n_o - 1) / (n_o + 1), (n_e - 1) / (n_e + 1)
    dr, rbar, delta = r_e - r_o, (r_e + r_o) / 2, math.radians(1.0)
    amp = dr / 2 * np.sin(2 * gamma) * math.cos(delta)
    amp = amp + math.sin(delta) * (rbar + dr / 2 * np.cos(2 * gamma))
    return 0.5 * np.abs(amp) ** 2


def _tilted(theta_deg: float, azimuth_deg: float = 0.0) -> np.ndarray:
    t, a = math.radians(theta_deg), math.radians(azimuth_deg)
    return np.array([math.sin(t) * math.cos(a), math.sin(t) * math.sin(a), math.cos(t)])


def test_stage_angles():
    np.testing.assert_allclose(stage_angles(), np.arange(36) * 10.0)
    assert stage_angles(4).tolist() == [0, 90, 180, 270]
    with pytest.raises(ValueError):
        stage_angles(0)


def test_matches_the_closed_form():
    q = _random_q(200)
    d = c_axis_in_sample_frame(q)
    expected = np.stack([_literal(di, stage_angles()) for di in d])
    got = pl_intensities(q)
    assert got.shape == (200, 36) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    got32 = pl_intensities(q.astype(np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-3 * 1e-3)


def test_torch_in_torch_out_and_leading_dims():
    q = torch.from_numpy(_random_q(24).reshape(2, 3, 4, 4))
    out = pl_intensities(q, torch.tensor([0.0, 45.0, 90.0]))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(out.numpy(), pl_intensities(q.numpy(), [0.0, 45.0, 90.0]))


@pytest.mark.parametrize("angle_deg", [17.3, 60.0, 143.0, -71.5])
def test_invariant_to_rotation_about_c(angle_deg):
    # Crystal symmetry acts on the left, so a rotation about the crystal c-axis is s * q.
    q = _random_q(100, 1)
    s = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), math.radians(angle_deg))
    np.testing.assert_allclose(
        pl_intensities(quaternion_multiply(s, q)), pl_intensities(q), rtol=1e-10
    )


def test_stage_rotation_shifts_the_curve():
    # Turning the sample by one stage step about its normal (q * r_z) shifts the curve by one step:
    # d = g^T z turns by -10 deg, so I'(omega) = I(omega - 10 deg).
    q = _random_q(50, 2)
    r = axis_angle_to_quaternion(np.array([0.0, 0.0, 1.0]), math.radians(10.0))
    turned = pl_intensities(quaternion_multiply(q, r))
    np.testing.assert_allclose(turned, np.roll(pl_intensities(q), 1, axis=-1), rtol=1e-10)


def test_period_180_degrees():
    i = pl_intensities(_random_q(100, 3))
    np.testing.assert_allclose(i[:, :18], i[:, 18:], rtol=1e-10)
    # ... and not 90 degrees: the 1-degree uncrossing breaks that symmetry.
    assert np.abs(i[:, :9] - i[:, 9:18]).max() > 1e-4


def test_constant_for_c_along_the_normal():
    about_z = axis_angle_to_quaternion(
        np.tile([0.0, 0.0, 1.0], (5, 1)), np.linspace(0, 2 * math.pi, 5)
    )
    flipped = axis_angle_to_quaternion(np.array([1.0, 0.0, 0.0]), math.pi)  # c -> -z
    i = pl_intensities(np.concatenate([about_z, flipped[None]]))
    np.testing.assert_allclose(i, 9.112e-5, rtol=1e-3)


@pytest.mark.parametrize(
    ("theta", "lo", "hi"),
    [(30, 2.0e-5, 3.3e-4), (45, 2.4e-5, 7.4e-4), (60, 2.9e-5, 1.3e-3), (90, 3.4e-5, 2.1e-3)],
)
def test_documented_magnitudes(theta, lo, hi):
    i = pl_from_c_axis(_tilted(theta, 25.0), FINE)
    assert i.min() == pytest.approx(lo, rel=0.05) and i.max() == pytest.approx(hi, rel=0.05)


def test_maximum_near_45_degrees_and_overall_range():
    i = pl_from_c_axis(_tilted(90), FINE)
    assert abs(FINE[i.argmax()] - 44.5) < 1.0
    allq = pl_intensities(_random_q(5000, 4))
    assert allq.min() > 1e-5 and allq.max() < 2.2e-3


def test_volume_pl_per_grain_equals_per_voxel():
    v = synthetic_volume((4, 24, 24), seed=1, dtype=np.float64)
    fast, slow = volume_pl(v), volume_pl(v, per_grain=False)
    assert fast.shape == (4, 24, 24, 36)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    spread = synthetic_volume((4, 24, 24), seed=1, intragranular_spread_deg=2.0)
    np.testing.assert_allclose(volume_pl(spread), pl_intensities(spread.quaternions), rtol=1e-6)


# --- camera -----------------------------------------------------------------------------------


def _section(seed: int = 0) -> np.ndarray:
    return volume_pl(synthetic_volume((1, 40, 48), seed=seed, grain_size=8))[0]


def test_camera_image():
    i = _section()
    img = camera_image(i)
    assert img.shape == i.shape and img.dtype == np.float32
    assert 0 <= img.min() and img.max() <= 1
    # (rounding may go either way at half counts: float32 input)
    np.testing.assert_allclose(img, np.round(100 + 1.5e6 * i) / 4095, atol=1.01 / 4095)
    noisy = dict(read_noise=5.0, shot_noise=True, blur_sigma=1.0, vignetting=0.3)
    a, b = camera_image(i, rng=1, **noisy), camera_image(i, rng=1, **noisy)
    assert np.array_equal(a, b) and not np.array_equal(a, camera_image(i, rng=2, **noisy))
    flat = camera_image(np.full((9, 9, 2), 1e-3), vignetting=0.4, offset=0, bit_depth=None)
    assert flat[4, 4, 0] > flat[0, 0, 0] and flat[0, 0, 0] == pytest.approx(0.6 * flat[4, 4, 0])


# --- corruptions ------------------------------------------------------------------------------

CORRUPTIONS = {
    "gaussian_noise": lambda x, r: corruptions.gaussian_noise(x, 1e-4, r),
    "scratches": lambda x, r: corruptions.scratches(x, 3, 2.0, r),
    "illumination_gradient": lambda x, r: corruptions.illumination_gradient(x, 0.4, r),
    "misregistration_warp": lambda x, r: corruptions.misregistration_warp(x, 3.0, r)[0],
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruptions_are_pure_seeded_and_keep_shape(name):
    fn = CORRUPTIONS[name]
    x = _section()
    before = x.copy()
    a, b, c = fn(x, 5), fn(x, 5), fn(x, 6)
    assert a.shape == x.shape and np.array_equal(x, before)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert fn(np.stack([x, x]), 5).shape == (2, *x.shape)  # leading batch dims


def test_gaussian_noise_level():
    x = np.zeros((64, 64, 8))
    assert corruptions.gaussian_noise(x, 0.01, 0).std() == pytest.approx(0.01, rel=0.02)


def test_scratches_are_thin_and_the_same_at_every_stage_angle():
    x = np.ones((64, 64, 6))
    y = corruptions.scratches(x, 2, 1.5, 3)
    np.testing.assert_allclose(y, y[..., :1] * np.ones(6))
    changed = np.abs(y[..., 0] - 1) > 0.05
    assert 0.01 < changed.mean() < 0.2


def test_illumination_gradient_is_smooth_and_bounded():
    y = corruptions.illumination_gradient(np.ones((48, 64, 3)), 0.4, 1)[..., 0]
    assert 0.8 - 1e-9 <= y.min() and y.max() <= 1.2 + 1e-9 and np.ptp(y) > 0.3
    assert np.abs(np.diff(y, axis=1)).max() < 0.05


def test_warp_field_bounded_and_consistent():
    x = _section(1)
    _, field = corruptions.misregistration_warp(x, 2.5, 7)
    assert field.shape == (2, *x.shape[:2])
    assert np.hypot(field[0], field[1]).max() == pytest.approx(2.5)
    # A smooth field: neighbours move alike.
    assert np.abs(np.diff(field, axis=1)).max() < 0.5
    # No shift, no change; a constant image stays constant.
    same, _ = corruptions.misregistration_warp(x, 0.0, 7)
    np.testing.assert_allclose(same, x)
    flat, _ = corruptions.misregistration_warp(np.full((20, 20, 2), 3.0), 2.0, 7)
    np.testing.assert_allclose(flat, 3.0)
    # Each output pixel samples the input at (y + dy, x + dx): check a ramp image.
    h, w = 32, 40
    ramp = np.broadcast_to(np.arange(w, dtype=np.float64)[None, :, None], (h, w, 1)).copy()
    out, f = corruptions.misregistration_warp(ramp, 2.0, 3)
    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(out[..., 0][inner], (np.arange(w)[None, :] + f[1])[inner], atol=1e-9)
