"""Polarized-light image stacks: one camera image per stage angle, read from TIFF files.

Two layouts (:func:`read_pl_stack`):

- a folder of single-image TIFFs, one per stage angle, the angle in the file name (the number
  before ``deg``, e.g. ``pl_012.5deg.tif``, else the last number of the name: ``angle_30.tif``),
  or given in order of the sorted file names by ``angles_deg``;
- one multi-page TIFF, a page per stage angle, the angles given by ``angles_deg`` or stored in
  the file's tifffile metadata (``stage_angles_deg``, as :func:`write_pl_stack` writes).

Images must be raw camera counts of the stated ``bit_depth`` (8-bit data in ``uint8``; 10 to 16 bit
in ``uint16`` with no value above ``2**bit_depth - 1``): an 8-bit export of 16-bit data, or a float
TIFF that was already rescaled, has lost the PL contrast the model needs and is refused. Optional
dark and flat frames (a single image, or one per angle) correct offset and illumination:
``(raw - dark) / (flat - dark) * mean(flat - dark)``, which keeps the counts' scale.

The PL curve of a pixel over the stage angle holds only harmonics 0, 2 and 4
(:mod:`ebsdray.data.pl`), so :func:`match_stage_angles` can resample a stack measured at other
angles exactly (least squares on those five terms) and :func:`harmonic_noise_std` estimates the
white noise from what the five terms cannot explain.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

TIFF_SUFFIXES = (".tif", ".tiff")
BIT_DEPTHS = (8, 10, 12, 14, 16)
HARMONICS = (0, 2, 4)
_ANGLE_TOL_DEG = 1e-3
_DEG_RE = re.compile(r"(-?\d+(?:\.\d+)?)\s*deg", re.IGNORECASE)
_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
PathLike = str | os.PathLike[str]


@dataclass
class PLStack:
    """A PL stack, images in counts after the optional dark/flat correction.

    Attributes
    ----------
    images : (H, W, R) float64, stage angle last (as :func:`ebsdray.data.pl.pl_intensities`).
    angles_deg : (R,) stage angles in degrees, increasing.
    sources : the files read, in angle order.
    attrs : provenance (bit depth, layout, corrections, angle source).
    """

    images: np.ndarray
    angles_deg: np.ndarray
    sources: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


def _angle_from_name(path: Path) -> float | None:
    m = _DEG_RE.search(path.stem)
    if m:
        return float(m.group(1))
    numbers = _NUM_RE.findall(path.stem)
    return float(numbers[-1]) if numbers else None


def _check_depth(img: np.ndarray, bit_depth: int, where: str) -> None:
    """Refuse images that are not raw counts of ``bit_depth`` bits."""
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"pl.bit_depth must be one of {BIT_DEPTHS}; got {bit_depth}")
    expected = np.uint8 if bit_depth == 8 else np.uint16
    if img.dtype != expected:
        raise ValueError(
            f"{where}: {img.dtype} pixels, but a {bit_depth}-bit camera stack must be "
            f"{np.dtype(expected).name}. An 8-bit or rescaled float export has lost PL contrast: "
            "export the raw camera counts, or set pl.bit_depth to the stack's real bit depth."
        )
    top = int(img.max(initial=0))
    if top > 2**bit_depth - 1:
        raise ValueError(
            f"{where}: values up to {top} do not fit {bit_depth} bits (max {2**bit_depth - 1}); "
            "set pl.bit_depth to the camera's bit depth"
        )


def _read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
    except Exception as err:  # tifffile raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a readable TIFF ({type(err).__name__}: {err})") from None
    return data, dict(meta or {})


def _folder(path: Path, angles_deg) -> tuple[list[np.ndarray], list[float], list[Path], str]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no .tif/.tiff files in the PL folder")
    if angles_deg is not None:
        angles, origin = [float(a) for a in angles_deg], "config (sorted file names)"
        if len(angles) != len(files):
            raise ValueError(
                f"{path}: {len(files)} TIFF files but {len(angles)} angles in pl.angles_deg"
            )
    else:
        named = [_angle_from_name(p) for p in files]
        missing = [p.name for p, a in zip(files, named, strict=True) if a is None]
        if missing:
            raise ValueError(
                f"{path}: no stage angle in the file names {missing[:5]}; name the files like "
                "'pl_010.0deg.tif' or give pl.angles_deg"
            )
        angles, origin = [float(a) for a in named], "file names"
    images = [_read_tiff(p)[0] for p in files]
    for p, img in zip(files, images, strict=True):
        if img.ndim != 2:
            raise ValueError(f"{p}: expected one 2-D image per file; got shape {img.shape}")
    return images, angles, files, origin


def _multipage(path: Path, angles_deg) -> tuple[list[np.ndarray], list[float], list[Path], str]:
    data, meta = _read_tiff(path)
    if data.ndim != 3:
        raise ValueError(
            f"{path}: a multi-page PL stack must be (R, H, W) pages; got shape {data.shape}"
        )
    if angles_deg is not None:
        angles, origin = [float(a) for a in angles_deg], "config"
    elif "stage_angles_deg" in meta:
        angles, origin = [float(a) for a in meta["stage_angles_deg"]], "file metadata"
    else:
        raise ValueError(
            f"{path}: the multi-page TIFF does not say its stage angles; give pl.angles_deg "
            f"({data.shape[0]} values, one per page)"
        )
    if len(angles) != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} pages but {len(angles)} stage angles")
    return list(data), angles, [path] * data.shape[0], origin


def _frame(path: PathLike | None, shape: tuple[int, int, int], name: str) -> np.ndarray | None:
    """A dark or flat frame as (H, W, 1) or (H, W, R) float64."""
    if path is None:
        return None
    data, _ = _read_tiff(Path(path).expanduser().resolve())
    frame = np.asarray(data, dtype=np.float64)
    if frame.ndim == 3 and frame.shape[0] == shape[2]:
        frame = np.moveaxis(frame, 0, -1)
    elif frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[:2] != shape[:2] or frame.shape[2] not in (1, shape[2]):
        raise ValueError(
            f"{name} frame {path} is {data.shape}; the PL images are {shape[:2]} "
            f"({shape[2]} angles): give one image, or one per angle"
        )
    return frame


def _correct(images: np.ndarray, dark: np.ndarray | None, flat: np.ndarray | None) -> np.ndarray:
    out = images if dark is None else images - dark
    if flat is not None:
        gain = flat - (0.0 if dark is None else dark)
        if (gain <= 0).any():
            raise ValueError(
                f"the flat frame is not brighter than the dark frame at {int((gain <= 0).sum())} "
                "pixels; check the flat/dark files"
            )
        out = out / gain * gain.mean()
    return out


def read_pl_stack(
    path: PathLike,
    *,
    angles_deg: list[float] | None = None,
    bit_depth: int = 16,
    dark: PathLike | None = None,
    flat: PathLike | None = None,
) -> PLStack:
    """Read a PL stack (a folder of TIFFs or one multi-page TIFF; see the module docstring).

    Parameters
    ----------
    path : folder or multi-page TIFF file.
    angles_deg : stage angles (degrees); default from file names / file metadata.
    bit_depth : the camera's bit depth (8, 10, 12, 14 or 16).
    dark, flat : optional dark and flat-field frames (TIFF).

    Returns
    -------
    PLStack with images (H, W, R) float64 sorted by increasing angle.

    Raises
    ------
    ValueError : no images, missing or duplicate angles, wrong bit depth, images of different
        sizes, unreadable files, bad dark/flat frames.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"PL stack {path} does not exist")
    reader = _folder if path.is_dir() else _multipage
    images, angles, files, origin = reader(path, angles_deg)
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise ValueError(f"{path}: PL images of different sizes {sorted(shapes)}")
    for f, img in zip(files, images, strict=True):
        _check_depth(img, bit_depth, str(f))
    _check_unique(np.asarray(angles), path)
    order = np.argsort(angles, kind="stable")
    raw = np.stack([images[i] for i in order], axis=-1)
    top = 2**bit_depth - 1
    saturated = float((raw == top).mean())
    if saturated > 0.01:
        warnings.warn(f"{path}: {saturated:.1%} of the PL pixels are saturated", stacklevel=2)
    stack = raw.astype(np.float64)
    stack = _correct(stack, _frame(dark, stack.shape, "dark"), _frame(flat, stack.shape, "flat"))
    attrs = {
        "bit_depth": bit_depth,
        "layout": "folder" if path.is_dir() else "multi-page TIFF",
        "angles_from": origin,
        "dark": None if dark is None else str(Path(dark).expanduser().resolve()),
        "flat": None if flat is None else str(Path(flat).expanduser().resolve()),
        "saturated_fraction": saturated,
    }
    return PLStack(stack, np.asarray(angles, float)[order], [str(files[i]) for i in order], attrs)


def _check_unique(angles: np.ndarray, path: Path) -> None:
    wrapped = np.mod(angles, 360.0)
    d = np.abs(wrapped[:, None] - wrapped[None, :])
    d = np.minimum(d, 360.0 - d)
    np.fill_diagonal(d, np.inf)
    if (d < _ANGLE_TOL_DEG).any():
        i, j = np.argwhere(d < _ANGLE_TOL_DEG)[0]
        raise ValueError(
            f"{path}: stage angles {angles[i]:g} and {angles[j]:g} deg are the same rotation; "
            "each image needs its own angle"
        )


def write_pl_stack(
    images: np.ndarray, angles_deg: np.ndarray, path: PathLike, *, folder: bool = True
) -> Path:
    """Write (H, W, R) integer camera images as a folder of TIFFs or one multi-page TIFF.

    File names in a folder are ``pl_{angle:07.3f}deg.tif``; a multi-page file stores the angles
    in its metadata (``stage_angles_deg``), so :func:`read_pl_stack` needs no config for either.
    """
    images = np.asarray(images)
    angles = np.asarray(angles_deg, dtype=np.float64)
    if images.ndim != 3 or images.shape[-1] != angles.size:
        raise ValueError(f"images must be (H, W, R) with R = {angles.size}; got {images.shape}")
    path = Path(path)
    if folder:
        path.mkdir(parents=True, exist_ok=True)
        for k, a in enumerate(angles):
            tifffile.imwrite(path / f"pl_{a:07.3f}deg.tif", images[..., k])
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        pages = np.ascontiguousarray(np.moveaxis(images, -1, 0))
        tifffile.imwrite(path, pages, metadata={"stage_angles_deg": angles.tolist()})
    return path


# --- stage-angle harmonics -------------------------------------------------------------------------


def _design(angles_deg: np.ndarray) -> np.ndarray:
    """(R, 5) basis 1, cos 2w, sin 2w, cos 4w, sin 4w at the stage angles w."""
    w = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    cols = [np.ones_like(w)]
    for k in HARMONICS[1:]:
        cols += [np.cos(k * w), np.sin(k * w)]
    return np.stack(cols, axis=1)


def harmonic_noise_std(images: np.ndarray, angles_deg: np.ndarray) -> float | None:
    """White-noise std of a stack, from its residual outside harmonics 0, 2, 4 of the angle.

    The noise-free curve lies exactly in those five terms, so the residual of a least-squares
    fit is noise (plus anything the stage rotation adds); scratches and illumination multiply
    every angle alike and stay in the fit. None when there are too few angles (<= 5).
    """
    a = _design(angles_deg)
    r = a.shape[0]
    if r <= a.shape[1] or np.linalg.matrix_rank(a) < a.shape[1]:
        return None
    x = np.asarray(images, dtype=np.float64).reshape(-1, r)
    coef, *_ = np.linalg.lstsq(a, x.T, rcond=None)
    resid = x - (a @ coef).T
    return float(math.sqrt((resid**2).sum() / (x.shape[0] * (r - a.shape[1]))))


def _same_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Index into ``a`` of each angle of ``b`` when both hold the same rotations, else None."""
    if a.size != b.size:
        return None
    d = np.abs(np.mod(a[None, :] - b[:, None] + 180.0, 360.0) - 180.0)
    idx = d.argmin(axis=1)
    close = d[np.arange(b.size), idx] < _ANGLE_TOL_DEG
    return idx if bool(close.all()) and np.unique(idx).size == b.size else None


def match_stage_angles(
    stack: PLStack, target_deg: np.ndarray, mode: str = "refuse"
) -> tuple[PLStack, str]:
    """The stack at the codec's stage angles ``target_deg`` (R_t,), and what was done.

    Parameters
    ----------
    mode : "refuse": angles other than the target's are an error; "resample": fit harmonics
        0, 2, 4 per pixel (exact for the PL physics) and evaluate them at the target angles.

    Returns
    -------
    (stack with images (H, W, R_t) in target order, a sentence for provenance).
    """
    target = np.asarray(target_deg, dtype=np.float64)
    idx = _same_angles(stack.angles_deg, target)
    if idx is not None:
        images = stack.images[..., idx]
        sources = [stack.sources[i] for i in idx]
        return PLStack(images, target, sources, dict(stack.attrs)), "angles match the codec's"
    if mode != "resample":
        if mode != "refuse":
            raise ValueError(f"pl.angle_mismatch must be 'refuse' or 'resample'; got {mode!r}")
        have, want = np.mod(stack.angles_deg, 360.0), np.mod(target, 360.0)
        missing = [float(a) for a in want if np.abs(have - a).min(initial=np.inf) > 1e-3]
        extra = [float(a) for a in have if np.abs(want - a).min(initial=np.inf) > 1e-3]
        raise ValueError(
            f"the PL stack has {stack.angles_deg.size} stage angles, the model's codec "
            f"{target.size}: missing {missing[:8]}{'...' if len(missing) > 8 else ''}, extra "
            f"{extra[:8]}{'...' if len(extra) > 8 else ''}. Measure the codec's angles, or set "
            "pl.angle_mismatch=resample (fits harmonics 0, 2, 4 of the angle: exact for PL)."
        )
    a = _design(stack.angles_deg)
    if np.linalg.matrix_rank(a) < a.shape[1] or np.linalg.cond(a) > 1e3:
        raise ValueError(
            f"cannot resample: the stage angles {stack.angles_deg.tolist()} do not determine "
            "harmonics 0, 2, 4 (need at least 5 angles spread over 180 degrees)"
        )
    h, w, r = stack.images.shape
    coef, *_ = np.linalg.lstsq(a, stack.images.reshape(-1, r).T, rcond=None)
    images = (_design(target) @ coef).T.reshape(h, w, target.size)
    note = f"resampled from {r} measured angles to the codec's {target.size} (harmonics 0, 2, 4)"
    return PLStack(images, target, list(stack.sources), dict(stack.attrs)), note
