"""The project's zarr volume layout: ground truth (and measured data), one chunk per section.

Layout (zarr format 3, a directory store; ``D`` sections of ``H x W`` pixels)::

    volume.zarr/            group; attributes below; metadata consolidated at the end
      grain_ids             (D, H, W)        int32    chunks (1, H, W)        dims (z, y, x)
      quaternions           (D, H, W, 4)     float32  chunks (1, H, W, 4)     dims (z, y, x, q)
      valid                 (D, H, W)        bool     chunks (1, H, W)        dims (z, y, x)
      grain_quaternions     (G + 1, 4)       float64  one chunk               optional
      measured/             what a microscope measured (ingested real data only; attribute
                            stage_angles_deg (R,))
        pl_intensities      (D, H, W, R)     float32  chunks (1, H, W, R)     dims (z, y, x, r)
        ebsd_observed       (D, H, W)        bool     chunks (1, H, W)        dims (z, y, x)

``grain_ids`` 0 = unindexed; ``quaternions`` scalar first, q0 >= 0; ``grain_quaternions`` row g is
the nominal orientation of grain id g (row 0 unused). ``measured/`` (see
:class:`~ebsdray.data.volume.Measured`) holds a real section's PL stack and the pixels where EBSD was
measured on its native grid; the ground-truth arrays then hold that EBSD upsampled onto the grid.
Group attributes: ``format = "ebsdray-volume"``, ``format_version`` (1; 2 for stores with
``measured/``, so that an ebsdray without measured support refuses them rather than simulating
their observation from the measured EBSD), ``ebsdray_version``, then the volume's own ``attrs``
(generation config, source file, step size, ...) and finally the ``attrs`` given to
:func:`write_volume` (e.g. the channel codec's dict), later keys winning. Stores written by earlier
ebsdray versions may also hold a ``channels/`` group of derived model channels; readers ignore it
(the channels are derived from ``quaternions`` with the codec in the attributes), so the format
version did not change.

Why this shape: every per-section array has exactly one chunk per section, so a section is one
read per array, and parallel writers (one per section) never share a chunk (sharded chunks shared
by concurrent writers lost a section in our measurements). :func:`write_volume` writes one section
at a time, so memory stays bounded by one section, into a hidden sibling directory that is renamed
into place only when complete: an interrupted write never leaves a half-written store under the
target name, and an existing store is never damaged by a failed overwrite. Consolidated metadata
(outside the zarr 3 spec, but read by zarr-python) is written once at the end.

Orientation conventions: :mod:`ebsdray.conventions`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ebsdray.data.volume import Measured, Volume

FORMAT_NAME = "ebsdray-volume"
FORMAT_VERSION = 1  # stores without measured arrays: unchanged since version 1
MEASURED_FORMAT_VERSION = 2  # stores with measured/ (the newest version this ebsdray reads)
_RESERVED = ("format", "format_version")
_GT_ARRAYS = ("grain_ids", "quaternions", "valid")

PathLike = str | os.PathLike[str]


def _resolve(path: PathLike) -> Path:
    return Path(path).expanduser().resolve()


def ebsdray_version() -> str:
    """The installed ebsdray version ("unknown" when run from a bare source tree)."""
    try:
        return importlib.metadata.version("ebsdray")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def _jsonable(obj: Any, where: str = "attrs") -> Any:
    """JSON-native copy of ``obj`` (numpy scalars/arrays, tuples, paths, dataclasses converted)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    raise TypeError(
        f"{where} = {obj!r} ({type(obj).__name__}) cannot be stored as a JSON attribute"
    )


def _is_volume_store(path: Path) -> bool:
    try:
        fmt = zarr.open_group(path, mode="r").attrs.get("format")
    except Exception:
        return False
    return fmt == FORMAT_NAME


def _check_target(path: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an empty directory, or (with overwrite) an ebsdray store."""
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{path} already exists and is not empty; refusing to overwrite it. "
            "Choose another path or pass overwrite=True to replace an ebsdray volume store."
        )
    if not _is_volume_store(path):
        raise ValueError(
            f"{path} exists and is not an ebsdray volume store; refusing to replace it even with "
            "overwrite=True (it may hold other data). Remove it yourself or choose another path."
        )


def _measured_arrays(root: zarr.Group, volume: Volume) -> dict[str, zarr.Array]:
    """Empty ``measured/`` arrays (one chunk per section) for a volume of real data, else none."""
    m = volume.measured
    if m is None:
        return {}
    d, h, w = volume.shape
    r = m.stage_angles_deg.size
    group = root.create_group("measured")
    group.attrs["stage_angles_deg"] = m.stage_angles_deg.tolist()
    pl = group.create_array(
        "pl_intensities",
        shape=(d, h, w, r),
        dtype="float32",
        chunks=(1, h, w, r),
        fill_value=0.0,
        dimension_names=["z", "y", "x", "r"],
    )
    observed = group.create_array(
        "ebsd_observed",
        shape=(d, h, w),
        dtype="bool",
        chunks=(1, h, w),
        fill_value=False,
        dimension_names=["z", "y", "x"],
    )
    return {"measured/pl_intensities": pl, "measured/ebsd_observed": observed}


def _write_store(path: Path, volume: Volume, attrs: dict[str, Any]) -> None:
    d, h, w = volume.shape
    root = zarr.open_group(path, mode="w-")
    root.attrs.update(attrs)
    spec = {
        "grain_ids": ((d, h, w), "int32", (1, h, w), 0, ["z", "y", "x"]),
        "quaternions": ((d, h, w, 4), "float32", (1, h, w, 4), 0.0, ["z", "y", "x", "q"]),
        "valid": ((d, h, w), "bool", (1, h, w), False, ["z", "y", "x"]),
    }
    arrays = {
        name: root.create_array(
            name, shape=s, dtype=dt, chunks=c, fill_value=f, dimension_names=dims
        )
        for name, (s, dt, c, f, dims) in spec.items()
    }
    gq = getattr(volume, "grain_quaternions", None)
    if gq is not None:
        # A small per-grain table, written once by this writer: one chunk, exact float64.
        root.create_array(
            "grain_quaternions",
            data=np.asarray(gq, dtype=np.float64),
            chunks=np.shape(gq),
            dimension_names=["grain", "q"],
        )
    arrays |= _measured_arrays(root, volume)
    sources = {
        "grain_ids": volume.grain_ids,
        "quaternions": volume.quaternions,
        "valid": volume.valid,
    }
    if volume.measured is not None:
        sources["measured/pl_intensities"] = volume.measured.pl_intensities
        sources["measured/ebsd_observed"] = volume.measured.ebsd_observed
    # One section at a time: the float32 copies never exceed one section.
    for i in range(d):
        for key, arr in arrays.items():
            arr[i] = np.asarray(sources[key][i], dtype=arr.dtype)
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is outside the v3 spec; zarr-python reads it.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(path)


def write_volume(
    volume: Volume,
    path: PathLike,
    *,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a volume as an ebsdray zarr store.

    Parameters
    ----------
    volume : Volume
        ``grain_ids`` (D, H, W), ``quaternions`` (D, H, W, 4) (stored float32), ``valid`` (D, H, W),
        ``attrs`` (JSON-serializable; numpy values, tuples and paths are converted) and, if set,
        ``grain_quaternions`` (G + 1, 4) (stored float64) and, for real data, ``measured``
        (stored under ``measured/``).
    path : str or Path
        Target directory (conventionally ``*.zarr``); parents are created.
    attrs : dict, optional
        Extra group attributes merged over ``volume.attrs`` (e.g. the channel codec's dict).
    overwrite : bool
        Replace an existing ebsdray volume store at ``path``. Anything else that exists and is not
        an empty directory is never replaced.

    Returns
    -------
    Path
        The absolute path of the store.

    Raises
    ------
    FileExistsError
        ``path`` exists, is not empty and ``overwrite`` is False.
    ValueError
        Shapes disagree, or ``overwrite=True`` but ``path`` is not an ebsdray store.
    """
    path = _resolve(path)
    _check_target(path, overwrite)
    merged = {**_jsonable(volume.attrs, "volume.attrs"), **_jsonable(attrs or {}, "attrs")}
    version = FORMAT_VERSION if volume.measured is None else MEASURED_FORMAT_VERSION
    merged.update(format=FORMAT_NAME, format_version=version, ebsdray_version=ebsdray_version())
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = path.parent / f".{path.name}.partial-{tag}"
    try:
        _write_store(tmp, volume, merged)
        if path.exists():
            # Move the old store aside first, so a failure here can put it back intact.
            old = path.parent / f".{path.name}.old-{tag}"
            path.rename(old)
            try:
                tmp.rename(path)
            except BaseException:
                old.rename(path)
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def _open_root(path: PathLike) -> tuple[Path, zarr.Group]:
    path = _resolve(path)
    if not path.exists():
        raise FileNotFoundError(f"no ebsdray volume store at {path} (path does not exist)")
    try:
        root = zarr.open_group(path, mode="r")
    except Exception as err:
        raise ValueError(
            f"{path} is not an ebsdray volume store (not a zarr group: {err}). "
            "Write one with ebsdray.io.volume_store.write_volume."
        ) from err
    fmt, version = root.attrs.get("format"), root.attrs.get("format_version")
    if fmt != FORMAT_NAME or not isinstance(version, int):
        raise ValueError(
            f"{path} is a zarr group but not an ebsdray volume store (attribute format={fmt!r}, "
            f"expected {FORMAT_NAME!r})."
        )
    if version > MEASURED_FORMAT_VERSION:
        raise ValueError(
            f"{path} uses ebsdray volume format version {version}, newer than this ebsdray reads "
            f"({MEASURED_FORMAT_VERSION}); upgrade ebsdray."
        )
    missing = [n for n in _GT_ARRAYS if n not in root]
    if missing:
        raise ValueError(f"{path} is an incomplete ebsdray volume store: missing arrays {missing}")
    return path, root


def volume_attrs(path: PathLike) -> dict[str, Any]:
    """The store's attributes minus the format keys (what :func:`read_volume` puts in ``attrs``)."""
    _, root = _open_root(path)
    return {k: v for k, v in root.attrs.asdict().items() if k not in _RESERVED}


def read_volume(path: PathLike) -> Volume:
    """Read a whole store into memory.

    Returns
    -------
    Volume
        ``grain_ids`` (D, H, W) int32, ``quaternions`` (D, H, W, 4) float32, ``valid`` (D, H, W)
        bool, ``attrs`` (see :func:`volume_attrs`), ``grain_quaternions`` (G + 1, 4) float64
        and ``measured`` when the store has them.
    """
    return open_volume(path).read()


class VolumeStore:
    """Lazy, read-only view of an ebsdray volume store that reads one section at a time.

    Holds only the path when pickled (safe to hand to Ray workers and DataLoader processes); the
    zarr group is reopened on first use in each process.
    """

    def __init__(self, path: PathLike) -> None:
        self.path, root = _open_root(path)
        self._root: zarr.Group | None = root
        self.shape: tuple[int, int, int] = tuple(root["grain_ids"].shape)  # type: ignore[assignment]
        self.attrs: dict[str, Any] = {
            k: v for k, v in root.attrs.asdict().items() if k not in _RESERVED
        }
        self.format_version: int = root.attrs["format_version"]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_root": None}

    @property
    def root(self) -> zarr.Group:
        if self._root is None:
            self._root = zarr.open_group(self.path, mode="r")
        return self._root

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"VolumeStore({str(self.path)!r}, shape={self.shape})"

    def _index(self, i: int) -> int:
        d = self.shape[0]
        if not -d <= i < d:
            raise IndexError(f"section {i} out of range for a volume of {d} sections ({self.path})")
        return i % d

    def _grain_table(self) -> dict[str, np.ndarray]:
        if "grain_quaternions" not in self.root:
            return {}
        return {"grain_quaternions": self.root["grain_quaternions"][:]}

    @property
    def has_measured(self) -> bool:
        """Whether the store holds measured data (``measured/``: an ingested real volume)."""
        return "measured" in self.root

    def _measured(self, sections: int | slice) -> dict[str, Measured]:
        if not self.has_measured:
            return {}
        group = self.root["measured"]
        pl, observed = group["pl_intensities"][sections], group["ebsd_observed"][sections]
        if isinstance(sections, int):
            pl, observed = pl[None], observed[None]
        angles = np.asarray(group.attrs["stage_angles_deg"], dtype=np.float64)
        return {"measured": Measured(pl, angles, observed)}

    def section(self, i: int) -> Volume:
        """Section ``i`` as a Volume with D = 1 (arrays (1, H, W[, 4]); the whole grain table)."""
        i = self._index(i)
        return Volume(
            self.root["grain_ids"][i][None],
            self.root["quaternions"][i][None],
            self.root["valid"][i][None],
            dict(self.attrs),
            **self._grain_table(),
            **self._measured(i),
        )

    def read(self) -> Volume:
        """The whole volume in memory."""
        r = self.root
        return Volume(
            r["grain_ids"][:],
            r["quaternions"][:],
            r["valid"][:],
            dict(self.attrs),
            **self._grain_table(),
            **self._measured(slice(None)),
        )


def open_volume(path: PathLike) -> VolumeStore:
    """Open a store lazily (checks the format, reads nothing else); see :class:`VolumeStore`."""
    return VolumeStore(path)
