"""Writers (.ang, .ctf) and the Oxford reader against files written here; thresholds; phases."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ebsdray.data.microstructure import synthetic_volume
from ebsdray.data.symmetry import disorientation_deg
from ebsdray.data.volume import Volume
from ebsdray.io import example_ebsd_map_path, read_ebsd_map, write_ang, write_ctf
from ebsdray.io.ebsd_writers import PhaseSpec
from ebsdray.io.phases import Phase, alpha_ti_problem

MAGNESIUM = PhaseSpec(name="Magnesium", a=3.21, c=5.21)
BETA_TI = PhaseSpec(name="Titanium (Beta)", a=3.31, c=3.31, hexagonal=False)


def _same_partition(labels: np.ndarray, truth: np.ndarray) -> bool:
    """Labels and truth (both 0 = none) define the same sets of pixels, up to renumbering."""
    if not np.array_equal(labels > 0, truth > 0):
        return False
    pairs = np.unique(np.stack([labels[truth > 0], truth[truth > 0]]), axis=1)
    return len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


@pytest.fixture(scope="module")
def real_map() -> Volume:
    return read_ebsd_map(example_ebsd_map_path())


@pytest.fixture(scope="module")
def small_map() -> Volume:
    vol = synthetic_volume((1, 24, 30), seed=4, grain_size=7)
    vol.attrs["step_size"] = [0.5, 0.5]
    return vol


@pytest.mark.parametrize("writer", [write_ang, write_ctf], ids=["ang", "ctf"])
def test_shipped_map_round_trips(real_map, tmp_path, writer):
    back = read_ebsd_map(writer(real_map, tmp_path / f"ti.{writer.__name__[-3:]}"))
    assert back.shape == real_map.shape and back.attrs["step_size"] == [2.0, 2.0]
    np.testing.assert_array_equal(back.valid, real_map.valid)
    ok = real_map.valid[0]
    angle = disorientation_deg(back.quaternions[0][ok], real_map.quaternions[0][ok])
    assert angle.max() < 2e-3  # degrees: 5 decimals of radians (.ang), 4 of degrees (.ctf)
    # The file carries no grain ids; the 5-degree flood fill finds the file's 81 grains again.
    assert _same_partition(back.grain_ids[0], real_map.grain_ids[0])
    assert back.attrs["grain_ids"].startswith("segmented")


def test_hexagonal_ang_grid(real_map, tmp_path):
    path = write_ang(real_map, tmp_path / "hex.ang", grid="HexGrid")
    assert "# GRID: HexGrid" in path.read_text()[:2000]
    back = read_ebsd_map(path)
    # Rows every dx * sqrt(3)/2 over the map's height, resampled onto a square grid of step dx.
    assert back.shape == (1, 100, 101) and back.attrs["step_size"] == [2.0, 2.0]
    assert "HexGrid" in back.attrs["resampled"]
    both = back.valid[0] & real_map.valid[0, :100]
    same = disorientation_deg(back.quaternions[0][both], real_map.quaternions[0, :100][both]) < 1
    assert both.mean() > 0.8 and same.mean() > 0.9  # two nearest-neighbour steps move edges only


def test_ci_threshold_marks_pixels_invalid(small_map, tmp_path):
    ci = np.full(small_map.shape[1:], 0.8)
    ci[3, 4], ci[10, 20], ci[20, 2] = 0.05, 0.09, 0.3
    path = write_ang(small_map, tmp_path / "ci.ang", ci=ci)
    default = read_ebsd_map(path)
    assert (~default.valid[0]).sum() == 2 and not default.valid[0, 3, 4]
    strict = read_ebsd_map(path, min_ci=0.5)
    np.testing.assert_array_equal(strict.valid[0], ci >= 0.5)
    assert (strict.grain_ids[0][~strict.valid[0]] == 0).all()


def test_mad_and_band_contrast_thresholds(small_map, tmp_path):
    h, w = small_map.shape[1:]
    rng = np.random.default_rng(0)
    mad, bc = rng.uniform(0.2, 2.0, (h, w)), rng.uniform(20, 200, (h, w)).round()
    path = write_ctf(small_map, tmp_path / "t.ctf", mad=mad, bc=bc)
    np.testing.assert_array_equal(read_ebsd_map(path).valid[0], mad <= 1.3)
    both = read_ebsd_map(path, max_mad=0.9, min_bc=100)
    np.testing.assert_array_equal(both.valid[0], (mad <= 0.9) & (bc >= 100))
    assert both.attrs["thresholds"] == {"max_mad": 0.9, "min_bc": 100}


@pytest.mark.parametrize("writer", [write_ang, write_ctf], ids=["ang", "ctf"])
def test_magnesium_is_refused_by_name_and_lattice(small_map, tmp_path, writer):
    path = writer(small_map, tmp_path / f"mg.{writer.__name__[-3:]}", phase=MAGNESIUM)
    with pytest.raises(ValueError, match=r"'Magnesium'.*a = 3\.210 A, c = 5\.210 A, c/a = 1\.623"):
        read_ebsd_map(path)
    with pytest.warns(UserWarning, match="Magnesium.*used anyway because phase=1"):
        forced = read_ebsd_map(path, phase=1)
    assert forced.valid.all()


def test_alloyed_alpha_ti_and_beta(small_map, tmp_path):
    ti64 = PhaseSpec(name="Ti-6Al-4V alpha", a=2.925, c=4.67)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # accepted silently: the lattice says alpha-Ti
        assert read_ebsd_map(write_ctf(small_map, tmp_path / "a.ctf", phase=ti64)).valid.all()
    with pytest.raises(ValueError, match=r"no hexagonal phase.*Titanium \(Beta\)"):
        read_ebsd_map(write_ang(small_map, tmp_path / "b.ang", phase=BETA_TI))
    assert alpha_ti_problem(Phase(1, "Zr", True, "Symmetry 62", (3.23, 5.15))).startswith("has a")


def _two_phase_ang(vol: Volume, path: Path) -> Path:
    """An .ang whose header also declares cubic beta-Ti (phase 2), holding a few pixels."""
    text = write_ang(vol, path).read_text().splitlines()
    at = next(i for i, ln in enumerate(text) if ln.startswith("# GRID"))
    beta = [
        "# Phase 2",
        "# MaterialName  \tTitanium (Beta)",
        "# Symmetry              43",
        "# LatticeConstants      3.310 3.310 3.310  90.000  90.000  90.000",
        "#",
    ]
    rows = [i for i, ln in enumerate(text) if not ln.startswith("#")]
    for i in rows[:7]:
        parts = text[i].split()
        parts[7] = "2"
        text[i] = " ".join(parts)
    path.write_text("\n".join(text[:at] + beta + text[at:]) + "\n")
    return path


def test_other_phase_pixels_refused_or_dropped_by_choice(small_map, tmp_path):
    path = _two_phase_ang(small_map, tmp_path / "two.ang")
    with pytest.raises(ValueError, match=r"phase 2 'Titanium \(Beta\)'.*not hexagonal.*7 indexed"):
        read_ebsd_map(path)
    vol = read_ebsd_map(path, phase=1)  # keep alpha: the beta pixels become unobserved
    assert (~vol.valid[0]).sum() == 7 and not vol.valid[0, 0, :7].any()


def _edit(path: Path, edit) -> Path:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def _replace_field(lines: list[str], row: int, col: int, value: str) -> list[str]:
    data = [i for i, ln in enumerate(lines) if ln[:1].isdigit()][row]
    parts = lines[data].split("\t")
    parts[col] = value
    return [*lines[:data], "\t".join(parts), *lines[data + 1 :]]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[:-4], "truncated"),
        (lambda ls: [*ls[:-1], ls[-1][:12]], "truncated or garbled"),
        (lambda ls: _replace_field(ls, 5, 5, "nan"), "non-finite"),
        (lambda ls: _replace_field(ls, 5, 6, "200.0"), "outside the degree ranges"),
        (lambda ls: [ln.replace("Euler3\t", "E3\t") for ln in ls], "lacks"),
        (lambda ls: [ln.replace("\t9\t194", "\tx\t194") for ln in ls], "phase line"),
        (lambda ls: ls[1:], "Channel Text File"),
    ],
)
def test_bad_ctf_files(small_map, tmp_path, edit, message):
    path = write_ctf(small_map, tmp_path / "bad.ctf")
    with pytest.raises(ValueError, match=message):
        read_ebsd_map(_edit(path, edit))


def test_ang_with_out_of_range_angle(small_map, tmp_path):
    path = write_ang(small_map, tmp_path / "range.ang")
    lines = path.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    lines[i] = "9.00000 " + lines[i].split(" ", 1)[1]  # phi1 = 9 rad > 2 pi
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="radian"):
        read_ebsd_map(path)
