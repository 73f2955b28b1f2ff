"""Synthetic microstructures and texture samplers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.rotations import c_axis_in_sample_frame, quaternion_multiply, quaternion_to_matrix
from ebsdray.data.texture import TEXTURE_KINDS, sample_orientations
from ebsdray.data.volume import Volume

SMALL = (12, 48, 48)


def _esd(volume: Volume) -> np.ndarray:
    counts = np.bincount(volume.grain_ids.ravel())[1:]
    return (6 * counts / math.pi) ** (1 / 3)


def _adjacent_pairs(ids: np.ndarray) -> np.ndarray:
    pairs = []
    for axis in range(3):
        a = np.moveaxis(ids, axis, 0)
        x, y = a[1:].ravel(), a[:-1].ravel()
        m = x != y
        pairs.append(np.stack([np.minimum(x[m], y[m]), np.maximum(x[m], y[m])], 1))
    return np.unique(np.concatenate(pairs), axis=0)


def _mean_adjacent_c_angle(volume: Volume) -> float:
    p = _adjacent_pairs(volume.grain_ids)
    d = c_axis_in_sample_frame(volume.grain_quaternions)
    cos = np.abs((d[p[:, 0]] * d[p[:, 1]]).sum(1))
    return float(np.degrees(np.arccos(np.clip(cos, 0, 1))).mean())


def test_volume_contents_and_config():
    v = synthetic_volume(SMALL, seed=1)
    assert v.grain_ids.shape == SMALL and v.grain_ids.dtype == np.int32
    assert v.quaternions.shape == (*SMALL, 4) and v.quaternions.dtype == np.float32
    assert v.valid.all()
    g = v.attrs["n_grains"]
    assert np.array_equal(np.unique(v.grain_ids), np.arange(1, g + 1))
    assert v.grain_quaternions.shape == (g + 1, 4)
    np.testing.assert_allclose(np.linalg.norm(v.quaternions, axis=-1), 1, atol=1e-6)
    assert (v.quaternions[..., 0] >= 0).all()
    np.testing.assert_allclose(v.quaternions, v.grain_quaternions[v.grain_ids], atol=1e-7)
    attrs = json.loads(json.dumps(v.attrs))
    assert (
        attrs["config"]["shape"] == list(SMALL) and attrs["config"]["texture"]["kind"] == "uniform"
    )
    assert synthetic_volume(SMALL, seed=1, dtype=np.float64).quaternions.dtype == np.float64
    # The section keeps the per-grain table; the old constructor still works.
    assert v.section(3).grain_quaternions is v.grain_quaternions
    assert Volume(v.grain_ids, v.quaternions).grain_quaternions is None


@pytest.mark.parametrize("texture", ["uniform", {"kind": "macrozones", "zone_size": 30}])
def test_seeded(texture):
    a = synthetic_volume(SMALL, seed=7, texture=texture)
    b = synthetic_volume(SMALL, seed=7, texture=texture)
    c = synthetic_volume(SMALL, seed=8, texture=texture)
    assert np.array_equal(a.grain_ids, b.grain_ids) and np.array_equal(a.quaternions, b.quaternions)
    assert not np.array_equal(a.grain_ids, c.grain_ids)
    # Texture and geometry draw from separate streams: same grains under another texture.
    d = synthetic_volume(SMALL, seed=7, texture={"kind": "fibre"})
    assert np.array_equal(a.grain_ids, d.grain_ids)


def test_grain_count_and_mean_size():
    shape, size, sigma = (24, 80, 80), 10.0, 0.3
    v = synthetic_volume(shape, seed=2, grain_size=size, size_sigma=sigma, periodic=True)
    expected = np.prod(shape) / (math.pi / 6 * size**3 * math.exp(3 * sigma**2))
    assert 0.85 * expected < v.attrs["n_grains"] <= expected + 1
    assert abs(_esd(v).mean() / size - 1) < 0.1
    # Non-periodic boxes are cut from a larger tessellation: more (truncated) grains.
    w = synthetic_volume(shape, seed=2, grain_size=size, size_sigma=sigma)
    assert w.attrs["n_grains"] > v.attrs["n_grains"]


def test_lognormal_sizes():
    log_std = {}
    for sigma in (0.0, 0.4):
        v = synthetic_volume((24, 80, 80), seed=3, grain_size=9, size_sigma=sigma, periodic=True)
        log_std[sigma] = np.log(_esd(v)).std()
    assert log_std[0.0] < 0.15  # packing alone leaves little spread
    assert 0.3 < log_std[0.4] < 0.5


def _elongation(v: Volume, axis_a: int, axis_b: int) -> float:
    """Median over grains of the rms extent along axis_a over that along axis_b."""
    ids = v.grain_ids.ravel()
    coords = np.indices(v.shape).reshape(3, -1).astype(np.float64)
    n = np.bincount(ids)[1:]
    var = []
    for ax in (axis_a, axis_b):
        m1 = np.bincount(ids, coords[ax])[1:] / n
        m2 = np.bincount(ids, coords[ax] ** 2)[1:] / n
        var.append(m2 - m1**2)
    big = n > 200
    return float(np.median(np.sqrt(var[0][big] / var[1][big])))


def test_stretch_and_tilt_elongate_grains():
    equi = synthetic_volume((40, 40, 96), seed=4, grain_size=12, periodic=True)
    long_w = synthetic_volume((40, 40, 96), seed=4, grain_size=12, stretch=(1, 1, 3))
    assert 0.7 < _elongation(equi, 2, 1) < 1.4
    assert _elongation(long_w, 2, 1) > 2.0
    # Tilting by 90 degrees about H turns the long axis from W to D.
    long_d = synthetic_volume((96, 40, 40), seed=4, grain_size=12, stretch=(1, 1, 3), tilt_deg=90)
    assert _elongation(long_d, 0, 1) > 2.0 and _elongation(long_d, 2, 1) < 1.4


def test_intragranular_spread():
    v = synthetic_volume(SMALL, seed=5, intragranular_spread_deg=2.0, dtype=np.float64)
    nominal = v.grain_quaternions[v.grain_ids]
    dot = np.abs((v.quaternions * nominal).sum(-1)).clip(0, 1)
    angle = np.degrees(2 * np.arccos(dot))
    assert 1.0 < angle.mean() < 6.0 and angle.max() < 20.0
    # Smooth: neighbouring voxels of one grain differ far less than the spread.
    same = v.grain_ids[:, :, 1:] == v.grain_ids[:, :, :-1]
    step = np.abs((v.quaternions[:, :, 1:] * v.quaternions[:, :, :-1]).sum(-1)).clip(0, 1)
    assert np.degrees(2 * np.arccos(step[same])).mean() < 0.5 * angle.mean()


# --- textures ---------------------------------------------------------------------------------


def _c_tilt_deg(q: np.ndarray, sample_dir=(0, 0, 1)) -> np.ndarray:
    d = c_axis_in_sample_frame(q)
    return np.degrees(np.arccos(np.clip(np.abs(d @ np.asarray(sample_dir, float)), 0, 1)))


@pytest.mark.parametrize(
    "texture",
    [
        "uniform",
        {"kind": "spherical", "euler_deg": [30, 40, 50], "spread_deg": 5},
        {"kind": "fibre", "crystal": [1, 0, 0], "sample": [0, 1, 0], "spread_deg": 3},
        {"kind": "components", "components": [{"euler_deg": [0, 0, 0]}], "random_fraction": 0.5},
    ],
)
def test_samplers_return_unit_standard_quaternions(texture):
    q = sample_orientations(texture, 500, np.random.default_rng(0))
    assert q.shape == (500, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-12)
    assert (q[:, 0] >= 0).all()


def test_uniform_is_haar():
    q = sample_orientations("uniform", 20000, np.random.default_rng(1))
    # Haar measure: the c-axis is uniform on the sphere, so |d_z| is uniform on [0, 1].
    dz = np.abs(c_axis_in_sample_frame(q)[:, 2])
    assert abs(dz.mean() - 0.5) < 0.01 and abs((dz**2).mean() - 1 / 3) < 0.01


def test_fibre_puts_c_axes_on_the_axis():
    rng = np.random.default_rng(2)
    q = sample_orientations({"kind": "fibre", "spread_deg": 5}, 2000, rng)
    tilt = _c_tilt_deg(q)
    # |N(0, 5 deg)| has mean 5 sqrt(2/pi) = 4.0 deg.
    assert abs(tilt.mean() - 5 * math.sqrt(2 / math.pi)) < 0.4 and tilt.max() < 30
    # Crystal a-axis || sample y, exactly without spread: g^T a = y for every grain.
    q = sample_orientations(
        {"kind": "fibre", "crystal": [1, 0, 0], "sample": [0, 1, 0], "spread_deg": 0}, 50, rng
    )
    a_in_sample = np.einsum("nij,i->nj", quaternion_to_matrix(q), [1.0, 0, 0])
    np.testing.assert_allclose(a_in_sample, np.broadcast_to([0, 1.0, 0], (50, 3)), atol=1e-12)


def test_spherical_component_spread():
    centre = [10.0, 20.0, 30.0]
    q = sample_orientations(
        {"kind": "spherical", "euler_deg": centre, "spread_deg": 4}, 2000, np.random.default_rng(3)
    )
    from ebsdray.data.rotations import euler_to_quaternion, quaternion_conjugate

    c = euler_to_quaternion(np.radians(centre))
    m = quaternion_multiply(q, quaternion_conjugate(c))
    angle = np.degrees(2 * np.arccos(np.clip(np.abs(m[:, 0]), 0, 1)))
    assert abs(angle.mean() - 4 * math.sqrt(2 / math.pi)) < 0.4


def test_components_mixture_fractions():
    texture = {
        "kind": "components",
        "components": [
            {"crystal": [0, 0, 1], "sample": [0, 0, 1], "spread_deg": 2, "weight": 3},
            {"crystal": [0, 0, 1], "sample": [1, 0, 0], "spread_deg": 2, "weight": 1},
        ],
    }
    q = sample_orientations(texture, 4000, np.random.default_rng(4))
    near_z = (_c_tilt_deg(q) < 10).mean()
    near_x = (_c_tilt_deg(q, (1, 0, 0)) < 10).mean()
    assert abs(near_z - 0.75) < 0.03 and abs(near_x - 0.25) < 0.03


def test_macrozones_make_neighbours_alike():
    shape = (24, 96, 96)
    uni = synthetic_volume(shape, seed=6, grain_size=10)
    mz = synthetic_volume(
        shape, seed=6, grain_size=10, texture={"kind": "macrozones", "zone_size": 50}
    )
    a_uni, a_mz = _mean_adjacent_c_angle(uni), _mean_adjacent_c_angle(mz)
    assert abs(a_uni - 57.3) < 4  # random axes: mean angle 1 rad
    assert a_mz < 0.6 * a_uni
    # ... while the texture as a whole still spreads over several c-axis families.
    tilt = _c_tilt_deg(mz.grain_quaternions[1:])
    assert tilt.std() > 10


@pytest.mark.parametrize(
    ("texture", "match"),
    [
        ("bogus", "valid kinds"),
        ({"kind": "fibre", "sprad_deg": 3}, "valid keys"),
        ({"kind": "components"}, "components"),
        ({"kind": "components", "components": [{"eulr": [0, 0, 0]}]}, "valid"),
        ({"kind": "macrozones", "n_zones": 0}, "n_zones"),
    ],
)
def test_bad_texture_configs(texture, match):
    with pytest.raises(ValueError, match=match):
        sample_orientations(texture, np.zeros((5, 3)), np.random.default_rng(0))


def test_every_texture_kind_is_documented_and_samples():
    import ebsdray.data.texture as texture

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    needs = {"spherical": {"euler_deg": [0, 0, 0]},
             "components": {"components": [{"euler_deg": [0, 0, 0]}]}}  # fmt: skip
    for kind, defaults in TEXTURE_KINDS.items():
        assert kind in texture.__doc__ and kind in readme, kind
        q = sample_orientations(
            {"kind": kind, **needs.get(kind, {})}, np.zeros((5, 3)), np.random.default_rng(0)
        )
        assert q.shape == (5, 4) and np.allclose(np.linalg.norm(q, axis=1), 1), kind
        assert isinstance(defaults, dict)  # the keys a config may set
