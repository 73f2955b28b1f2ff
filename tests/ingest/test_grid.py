"""The model grid: where native EBSD pixels land, nearest upsampling, PL resampling."""

from __future__ import annotations

import numpy as np
import pytest

from ebsdray.data.volume import Volume
from ebsdray.ingest.grid import model_grid, resample_pl, upsample_ebsd


def test_default_grid_is_half_the_ebsd_step():
    grid = model_grid((101, 80), (2.0, 2.0), None)
    assert grid.pixel_um == 1.0 and grid.shape == (202, 160)
    np.testing.assert_array_equal(grid.rows, np.arange(101) * 2)
    lattice = grid.ebsd_observed
    assert lattice[::2, ::2].all() and lattice.sum() == 101 * 80  # 1/4 of the model pixels


def test_stated_pixel_size_that_does_not_divide_the_step():
    grid = model_grid((10, 10), (3.03, 3.03), 1.04)  # the paper's EBSD and PL pixels
    assert grid.shape == (29, 29)
    assert np.all(np.diff(grid.rows) >= 2) and grid.rows[-1] == round(9 * 3.03 / 1.04)
    with pytest.raises(ValueError, match="coarser than the EBSD step"):
        model_grid((10, 10), (2.0, 2.0), 2.5)


def test_upsampling_takes_the_nearest_native_pixel():
    ids = np.arange(12, dtype=np.int32).reshape(1, 3, 4) + 1
    q = np.zeros((1, 3, 4, 4))
    q[..., 0] = 1
    valid = ids % 5 != 0
    up = upsample_ebsd(Volume(ids, q, valid), model_grid((3, 4), (2.0, 2.0), 1.0))
    assert up.shape == (1, 6, 8)
    np.testing.assert_array_equal(up.grain_ids[0, ::2, ::2], ids[0])
    np.testing.assert_array_equal(up.valid[0, ::2, ::2], valid[0])
    # Half-way between two native rows rounds up (to the next row), clipped at the last one.
    np.testing.assert_array_equal(up.grain_ids[0, 1::2, 1::2], ids[0][[1, 2, 2]][:, [1, 2, 3, 3]])


def test_pl_resampling_places_and_checks_the_field():
    hp, wp = 60, 80
    u, v = np.mgrid[0:hp, 0:wp].astype(float)
    # Linear: the anti-aliasing filter (away from the edges) and bilinear interpolation are exact.
    img = np.stack([3 * u + v, u - 2 * v], axis=-1)
    y, x = np.array([0.0, 2.5, 7.0]), np.array([1.0, 4.0])
    out = resample_pl(img, 0.5, (10.0, 12.0), y, x)
    uu, vv = np.meshgrid((y + 10.0) / 0.5, (x + 12.0) / 0.5, indexing="ij")
    np.testing.assert_allclose(out[..., 0], 3 * uu + vv, atol=1e-9)
    np.testing.assert_allclose(out[..., 1], uu - 2 * vv, atol=1e-9)
    with pytest.raises(ValueError, match="does not cover the EBSD field"):
        resample_pl(img, 0.5, (10.0, 12.0), np.array([0.0, 20.0]), x)


def test_downsampling_averages_noise():
    noise = np.random.default_rng(0).normal(size=(120, 120, 1))
    out = resample_pl(noise, 1.0, (0.0, 0.0), np.arange(0, 110, 3.0), np.arange(0, 110, 3.0))
    assert out.std() < 0.3  # a 3x coarser grid averages ~9 pixels: std ~1/3 or less
