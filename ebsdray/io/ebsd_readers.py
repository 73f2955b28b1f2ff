"""Readers for real EBSD maps: each returns a :class:`~ebsdray.data.volume.Volume` with D = 1.

``read_ebsd_map(path)`` dispatches on the suffix:

``.ang`` (TSL/EDAX OIM text)
    Header lines start with ``#``; data columns ``phi1 Phi phi2`` (Bunge, radians), ``x y IQ CI
    phase`` and possibly more. Square grids are placed by their x/y coordinates; hexagonal grids are
    resampled onto a square grid of the same x step by nearest neighbour (recorded in ``attrs``).
    A pixel is valid when ``CI >= min_ci`` (default 0.1, the usual OIM clean-up threshold), its
    Euler angles are not OIM's "not indexed" value (4 pi) and its phase is alpha-Ti.
    ``.ang`` files carry no grain ids, so grains are segmented with
    :func:`ebsdray.io.segmentation.segment_grains` (default tolerance 5 degrees, as DREAM.3D).

``.ctf`` (Oxford HKL Channel 5 / AZtec text, :mod:`ebsdray.io.ctf`)
    Euler angles in degrees, placed by their X/Y columns. A pixel is valid when its phase is not 0,
    its ``Error`` is 0, ``MAD <= max_mad`` (default 1.3 degrees) and ``BC >= min_bc`` (default 0:
    band contrast has no absolute scale across detectors) where those columns exist, and its phase
    is alpha-Ti. Grains are segmented as for ``.ang``.

``.h5`` / ``.hdf5`` (pymicro ``SampleData`` 2-D map, e.g. :func:`example_ebsd_map_path`)
    ``CellData/euler`` (H, W, 3) Bunge radians, ``CellData/grain_map`` (H, W) with 0 = not
    assigned, optional ``CellData/mask`` and ``CellData/ci``. Arrays are stored (y, x), i.e. already
    (H, W) in the project's frame. Valid pixels: ``grain_map > 0`` and ``mask > 0``. Without a grain
    map, validity comes from ``mask`` and ``ci >= min_ci`` and grains are segmented as for ``.ang``.
    Phases come from ``PhaseData/phase_*`` (``name``, ``symmetry``; the pickled lattice parameters
    are not read).

Phases (:mod:`ebsdray.io.phases`): a phase that holds indexed pixels and is not alpha-Ti (not
hexagonal, or hexagonal with another lattice, e.g. magnesium) is refused with an error naming it
and its lattice parameters; ``phase=<id>`` keeps only that phase (others become invalid).

Quaternions are float64, unit, q0 >= 0 (:mod:`ebsdray.conventions`). Pixels without a usable
orientation (not indexed) get the identity; finite orientations of invalid pixels are kept.
Euler angles are taken as written: for hexagonal phases, vendors may differ by a 30 degree rotation
about c in their crystal reference frame (X || a versus X || a*); PL, which sees only the c-axis,
is unaffected, the EBSD channels are not (convert such files first).
``attrs`` record ``source`` (absolute path), ``reader``, ``step_size`` ([dy, dx] as in the file),
``grain_ids`` (where they came from) and reader details.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy.spatial import cKDTree

from ebsdray.data.rotations import euler_to_quaternion
from ebsdray.data.volume import Volume
from ebsdray.io.ctf import parse_ctf
from ebsdray.io.phases import Phase, select_phases
from ebsdray.io.segmentation import DEFAULT_TOLERANCE_DEG, segment_grains

DEFAULT_MIN_CI = 0.1
DEFAULT_MAX_MAD = 1.3  # degrees; Oxford's customary upper limit of a trustworthy fit
DEFAULT_MIN_BC = 0.0
HEXAGONAL_SYMMETRIES = {"6", "62"}  # OIM symmetry codes of the hexagonal Laue groups 6/m, 6/mmm
ANG_SUFFIXES = (".ang",)
CTF_SUFFIXES = (".ctf",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_ANGLE_SLACK = 1e-3  # radians; exported angles are rounded


def example_ebsd_map_path() -> Path:
    """Path of the shipped real alpha-Ti map (pymicro-data, MIT; see ``ebsdray/resources``)."""
    return Path(str(importlib.resources.files("ebsdray") / "resources" / "Ti_ebsd_demo_data.h5"))


def read_ebsd_map(
    path: str | os.PathLike[str],
    *,
    min_ci: float = DEFAULT_MIN_CI,
    tolerance_deg: float = DEFAULT_TOLERANCE_DEG,
    phase: int | None = None,
    max_mad: float = DEFAULT_MAX_MAD,
    min_bc: float = DEFAULT_MIN_BC,
) -> Volume:
    """Read a 2-D EBSD map into a Volume with D = 1.

    Parameters
    ----------
    path : str or Path
        ``.ang`` (TSL/EDAX), ``.ctf`` (Oxford) or ``.h5``/``.hdf5`` (pymicro map).
    min_ci : float
        Smallest confidence index of a valid pixel (``.ang``, and HDF5 maps without a grain map).
    tolerance_deg : float
        Grain segmentation tolerance, used when the file has no grain ids.
    phase : int, optional
        ``.ang`` / ``.ctf``: the phase id to keep (accepted with a warning if it is not alpha-Ti);
        default every alpha-Ti phase of the header, refusing maps with indexed pixels of others.
    max_mad : float
        ``.ctf``: largest mean angular deviation (degrees) of a valid pixel.
    min_bc : float
        ``.ctf``: smallest band contrast of a valid pixel.

    Returns
    -------
    Volume
        ``grain_ids`` (1, H, W) int32, ``quaternions`` (1, H, W, 4) float64, ``valid`` (1, H, W).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"EBSD map {path} does not exist (or is not a file)")
    suffix = path.suffix.lower()
    if suffix in ANG_SUFFIXES:
        return _read_ang(path, min_ci=min_ci, tolerance_deg=tolerance_deg, phase=phase)
    if suffix in CTF_SUFFIXES:
        thresholds = {"max_mad": max_mad, "min_bc": min_bc}
        return _read_ctf(path, thresholds=thresholds, tolerance_deg=tolerance_deg, phase=phase)
    if suffix in HDF5_SUFFIXES:
        return _read_pymicro_h5(path, min_ci=min_ci, tolerance_deg=tolerance_deg)
    raise ValueError(
        f"cannot read {path}: unsupported suffix {path.suffix!r}. Supported: .ang (TSL/EDAX), "
        ".ctf (Oxford) and .h5/.hdf5 (pymicro map); convert other formats to one of these first."
    )


def _check_euler_range(euler: np.ndarray, path: Path) -> None:
    """Reject angles that cannot be Bunge radians (most often: an export in degrees)."""
    if euler.size == 0:
        return
    big = np.abs(euler[:, [0, 2]]).max() > 2 * math.pi + _ANGLE_SLACK
    if big or euler[:, 1].min() < -_ANGLE_SLACK or euler[:, 1].max() > math.pi + _ANGLE_SLACK:
        raise ValueError(
            f"{path}: Euler angles outside the radian ranges (|phi1|, |phi2| <= 2 pi, "
            f"0 <= Phi <= pi; found max {np.abs(euler).max():.3f}). The file must store Bunge "
            "angles in radians; convert degrees with numpy.deg2rad."
        )


def _quaternions(euler: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """(N, 3) Euler -> (N, 4) quaternions, identity where not ``usable``."""
    q = np.zeros((*euler.shape[:-1], 4))
    q[..., 0] = 1.0
    q[usable] = euler_to_quaternion(np.asarray(euler[usable], dtype=np.float64))
    return q


# --- TSL/EDAX .ang -------------------------------------------------------------------------------


_ANG_PHASE_KEYS = ("MaterialName", "Symmetry", "Formula", "LatticeConstants")


def _ang_phases(phases: dict[int, dict[str, str]], path: Path) -> dict[int, Phase]:
    """The header's phase blocks as :class:`Phase` (lattice constants in Angstrom)."""
    out = {}
    for k, p in phases.items():
        symmetry = p.get("Symmetry", "").split()
        lattice = None
        values = p.get("LatticeConstants", "").split()
        if len(values) >= 3:
            try:
                lattice = (float(values[0]), float(values[2]))
            except ValueError:
                raise ValueError(
                    f"{path}: phase {k} LatticeConstants {p['LatticeConstants']!r} are not numbers"
                ) from None
        out[k] = Phase(
            id=k,
            name=p.get("MaterialName", ""),
            hexagonal=(symmetry[0] in HEXAGONAL_SYMMETRIES) if symmetry else None,
            symmetry=f"Symmetry {symmetry[0]}" if symmetry else "",
            lattice=lattice,
        )
    return out


def _parse_ang_header(lines: list[str]) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """Header key/values (``# KEY: value`` or ``# Key value``) and the phases block."""
    header: dict[str, str] = {}
    phases: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in lines:
        body = line.lstrip("#").strip()
        if not body:
            continue
        if ":" in body.split()[0]:  # "# GRID: SqrGrid"
            key, _, value = body.partition(":")
        else:  # "# Phase 1", "# MaterialName \tTitanium (Alpha)"
            key, value = [*body.split(None, 1), ""][:2]
        key, value = key.strip(), value.strip()
        if key == "Phase" and value.split() and value.split()[0].isdigit():
            current = phases.setdefault(int(value.split()[0]), {})
        elif current is not None and key in _ANG_PHASE_KEYS:
            current[key] = value
        elif key not in header:
            header[key] = value
    return header, phases


def _header_number(header: dict[str, str], key: str, path: Path) -> float | None:
    if key not in header:
        return None
    try:
        return float(header[key].split()[0])
    except (ValueError, IndexError):
        raise ValueError(f"{path}: header field {key} = {header[key]!r} is not a number") from None


def _read_ang(path: Path, *, min_ci: float, tolerance_deg: float, phase: int | None) -> Volume:
    lines = path.read_text(encoding="latin-1").splitlines()
    n_header = next(
        (i for i, ln in enumerate(lines) if not ln.lstrip().startswith("#")), len(lines)
    )
    header, phases = _parse_ang_header(lines[:n_header])
    body = [ln for ln in lines[n_header:] if ln.strip()]
    if not body:
        raise ValueError(
            f"{path}: no data rows after the '#' header (empty or truncated .ang file)"
        )
    try:
        data = np.loadtxt(body, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(
            f"{path}: data rows are not a regular table of numbers ({err}). The file is truncated "
            "or garbled; re-export it from OIM."
        ) from None
    if data.shape[1] < 8:
        raise ValueError(
            f"{path}: {data.shape[1]} data columns; a .ang file needs at least 8 "
            "(phi1 Phi phi2 x y IQ CI phase)."
        )
    if not np.isfinite(data).all():
        row = int(np.argwhere(~np.isfinite(data))[0, 0])
        raise ValueError(f"{path}: non-finite values (NaN/inf), first in data row {row + 1}")

    grid = (header.get("GRID") or "SqrGrid").split()[0]
    if grid not in ("SqrGrid", "HexGrid"):
        raise ValueError(f"{path}: unknown GRID {grid!r}; expected SqrGrid or HexGrid")
    nrows = _header_number(header, "NROWS", path)
    odd = _header_number(header, "NCOLS_ODD", path)
    even = _header_number(header, "NCOLS_EVEN", path)
    if nrows is not None and odd is not None:
        n_even = even if (grid == "HexGrid" and even is not None) else odd
        expected = math.ceil(nrows / 2) * odd + (int(nrows) // 2) * n_even
        if data.shape[0] != expected:
            raise ValueError(
                f"{path}: {data.shape[0]} data rows but the header (NROWS={int(nrows)}, "
                f"NCOLS_ODD={int(odd)}) implies {int(expected)}; the file is truncated or garbled."
            )

    euler, xy, ci, phase_col = data[:, :3], data[:, 3:5], data[:, 6], data[:, 7].astype(int)
    # OIM writes 4 pi for every angle of a pixel it could not index (exactly that value: a file in
    # degrees must not pass as "not indexed").
    not_indexed = (np.abs(euler - 4 * math.pi) < _ANGLE_SLACK).all(axis=1)
    _check_euler_range(euler[~not_indexed], path)
    valid = ~not_indexed & (ci >= min_ci)
    ids, counts = np.unique(phase_col[~not_indexed], return_counts=True)
    present = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    accepted = select_phases(_ang_phases(phases, path), present, phase, path)
    if accepted is not None:
        valid &= np.isin(phase_col, list(accepted))
    q = _quaternions(euler, ~not_indexed)

    xstep = _header_number(header, "XSTEP", path) or _min_step(xy[:, 0])
    ystep = _header_number(header, "YSTEP", path) or _min_step(xy[:, 1])
    if grid == "SqrGrid":
        order, (h, w) = _square_grid_order(xy, xstep, ystep, path)
        step = [ystep, xstep]
    else:
        order, (h, w) = _hex_to_square(xy, xstep)
        step = [xstep, xstep]
    q, valid = q[order].reshape(h, w, 4), valid[order].reshape(h, w)
    grain_ids = segment_grains(q, valid, tolerance_deg)
    attrs: dict[str, Any] = {
        "source": str(path),
        "reader": "ang",
        "step_size": step,
        "grid": grid,
        "grain_ids": f"segmented: flood fill over 4-neighbours, tolerance {tolerance_deg} deg",
        "min_ci": min_ci,
        "phases": {str(k): v for k, v in phases.items()},
    }
    if grid == "HexGrid":
        attrs["resampled"] = "HexGrid -> square grid of step XSTEP by nearest neighbour"
    return Volume(grain_ids[None], q[None], valid[None], attrs)


def _min_step(coord: np.ndarray) -> float:
    d = np.diff(np.unique(coord))
    d = d[d > 1e-9]
    return float(d.min()) if d.size else 1.0


def _square_grid_order(
    xy: np.ndarray, xstep: float, ystep: float, path: Path
) -> tuple[np.ndarray, tuple[int, int]]:
    """Permutation of the data rows into row-major (H, W) order, checking a complete square grid."""
    fx = (xy[:, 0] - xy[:, 0].min()) / xstep
    fy = (xy[:, 1] - xy[:, 1].min()) / ystep
    col, row = np.rint(fx).astype(np.int64), np.rint(fy).astype(np.int64)
    h, w = int(row.max()) + 1, int(col.max()) + 1
    off_grid = max(np.abs(fx - col).max(), np.abs(fy - row).max()) > 0.1
    flat = row * w + col
    if off_grid or xy.shape[0] != h * w or np.unique(flat).size != h * w:
        raise ValueError(
            f"{path}: the x/y columns do not form a complete {h} x {w} square grid with steps "
            f"({ystep}, {xstep}); the file is truncated or garbled."
        )
    order = np.empty(h * w, np.int64)
    order[flat] = np.arange(h * w)
    return order, (h, w)


def _hex_to_square(xy: np.ndarray, step: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Nearest hexagonal-grid point of every node of a square grid with the same x step."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    w = int(np.floor((hi[0] - lo[0]) / step + 1e-6)) + 1
    h = int(np.floor((hi[1] - lo[1]) / step + 1e-6)) + 1
    gy, gx = np.meshgrid(lo[1] + step * np.arange(h), lo[0] + step * np.arange(w), indexing="ij")
    _, nearest = cKDTree(xy).query(np.stack([gx.ravel(), gy.ravel()], axis=1))
    return nearest, (h, w)


# --- Oxford .ctf ---------------------------------------------------------------------------------


def _read_ctf(
    path: Path, *, thresholds: dict[str, float], tolerance_deg: float, phase: int | None
) -> Volume:
    d = parse_ctf(path)
    indexed = d.phase > 0
    if "Error" in d.columns:
        indexed &= d.columns["Error"] == 0
    valid = indexed.copy()
    if "MAD" in d.columns:
        valid &= d.columns["MAD"] <= thresholds["max_mad"]
    if "BC" in d.columns:
        valid &= d.columns["BC"] >= thresholds["min_bc"]
    ids, counts = np.unique(d.phase[indexed], return_counts=True)
    present = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    accepted = select_phases(d.phases, present, phase, path)
    if accepted is not None:
        valid &= np.isin(d.phase, list(accepted))
    q = _quaternions(d.euler, indexed)
    ystep, xstep = d.step or (_min_step(d.xy[:, 1]), _min_step(d.xy[:, 0]))
    order, (h, w) = _square_grid_order(d.xy, xstep, ystep, path)
    if d.cells is not None and (h, w) != d.cells:
        raise ValueError(
            f"{path}: the X/Y columns span {h} x {w} pixels but the header says YCells = "
            f"{d.cells[0]}, XCells = {d.cells[1]}; the file is garbled."
        )
    q, valid = q[order].reshape(h, w, 4), valid[order].reshape(h, w)
    grain_ids = segment_grains(q, valid, tolerance_deg)
    attrs: dict[str, Any] = {
        "source": str(path),
        "reader": "ctf",
        "step_size": [ystep, xstep],
        "grain_ids": f"segmented: flood fill over 4-neighbours, tolerance {tolerance_deg} deg",
        "thresholds": dict(thresholds),
        "phases": {str(k): p.describe() for k, p in d.phases.items()},
    }
    return Volume(grain_ids[None], q[None], valid[None], attrs)


# --- pymicro HDF5 --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pymicro_phases(f: h5py.File) -> dict[int, Phase]:
    """``PhaseData/phase_*`` groups as phases (name and symmetry; lattice not read: pickled)."""
    out = {}
    for key, group in f.get("PhaseData", {}).items():
        if not key.startswith("phase_"):
            continue
        symmetry = _text(group.attrs.get("symmetry", b"")).strip().lower()
        k = int(group.attrs.get("phase_id", len(out) + 1))
        out[k] = Phase(
            id=k,
            name=_text(group.attrs.get("name", b"")).strip(),
            hexagonal=(symmetry == "hexagonal") if symmetry else None,
            symmetry=f"symmetry {symmetry}" if symmetry else "",
        )
    return out


def _read_pymicro_h5(path: Path, *, min_ci: float, tolerance_deg: float) -> Volume:
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        if "CellData/euler" not in f:
            raise ValueError(
                f"{path}: no dataset CellData/euler (top-level groups: {sorted(f.keys())}). "
                "Expected a pymicro 2-D map with CellData/euler (H, W, 3) Bunge radians and "
                "CellData/grain_map (H, W)."
            )
        cell = f["CellData"]
        euler = np.asarray(cell["euler"][...], dtype=np.float64)
        if euler.ndim != 3 or euler.shape[-1] != 3:
            raise ValueError(
                f"{path}: CellData/euler has shape {euler.shape}; expected a 2-D map (H, W, 3)"
            )
        hw = euler.shape[:2]
        fields = {}
        for name in ("grain_map", "mask", "ci"):
            if name in cell:
                fields[name] = np.asarray(cell[name][...])
                if fields[name].shape != hw:
                    raise ValueError(
                        f"{path}: CellData/{name} has shape {fields[name].shape}, "
                        f"CellData/euler is {hw}"
                    )
        spacing = cell.attrs.get("spacing")
        select_phases(_pymicro_phases(f), None, None, path)
    finite = np.isfinite(euler).all(axis=-1)
    valid = finite.copy()
    if "mask" in fields:
        valid &= fields["mask"] > 0
    if "grain_map" in fields:
        grain_ids = np.where(fields["grain_map"] > 0, fields["grain_map"], 0)
        if grain_ids.max(initial=0) > np.iinfo(np.int32).max:
            raise ValueError(f"{path}: grain ids exceed the int32 range")
        if not finite[grain_ids > 0].all():
            raise ValueError(
                f"{path}: CellData/euler has NaN/inf at {int((~finite & (grain_ids > 0)).sum())} "
                "pixels assigned to grains; fix the file (or zero their grain_map)."
            )
        valid &= grain_ids > 0
        grain_ids = np.where(valid, grain_ids, 0)
        origin = "file: CellData/grain_map"
    else:
        if "ci" in fields:
            valid &= fields["ci"] >= min_ci
        grain_ids = None
        origin = f"segmented: flood fill over 4-neighbours, tolerance {tolerance_deg} deg"
    _check_euler_range(euler[finite], path)
    q = _quaternions(euler, finite)
    if grain_ids is None:
        grain_ids = segment_grains(q, valid, tolerance_deg)
    # pymicro orders image attributes (x, y); step_size is [dy, dx] like the arrays.
    step = [float(spacing[1]), float(spacing[0])] if spacing is not None else [1.0, 1.0]
    attrs = {
        "source": str(path),
        "reader": "pymicro_h5",
        "step_size": step,
        "grain_ids": origin,
    }
    return Volume(grain_ids[None].astype(np.int32), q[None], valid[None], attrs)
