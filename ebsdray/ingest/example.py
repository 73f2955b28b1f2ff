"""Example input files for the ingest walkthrough, made from the shipped real alpha-Ti map.

``make_example_files(dir)`` writes what a microscope session would hand over for two serial
sections (both are the same real map, :func:`ebsdray.io.example_ebsd_map_path`, 101 x 101 pixels
at 2 um):

- ``section0.ang`` and ``section1.ctf``: the map in both vendors' formats;
- ``section0_pl/`` (a folder of 16-bit TIFFs, one per stage angle, the angle in the name) and
  ``section1_pl.tif`` (one multi-page TIFF, angles in its metadata): PL stacks at 36 stage angles
  on a finer camera grid (0.7 um pixels, 8 um wider than the map on each side), simulated from the
  map's orientations by the PL forward model, seen through a known warp (a small rotation, shift
  and scale plus a smooth random displacement: :func:`ebsdray.data.corruptions.smooth_displacement`)
  and with the observation model's corruptions (illumination gradient, scratches, Gaussian noise);
- ``dark.tif`` and ``flat.tif``: the camera's dark frame and a flat field of the same
  illumination, for the optional dark/flat correction;
- ``known_warp_section{0,1}.npz``: the warp as a displacement field on the EBSD grid, ``(Hn, Wn,
  2)`` ``(dy, dx)`` in EBSD pixels, in the convention of
  :meth:`ebsdray.ingest.registration.Registration.displacement` (PL pixel (y, x) shows the EBSD
  pixel at (y + dy, x + dx)), to compare a registration with;
- ``example.json``: these facts and the ``jobs/ingest.py`` overrides that read the files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage

from ebsdray.data.corruptions import (
    gaussian_noise,
    illumination_gradient,
    scratches,
    smooth_displacement,
)
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.volume import Volume, fill_unindexed
from ebsdray.io.ebsd_readers import example_ebsd_map_path, read_ebsd_map
from ebsdray.io.ebsd_writers import write_ang, write_ctf
from ebsdray.io.pl_stack import write_pl_stack

PL_PIXEL_UM = 0.7
MARGIN_UM = 8.0
GAIN = 1.2e7  # counts per unit intensity: the brightest Ti signal at ~26000 of 65535
DARK_COUNTS = 100.0
FLAT_INTENSITY = 1.5e-3
ILLUMINATION_SEED = 17  # the optics: the same illumination field for every section


def known_warp(
    shape: tuple[int, int], seed: int, *, rotation_deg: float, shift_px, warp_px: float
) -> np.ndarray:
    """The example's EBSD->PL warp on the EBSD grid: (Hn, Wn, 2) (dy, dx) in EBSD pixels.

    ``T(p) = c + (1 + 0.005) R(rotation) (p - c) + shift + smooth(p)`` about the map's centre c; the
    smooth part peaks at ``warp_px``.
    """
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    a = math.radians(rotation_deg)
    s = 1.005
    ty = s * (math.cos(a) * (rows - cy) - math.sin(a) * (cols - cx)) + cy - rows
    tx = s * (math.sin(a) * (rows - cy) + math.cos(a) * (cols - cx)) + cx - cols
    smooth = smooth_displacement(shape, warp_px, rng=seed, smoothness=min(h, w) / 5)
    return np.stack([ty + shift_px[0] + smooth[0], tx + shift_px[1] + smooth[1]], axis=-1)


def _pl_pixels(
    shape_ebsd: tuple[int, int],
    step_um: float,
    warp: np.ndarray,
    pl_pixel_um: float,
    margin_um: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Native EBSD (row, col) seen by every PL camera pixel through the warp."""
    hn, wn = shape_ebsd
    hp = math.ceil(((hn - 1) * step_um + 2 * margin_um) / pl_pixel_um) + 1
    wp = math.ceil(((wn - 1) * step_um + 2 * margin_um) / pl_pixel_um) + 1
    u, v = np.mgrid[0:hp, 0:wp].astype(np.float64)
    # PL pixel -> EBSD frame (EBSD pixel units) -> warped position
    ey, ex = (u * pl_pixel_um - margin_um) / step_um, (v * pl_pixel_um - margin_um) / step_um
    coords = [np.clip(ey, 0, hn - 1), np.clip(ex, 0, wn - 1)]
    dy = ndimage.map_coordinates(warp[..., 0], coords, order=1, mode="nearest")
    dx = ndimage.map_coordinates(warp[..., 1], coords, order=1, mode="nearest")
    r = np.clip(np.floor(ey + dy + 0.5).astype(np.int64), 0, hn - 1)
    c = np.clip(np.floor(ex + dx + 0.5).astype(np.int64), 0, wn - 1)
    return r, c


def camera_frames(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) dark frame (an offset with a fixed pattern) and flat field (a mirror under the
    example's illumination), float counts."""
    rng = np.random.default_rng(5)
    dark = DARK_COUNTS + rng.normal(0.0, 2.0, shape)
    field = illumination_gradient(np.ones((*shape, 1)), strength=0.3, rng=ILLUMINATION_SEED)
    return dark, dark + GAIN * FLAT_INTENSITY * field[..., 0]


def simulate_pl_stack(
    volume: Volume,
    warp: np.ndarray,
    *,
    pl_pixel_um: float = PL_PIXEL_UM,
    margin_um: float = MARGIN_UM,
    angles_deg: np.ndarray | None = None,
    noise: float = 0.03,
    seed: int = 0,
    corrupt: bool = True,
) -> np.ndarray:
    """The 16-bit PL camera stack a map would give, seen through ``warp``.

    Parameters
    ----------
    volume : the EBSD map (D = 1) with ``attrs["step_size"]`` in microns.
    warp : (Hn, Wn, 2) displacement on the EBSD grid (see :func:`known_warp`).
    pl_pixel_um, margin_um : camera pixel size, and how far the camera field extends beyond the
        map on every side (the map's first pixel is at ``(margin_um, margin_um)`` in the image).
    angles_deg : stage angles; default 36 over 360 degrees.
    noise : Gaussian camera noise relative to the mean signal.
    corrupt : apply the illumination gradient and scratches (else only blur and noise).

    Returns
    -------
    (Hp, Wp, R) uint16 counts, including the dark frame of :func:`camera_frames` (whose flat
    field shows the same illumination).
    """
    step = float(volume.attrs["step_size"][1])
    r, c = _pl_pixels(volume.shape[1:], step, warp, pl_pixel_um, margin_um)
    angles = stage_angles(36) if angles_deg is None else np.asarray(angles_deg, dtype=float)
    intensities = pl_intensities(
        fill_unindexed(volume).quaternions[0].astype(np.float64)[r, c], angles
    )
    dark, _ = camera_frames(r.shape)
    img = intensities
    if corrupt:
        img = illumination_gradient(img, strength=0.3, rng=ILLUMINATION_SEED)
        img = scratches(img, n=3, width=2.5, rng=seed)
    img = ndimage.gaussian_filter(img, (0.8, 0.8, 0), mode="nearest")  # optics
    counts = dark[..., None] + GAIN * img
    counts = gaussian_noise(counts, noise * GAIN * float(intensities.mean()), rng=seed + 1)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def write_section_files(
    volume: Volume,
    output_dir: str | os.PathLike[str],
    name: str,
    *,
    ebsd_format: str = "ang",
    pl_layout: str = "folder",
    warp: np.ndarray | None = None,
    **pl: Any,
) -> dict[str, str]:
    """One section's files: the map as ``<name>.ang`` or ``.ctf`` and its PL stack as a folder
    ``<name>_pl/`` or a multi-page ``<name>_pl.tif``.

    Parameters
    ----------
    volume : the map (D = 1, ``attrs["step_size"]``).
    warp : (Hn, Wn, 2) EBSD->PL displacement (default none).
    **pl : keywords of :func:`simulate_pl_stack` (pixel size, margin, angles, noise, seed, ...).

    Returns
    -------
    ``{"ebsd": path, "pl": path}``, an entry of the ingest config's ``sections``.
    """
    out = Path(output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    writers = {"ang": write_ang, "ctf": write_ctf}
    if ebsd_format not in writers or pl_layout not in ("folder", "multipage"):
        raise ValueError(
            f"ebsd_format ang|ctf and pl_layout folder|multipage; got {ebsd_format}, {pl_layout}"
        )
    ebsd = writers[ebsd_format](volume, out / f"{name}.{ebsd_format}")
    warp = np.zeros((*volume.shape[1:], 2)) if warp is None else warp
    counts = simulate_pl_stack(volume, warp, **pl)
    angles = pl.get("angles_deg")
    angles = stage_angles(36) if angles is None else angles
    target = out / (f"{name}_pl" if pl_layout == "folder" else f"{name}_pl.tif")
    write_pl_stack(counts, angles, target, folder=pl_layout == "folder")
    return {"ebsd": str(ebsd), "pl": str(target)}


def make_example_files(
    output_dir: str | os.PathLike[str], *, noise: float = 0.03, seed: int = 0
) -> dict[str, Any]:
    """Write the walkthrough's input files (module docstring) into ``output_dir``.

    Parameters
    ----------
    noise : Gaussian camera noise, relative to the mean PL signal.
    seed : seeds the warps, scratches and noise (section s uses ``seed + 10 s``).

    Returns
    -------
    The contents of ``example.json``: file paths, pixel sizes, warps and ingest overrides.
    """
    out = Path(output_dir).expanduser().resolve()
    vol = read_ebsd_map(example_ebsd_map_path())
    warps = [
        dict(rotation_deg=1.0, shift_px=(1.5, -1.0), warp_px=1.5),
        dict(rotation_deg=-0.7, shift_px=(-1.0, 2.0), warp_px=1.2),
    ]
    sections = []
    for s, (params, fmt, layout) in enumerate(
        zip(warps, ("ang", "ctf"), ("folder", "multipage"), strict=True)
    ):
        warp = known_warp(vol.shape[1:], seed + 10 * s, **params)
        files = write_section_files(
            vol,
            out,
            f"section{s}",
            ebsd_format=fmt,
            pl_layout=layout,
            warp=warp,
            noise=noise,
            seed=seed + 10 * s,
        )
        np.savez(out / f"known_warp_section{s}.npz", displacement=warp, **params)
        sections.append(files)
    shape = tifffile.imread(out / "section1_pl.tif").shape[1:]
    dark, flat = camera_frames(shape)
    tifffile.imwrite(out / "dark.tif", np.round(dark).astype(np.uint16))
    tifffile.imwrite(out / "flat.tif", np.round(flat).astype(np.uint16))
    return _describe(out, vol, sections, warps)


def _describe(out: Path, vol: Volume, sections: list[dict], warps: list[dict]) -> dict[str, Any]:
    listing = ",".join(f"{{ebsd:{s['ebsd']},pl:{s['pl']}}}" for s in sections)
    facts = {
        "ebsd_shape": list(vol.shape[1:]),
        "ebsd_step_um": float(vol.attrs["step_size"][1]),
        "pl_pixel_size_um": PL_PIXEL_UM,
        "pl_origin_um": [MARGIN_UM, MARGIN_UM],
        "warps": [{k: list(v) if isinstance(v, tuple) else v for k, v in w.items()} for w in warps],
        "sections": sections,
        "ingest_overrides": [
            f"sections=[{listing}]",
            f"pl.pixel_size_um={PL_PIXEL_UM}",
            f"pl.origin_um=[{MARGIN_UM},{MARGIN_UM}]",
            f"pl.dark={out / 'dark.tif'}",
            f"pl.flat={out / 'flat.tif'}",
            f"output={out / 'ti.zarr'}",
        ],
    }
    (out / "example.json").write_text(json.dumps(facts, indent=1))
    return facts
