"""EBSD-to-PL registration: a known warp recovered on the shipped real map, the transform's
direction, nearest-neighbour resampling of the EBSD, round trips and refusals."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ebsdray.data.corruptions import smooth_displacement
from ebsdray.data.pl import camera_image, pl_intensities
from ebsdray.data.volume import Volume
from ebsdray.figures import edge_segments, label_edges
from ebsdray.ingest.registration import (
    Registration,
    ebsd_grey,
    overlay_figure,
    register_ebsd_to_pl,
    warp_ebsd,
)
from ebsdray.io.ebsd_readers import example_ebsd_map_path, read_ebsd_map

STAGE_ANGLE = 0.0


@pytest.fixture(scope="module")
def real_map() -> Volume:
    return read_ebsd_map(example_ebsd_map_path())  # (1, 101, 101), ~10-pixel grains


def camera_pl(section: Volume, seed: int = 1) -> np.ndarray:
    """One PL image as a camera would see it: blur, vignetting, shot and read noise, 12 bits."""
    raw = pl_intensities(section.quaternions[0].astype(np.float64), np.array([STAGE_ANGLE]))
    return camera_image(
        raw, vignetting=0.2, blur_sigma=0.7, read_noise=20.0, shot_noise=True, rng=seed
    )[..., 0]


def known_warp(shape: tuple[int, int], smooth_px: float = 3.0) -> np.ndarray:
    """(H, W, 2) (dy, dx): a smooth random field plus a shift of (2, -1.5) px."""
    field = smooth_displacement(shape, smooth_px, rng=3, smoothness=shape[0] / 4)
    return np.moveaxis(field, 0, -1) + np.array([2.0, -1.5])


def warp_image(img: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """``out[y, x] = img[y + dy, x + dx]`` (linear, edges repeated)."""
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float64)
    coords = [yy + disp[..., 0], xx + disp[..., 1]]
    return ndimage.map_coordinates(img, coords, order=1, mode="nearest")


def residual(reg: Registration, true: np.ndarray) -> np.ndarray:
    return np.hypot(*np.moveaxis(reg.displacement() - true, -1, 0))


@pytest.fixture(scope="module")
def warped_case(real_map):
    """The PL image warped by a known field, registered against the map's PL grey."""
    true = known_warp(real_map.shape[1:])
    pl = warp_image(camera_pl(real_map), true)
    grey = ebsd_grey(real_map.quaternions[0], STAGE_ANGLE)
    t0 = time.perf_counter()
    reg = register_ebsd_to_pl(pl, grey, real_map.valid[0])
    seconds = time.perf_counter() - t0
    return {"true": true, "pl": pl, "grey": grey, "reg": reg, "seconds": seconds}


def test_known_warp_recovered_below_one_pixel(warped_case):
    true, reg = warped_case["true"], warped_case["reg"]
    magnitude = np.hypot(true[..., 0], true[..., 1])
    large = magnitude >= 3.0
    assert large.mean() > 0.1, "the test warp must displace many pixels by 3 px or more"
    res = residual(reg, true)
    print(
        f"max warp {magnitude.max():.2f} px; residual mean {res[large].mean():.3f} px where the "
        f"warp >= 3 px, {res.mean():.3f} px overall, max {res.max():.2f}; "
        f"{warped_case['seconds']:.2f} s; MI {reg.metric_before:.3f} -> {reg.metric_after:.3f}"
    )
    assert res[large].mean() < 1.0
    assert res.mean() < 1.0
    # Without registration the residual is the warp itself.
    assert magnitude[large].mean() >= 3.0
    assert reg.metric_after > reg.metric_before


def test_pl_grey_registers_better_than_ipf_x(real_map, warped_case):
    ipf = ebsd_grey(real_map.quaternions[0], STAGE_ANGLE, kind="ipf_x")
    reg_ipf = register_ebsd_to_pl(warped_case["pl"], ipf, real_map.valid[0])
    res_pl = residual(warped_case["reg"], warped_case["true"]).mean()
    res_ipf = residual(reg_ipf, warped_case["true"]).mean()
    print(f"mean residual: PL grey {res_pl:.3f} px, IPF-X grey {res_ipf:.3f} px")
    assert res_pl < 0.5 * res_ipf


def test_displacement_matches_itk_resampling(warped_case):
    """displacement() has ITK's direction: resampling the moving image with the transform is
    the same as pulling it through the displacement field."""
    reg, grey = warped_case["reg"], warped_case["grey"]
    moving = sitk.GetImageFromArray(grey)
    resampled = sitk.GetArrayFromImage(
        sitk.Resample(moving, moving, reg.transform, sitk.sitkLinear, 0.0)
    )
    pulled = warp_image(grey, reg.displacement())
    inner = (slice(8, -8), slice(8, -8))  # ITK pads with 0 outside, the helper repeats edges
    np.testing.assert_allclose(resampled[inner], pulled[inner], rtol=1e-6, atol=1e-9)


def test_composite_applies_bspline_then_affine(warped_case):
    transform = warped_case["reg"].transform
    assert transform.GetNumberOfTransforms() == 2
    affine, bspline = transform.GetNthTransform(0), transform.GetNthTransform(1)
    assert "Affine" in affine.GetName() and "BSpline" in bspline.GetName()
    for p in [(10.0, 20.0), (50.3, 71.9), (90.0, 5.5)]:
        expected = affine.TransformPoint(bspline.TransformPoint(p))
        np.testing.assert_allclose(transform.TransformPoint(p), expected, atol=1e-12)


def test_identity_pair_gives_near_zero_displacement_deterministically(real_map):
    pl = camera_pl(real_map)
    grey = ebsd_grey(real_map.quaternions[0], STAGE_ANGLE)
    reg = register_ebsd_to_pl(pl, grey, real_map.valid[0])
    d = np.hypot(*np.moveaxis(reg.displacement(), -1, 0))
    print(f"identity pair: displacement mean {d.mean():.3f} px, max {d.max():.3f} px")
    assert d.mean() < 0.35 and d.max() < 1.0
    again = register_ebsd_to_pl(pl, grey, real_map.valid[0])
    np.testing.assert_array_equal(again.displacement(), reg.displacement())


def test_save_load_round_trip(warped_case, tmp_path):
    reg = warped_case["reg"]
    path = reg.save(tmp_path / "ebsd_to_pl.tfm")
    assert path.is_file() and path.with_suffix(".json").is_file()
    back = Registration.load(path)
    np.testing.assert_array_equal(back.displacement(), reg.displacement())
    assert (back.metric_before, back.metric_after) == (reg.metric_before, reg.metric_after)
    assert back.shape == reg.shape and back.settings == reg.settings
    with pytest.raises(ValueError, match=r"\.tfm"):
        reg.save(tmp_path / "ebsd_to_pl.txt")
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="json"):
        Registration.load(path)


def translation(shape: tuple[int, int], dy: float, dx: float) -> Registration:
    transform = sitk.CompositeTransform(2)
    transform.AddTransform(sitk.TranslationTransform(2, (dx, dy)))  # ITK points are (x, y)
    return Registration(transform, 0.0, 0.0, shape)


def test_warp_ebsd_is_exact_for_an_integer_shift(real_map):
    h, w = real_map.shape[1:]
    out = warp_ebsd(real_map, translation((h, w), dy=-3, dx=2))
    # PL pixel (y, x) takes the EBSD pixel (y - 3, x + 2).
    src = real_map.section(0)
    np.testing.assert_array_equal(out.quaternions[0][3:, : w - 2], src.quaternions[0][:-3, 2:])
    np.testing.assert_array_equal(out.grain_ids[0][3:, : w - 2], src.grain_ids[0][:-3, 2:])
    np.testing.assert_array_equal(out.valid[0][3:, : w - 2], src.valid[0][:-3, 2:])
    outside = np.zeros((h, w), bool)
    outside[:3] = True
    outside[:, w - 2 :] = True
    assert not out.valid[0][outside].any() and (out.grain_ids[0][outside] == 0).all()
    np.testing.assert_array_equal(
        out.quaternions[0][outside], [[1.0, 0.0, 0.0, 0.0]] * outside.sum()
    )
    assert out.quaternions.dtype == real_map.quaternions.dtype
    assert out.attrs["registration"]["outside_fraction"] == pytest.approx(outside.mean())


def test_warp_ebsd_keeps_measured_values(real_map, warped_case):
    out = warp_ebsd(real_map, warped_case["reg"])
    q_in = real_map.quaternions[0].reshape(-1, 4)
    pairs_in = {
        (int(g), *map(float, q)) for g, q in zip(real_map.grain_ids[0].ravel(), q_in, strict=True)
    }
    inside = out.grain_ids[0] > 0
    for g, q in zip(out.grain_ids[0][inside], out.quaternions[0][inside], strict=True):
        assert (int(g), *map(float, q)) in pairs_in  # one source pixel's id and orientation
    # The shift of (2, -1.5) px pushes the map past the bottom-left border: unobserved there.
    d = warped_case["reg"].displacement()
    h, w = real_map.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w]
    gone = (rows + d[..., 0] > h - 0.5 + 0.01) | (cols + d[..., 1] < -0.5 - 0.01)
    assert gone.sum() > 50
    assert not out.valid[0][gone].any() and (out.grain_ids[0][gone] == 0).all()


def test_warp_ebsd_refuses_another_grid(real_map):
    with pytest.raises(ValueError, match="one section of"):
        warp_ebsd(real_map.crop(64, 64), translation((101, 101), 1, 1))


def test_overlay_figure_is_written(real_map, warped_case, tmp_path):
    after = warp_ebsd(real_map, warped_case["reg"])
    path = overlay_figure(warped_case["pl"], real_map, after, tmp_path / "overlay.png")
    assert path.is_file() and path.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("pl_shape", "ebsd_shape", "match"),
    [((64, 64), (64, 60), "differ in shape"), ((64, 64, 3), (64, 64), r"\(H, W\)")],
)
def test_refuses_bad_shapes(pl_shape, ebsd_shape, match):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=match):
        register_ebsd_to_pl(rng.random(pl_shape), rng.random(ebsd_shape))


def test_refuses_nans_and_constant_images(real_map):
    pl = camera_pl(real_map)
    grey = ebsd_grey(real_map.quaternions[0], STAGE_ANGLE)
    valid = real_map.valid[0]
    bad_pl = pl.copy()
    bad_pl[5, 5] = np.nan
    with pytest.raises(ValueError, match="pl_image has 1 NaN"):
        register_ebsd_to_pl(bad_pl, grey, valid)
    bad_grey = grey.copy()
    bad_grey[valid] = np.where(np.arange(valid.sum()) < 3, np.nan, bad_grey[valid])
    with pytest.raises(ValueError, match=r"ebsd_image has 3 NaN.*`valid`"):
        register_ebsd_to_pl(pl, bad_grey, valid)
    with pytest.raises(ValueError, match="ebsd_image is constant"):
        register_ebsd_to_pl(pl, np.full(pl.shape, 0.3), valid)
    with pytest.raises(ValueError, match="pl_image is constant"):
        register_ebsd_to_pl(np.zeros(pl.shape), grey, valid)


def test_nans_at_invalid_pixels_are_ignored(real_map):
    pl = camera_pl(real_map)
    grey = ebsd_grey(real_map.quaternions[0], STAGE_ANGLE)
    valid = real_map.valid[0]
    assert (~valid).any()
    with_nans = np.where(valid, grey, np.nan)
    reg = register_ebsd_to_pl(pl, with_nans, valid, bspline_mesh=0)
    assert np.abs(reg.displacement()).max() < 1.0


def test_pl_field_of_view_mask(real_map, warped_case):
    """A PL image that does not cover the whole map (NaN outside its field of view)."""
    pl = warped_case["pl"].copy()
    pl[:, -20:] = np.nan
    seen = np.isfinite(pl)
    with pytest.raises(ValueError, match=r"pl_image has .* NaN.*pl_valid"):
        register_ebsd_to_pl(pl, warped_case["grey"], real_map.valid[0])
    reg = register_ebsd_to_pl(pl, warped_case["grey"], real_map.valid[0], pl_valid=seen)
    res = residual(reg, warped_case["true"])
    print(f"PL covering {seen.mean():.0%}: residual mean {res[seen].mean():.3f} px where seen")
    assert res[seen].mean() < 1.0


def test_overlay_boundary_segments_known_answer():
    ids = np.array([[1, 1, 2], [1, 0, 2], [3, 3, 2]])
    segs = {tuple(map(tuple, s)) for s in edge_segments(label_edges(ids))}
    expected = {
        ((1.5, -0.5), (1.5, 0.5)),  # 1 | 2 in row 0
        ((-0.5, 1.5), (0.5, 1.5)),  # 1 over 3 in column 0
        ((1.5, 1.5), (1.5, 2.5)),  # 3 | 2 in row 2
    }  # edges to id 0 are not boundaries
    assert segs == expected


def test_ebsd_grey_kinds(real_map):
    q = real_map.quaternions[0]
    pl = ebsd_grey(q, 30.0)
    np.testing.assert_allclose(pl, pl_intensities(q, np.array([30.0]))[..., 0])
    ipf = ebsd_grey(q, 30.0, kind="ipf_x")
    assert ipf.shape == q.shape[:2] and 0.0 <= ipf.min() and ipf.max() <= 1.0
    with pytest.raises(ValueError, match="unknown grey kind"):
        ebsd_grey(q, 0.0, kind="ipf_z")
    with pytest.raises(ValueError, match=r"\(H, W, 4\)"):
        ebsd_grey(q[0], 0.0)
