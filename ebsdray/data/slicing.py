"""Physically consistent 2-D sections of a 3-D volume.

A section is cut along one volume axis, then optionally rotated in-plane by multiples of 90 degrees and
mirrored. The image has its own sample frame (x along columns, y along rows, z = x cross y, the section
normal), so the orientations are re-expressed in that frame and PL must be recomputed for it: PL sees
the c-axis in the sample frame, which changes with the frame.

A mirror is improper, but for a centrosymmetric Laue group (6/mmm) a mirror equals inversion times a
180-degree rotation about the mirror normal, and inversion leaves the orientation unchanged, so the
orientations transform with that proper rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebsdray.data.rotations import matrix_to_quaternion, quaternion_conjugate, quaternion_multiply

# Rows of each matrix are the section's x, y, z axes expressed in the volume frame (x = W, y = H, z = D).
_AXIS_FRAMES = {
    0: np.eye(3),  # section (H, W): x, y, z unchanged
    1: np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),  # section (D, W): rows = z, cols = x
    2: np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]),  # section (D, H): rows = z, cols = y
}
# np.rot90(image, 1) maps the vector (x, y) to (y, -x) in (col, row) coordinates.
_ROT90 = np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])
# Left-right mirror x -> -x, applied to orientations as inversion * 180 deg about x.
_MIRROR_PROPER = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class SectionFrame:
    """Which section of a volume, and how the image is turned.

    Attributes
    ----------
    axis : 0, 1 or 2, the volume axis normal to the section (0 = the serial-sectioning direction).
    index : position along that axis.
    rot90 : number of counter-clockwise quarter turns (``numpy.rot90`` semantics), 0..3.
    flip : mirror left-right after the rotation.
    """

    axis: int = 0
    index: int = 0
    rot90: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2; got {self.axis}")

    def frame_rotation(self) -> np.ndarray:
        """Proper rotation (3, 3) taking volume-frame vectors to section-frame vectors (mirror
        replaced by its proper part, which is what orientations see)."""
        r = _AXIS_FRAMES[self.axis]
        for _ in range(self.rot90 % 4):
            r = _ROT90 @ r
        if self.flip:
            r = _MIRROR_PROPER @ r
        return r


def transform_orientations(quaternions: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Re-express passive orientations in a rotated sample frame.

    With ``v_new = R v_old`` and ``v_crystal = g v_old``, the new orientation is ``g' = g R^T``, i.e.
    ``q' = q * conj(q_R)``; the c-axis in the sample frame turns with the frame: ``c' = R c``.

    Parameters
    ----------
    quaternions : (..., 4) unit quaternions.
    rotation : (3, 3) proper rotation matrix ``R``.

    Returns
    -------
    (..., 4) quaternions in the new frame (q0 >= 0), same dtype.
    """
    q_r = matrix_to_quaternion(np.asarray(rotation, dtype=np.float64))
    out = quaternion_multiply(quaternions.astype(np.float64), quaternion_conjugate(q_r))
    out = np.where(out[..., :1] < 0, -out, out)
    return out.astype(quaternions.dtype)


def section_image(
    array: np.ndarray, frame: SectionFrame, crop: tuple[slice, slice] | None = None
) -> np.ndarray:
    """The pixels of a section, turned and cropped, with no change of their values.

    Parameters
    ----------
    array : (D, H, W, ...) any per-voxel array (grain ids, validity, ...).
    frame, crop : as in :func:`extract_section`.

    Returns
    -------
    (h, w, ...) contiguous copy.
    """
    take = [slice(None)] * 3
    take[frame.axis] = frame.index
    image = np.rot90(array[tuple(take)], frame.rot90 % 4, axes=(0, 1))
    if frame.flip:
        image = image[:, ::-1]
    if crop is not None:
        image = image[crop]
    return np.ascontiguousarray(image)


def extract_section(
    grain_ids: np.ndarray,
    quaternions: np.ndarray,
    frame: SectionFrame,
    crop: tuple[slice, slice] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one section out of a volume and express it in the section's own frame.

    Parameters
    ----------
    grain_ids : (D, H, W) grain labels (or any per-voxel array with those three leading axes).
    quaternions : (D, H, W, 4) orientations in the volume frame.
    frame : which section and how it is turned.
    crop : optional (rows, cols) slices of the turned image; only that window is transformed.

    Returns
    -------
    ids : (h, w) labels of the section image.
    quaternions : (h, w, 4) orientations in the section frame.
    """
    ids = section_image(grain_ids, frame, crop)
    quats = section_image(quaternions, frame, crop)
    return ids, transform_orientations(quats, frame.frame_rotation())


def section_shape(shape: tuple[int, int, int], frame: SectionFrame) -> tuple[int, int]:
    """(h, w) of the image that ``extract_section`` returns for a volume of ``shape``."""
    h, w = (s for i, s in enumerate(shape) if i != frame.axis)
    return (w, h) if frame.rot90 % 2 else (h, w)
