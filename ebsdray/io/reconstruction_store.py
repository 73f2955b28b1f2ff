"""The output layout of a volume reconstruction: a zarr store plus per-section files, resumable.

Layout of ``output_dir`` (``D`` sections of ``H x W`` pixels, ``C`` model channels)::

    output_dir/
      reconstruction.zarr/         group; attributes: format, job identity, resolved config
        boundary                   (D, H, W)          bool     chunks (1, H, W)     PL models
        boundary_confidence        (D, H, W)          float32  chunks (1, H, W)     PL models
        ebsd_quaternions           (D, H, W, 4)       float32  chunks (1, H, W, 4)  EBSD models
        pl_denoised                (D, C_PL, H, W)    float32  chunks (1, C_PL, H, W)
        uncertainty/<name>         (D, H, W)          float32  boundary_variance, pl_std,
                                                               ebsd_spread_deg
        samples                    (D, K, C, H, W)    float32  optional raw samples, NaN-padded
        sample_count               (D,)               int32    samples drawn per section
        completed                  (D,)               bool     set last, per section
      sections/section_00012.json  sampler facts and metrics of section 12
      sections/section_00012.png   its figure

Every per-section array has one chunk per section, so aggregation tasks writing different
sections in parallel never share a chunk. A section counts as done only once its ``completed``
flag is written, after its arrays and files: a job interrupted mid-section redoes that section
and nothing else. The store remembers the identity of the job that made it (model, data,
observation, budget, seed); a different job is refused instead of mixing results.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ebsdray.conventions import ChannelLayout
from ebsdray.io.output_lock import LOCK_NAME, OutputLock

FORMAT_NAME = "ebsdray-reconstruction"
FORMAT_VERSION = 1
STORE_NAME = "reconstruction.zarr"


def _uncertainty_names(layout: ChannelLayout) -> tuple[str, ...]:
    """The ``uncertainty/<name>`` maps stored for a layout's modalities, PL ones first."""
    pl = ("boundary_variance", "pl_std") if layout.has_pl else ()
    return pl + (("ebsd_spread_deg",) if layout.has_ebsd else ())


def _normalized(obj: Any) -> Any:
    """JSON round trip: the form identities are stored and compared in."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out


def _consolidate(path: Path) -> None:
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is outside the v3 spec; zarr-python reads it.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(path)


class ReconstructionStore:
    """Per-section outputs of one reconstruction job in ``output_dir`` (see the module docstring).

    Open an existing one with ``ReconstructionStore(output_dir)``; make or resume one with
    :meth:`create`.
    """

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.output_dir = Path(output_dir).expanduser().resolve()
        self.path = self.output_dir / STORE_NAME
        if not self.path.exists():
            raise FileNotFoundError(f"no reconstruction in {self.output_dir} (no {STORE_NAME})")
        root = zarr.open_group(self.path, mode="r", use_consolidated=False)
        if root.attrs.get("format") != FORMAT_NAME:
            raise ValueError(f"{self.path} is not an ebsdray reconstruction store")
        if int(root.attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{self.path} was written by a newer ebsdray; upgrade ebsdray")
        self.attrs: dict[str, Any] = root.attrs.asdict()
        self.shape: tuple[int, int, int] = tuple(self.attrs["shape"])  # type: ignore[assignment]
        self.variant: str = self.attrs["variant"]
        self.layout = ChannelLayout(self.variant, int(self.attrs["pl_channels"]))

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        output_dir: str | os.PathLike[str],
        *,
        identity: dict[str, Any],
        shape: tuple[int, int, int],
        variant: str,
        pl_channels: int,
        max_samples: int,
        keep_samples: bool,
        attrs: dict[str, Any] | None = None,
    ) -> ReconstructionStore:
        """Make a new store, or reopen one made by the same job (to resume it).

        The returned store holds the directory's lock (:mod:`ebsdray.io.output_lock`) until
        :meth:`release` or the end of the process: one job writes a directory at a time.

        Raises
        ------
        FileExistsError : ``output_dir`` holds other files, or a reconstruction of another job
            (the message lists what differs).
        OutputDirBusy : another running job holds ``output_dir`` (the message names it).
        """
        out = Path(output_dir).expanduser().resolve()
        path = out / STORE_NAME
        tmp = out / f".{STORE_NAME}.partial"
        ours = {tmp.name, LOCK_NAME}
        if out.exists() and not path.exists():  # refuse a foreign directory before locking it
            if not out.is_dir() or any(p.name not in ours for p in out.iterdir()):
                raise FileExistsError(
                    f"output_dir {out} exists and holds other files; choose a new or empty "
                    "directory"
                )
        lock = OutputLock(out)
        try:
            store = cls._create_locked(
                out, path, tmp, _normalized(identity), shape, variant, pl_channels,
                max_samples, keep_samples, attrs,
            )  # fmt: skip
        except BaseException:
            lock.release()
            raise
        store._lock = lock
        return store

    def release(self) -> None:
        """Give up this job's lock on the output directory (idempotent)."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    def __getstate__(self) -> dict[str, Any]:  # the lock stays with the process that took it
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    @classmethod
    def _create_locked(
        cls, out, path, tmp, identity, shape, variant, pl_channels, max_samples, keep_samples,
        attrs,
    ) -> ReconstructionStore:  # fmt: skip
        if path.exists():
            store = cls(out)
            diff = _differences(store.attrs.get("identity", {}), identity)
            if diff:
                raise FileExistsError(
                    f"{out} holds the results of another reconstruction job; refusing to mix "
                    "them. Differences: " + "; ".join(diff[:8]) + ". Choose another output_dir "
                    "(or delete this one to start over)."
                )
            return store
        d, h, w = shape
        layout = ChannelLayout(variant, pl_channels)
        root = zarr.open_group(tmp, mode="w")  # replaces the leftover of an interrupted creation
        root.attrs.update(
            _normalized(
                {
                    "format": FORMAT_NAME,
                    "format_version": FORMAT_VERSION,
                    "identity": identity,
                    "shape": [d, h, w],
                    "variant": variant,
                    "pl_channels": pl_channels,
                    "max_samples": max_samples,
                    "keep_samples": keep_samples,
                    **(attrs or {}),
                }
            )
        )

        def array(name, tail, dtype, fill, dims):
            root.create_array(
                name,
                shape=(d, *tail),
                chunks=(1, *tail),
                dtype=dtype,
                fill_value=fill,
                dimension_names=["z", *dims],
            )

        if layout.has_pl:
            array("boundary", (h, w), "bool", False, ["y", "x"])
            array("boundary_confidence", (h, w), "float32", np.nan, ["y", "x"])
            array("pl_denoised", (pl_channels, h, w), "float32", np.nan, ["c", "y", "x"])
        if layout.has_ebsd:
            array("ebsd_quaternions", (h, w, 4), "float32", np.nan, ["y", "x", "q"])
        root.create_group("uncertainty")
        for name in _uncertainty_names(layout):
            array(f"uncertainty/{name}", (h, w), "float32", np.nan, ["y", "x"])
        if keep_samples:
            shape_k = (max_samples, layout.channels, h, w)
            array("samples", shape_k, "float32", np.nan, ["k", "c", "y", "x"])
        array("sample_count", (), "int32", 0, [])
        array("completed", (), "bool", False, [])
        (out / "sections").mkdir(parents=True, exist_ok=True)
        tmp.rename(path)  # the store appears under its name only once fully laid out
        return cls(out)

    # -- per-section I/O (called from aggregation tasks, one writer per section) ---------------
    def _root(self, mode: str = "r") -> zarr.Group:
        return zarr.open_group(self.path, mode=mode, use_consolidated=False)

    def section_file(self, index: int, suffix: str) -> Path:
        return self.output_dir / "sections" / f"section_{index:05d}{suffix}"

    def write_section(self, result: Any, record: dict[str, Any]) -> None:
        """Write one SectionResult and its record (facts, metrics); marks the section done last."""
        i = int(result.index)
        root = self._root("r+")
        if self.layout.has_pl:
            root["boundary"][i] = np.asarray(result.boundary, bool)
            root["boundary_confidence"][i] = np.asarray(result.boundary_confidence, np.float32)
            root["pl_denoised"][i] = np.asarray(result.pl_denoised, np.float32)
        if self.layout.has_ebsd:
            root["ebsd_quaternions"][i] = np.asarray(result.ebsd_quaternions, np.float32)
        for name in _uncertainty_names(self.layout):
            root[f"uncertainty/{name}"][i] = np.asarray(result.uncertainty[name], np.float32)
        k = int(result.info.get("samples", 0))
        if self.attrs["keep_samples"] and result.samples is not None:
            padded = np.full(root["samples"].shape[1:], np.nan, np.float32)
            padded[: result.samples.shape[0]] = result.samples
            root["samples"][i] = padded
        root["sample_count"][i] = k
        tmp = self.section_file(i, ".json.partial")
        tmp.write_text(json.dumps(_normalized(record), indent=1))
        tmp.rename(self.section_file(i, ".json"))
        root["completed"][i] = True

    def identity_differences(self, facts: dict[str, Any]) -> list[str]:
        """How ``facts`` differ from the job identity this store was created with, one line per
        differing key (keys ``facts`` does not name are not compared)."""
        new = _normalized(facts)
        stored = self.attrs.get("identity", {})
        return _differences({k: stored.get(k) for k in new}, new)

    def completed(self) -> list[int]:
        """Indices of the finished sections."""
        return [int(i) for i in np.flatnonzero(self._root()["completed"][:])]

    def record(self, index: int) -> dict[str, Any]:
        """Sampler facts and metrics of a finished section."""
        return json.loads(self.section_file(index, ".json").read_text())

    def section(self, index: int) -> dict[str, Any]:
        """A finished section's outputs: the fields of a SectionResult (index, boundary, ...,
        samples, info) as numpy arrays or None."""
        root = self._root()
        if not root["completed"][index]:
            raise KeyError(f"section {index} of {self.output_dir} is not finished")

        def get(name):
            return np.asarray(root[name][index]) if name in root else None

        k = int(root["sample_count"][index])
        samples = get("samples")
        return {
            "index": index,
            "boundary": get("boundary"),
            "boundary_confidence": get("boundary_confidence"),
            "ebsd_quaternions": get("ebsd_quaternions"),
            "pl_denoised": get("pl_denoised"),
            "uncertainty": {n: get(f"uncertainty/{n}") for n in _uncertainty_names(self.layout)},
            "samples": None if samples is None else samples[:k],
            "info": self.record(index).get("info", {}),
        }

    def finalize(self, attrs: dict[str, Any] | None = None) -> None:
        """Add final attributes (e.g. overall metrics) and consolidate the metadata."""
        root = self._root("r+")
        if attrs:
            root.attrs.update(_normalized(attrs))
            self.attrs = root.attrs.asdict()
        _consolidate(self.path)
