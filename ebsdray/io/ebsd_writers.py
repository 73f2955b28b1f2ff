"""Writers of EBSD maps in the vendors' text formats: TSL/EDAX ``.ang`` and Oxford ``.ctf``.

They exist so that a map (e.g. the shipped real one, :func:`ebsdray.io.example_ebsd_map_path`) can
be handed to other EBSD software and so that the readers are tested against files whose content is
known: ``read_ebsd_map(write_ang(vol, p))`` gives back ``vol`` (validity, orientations to the
written precision, grains up to renumbering). In the package rather than a tools script because
exporting a reconstruction to OIM or AZtec is a user's need too.

Validity is written the way each vendor marks it: ``.ang`` pixels that are not valid get
CI = -1 (their orientation is kept when finite, 4 pi when not: OIM's "not indexed"); ``.ctf``
pixels that are not valid get phase 0 and zero angles. Positions are ``x = column * dx``,
``y = row * dy`` from the volume's ``attrs["step_size"]`` ([dy, dx]) unless ``step`` is given.

Example::

    vol = read_ebsd_map(example_ebsd_map_path())
    write_ang(vol, "ti.ang")
    write_ctf(vol, "ti.ctf")
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsdray.data.rotations import quaternion_to_euler
from ebsdray.data.volume import Volume
from ebsdray.io.phases import ALPHA_TI_A, ALPHA_TI_C

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PhaseSpec:
    """The phase written into a header (alpha-Ti by default; tests write other materials).

    Attributes
    ----------
    name : material name.
    a, c : lattice parameters in Angstrom.
    hexagonal : written as OIM Symmetry 62 / Oxford Laue group 9 when True, else cubic
        (Symmetry 43 / Laue group 11).
    """

    name: str = "Titanium (Alpha)"
    a: float = ALPHA_TI_A
    c: float = ALPHA_TI_C
    hexagonal: bool = True


ALPHA_TI = PhaseSpec()


def _section(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) Bunge radians (NaN where the orientation is not finite) and (H, W) validity."""
    if len(volume) != 1:
        raise ValueError(f"write one map (a volume with D = 1); got {volume.shape[0]} sections")
    q = np.asarray(volume.quaternions[0], dtype=np.float64)
    finite = np.isfinite(q).all(axis=-1) & (np.linalg.norm(q, axis=-1) > 0.5)
    euler = np.full((*q.shape[:-1], 3), np.nan)
    euler[finite] = quaternion_to_euler(q[finite])
    return euler, np.asarray(volume.valid[0], dtype=bool) & finite


def _step(volume: Volume, step: tuple[float, float] | None) -> tuple[float, float]:
    dy, dx = step if step is not None else volume.attrs.get("step_size", (1.0, 1.0))
    dy, dx = float(dy), float(dx)
    if not (math.isfinite(dy) and math.isfinite(dx) and dy > 0 and dx > 0):
        raise ValueError(f"step must be two positive lengths (dy, dx); got {(dy, dx)}")
    return dy, dx


def _hex_points(h: int, w: int, dy: float, dx: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Hexagonal grid of x step dx inside the square map: (N,) x, (N,) y and the row count."""
    ystep = dx * math.sqrt(3) / 2
    nrows = math.floor((h - 1) * dy / ystep + 1e-9) + 1
    xs, ys = [], []
    for r in range(nrows):
        shift, n = (0.0, w) if r % 2 == 0 else (dx / 2, w - 1)
        xs.append(shift + dx * np.arange(n))
        ys.append(np.full(n, r * ystep))
    return np.concatenate(xs), np.concatenate(ys), nrows


def _ang_header(phase: PhaseSpec, grid: str, xstep: float, ystep: float, shape) -> str:
    nrows, odd, even = shape
    symmetry = 62 if phase.hexagonal else 43
    gamma = 120.0 if phase.hexagonal else 90.0
    b = phase.a
    lines = [
        "# TEM_PIXperUM          1.000000",
        "# x-star                0.500000",
        "# y-star                0.500000",
        "# z-star                0.700000",
        "# WorkingDistance       15.000000",
        "#",
        "# Phase 1",
        f"# MaterialName  \t{phase.name}",
        "# Formula     \t",
        "# Info \t\tebsdray",
        f"# Symmetry              {symmetry}",
        f"# LatticeConstants      {phase.a:.3f} {b:.3f} {phase.c:.3f}  90.000  90.000 {gamma:.3f}",
        "# NumberFamilies        0",
        "#",
        f"# GRID: {grid}",
        f"# XSTEP: {xstep:.6f}",
        f"# YSTEP: {ystep:.6f}",
        f"# NCOLS_ODD: {odd}",
        f"# NCOLS_EVEN: {even}",
        f"# NROWS: {nrows}",
        "#",
        "# OPERATOR: \tebsdray",
        "#",
        "# SAMPLEID: \t",
        "#",
        "# SCANID: \t",
        "#",
    ]
    return "\n".join(lines) + "\n"


def write_ang(
    volume: Volume,
    path: PathLike,
    *,
    ci: np.ndarray | None = None,
    grid: str = "SqrGrid",
    phase: PhaseSpec = ALPHA_TI,
    step: tuple[float, float] | None = None,
) -> Path:
    """Write a map as a TSL/EDAX ``.ang`` file.

    Parameters
    ----------
    volume : Volume with D = 1 (``quaternions`` (1, H, W, 4), ``valid`` (1, H, W)).
    path : file to write.
    ci : (H, W) confidence index per pixel; default 1 where valid, -1 elsewhere.
    grid : "SqrGrid" (every pixel) or "HexGrid" (the map sampled by nearest neighbour at the
        points of a hexagonal grid with x step dx: lossy, for testing hexagonal readers).
    phase : header phase (alpha-Ti by default).
    step : (dy, dx) pixel size; default ``volume.attrs["step_size"]``, else 1.

    Returns
    -------
    The path written.
    """
    euler, valid = _section(volume)
    h, w = valid.shape
    dy, dx = _step(volume, step)
    ci = np.where(valid, 1.0, -1.0) if ci is None else np.asarray(ci, dtype=np.float64)
    if ci.shape != (h, w):
        raise ValueError(f"ci must be (H, W) = ({h}, {w}); got {ci.shape}")
    # OIM writes 4 pi for every angle of a pixel without an orientation.
    euler = np.where(np.isnan(euler), 4 * math.pi, euler)
    if grid == "SqrGrid":
        rows, cols = np.mgrid[0:h, 0:w].reshape(2, -1)
        x, y = cols * dx, rows * dy
        header = _ang_header(phase, grid, dx, dy, (h, w, w))
    elif grid == "HexGrid":
        x, y, nrows = _hex_points(h, w, dy, dx)
        rows = np.clip(np.floor(y / dy + 0.5).astype(int), 0, h - 1)
        cols = np.clip(np.floor(x / dx + 0.5).astype(int), 0, w - 1)
        header = _ang_header(phase, grid, dx, dx * math.sqrt(3) / 2, (nrows, w, w - 1))
    else:
        raise ValueError(f"grid must be 'SqrGrid' or 'HexGrid'; got {grid!r}")
    e, c = euler[rows, cols], ci[rows, cols]
    n = x.size
    # phi1 Phi phi2 x y IQ CI phase SEM-signal fit: the ten columns of an OIM export
    table = np.column_stack([e, x, y, np.full(n, 1000.0), c, np.ones(n), np.zeros(n), np.zeros(n)])
    path = Path(path)
    with path.open("w", encoding="latin-1") as f:
        f.write(header)
        np.savetxt(f, table, fmt="%.5f %.5f %.5f %.5f %.5f %.1f %.3f %d %d %.3f")
    return path


def write_ctf(
    volume: Volume,
    path: PathLike,
    *,
    mad: np.ndarray | None = None,
    bc: np.ndarray | None = None,
    phase: PhaseSpec = ALPHA_TI,
    step: tuple[float, float] | None = None,
) -> Path:
    """Write a map as an Oxford ``.ctf`` file (Euler angles in degrees).

    Parameters
    ----------
    volume : Volume with D = 1.
    path : file to write.
    mad : (H, W) mean angular deviation (degrees); default 0.5 where valid.
    bc : (H, W) band contrast; default 150 where valid.
    phase : header phase (alpha-Ti by default).
    step : (dy, dx) pixel size; default ``volume.attrs["step_size"]``, else 1.

    Returns
    -------
    The path written.
    """
    euler, valid = _section(volume)
    h, w = valid.shape
    dy, dx = _step(volume, step)
    mad = np.where(valid, 0.5, 0.0) if mad is None else np.asarray(mad, dtype=np.float64)
    bc = np.where(valid, 150.0, 0.0) if bc is None else np.asarray(bc, dtype=np.float64)
    for name, arr in (("mad", mad), ("bc", bc)):
        if arr.shape != (h, w):
            raise ValueError(f"{name} must be (H, W) = ({h}, {w}); got {arr.shape}")
    laue, space, gamma = (9, 194, 120) if phase.hexagonal else (11, 225, 90)
    header = [
        "Channel Text File",
        "Prj\tebsdray",
        "Author\tebsdray",
        "JobMode\tGrid",
        f"XCells\t{w}",
        f"YCells\t{h}",
        f"XStep\t{dx:.6f}",
        f"YStep\t{dy:.6f}",
        "AcqE1\t0",
        "AcqE2\t0",
        "AcqE3\t0",
        "Euler angles refer to Sample Coordinate system (CS0)!\tMag\t100\tCoverage\t100\tDevice\t0"
        "\tKV\t20\tAngle\t70\tAxis\t0",
        "Phases\t1",
        f"{phase.a:.3f};{phase.a:.3f};{phase.c:.3f}\t90.000;90.000;{gamma:.3f}\t{phase.name}"
        f"\t{laue}\t{space}",
        "Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS",
    ]
    rows, cols = np.mgrid[0:h, 0:w].reshape(2, -1)
    ok = valid[rows, cols]
    deg = np.where(ok[:, None], np.rad2deg(np.nan_to_num(euler[rows, cols])), 0.0)
    table = np.column_stack(
        [
            ok.astype(int),
            cols * dx,
            rows * dy,
            np.where(ok, 8, 0),
            np.where(ok, 0, 3),  # Oxford error 3: no solution
            deg,
            mad[rows, cols],
            bc[rows, cols],
            np.where(ok, 180, 0),
        ]
    )
    path = Path(path)
    with path.open("w", encoding="latin-1") as f:
        f.write("\n".join(header) + "\n")
        fmt = "%d\t%.4f\t%.4f\t%d\t%d\t%.4f\t%.4f\t%.4f\t%.4f\t%d\t%d"
        np.savetxt(f, table, fmt=fmt)
    return path
