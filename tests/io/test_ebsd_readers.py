"""Readers for real EBSD maps: the shipped pymicro map, synthetic .ang files, and bad files."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from ebsdray.data.rotations import euler_to_quaternion
from ebsdray.data.symmetry import disorientation_deg
from ebsdray.io.ebsd_readers import example_ebsd_map_path, read_ebsd_map
from ebsdray.io.segmentation import segment_grains
from ebsdray.io.volume_store import read_volume, write_volume

# --- helpers -------------------------------------------------------------------------------------


def _same_partition(labels: np.ndarray, truth: np.ndarray) -> bool:
    """Labels and truth (both 0 = none) define the same sets of pixels, up to renumbering."""
    if not np.array_equal(labels > 0, truth > 0):
        return False
    pairs = np.unique(np.stack([labels[truth > 0], truth[truth > 0]]), axis=1)
    return len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


ANG_HEADER = """\
# TEM_PIXperUM          1.000000
# x-star                0.500000
# y-star                0.500000
# z-star                0.700000
# WorkingDistance       15.000000
#
# Phase 1
# MaterialName  \tTitanium (Alpha)
# Formula     \tTi
# Info \t\t
# Symmetry              62
# LatticeConstants      2.950 2.950 4.680  90.000  90.000 120.000
# NumberFamilies        0
# Categories0 0 0 0 0
#
# GRID: {grid}
# XSTEP: {xstep:.6f}
# YSTEP: {ystep:.6f}
# NCOLS_ODD: {odd}
# NCOLS_EVEN: {even}
# NROWS: {nrows}
#
# OPERATOR: \tpytest
#
# SAMPLEID: \t
#
# SCANID: \t
#
"""


def _ang_line(e, x, y, ci, phase=1) -> str:
    return (
        f"{e[0]:10.5f} {e[1]:10.5f} {e[2]:10.5f} {x:12.5f} {y:12.5f} "
        f"{2500.0:8.1f} {ci:6.3f} {phase:2d} {1200:6d} {0.5:6.3f}"
    )


def _write_square_ang(path: Path, euler: np.ndarray, ci: np.ndarray, step: float = 0.5) -> Path:
    h, w = ci.shape
    lines = [ANG_HEADER.format(grid="SqrGrid", xstep=step, ystep=step, odd=w, even=w, nrows=h)]
    # OIM order: rows of constant y, x varying fastest.
    lines += [
        _ang_line(euler[r, c], c * step, r * step, ci[r, c]) for r in range(h) for c in range(w)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# Well separated orientations (pairwise disorientation > 15 deg, checked below).
GRAIN_EULER = np.array(
    [[0.3, 0.5, 0.2], [1.9, 1.2, 0.4], [4.0, 0.9, 1.1], [2.7, 2.2, 0.1], [5.5, 1.6, 0.7]]
)


def _synthetic_map():
    """Hand-made 16 x 20 map; returns (euler, ci, truth) with truth 0 on invalid pixels."""
    ids = np.zeros((16, 20), int)
    ids[:, :8] = 1
    ids[:8, 8:] = 2
    ids[8:, 8:14] = 3
    ids[8:, 14:] = 4
    euler = GRAIN_EULER[ids - 1].copy()
    # An island inside grain 1 rotated by 60 deg about c: the same orientation under 622.
    euler[2:5, 2:5, 2] += math.pi / 3
    # An island with grain 4's orientation that does not touch grain 4: a separate grain.
    euler[11:14, 2:5] = GRAIN_EULER[3]
    truth = ids.copy()
    truth[11:14, 2:5] = 5
    rng = np.random.default_rng(0)
    euler = euler + rng.normal(scale=np.deg2rad(0.3), size=euler.shape)  # orientation noise
    ci = rng.uniform(0.3, 0.9, ids.shape)
    ci[[0, 6, 12], [10, 3, 17]] = 0.02  # low-confidence pixels
    euler[9, 9] = 4 * math.pi  # OIM's "not indexed"
    ci[9, 9] = -1.0
    truth[[0, 6, 12, 9], [10, 3, 17, 9]] = 0
    return euler, ci, truth


# --- the shipped real map ------------------------------------------------------------------------


def test_example_map_is_packaged():
    path = example_ebsd_map_path()
    assert path.is_file() and path.parent.name == "resources"
    assert (path.parent / "LICENSE.pymicro-data").is_file()


def test_real_pymicro_map():
    path = example_ebsd_map_path()
    vol = read_ebsd_map(path)
    assert vol.shape == (1, 101, 101)
    ids = vol.grain_ids[0]
    assert ids.dtype == np.int32
    assert np.array_equal(np.unique(ids[ids > 0]), np.arange(1, 82))  # 81 grains
    q = vol.quaternions
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    assert (q[..., 0] >= 0).all()
    assert np.array_equal(vol.valid[0], ids > 0)
    assert 0.8 < vol.valid.mean() < 0.9  # 1371 of 10201 pixels are not assigned to a grain
    with h5py.File(path, "r") as f:
        euler = f["CellData/euler"][...]
    np.testing.assert_allclose(q[0], euler_to_quaternion(euler), atol=1e-12)
    assert vol.attrs["reader"] == "pymicro_h5"
    assert vol.attrs["step_size"] == [2.0, 2.0]
    assert vol.attrs["source"] == str(path.resolve())


def test_segmentation_reproduces_real_grain_map():
    vol = read_ebsd_map(example_ebsd_map_path())
    labels = segment_grains(vol.quaternions[0], vol.valid[0], tolerance_deg=5.0)
    assert _same_partition(labels, vol.grain_ids[0])


def test_real_map_round_trips_through_store(tmp_path):
    vol = read_ebsd_map(example_ebsd_map_path())
    back = read_volume(write_volume(vol, tmp_path / "ti.zarr"))
    np.testing.assert_array_equal(back.grain_ids, vol.grain_ids)
    assert back.attrs["source"] == vol.attrs["source"]


# --- synthetic .ang ------------------------------------------------------------------------------


def test_grain_orientations_are_distinct():
    q = euler_to_quaternion(GRAIN_EULER)
    i, j = np.triu_indices(len(q), 1)
    assert disorientation_deg(q[i], q[j]).min() > 15


def test_square_ang_round_trip(tmp_path):
    euler, ci, truth = _synthetic_map()
    vol = read_ebsd_map(_write_square_ang(tmp_path / "map.ang", euler, ci))
    assert vol.shape == (1, 16, 20)
    np.testing.assert_array_equal(vol.valid[0], truth > 0)
    assert _same_partition(vol.grain_ids[0], truth)
    assert vol.grain_ids.max() == 5
    ok = truth > 0
    np.testing.assert_allclose(vol.quaternions[0][ok], euler_to_quaternion(euler[ok]), atol=1e-4)
    np.testing.assert_array_equal(vol.quaternions[0, 9, 9], [1, 0, 0, 0])  # not indexed
    assert vol.attrs["reader"] == "ang" and vol.attrs["step_size"] == [0.5, 0.5]
    assert vol.attrs["phases"]["1"]["MaterialName"] == "Titanium (Alpha)"
    # A stricter CI threshold invalidates more pixels; a 0 tolerance splits every pixel.
    assert read_ebsd_map(tmp_path / "map.ang", min_ci=0.6).valid.sum() < vol.valid.sum()
    assert read_ebsd_map(tmp_path / "map.ang", tolerance_deg=0.0).grain_ids.max() == ok.sum()


def test_shuffled_ang_rows_are_placed_by_coordinates(tmp_path):
    euler, ci, truth = _synthetic_map()
    path = _write_square_ang(tmp_path / "map.ang", euler, ci)
    lines = path.read_text().splitlines()
    head = [ln for ln in lines if ln.startswith("#")]
    rows = [ln for ln in lines if not ln.startswith("#")]
    order = np.random.default_rng(1).permutation(len(rows))
    path.write_text("\n".join(head + [rows[i] for i in order]) + "\n")
    assert _same_partition(read_ebsd_map(path).grain_ids[0], truth)


def test_hex_grid_is_resampled(tmp_path):
    step, nrows, odd = 1.0, 12, 10
    ystep = step * math.sqrt(3) / 2
    lines = [
        ANG_HEADER.format(
            grid="HexGrid", xstep=step, ystep=ystep, odd=odd, even=odd - 1, nrows=nrows
        )
    ]
    for r in range(nrows):
        shift, n = (0.0, odd) if r % 2 == 0 else (step / 2, odd - 1)
        for c in range(n):
            x = shift + c * step
            lines.append(_ang_line(GRAIN_EULER[0 if x < 4.6 else 1], x, r * ystep, 0.8))
    path = tmp_path / "hex.ang"
    path.write_text("\n".join(lines) + "\n")
    vol = read_ebsd_map(path)
    assert vol.shape == (1, 10, 10)
    assert vol.valid.all() and vol.grain_ids.max() == 2
    assert (vol.grain_ids[0, :, :4] == 1).all() and (vol.grain_ids[0, :, 6:] == 2).all()
    assert "HexGrid" in vol.attrs["resampled"]


# --- bad files ------------------------------------------------------------------------------------


@pytest.fixture
def good_ang(tmp_path) -> Path:
    euler, ci, _ = _synthetic_map()
    return _write_square_ang(tmp_path / "good.ang", euler, ci)


def _rewrite(path: Path, edit) -> Path:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[:-3], "truncated"),  # whole rows missing
        (lambda ls: [*ls[:-1], ls[-1][:25]], "truncated or garbled"),  # a row cut short
        (lambda ls: [*ls[:-5], ls[-5].replace("0.5", "abc", 1), *ls[-4:]], "garbled"),
        (lambda ls: [ln if ln.startswith("#") else " ".join(ln.split()[:5]) for ln in ls], "8"),
        (lambda ls: [ln for ln in ls if ln.startswith("#")], "no data rows"),
        (lambda ls: [*ls[:-1], ls[-1].replace(ls[-1].split()[0], "nan", 1)], "non-finite"),
        (lambda ls: [ln.replace("NROWS: 16", "NROWS: x") for ln in ls], "not a number"),
    ],
)
def test_bad_ang_files(good_ang, edit, message):
    with pytest.raises(ValueError, match=message):
        read_ebsd_map(_rewrite(good_ang, edit))


def test_ang_in_degrees_is_rejected(tmp_path):
    euler, ci, _ = _synthetic_map()
    euler[9, 9] = 0.0
    # Every angle above 2 pi: none of them may be mistaken for OIM's "not indexed" 4 pi.
    path = _write_square_ang(tmp_path / "deg.ang", np.rad2deg(euler) + 10.0, ci)
    with pytest.raises(ValueError, match="radians"):
        read_ebsd_map(path)


def test_ang_without_hexagonal_phase(good_ang):
    _rewrite(
        good_ang, lambda ls: [ln.replace("Symmetry              62", "Symmetry 43") for ln in ls]
    )
    with pytest.raises(ValueError, match="no hexagonal phase"):
        read_ebsd_map(good_ang)
    assert read_ebsd_map(good_ang, phase=1).valid.sum() > 0


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_ebsd_map(tmp_path / "nope.ang")
    (tmp_path / "map.xyz").write_text("Channel Text File")
    with pytest.raises(ValueError, match="unsupported suffix"):
        read_ebsd_map(tmp_path / "map.xyz")
    (tmp_path / "map.ctf").write_text("Channel Text File")  # .ctf is read now: a header only
    with pytest.raises(ValueError, match="truncated"):
        read_ebsd_map(tmp_path / "map.ctf")
    (tmp_path / "fake.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_ebsd_map(tmp_path / "fake.h5")


def _pymicro_like(path: Path, euler: np.ndarray, grain_map: np.ndarray | None = None, **extra):
    with h5py.File(path, "w") as f:
        cell = f.create_group("CellData")
        cell.attrs["spacing"] = np.array([1.5, 1.5])
        cell["euler"] = euler
        if grain_map is not None:
            cell["grain_map"] = grain_map
        for k, v in extra.items():
            cell[k] = v
    return path


def test_bad_hdf5_maps(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ValueError, match="CellData/euler"):
        read_ebsd_map(tmp_path / "other.h5")
    euler, _, truth = _synthetic_map()
    euler = np.where(truth[..., None] > 0, euler, 0.0)
    bad = euler.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        read_ebsd_map(_pymicro_like(tmp_path / "nan.h5", bad, truth))
    with pytest.raises(ValueError, match="shape"):
        read_ebsd_map(_pymicro_like(tmp_path / "shape.h5", euler, truth[:, :-1]))
    with pytest.raises(ValueError, match="2-D map"):
        read_ebsd_map(_pymicro_like(tmp_path / "3d.h5", euler[None]))


def test_hdf5_without_grain_map_is_segmented(tmp_path):
    euler, ci, truth = _synthetic_map()
    euler[9, 9] = 0.0
    vol = read_ebsd_map(_pymicro_like(tmp_path / "seg.h5", euler, ci=ci))
    assert vol.attrs["grain_ids"].startswith("segmented")
    assert vol.attrs["step_size"] == [1.5, 1.5]
    assert _same_partition(vol.grain_ids[0], truth)
