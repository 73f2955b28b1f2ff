"""Image-quality metrics for the denoised PL: PSNR and Gaussian-window SSIM."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ebsdray.metrics._arrays import as_numpy


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = as_numpy(pred, np.float64), as_numpy(target, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ in shape")
    if p.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (C, H, W); got shape {p.shape}")
    return p, t


def psnr(pred: Any, target: Any, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    Parameters
    ----------
    pred, target : (H, W) or (C, H, W); the MSE runs over every element.
    data_range : the span of the signal (2 for channels in [-1, 1]).

    Returns
    -------
    float; ``inf`` for identical images.
    """
    p, t = _pair(pred, target)
    mse = float(np.mean((p - t) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(
    pred: Any,
    target: Any,
    data_range: float,
    sigma: float = 1.5,
    radius: int = 5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, mean over channels.

    Local means, variances and the covariance are Gaussian-weighted (sigma 1.5, 11 x 11 window)
    with population (not sample) normalization, as in the original paper; the SSIM map is averaged
    over the pixels whose window lies inside the image (a ``radius`` border is cropped, since the
    padded values there are invented). These are scikit-image's ``structural_similarity`` settings
    with ``gaussian_weights=True, use_sample_covariance=False``.

    Parameters
    ----------
    pred, target : (H, W) or (C, H, W), each larger than ``2 * radius`` on both image axes.
    data_range : the span of the signal (2 for channels in [-1, 1]).

    Returns
    -------
    float in [-1, 1]; 1 for identical images.
    """
    p, t = _pair(pred, target)
    if p.ndim == 2:
        p, t = p[None], t[None]
    if min(p.shape[-2:]) <= 2 * radius:
        raise ValueError(f"images {p.shape[-2:]} are too small for a window of radius {radius}")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    # Blur only the two image axes of the (C, H, W) stack.
    sig = (0.0, sigma, sigma)

    def blur(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sig, radius=(0, radius, radius), mode="reflect")

    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(p * t) - mu_p * mu_t
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )
    inner = s[:, radius:-radius, radius:-radius]
    return float(inner.mean(axis=(1, 2)).mean())
