"""The store's optional measured arrays: layout, round trip, version, sections and crops."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.volume import Measured, Volume
from ebsdray.io.volume_store import (
    FORMAT_VERSION,
    MEASURED_FORMAT_VERSION,
    open_volume,
    read_volume,
    write_volume,
)


def measured_volume(d: int = 2, h: int = 12, w: int = 16, r: int = 6) -> Volume:
    vol = synthetic_volume((d, h, w), seed=1, grain_size=6)
    rng = np.random.default_rng(0)
    lattice = np.zeros((d, h, w), bool)
    lattice[:, ::2, ::2] = True
    pl = rng.uniform(1e-4, 2e-3, (d, h, w, r)).astype(np.float32)
    vol.measured = Measured(pl, np.arange(r) * 30.0, lattice)
    return vol


def test_measured_arrays_round_trip(tmp_path):
    vol = measured_volume()
    path = write_volume(vol, tmp_path / "m.zarr")
    root = zarr.open_group(path, mode="r")
    assert root.attrs["format_version"] == MEASURED_FORMAT_VERSION == FORMAT_VERSION + 1
    pl = root["measured/pl_intensities"]
    assert pl.shape == (2, 12, 16, 6) and pl.chunks == (1, 12, 16, 6) and pl.dtype == np.float32
    assert root["measured/ebsd_observed"].chunks == (1, 12, 16)
    back = read_volume(path)
    np.testing.assert_array_equal(back.measured.pl_intensities, vol.measured.pl_intensities)
    np.testing.assert_array_equal(back.measured.ebsd_observed, vol.measured.ebsd_observed)
    np.testing.assert_array_equal(back.measured.stage_angles_deg, np.arange(6) * 30.0)
    store = open_volume(path)
    assert store.has_measured
    one = store.section(1)
    np.testing.assert_array_equal(one.measured.pl_intensities[0], vol.measured.pl_intensities[1])


def test_synthetic_stores_keep_version_1_without_measured(tmp_path):
    path = write_volume(synthetic_volume((1, 8, 8), seed=0, grain_size=4), tmp_path / "s.zarr")
    assert zarr.open_group(path, mode="r").attrs["format_version"] == 1
    store = open_volume(path)
    assert not store.has_measured and store.section(0).measured is None


def test_crop_and_section_carry_measured():
    vol = measured_volume()
    crop = vol.crop(6, 8, top=2, left=4)
    np.testing.assert_array_equal(
        crop.measured.pl_intensities, vol.measured.pl_intensities[:, 2:8, 4:12]
    )
    assert crop.measured.ebsd_observed[:, ::2, ::2].all()
    assert vol.section(1).measured.pl_intensities.shape == (1, 12, 16, 6)


def test_measured_shapes_are_checked():
    vol = synthetic_volume((1, 8, 8), seed=0, grain_size=4)
    with pytest.raises(ValueError, match=r"\(D, H, W, R\)"):
        Measured(np.zeros((1, 8, 8, 5)), np.arange(6), np.zeros((1, 8, 8), bool))
    with pytest.raises(ValueError, match="the volume is"):
        Volume(
            vol.grain_ids,
            vol.quaternions,
            measured=Measured(np.zeros((1, 4, 8, 6)), np.arange(6), np.zeros((1, 4, 8), bool)),
        )
