"""PSNR and SSIM: known values, a naive windowed SSIM, scikit-image when it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebsdray.metrics import psnr, ssim


def naive_ssim(x: np.ndarray, y: np.ndarray, data_range: float, sigma=1.5, radius=5) -> float:
    """Explicit 11 x 11 Gaussian window at every pixel whose window fits in the image."""
    r = np.arange(-radius, radius + 1)
    g = np.exp(-(r**2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(radius, x.shape[0] - radius):
        for j in range(radius, x.shape[1] - radius):
            a = x[i - radius : i + radius + 1, j - radius : j + radius + 1]
            b = y[i - radius : i + radius + 1, j - radius : j + radius + 1]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            vals.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(vals))


def test_psnr_known_values():
    x = np.random.default_rng(0).random((3, 16, 16))
    assert psnr(x, x, 1.0) == math.inf
    assert psnr(x + 0.1, x, 2.0) == pytest.approx(10 * math.log10(4 / 0.01))
    assert psnr(torch.tensor(x + 0.1), torch.tensor(x), 2.0) == pytest.approx(26.0206, abs=1e-4)


def test_ssim_identical_and_constant_images():
    x = np.random.default_rng(1).random((2, 20, 20))
    assert ssim(x, x, 1.0) == pytest.approx(1.0)
    a, b = np.full((16, 16), 0.2), np.full((16, 16), 0.5)
    c1 = 0.01**2
    assert ssim(a, b, 1.0) == pytest.approx((2 * 0.2 * 0.5 + c1) / (0.04 + 0.25 + c1))


def test_ssim_matches_naive_window_per_channel_mean():
    rng = np.random.default_rng(2)
    x = rng.random((2, 18, 19))
    y = x + 0.2 * rng.standard_normal(x.shape)
    want = np.mean([naive_ssim(x[c], y[c], 2.0) for c in range(2)])
    assert ssim(x, y, 2.0) == pytest.approx(want, rel=1e-10)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    x = rng.random((32, 32))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    want = metrics.structural_similarity(
        x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(x, y, 1.0) == pytest.approx(want, rel=1e-6)


def test_image_metrics_refuse_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)), 1.0)
    with pytest.raises(ValueError, match="too small"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)), 1.0)
