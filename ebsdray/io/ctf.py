"""Parser of Oxford Instruments (HKL Channel 5 / AZtec) ``.ctf`` text maps.

Layout: a header of tab-separated ``Key<TAB>Value`` lines (``XCells``, ``YCells``, ``XStep``,
``YStep``, ...), a ``Phases<TAB>N`` line followed by N phase lines
``a;b;c<TAB>alpha;beta;gamma<TAB>name<TAB>Laue group[<TAB>space group ...]``, then a column line
(``Phase X Y Bands Error Euler1 Euler2 Euler3 MAD BC BS``) and one row per pixel. Euler angles are
Bunge, in degrees; phase 0 (or a non-zero ``Error``) means not indexed; MAD (mean angular
deviation, degrees) is lower for better fits, BC (band contrast) higher. Oxford Laue groups 8 and
9 (6/m, 6/mmm) are the hexagonal ones.

This module only parses; :func:`ebsdray.io.ebsd_readers.read_ebsd_map` turns the result into a
:class:`~ebsdray.data.volume.Volume` with the same validity and grain rules as the other formats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebsdray.io.phases import Phase

HEXAGONAL_LAUE_GROUPS = {8, 9}  # Oxford numbering: 8 = 6/m, 9 = 6/mmm
REQUIRED_COLUMNS = ("Phase", "X", "Y", "Euler1", "Euler2", "Euler3")
_DEG_SLACK = 0.05  # degrees; exported angles are rounded


@dataclass
class CtfData:
    """The columns and header of a ``.ctf`` file, rows in file order.

    Attributes
    ----------
    euler : (N, 3) Bunge angles in radians.
    xy : (N, 2) pixel positions (x, y) in the file's length unit (microns).
    phase : (N,) int phase column (0 = not indexed).
    columns : every other numeric column by name (``Error``, ``MAD``, ``BC``, ``Bands``, ...).
    header : header key -> value text.
    phases : declared phases by id (1-based, in order).
    cells : (YCells, XCells) from the header, or None.
    step : (YStep, XStep) from the header, or None.
    """

    euler: np.ndarray
    xy: np.ndarray
    phase: np.ndarray
    columns: dict[str, np.ndarray]
    header: dict[str, str]
    phases: dict[int, Phase]
    cells: tuple[int, int] | None
    step: tuple[float, float] | None


def _phase_line(index: int, line: str, path: Path) -> Phase:
    fields = line.split("\t")
    try:
        a, _b, c = (float(v) for v in fields[0].split(";")[:3])
        laue = int(float(fields[3]))
        name = fields[2].strip()
    except (ValueError, IndexError):
        raise ValueError(
            f"{path}: phase line {index} {line!r} is not 'a;b;c<TAB>alpha;beta;gamma<TAB>name"
            "<TAB>Laue group'; the header is garbled."
        ) from None
    return Phase(
        id=index,
        name=name,
        hexagonal=laue in HEXAGONAL_LAUE_GROUPS,
        symmetry=f"Laue group {laue}",
        lattice=(a, c),
    )


def _header(lines: list[str], path: Path) -> tuple[dict[str, str], dict[int, Phase], int]:
    """Header fields, phases and the index of the column line."""
    if not lines or not lines[0].startswith("Channel Text File"):
        raise ValueError(
            f"{path}: does not start with 'Channel Text File'; not an Oxford .ctf map "
            "(or the file is empty)."
        )
    header: dict[str, str] = {}
    phases: dict[int, Phase] = {}
    i = 1
    while i < len(lines):
        key, _, value = lines[i].partition("\t")
        if key == "Phase" and value.startswith("X"):
            return header, phases, i
        if key == "Phases":
            try:
                n = int(value.split("\t")[0])
            except ValueError:
                raise ValueError(f"{path}: 'Phases' = {value!r} is not a count") from None
            for k in range(1, n + 1):
                if i + k >= len(lines):
                    raise ValueError(f"{path}: the file ends inside its phase list (truncated)")
                phases[k] = _phase_line(k, lines[i + k], path)
            i += n
        else:
            header.setdefault(key.strip(), value.strip())
        i += 1
    raise ValueError(
        f"{path}: no column line 'Phase<TAB>X<TAB>Y...' after the header; the file is truncated "
        "or not a .ctf map."
    )


def _number(header: dict[str, str], key: str, path: Path) -> float | None:
    if key not in header:
        return None
    try:
        return float(header[key].split("\t")[0])
    except ValueError:
        raise ValueError(f"{path}: header field {key} = {header[key]!r} is not a number") from None


def _table(lines: list[str], names: list[str], path: Path) -> np.ndarray:
    body = [ln for ln in lines if ln.strip()]
    if not body:
        raise ValueError(f"{path}: no data rows after the column line (empty or truncated .ctf)")
    try:
        data = np.loadtxt(body, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(
            f"{path}: data rows are not a regular table of numbers ({err}). The file is "
            "truncated or garbled; re-export it."
        ) from None
    if data.shape[1] != len(names):
        raise ValueError(
            f"{path}: {data.shape[1]} data columns but the column line names {len(names)}"
        )
    if not np.isfinite(data).all():
        row = int(np.argwhere(~np.isfinite(data))[0, 0])
        raise ValueError(f"{path}: non-finite values (NaN/inf), first in data row {row + 1}")
    return data


def _check_degrees(euler_deg: np.ndarray, indexed: np.ndarray, path: Path) -> None:
    e = euler_deg[indexed]
    if e.size == 0:
        return
    bad = (np.abs(e[:, [0, 2]]) > 360 + _DEG_SLACK).any(axis=1)
    bad |= (e[:, 1] < -_DEG_SLACK) | (e[:, 1] > 180 + _DEG_SLACK)
    if bad.any():
        raise ValueError(
            f"{path}: {int(bad.sum())} indexed pixels have Euler angles outside the degree ranges "
            f"(|Euler1|, |Euler3| <= 360, 0 <= Euler2 <= 180; e.g. {e[bad][0].round(3).tolist()}). "
            ".ctf files store Bunge angles in degrees; the file is garbled or not a .ctf export."
        )


def parse_ctf(path: Path) -> CtfData:
    """Parse a ``.ctf`` file (see the module docstring), checking its table and angle ranges."""
    lines = path.read_text(encoding="latin-1").splitlines()
    header, phases, at = _header(lines, path)
    names = lines[at].split()
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: the column line {names} lacks {missing}")
    data = _table(lines[at + 1 :], names, path)
    col = {name: data[:, i] for i, name in enumerate(names)}
    phase = col["Phase"].astype(np.int64)
    indexed = phase > 0
    euler_deg = np.stack([col["Euler1"], col["Euler2"], col["Euler3"]], axis=1)
    _check_degrees(euler_deg, indexed, path)
    nx, ny = _number(header, "XCells", path), _number(header, "YCells", path)
    cells = (int(ny), int(nx)) if nx is not None and ny is not None else None
    if cells is not None and data.shape[0] != cells[0] * cells[1]:
        raise ValueError(
            f"{path}: {data.shape[0]} data rows but the header (XCells={cells[1]}, "
            f"YCells={cells[0]}) implies {cells[0] * cells[1]}; the file is truncated or garbled."
        )
    dx, dy = _number(header, "XStep", path), _number(header, "YStep", path)
    return CtfData(
        euler=np.deg2rad(euler_deg),
        xy=np.stack([col["X"], col["Y"]], axis=1),
        phase=phase,
        columns={k: v for k, v in col.items() if k not in ("Phase", "X", "Y", *REQUIRED_COLUMNS)},
        header=header,
        phases=phases,
        cells=cells,
        step=(dy, dx) if dx is not None and dy is not None and math.isfinite(dx * dy) else None,
    )
