"""Polarized-light (PL) forward model of alpha-Ti and a simple camera model.

Normal-incidence reflection from a uniaxial crystal between a polarizer and an analyzer uncrossed
by ``delta`` (Lekner 1992 + Mueller calculus, the chain of EMsoftOO's CPLM programs). With the c-axis in the sample frame ``d = g^T z``, ``cos(theta_c) = |d_z|``,
``gamma0 = atan2(d_y, d_x)`` and stage angle ``omega``, ``gamma = gamma0 + omega``::

    n_o = sqrt(eps_o),  n_e = sqrt(eps_o eps_e / (eps_o + (eps_e - eps_o) cos^2 theta_c))
    r = (n - 1) / (n + 1),  Dr = r_e - r_o,  rbar = (r_e + r_o) / 2
    I = 0.5 |(Dr/2) sin(2 gamma) cos(delta) + sin(delta) (rbar + (Dr/2) cos(2 gamma))|^2
      = 0.5 |(Dr/2) sin(2 gamma + delta) + sin(delta) rbar|^2

The second line (an angle-addition identity) is what is evaluated: per pixel a quadratic in
``s = sin(2 gamma + delta)``, so the stage-angle axis costs only real arithmetic. Intensities lie in
~[1e-5, 2.2e-3]; 9.1e-5 at every stage angle for theta_c = 0; period 180 degrees in ``omega``.
Only the c-axis enters, so rotations about c are invisible to PL.

Image layout: raw intensities are ``(..., R)``, images ``(..., H, W, R)`` (stage angle last).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ebsdray.conventions import (
    ANALYZER_UNCROSSING_DEG,
    DEFAULT_STAGE_ANGLES,
    EPS_EXTRAORDINARY,
    EPS_ORDINARY,
)
from ebsdray.data._arrays import as_float_tensor, numpy_or_torch
from ebsdray.data.rotations import c_axis_in_sample_frame
from ebsdray.data.volume import Volume


def stage_angles(n: int = DEFAULT_STAGE_ANGLES) -> np.ndarray:
    """Stage rotations ``k * 360 / n`` degrees, k = 0..n-1; (n,) float64."""
    if n < 1:
        raise ValueError(f"need at least one stage angle; got {n}")
    return np.arange(n) * (360.0 / n)


def _reflectivities(dz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Dr / 2, sin(delta) rbar), complex, same shape as ``dz`` (cosine of the c-axis tilt)."""
    cdtype = torch.complex128 if dz.dtype == torch.float64 else torch.complex64
    eps_o = torch.tensor(EPS_ORDINARY, dtype=cdtype, device=dz.device)
    eps_e = torch.tensor(EPS_EXTRAORDINARY, dtype=cdtype, device=dz.device)
    cos2 = (dz * dz).to(cdtype)
    n_o = torch.sqrt(eps_o)
    n_e = torch.sqrt(eps_o * eps_e / (eps_o + (eps_e - eps_o) * cos2))
    r_o = (n_o - 1) / (n_o + 1)
    r_e = (n_e - 1) / (n_e + 1)
    sin_d = math.sin(math.radians(ANALYZER_UNCROSSING_DEG))
    return 0.5 * (r_e - r_o), sin_d * 0.5 * (r_e + r_o)


@numpy_or_torch
def pl_from_c_axis(c_axis: torch.Tensor, stage_angles_deg: Any = None) -> torch.Tensor:
    """PL intensities from c-axis directions in the sample frame.

    Parameters
    ----------
    c_axis : (..., 3) unit vectors ``g^T z`` (sign irrelevant).
    stage_angles_deg : (R,) stage rotations in degrees; default :func:`stage_angles` (36).

    Returns
    -------
    (..., R) raw intensities, the dtype of ``c_axis`` (float64 maths in complex128, float32 in
    complex64).
    """
    d = as_float_tensor(c_axis)
    if stage_angles_deg is None:
        stage_angles_deg = stage_angles()
    omega = torch.deg2rad(torch.as_tensor(stage_angles_deg, dtype=d.dtype, device=d.device))
    half_dr, b = _reflectivities(d[..., 2])
    gamma0 = torch.atan2(d[..., 1], d[..., 0])
    delta = math.radians(ANALYZER_UNCROSSING_DEG)
    s = torch.sin(2 * (gamma0[..., None] + omega) + delta)  # (..., R)
    # 0.5 |a s + b|^2 with real s: expand so the (..., R) work is real.
    aa, ab, bb = half_dr.abs() ** 2, (half_dr * b.conj()).real, b.abs() ** 2
    return 0.5 * ((aa[..., None] * s + 2 * ab[..., None]) * s + bb[..., None])


@numpy_or_torch
def pl_intensities(quaternions: torch.Tensor, stage_angles_deg: Any = None) -> torch.Tensor:
    """Raw PL intensities of orientations (no camera, no corruption).

    Parameters
    ----------
    quaternions : (..., 4) unit quaternions (passive, scalar first).
    stage_angles_deg : (R,) stage rotations in degrees; default 36 angles over 360 degrees.

    Returns
    -------
    (..., R) intensities, ~1e-5..2.2e-3, dtype of the input (float32 or float64).
    """
    return pl_from_c_axis(c_axis_in_sample_frame(as_float_tensor(quaternions)), stage_angles_deg)


def volume_pl(
    volume: Volume, stage_angles_deg: Any = None, *, per_grain: bool | None = None
) -> np.ndarray:
    """PL intensities of every voxel of a volume, (D, H, W, R), dtype of its quaternions.

    Parameters
    ----------
    volume : the volume.
    stage_angles_deg : (R,) stage rotations; default 36 angles.
    per_grain : evaluate once per grain and gather by grain id (requires
        ``volume.grain_quaternions``, ignores intragranular variation). Default: when the volume
        has grain quaternions and its generator reports no intragranular spread.
    """
    gq = volume.grain_quaternions
    if per_grain is None:
        config = volume.attrs.get("config", {})
        per_grain = gq is not None and config.get("intragranular_spread_deg", 1.0) == 0.0
    dtype = volume.quaternions.dtype
    if per_grain:
        if gq is None:
            raise ValueError("per_grain=True needs volume.grain_quaternions")
        return pl_intensities(gq.astype(dtype), stage_angles_deg)[volume.grain_ids]
    # Section by section: bounded temporaries for large volumes.
    out = None
    for i in range(len(volume)):
        sec = pl_intensities(volume.quaternions[i], stage_angles_deg)
        if out is None:
            out = np.empty((len(volume), *sec.shape), dtype=sec.dtype)
        out[i] = sec
    return out


def camera_image(
    intensities: np.ndarray,
    *,
    gain: float = 1.5e6,
    offset: float = 100.0,
    vignetting: float = 0.0,
    blur_sigma: float = 0.0,
    read_noise: float = 0.0,
    shot_noise: bool = False,
    bit_depth: int | None = 12,
    normalize: bool = True,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Camera counts from raw PL intensities.

    ``counts = offset + gain * vignette(h, w) * blur(I)``, then optional Poisson shot noise on
    the signal, Gaussian read noise, rounding and clipping to ``bit_depth`` bits.

    Parameters
    ----------
    intensities : (..., H, W, R) raw intensities (:func:`pl_intensities` of a section).
    gain : counts per unit intensity; the default puts the brightest Ti signal (2.2e-3) at
        ~3300 of 4095 counts.
    offset : dark level in counts.
    vignetting : relative darkening at the image corners (0 = none, 0.3 = corners at 70%).
    blur_sigma : Gaussian optical blur in pixels (over H and W only).
    read_noise : standard deviation of additive Gaussian noise, in counts.
    shot_noise : Poisson noise on the signal counts (counts treated as photo-electrons).
    bit_depth : quantize and clip to ``[0, 2**bit_depth - 1]``; None keeps floats unclipped.
    normalize : divide by ``2**bit_depth - 1`` (or by ``offset + gain * 2.2e-3`` without a bit
        depth) so images are ~[0, 1].
    rng : generator or seed for the noises.

    Returns
    -------
    (..., H, W, R) float32 counts (or normalized counts).
    """
    img = np.asarray(intensities, dtype=np.float64)
    if img.ndim < 3:
        raise ValueError(f"intensities must be (..., H, W, R); got shape {img.shape}")
    rng = np.random.default_rng(rng)
    if blur_sigma > 0:
        sigma = [0.0] * img.ndim
        sigma[-3] = sigma[-2] = blur_sigma
        img = ndimage.gaussian_filter(img, sigma, mode="reflect")
    signal = gain * img
    if vignetting > 0:
        h, w = img.shape[-3:-1]
        y = np.linspace(-1, 1, h)[:, None]
        x = np.linspace(-1, 1, w)[None, :]
        signal = signal * (1 - vignetting * (x**2 + y**2) / 2)[..., None]
    if shot_noise:
        signal = rng.poisson(np.clip(signal, 0, None)).astype(np.float64)
    counts = offset + signal
    if read_noise > 0:
        counts = counts + rng.normal(0.0, read_noise, counts.shape)
    full = offset + gain * 2.2e-3
    if bit_depth is not None:
        full = 2.0**bit_depth - 1
        counts = np.clip(np.round(counts), 0, full)
    return (counts / full if normalize else counts).astype(np.float32)
