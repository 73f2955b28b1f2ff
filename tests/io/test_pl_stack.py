"""PL TIFF stacks: both layouts, stage angles, bit depths, dark/flat, harmonic resampling."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.rotations import standardize
from ebsdray.io.pl_stack import (
    PLStack,
    harmonic_noise_std,
    match_stage_angles,
    read_pl_stack,
    write_pl_stack,
)

ANGLES = stage_angles(12)


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 4000, (9, 11, ANGLES.size)).astype(np.uint16)


def _intensities(n: int, angles: np.ndarray, seed: int = 0) -> np.ndarray:
    q = standardize(np.random.default_rng(seed).normal(size=(n, 4)))
    return pl_intensities(q, angles)


@pytest.mark.parametrize("folder", [True, False], ids=["folder", "multipage"])
def test_both_layouts_read_back_in_angle_order(tmp_path, counts, folder):
    path = write_pl_stack(counts, ANGLES, tmp_path / ("pl" if folder else "pl.tif"), folder=folder)
    stack = read_pl_stack(path, bit_depth=12)
    np.testing.assert_array_equal(stack.images, counts)
    np.testing.assert_allclose(stack.angles_deg, ANGLES)
    assert stack.attrs["angles_from"] == ("file names" if folder else "file metadata")
    assert len(set(stack.sources)) == (ANGLES.size if folder else 1)


def test_angles_from_config_and_plain_names(tmp_path, counts):
    folder = tmp_path / "pl"
    folder.mkdir()
    for k in range(4):  # "angle_30.tif": the last number of the name
        tifffile.imwrite(folder / f"img_{k}_angle_{90 * (3 - k)}.tif", counts[..., k])
    stack = read_pl_stack(folder, bit_depth=12)
    np.testing.assert_array_equal(stack.angles_deg, [0, 90, 180, 270])
    np.testing.assert_array_equal(stack.images[..., 0], counts[..., 3])
    given = read_pl_stack(folder, bit_depth=12, angles_deg=[5, 10, 15, 20])  # sorted names
    np.testing.assert_array_equal(given.images[..., 0], counts[..., 0])
    assert given.attrs["angles_from"].startswith("config")


def test_missing_and_duplicate_stage_angles(tmp_path, counts):
    folder = tmp_path / "pl"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", counts[..., 0])
    with pytest.raises(ValueError, match=r"no stage angle in the file names \['a.tif'\]"):
        read_pl_stack(folder)
    pages = tmp_path / "pages.tif"
    tifffile.imwrite(pages, np.moveaxis(counts, -1, 0))  # no angle metadata
    with pytest.raises(ValueError, match="does not say its stage angles"):
        read_pl_stack(pages, bit_depth=12)
    with pytest.raises(ValueError, match="12 pages but 3 stage angles"):
        read_pl_stack(pages, bit_depth=12, angles_deg=[0, 1, 2])
    with pytest.raises(ValueError, match="same rotation"):
        read_pl_stack(pages, bit_depth=12, angles_deg=[*ANGLES[:-1], 360.0])


def test_wrong_bit_depth_is_refused(tmp_path, counts):
    path = write_pl_stack(
        (counts // 16).astype(np.uint8), ANGLES, tmp_path / "p8.tif", folder=False
    )
    with pytest.raises(ValueError, match="uint8 pixels, but a 16-bit camera stack must be uint16"):
        read_pl_stack(path)
    assert read_pl_stack(path, bit_depth=8).images.max() <= 255
    with pytest.raises(ValueError, match="do not fit 10 bits"):
        read_pl_stack(
            write_pl_stack(counts, ANGLES, tmp_path / "p.tif", folder=False), bit_depth=10
        )
    floats = write_pl_stack(counts / 4000.0, ANGLES, tmp_path / "f.tif", folder=False)
    with pytest.raises(ValueError, match="float64 pixels"):
        read_pl_stack(floats)


def test_bad_files(tmp_path, counts):
    path = write_pl_stack(counts, ANGLES, tmp_path / "p.tif", folder=False)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ValueError, match="not a readable TIFF"):
        read_pl_stack(cut)
    folder = write_pl_stack(counts, ANGLES, tmp_path / "pl")
    tifffile.imwrite(folder / "pl_300.000deg.tif", counts[:-1, :, 0])  # replaces one, smaller
    with pytest.raises(ValueError, match="different sizes"):
        read_pl_stack(folder, bit_depth=12)
    with pytest.raises(FileNotFoundError):
        read_pl_stack(tmp_path / "nothing")


def test_dark_and_flat_correction(tmp_path):
    rng = np.random.default_rng(1)
    signal = rng.uniform(0.2, 1.0, (9, 11, 4))
    field = np.linspace(0.6, 1.4, 11)[None, :] * np.ones((9, 1))
    dark = 100 + rng.integers(0, 5, (9, 11))
    raw = np.round(dark[..., None] + 1000 * signal * field[..., None]).astype(np.uint16)
    flat = np.round(dark + 2000 * field).astype(np.uint16)
    write_pl_stack(raw, [0, 45, 90, 135], tmp_path / "pl")
    tifffile.imwrite(tmp_path / "dark.tif", dark.astype(np.uint16))
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    stack = read_pl_stack(tmp_path / "pl", dark=tmp_path / "dark.tif", flat=tmp_path / "flat.tif")
    ratio = stack.images / signal  # the illumination is gone: one factor everywhere
    assert ratio.std() / ratio.mean() < 2e-3
    with pytest.raises(ValueError, match="frame"):
        read_pl_stack(tmp_path / "pl", dark=tmp_path / "flat.tif", flat=tmp_path / "dark.tif")


def test_resampling_the_stage_angles_is_exact_for_pl():
    measured = np.array([3.0, 29.0, 61.0, 95.0, 122.0, 150.0, 171.0, 200.0])
    target = stage_angles(36)
    stack = PLStack(_intensities(50, measured).reshape(5, 10, -1), measured, ["x"] * 8)
    with pytest.raises(ValueError, match=r"missing.*angle_mismatch=resample"):
        match_stage_angles(stack, target)
    out, note = match_stage_angles(stack, target, "resample")
    np.testing.assert_allclose(out.images, _intensities(50, target).reshape(5, 10, -1), rtol=1e-9)
    assert "resampled from 8" in note
    too_few = PLStack(stack.images[..., :4], measured[:4], ["x"] * 4)
    with pytest.raises(ValueError, match="do not determine harmonics"):
        match_stage_angles(too_few, target, "resample")


def test_matching_angles_are_reordered_not_resampled():
    shuffled = np.random.default_rng(2).permutation(ANGLES)
    images = _intensities(6, shuffled).reshape(2, 3, -1)
    out, note = match_stage_angles(PLStack(images, shuffled, list(map(str, shuffled))), ANGLES)
    np.testing.assert_array_equal(out.images, _intensities(6, ANGLES).reshape(2, 3, -1))
    assert note == "angles match the codec's" and out.sources[1] == str(ANGLES[1])


def test_noise_estimate_from_harmonic_residual():
    clean = _intensities(4000, ANGLES)
    sigma = 3e-5
    noisy = clean + np.random.default_rng(3).normal(0, sigma, clean.shape)
    assert harmonic_noise_std(clean, ANGLES) < 1e-12
    assert harmonic_noise_std(noisy, ANGLES) == pytest.approx(sigma, rel=0.03)
    assert harmonic_noise_std(noisy[:, :5], ANGLES[:5]) is None
