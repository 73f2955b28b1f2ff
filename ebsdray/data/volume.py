"""The volume object shared by the generator, the readers, the zarr store and the samplers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage


@dataclass
class Measured:
    """What a microscope measured of each section, on the volume's grid (an ingested store).

    A volume with these is real data: its observation is read, not simulated
    (:mod:`ebsdray.observation`), and its ``quaternions`` / ``grain_ids`` / ``valid`` are the
    measured EBSD, nearest-neighbour upsampled from the native EBSD grid onto the volume's grid.

    Attributes
    ----------
    pl_intensities : (D, H, W, R) float32
        Calibrated PL intensities (the forward model's units) at ``stage_angles_deg``.
    stage_angles_deg : (R,) float64
        Stage rotations of the PL stack.
    ebsd_observed : (D, H, W) bool
        Pixels of the volume's grid that hold a native EBSD measurement: a lattice (the native
        grid's rows x columns placed on this grid). Whether a measurement is usable is
        ``Volume.valid``.
    """

    pl_intensities: np.ndarray
    stage_angles_deg: np.ndarray
    ebsd_observed: np.ndarray

    def __post_init__(self) -> None:
        self.pl_intensities = np.asarray(self.pl_intensities, dtype=np.float32)
        self.stage_angles_deg = np.asarray(self.stage_angles_deg, dtype=np.float64)
        self.ebsd_observed = np.asarray(self.ebsd_observed, dtype=bool)
        pl, observed = self.pl_intensities, self.ebsd_observed
        if observed.ndim != 3:
            raise ValueError(f"ebsd_observed must be (D, H, W); got shape {observed.shape}")
        if pl.shape != (*observed.shape, self.stage_angles_deg.size) or pl.ndim != 4:
            raise ValueError(
                f"pl_intensities must be (D, H, W, R) = {(*observed.shape, self.stage_angles_deg.size)}"
                f" (R stage angles); got {pl.shape}"
            )

    def crop(self, rows: slice, cols: slice) -> Measured:
        return Measured(
            self.pl_intensities[:, rows, cols],
            self.stage_angles_deg,
            self.ebsd_observed[:, rows, cols],
        )

    def section(self, index: int) -> Measured:
        sl = slice(index, index + 1)
        return Measured(self.pl_intensities[sl], self.stage_angles_deg, self.ebsd_observed[sl])


@dataclass
class Volume:
    """A serial-sectioning volume (or a single map, D = 1) of alpha-Ti orientations.

    Attributes
    ----------
    grain_ids : (D, H, W) int32
        Grain label per voxel; 0 = unindexed / not assigned.
    quaternions : (D, H, W, 4) float32 or float64
        Unit quaternions (scalar first, q0 >= 0, passive; see :mod:`ebsdray.conventions`).
    valid : (D, H, W) bool
        EBSD validity (False where unindexed).
    attrs : dict
        JSON-serializable provenance (generator config, source file, pixel size, ...).
    grain_quaternions : (G + 1, 4) float, optional
        Nominal orientation of each grain id (row 0, for id 0, is unused), when known: per-grain
        work (PL, EBSD channels) is then G evaluations instead of D * H * W.
    measured : Measured, optional
        The measured PL stack and EBSD placement of real data (None for synthetic volumes).
    """

    grain_ids: np.ndarray
    quaternions: np.ndarray
    valid: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    grain_quaternions: np.ndarray | None = None
    measured: Measured | None = None

    def __post_init__(self) -> None:
        self.grain_ids = np.asarray(self.grain_ids, dtype=np.int32)
        self.quaternions = np.asarray(self.quaternions)
        if self.grain_ids.ndim != 3:
            raise ValueError(
                f"grain_ids must be (D, H, W); got shape {self.grain_ids.shape}. "
                "Add a leading axis of length 1 for a single map."
            )
        if self.quaternions.shape != (*self.grain_ids.shape, 4):
            raise ValueError(
                f"quaternions must be (D, H, W, 4) = {(*self.grain_ids.shape, 4)}; "
                f"got {self.quaternions.shape}"
            )
        if not np.issubdtype(self.quaternions.dtype, np.floating):
            raise ValueError(f"quaternions must be floating point; got {self.quaternions.dtype}")
        if self.valid is None:
            self.valid = self.grain_ids > 0
        self.valid = np.asarray(self.valid, dtype=bool)
        if self.valid.shape != self.grain_ids.shape:
            raise ValueError(f"valid must be {self.grain_ids.shape}; got {self.valid.shape}")
        if self.grain_quaternions is not None:
            self.grain_quaternions = np.asarray(self.grain_quaternions)
            gq = self.grain_quaternions
            if gq.ndim != 2 or gq.shape[1] != 4 or gq.shape[0] <= self.grain_ids.max(initial=0):
                raise ValueError(
                    f"grain_quaternions must be (G + 1, 4) covering every grain id; got {gq.shape}"
                )
        if self.measured is not None and self.measured.ebsd_observed.shape != self.grain_ids.shape:
            raise ValueError(
                f"measured arrays are {self.measured.ebsd_observed.shape}; the volume is "
                f"{self.grain_ids.shape}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(D, H, W)."""
        return tuple(self.grain_ids.shape)  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.grain_ids.shape[0]

    def crop(self, height: int, width: int, top: int = 0, left: int = 0) -> Volume:
        """The (D, height, width) window starting at (top, left) of every section."""
        if top < 0 or left < 0 or top + height > self.shape[1] or left + width > self.shape[2]:
            raise ValueError(
                f"crop {height}x{width} at ({top}, {left}) does not fit sections of {self.shape[1:]}"
            )
        rows, cols = slice(top, top + height), slice(left, left + width)
        return Volume(
            self.grain_ids[:, rows, cols],
            self.quaternions[:, rows, cols],
            self.valid[:, rows, cols],
            dict(self.attrs),
            grain_quaternions=self.grain_quaternions,
            measured=None if self.measured is None else self.measured.crop(rows, cols),
        )

    def uniform_grain_quaternions(self, tolerance: float = 1e-6) -> np.ndarray | None:
        """(G + 1, 4) float64 orientation per grain id if every grain is uniform, else None.

        Per-grain work (channels, PL) then costs G evaluations instead of D * H * W.
        """
        ids = self.grain_ids.ravel()
        quats = self.quaternions.reshape(-1, 4).astype(np.float64)
        table = np.zeros((int(ids.max(initial=0)) + 1, 4))
        table[ids] = quats  # one voxel's value per grain (numpy keeps the last); checked below
        if np.abs(table[ids] - quats).max(initial=0.0) > tolerance:
            return None
        return table

    def section(self, index: int) -> Volume:
        """Section ``index`` as a volume with D = 1."""
        sl = slice(index, index + 1)
        return Volume(
            self.grain_ids[sl],
            self.quaternions[sl],
            self.valid[sl],
            dict(self.attrs),
            grain_quaternions=self.grain_quaternions,
            measured=None if self.measured is None else self.measured.section(index),
        )


def fill_unindexed(volume: Volume) -> Volume:
    """Grain dilation (the usual EBSD clean-up): every pixel without a valid orientation takes
    the grain id and orientation of the nearest valid pixel of its section.

    The sample has material where EBSD failed to index, so PL simulated from a map, and the
    grain boundaries it is scored against, must not stop or ring at unindexed pixels. ``valid``
    is kept as it was: the filled pixels stay unobserved and unscored as EBSD.

    Parameters
    ----------
    volume : (D, H, W) volume; sections without any valid pixel are returned as they are.

    Returns
    -------
    Volume with filled ``grain_ids`` (D, H, W) and ``quaternions`` (D, H, W, 4), the same
    ``valid``, ``attrs`` and ``measured``; ``grain_quaternions`` is dropped (grain 0's pixels
    now belong to grains).
    """
    ids, q = volume.grain_ids.copy(), volume.quaternions.copy()
    for d in range(volume.shape[0]):
        invalid = ~volume.valid[d]
        if not invalid.any() or invalid.all():
            continue
        # Indices of the nearest valid pixel (the zeros of ``invalid``) for every pixel.
        _, (rows, cols) = ndimage.distance_transform_edt(invalid, return_indices=True)
        ids[d][invalid] = volume.grain_ids[d][rows[invalid], cols[invalid]]
        q[d][invalid] = volume.quaternions[d][rows[invalid], cols[invalid]]
    return Volume(ids, q, volume.valid.copy(), dict(volume.attrs), measured=volume.measured)
