"""Ingest: measured EBSD maps and PL stacks of serial sections -> one ebsdray volume store.

``ingest(config)`` (the work of ``jobs/ingest.py``; config in ``configs/ingest.yaml``):

1. Read every section's EBSD map (:func:`ebsdray.io.read_ebsd_map`: ``.ang``, ``.ctf``, pymicro
   ``.h5``; thresholds and phase from ``ebsd.*``) and PL stack (:func:`ebsdray.io.pl_stack.
   read_pl_stack`; ``pl.*``), check that the sections share one EBSD grid and that the stage angles
   match the model's codec (or will be resampled, ``pl.angle_mismatch``). Every bad file fails here,
   before any work or any write.
2. Per section: resample the PL onto the EBSD grid and register the EBSD onto it
   (``registration.method``: none | affine | bspline; :mod:`ebsdray.ingest.registration`); scale
   the PL counts to the forward model's intensity units (``pl.gain``: ``auto`` = the least-squares
   factor between the counts and the PL the registered EBSD predicts, ``mean`` = the codec's mean
   training intensity over the stack's mean, or a number); resample the PL onto the model grid
   (:mod:`ebsdray.ingest.grid`), estimate its noise, match its stage angles to the codec's, and
   place the registered EBSD on the model grid (its native pixels are the observed lattice).
3. Write the store (:func:`ebsdray.io.write_volume`, with ``measured/``: PL intensities and the
   EBSD lattice) with provenance in its attributes (``ingest``: source files, pixel sizes, gains,
   angle handling, noise, registration transforms as ITK text), then one registration figure and
   transform file per section in ``report_dir``.

The store is written to a hidden sibling and renamed into place, and only after every section
was read and processed: a failed ingest leaves an existing store untouched.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.volume import Measured, Volume
from ebsdray.ingest.grid import ModelGrid, model_grid, resample_pl, upsample_ebsd
from ebsdray.io.ebsd_readers import read_ebsd_map
from ebsdray.io.pl_stack import PLStack, harmonic_noise_std, match_stage_angles, read_pl_stack
from ebsdray.io.volume_store import _check_target, write_volume

REGISTRATION_METHODS = ("none", "affine", "bspline")


@dataclass(frozen=True)
class EbsdOptions:
    """``ebsd.*``: reader thresholds (see :func:`ebsdray.io.read_ebsd_map`), optional step."""

    min_ci: float = 0.1
    max_mad: float = 1.3
    min_bc: float = 0.0
    tolerance_deg: float = 5.0
    phase: int | None = None
    step_um: tuple[float, float] | None = None  # [dy, dx] when the file's step is wrong/absent


@dataclass(frozen=True)
class PLOptions:
    """``pl.*``: how to read and place the PL stacks (see :mod:`ebsdray.io.pl_stack`)."""

    pixel_size_um: float | None = None
    origin_um: tuple[float, float] = (0.0, 0.0)
    angles_deg: tuple[float, ...] | None = None
    bit_depth: int = 16
    dark: str | None = None
    flat: str | None = None
    gain: float | str = "auto"
    angle_mismatch: str = "refuse"


@dataclass(frozen=True)
class RegistrationOptions:
    """``registration.*``: EBSD-to-PL registration on the EBSD grid."""

    method: str = "bspline"
    bspline_mesh: int = 4
    stage_angle_deg: float | None = None  # None: the angle where the EBSD grey has most contrast
    seed: int = 0
    sampling: float = 1.0


@dataclass(frozen=True)
class SectionFiles:
    """One serial section: its EBSD map and PL stack (a folder of TIFFs or a multi-page TIFF)."""

    ebsd: str
    pl: str
    origin_um: tuple[float, float] | None = None  # overrides pl.origin_um for this section


@dataclass
class _Raw:
    index: int
    files: SectionFiles
    ebsd: Volume
    pl: PLStack


@dataclass
class _Done:
    index: int
    volume: Volume  # (1, H, W) on the model grid
    pl: np.ndarray  # (H, W, R_codec) float32 intensities
    report: dict[str, Any]
    figure: dict[str, Any] = field(default_factory=dict)


def _options(cls: type, values: Mapping[str, Any] | None, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values or {}) - known
    if unknown:
        raise ValueError(
            f"unknown config keys {sorted(unknown)} in {where}; known: {sorted(known)}"
        )
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in (values or {}).items()}
    return cls(**clean)


def _sections(entries: Any) -> list[SectionFiles]:
    if not entries:
        raise ValueError(
            "no sections to ingest: set sections=[{ebsd: /abs/map.ang, pl: /abs/pl_folder}, ...] "
            "(one entry per serial section, in order)"
        )
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping) or "ebsd" not in e or "pl" not in e:
            raise ValueError(f"sections[{i}] = {e!r} must be a mapping with keys ebsd and pl")
        out.append(_options(SectionFiles, e, f"sections[{i}]"))
    return out


def _read(i: int, files: SectionFiles, eo: EbsdOptions, po: PLOptions, codec) -> _Raw:
    """Read and check one section's files (every file error of the ingest surfaces here)."""
    ebsd = read_ebsd_map(
        files.ebsd,
        min_ci=eo.min_ci,
        max_mad=eo.max_mad,
        min_bc=eo.min_bc,
        tolerance_deg=eo.tolerance_deg,
        phase=eo.phase,
    )
    if eo.step_um is not None:
        ebsd.attrs["step_size"] = [float(v) for v in eo.step_um]
    if not ebsd.valid.any():
        raise ValueError(
            f"section {i}: {files.ebsd} has no valid EBSD pixel (thresholds {eo}); lower them"
        )
    angles = None if po.angles_deg is None else list(po.angles_deg)
    pl = read_pl_stack(
        files.pl, angles_deg=angles, bit_depth=po.bit_depth, dark=po.dark, flat=po.flat
    )
    # The angle check on one pixel, so a mismatch is refused now and not after the heavy work.
    probe = PLStack(pl.images[:1, :1], pl.angles_deg, pl.sources)
    match_stage_angles(probe, codec.stage_angles_deg, po.angle_mismatch)
    return _Raw(i, files, ebsd, pl)


def _check_same_grid(raws: list[_Raw]) -> tuple[tuple[int, int], tuple[float, float]]:
    first = raws[0]
    shape, step = first.ebsd.shape[1:], tuple(float(v) for v in first.ebsd.attrs["step_size"])
    for r in raws[1:]:
        s, st = r.ebsd.shape[1:], tuple(float(v) for v in r.ebsd.attrs["step_size"])
        if s != shape or not np.allclose(st, step, rtol=1e-6):
            raise ValueError(
                f"mismatched section sizes: section {r.index} ({r.files.ebsd}) is {s[0]} x {s[1]} "
                f"pixels at {st} um, section 0 ({first.files.ebsd}) {shape[0]} x {shape[1]} at "
                f"{step} um. Serial sections must share one EBSD grid: crop or re-export them."
            )
    return shape, step  # type: ignore[return-value]


def _grain_interiors(section: Volume, min_pixels: int = 100) -> np.ndarray:
    """(H, W) valid pixels whose 8 neighbours are of the same grain: there the optics' blur and a
    residual misregistration mix no other grain into the PL (all valid pixels if too few)."""
    ids = np.where(section.valid[0], section.grain_ids[0], 0)
    same = ndimage.minimum_filter(ids, size=3) == ndimage.maximum_filter(ids, size=3)
    inner = same & (ids > 0)
    return inner if inner.sum() >= min_pixels else section.valid[0]


def _gain(
    po: PLOptions, counts: np.ndarray, registered: Volume, angles: np.ndarray, codec
) -> tuple[float, float]:
    """Intensity units per count, and the relative misfit of the PL model at that gain.

    Parameters
    ----------
    counts : (Hn, Wn, R) the PL stack on the native EBSD grid.
    registered : the EBSD registered onto it.
    """
    from ebsdray.data.pl import pl_intensities

    valid = _grain_interiors(registered)
    measured = counts[valid]
    predicted = pl_intensities(np.asarray(registered.quaternions[0], np.float64)[valid], angles)
    if po.gain == "auto":
        # Counts are proportional to reflectance after dark/flat correction; the measured EBSD
        # predicts the reflectance, so one least-squares factor (on grain interiors) puts counts
        # in model units.
        gain = float((measured * predicted).sum() / (measured**2).sum())
    elif po.gain == "mean":
        # Without trusting the EBSD: the codec's mean training intensity (biased by texture).
        gain = float(codec.pl_mean.mean() / counts.mean())
    else:
        gain = float(po.gain)
        if not (np.isfinite(gain) and gain > 0):
            raise ValueError(f"pl.gain must be auto, mean or a positive number; got {po.gain!r}")
    misfit = float(np.sqrt(((gain * measured - predicted) ** 2).mean() / (predicted**2).mean()))
    return gain, misfit


def _registration_angle(ro: RegistrationOptions, ebsd: Volume, angles: np.ndarray) -> int:
    """Index of the PL image to register against."""
    from ebsdray.ingest.registration import ebsd_grey

    if ro.stage_angle_deg is not None:
        d = np.abs(np.mod(angles - ro.stage_angle_deg + 180.0, 360.0) - 180.0)
        if d.min() > 1e-3:
            raise ValueError(
                f"registration.stage_angle_deg = {ro.stage_angle_deg} is not one of the measured "
                f"stage angles {angles.tolist()}"
            )
        return int(d.argmin())
    q, valid = ebsd.quaternions[0], ebsd.valid[0]
    contrast = [float(ebsd_grey(q, float(a))[valid].std()) for a in angles]
    return int(np.argmax(contrast))


def _transform_text(registration) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = registration.save(Path(tmp) / "t.tfm")
        return path.read_text()


def _register(raw: _Raw, on_ebsd: np.ndarray, ro: RegistrationOptions) -> tuple[Volume, dict, dict]:
    """The EBSD registered onto the PL (native grid), its provenance and its figure inputs.

    Parameters
    ----------
    on_ebsd : (Hn, Wn, R) the PL stack (counts) resampled onto the EBSD grid.
    """
    ebsd = raw.ebsd
    k = _registration_angle(ro, ebsd, raw.pl.angles_deg)
    angle = float(raw.pl.angles_deg[k])
    fixed = on_ebsd[..., k]
    figure = {"pl_image": fixed, "before": ebsd, "angle": angle}
    if ro.method == "none":
        figure["after"] = ebsd
        return ebsd, {"method": "none", "stage_angle_deg": angle}, figure
    from ebsdray.ingest.registration import ebsd_grey, register_ebsd_to_pl, warp_ebsd

    mesh = 0 if ro.method == "affine" else int(ro.bspline_mesh)
    grey = ebsd_grey(ebsd.quaternions[0], angle)
    reg = register_ebsd_to_pl(
        fixed, grey, ebsd.valid[0], bspline_mesh=mesh, seed=ro.seed, sampling=ro.sampling
    )
    if not reg.metric_after > reg.metric_before:
        raise ValueError(
            f"section {raw.index}: {ro.method} registration lowered the EBSD-PL mutual "
            f"information ({reg.metric_before:.3f} -> {reg.metric_after:.3f}): the fit failed. "
            f"Check pl.pixel_size_um and pl.origin_um, try another registration.stage_angle_deg "
            f"(used {angle:g}), registration.method=affine, or method=none."
        )
    registered = warp_ebsd(ebsd, reg)
    report = {
        "method": ro.method,
        "stage_angle_deg": angle,
        **registered.attrs["registration"],
        "transform_tfm": _transform_text(reg),
    }
    figure |= {"after": registered, "registration": reg}
    return registered, report, figure


def _process(raw: _Raw, grid: ModelGrid, po: PLOptions, ro: RegistrationOptions, codec) -> _Done:
    origin = tuple(float(v) for v in (raw.files.origin_um or po.origin_um))
    dy, dx = grid.ebsd_step_um
    hn, wn = raw.ebsd.shape[1:]
    counts = raw.pl.images
    on_ebsd = resample_pl(counts, po.pixel_size_um, origin, np.arange(hn) * dy, np.arange(wn) * dx)
    registered, reg_report, figure = _register(raw, on_ebsd, ro)
    gain, misfit = _gain(po, on_ebsd, registered, raw.pl.angles_deg, codec)
    on_grid = resample_pl(counts * gain, po.pixel_size_um, origin, *grid.positions_um())
    noise = harmonic_noise_std(on_grid, raw.pl.angles_deg)
    stack = PLStack(on_grid, raw.pl.angles_deg, raw.pl.sources, raw.pl.attrs)
    matched, angle_note = match_stage_angles(stack, codec.stage_angles_deg, po.angle_mismatch)
    report = {
        "ebsd": str(Path(raw.files.ebsd).expanduser().resolve()),
        "ebsd_reader": {k: v for k, v in raw.ebsd.attrs.items() if k != "source"},
        "ebsd_valid_fraction": float(raw.ebsd.valid.mean()),
        "pl": str(Path(raw.files.pl).expanduser().resolve()),
        "pl_files": len(set(raw.pl.sources)),
        "pl_reader": raw.pl.attrs,
        "pl_measured_angles_deg": raw.pl.angles_deg.tolist(),
        "pl_angles": angle_note,
        "pl_gain": gain,
        "pl_gain_from": po.gain if isinstance(po.gain, str) else "config",
        "pl_model_misfit": misfit,
        "pl_origin_um": list(origin),
        "pl_noise_intensity": noise,
        "registration": reg_report,
    }
    volume = upsample_ebsd(registered, grid)
    return _Done(raw.index, volume, matched.images.astype(np.float32), report, figure)


def _assemble(done: list[_Done], grid: ModelGrid, codec: ChannelCodec, attrs: dict) -> Volume:
    lattice = grid.ebsd_observed
    measured = Measured(
        np.stack([d.pl for d in done]),
        codec.stage_angles_deg,
        np.broadcast_to(lattice, (len(done), *lattice.shape)),
    )
    return Volume(
        np.concatenate([d.volume.grain_ids for d in done]),
        np.concatenate([d.volume.quaternions for d in done]),
        np.concatenate([d.volume.valid for d in done]),
        attrs,
        measured=measured,
    )


def _noise_rms(done: list[_Done]) -> float | None:
    values = [d.report["pl_noise_intensity"] for d in done]
    if any(v is None for v in values):
        return None
    return float(np.sqrt(np.mean(np.square(values))))


def _write_reports(done: list[_Done], report_dir: Path) -> list[str]:
    """One registration figure (EBSD boundaries over the PL image) and transform per section."""
    from ebsdray.ingest.registration import overlay_figure

    report_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in done:
        f = d.figure
        png = report_dir / f"section_{d.index:04d}_registration.png"
        paths.append(str(overlay_figure(f["pl_image"], f["before"], f["after"], png)))
        if "registration" in f:
            f["registration"].save(report_dir / f"section_{d.index:04d}.tfm")
    return paths


def parse_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validated options of an ingest config (see ``configs/ingest.yaml``)."""
    known = {"sections", "output", "overwrite", "model", "ebsd", "pl", "grid", "registration",
             "report_dir", "paths"}  # fmt: skip
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(known)}")
    if not config.get("output"):
        raise ValueError("output must be set: the path of the volume store to write")
    po = _options(PLOptions, config.get("pl"), "pl")
    if po.pixel_size_um is None or not float(po.pixel_size_um) > 0:
        raise ValueError(
            "pl.pixel_size_um must be set to the PL camera's pixel size in microns (it cannot "
            "be read from the images reliably)"
        )
    ro = _options(RegistrationOptions, config.get("registration"), "registration")
    if ro.method not in REGISTRATION_METHODS:
        raise ValueError(
            f"registration.method must be one of {REGISTRATION_METHODS}; got {ro.method!r}"
        )
    grid = dict(config.get("grid") or {})
    if set(grid) - {"pixel_size_um"}:
        raise ValueError(f"unknown config keys {sorted(set(grid) - {'pixel_size_um'})} in grid")
    output = Path(str(config["output"])).expanduser().resolve()
    report_dir = config.get("report_dir") or output.parent / f"{output.stem}_registration"
    return {
        "sections": _sections(config.get("sections")),
        "output": output,
        "overwrite": bool(config.get("overwrite", False)),
        "model": str(config.get("model", "multimodal")),
        "ebsd": _options(EbsdOptions, config.get("ebsd"), "ebsd"),
        "pl": po,
        "registration": ro,
        "pixel_size_um": grid.get("pixel_size_um"),
        "report_dir": Path(str(report_dir)).expanduser().resolve(),
    }


def ingest(config: Mapping[str, Any], codec: ChannelCodec | None = None) -> dict[str, Any]:
    """Files of serial sections -> one volume store (module docstring).

    Parameters
    ----------
    config : the resolved ``configs/ingest.yaml`` (plain dict).
    codec : the model's channel codec; default loaded from ``config["model"]``.

    Returns
    -------
    Summary: ``store``, ``sections``, ``shape`` (D, H, W), ``pixel_size_um``, ``figures``,
    ``pl_noise_intensity`` and, when it can be estimated, ``pl_noise_channels`` (the largest
    per-channel noise in the codec's units: a floor for ``observation.pl_noise``).
    """
    opts = parse_config(config)
    _check_target(opts["output"], opts["overwrite"])  # refuse before any work, not after
    if codec is None:
        from ebsdray.diffusion.pretrained import load_model

        codec = load_model(opts["model"]).codec
    eo, po, ro = opts["ebsd"], opts["pl"], opts["registration"]
    raws = [_read(i, s, eo, po, codec) for i, s in enumerate(opts["sections"])]
    native_shape, step = _check_same_grid(raws)
    grid = model_grid(native_shape, step, opts["pixel_size_um"])
    done = [_process(r, grid, po, ro, codec) for r in raws]
    noise = _noise_rms(done)
    provenance = {
        "model": opts["model"],
        "pixel_size_um": grid.pixel_um,
        "ebsd_step_um": list(grid.ebsd_step_um),
        "native_shape": list(native_shape),
        "pl_pixel_size_um": float(po.pixel_size_um),
        "pl_noise_intensity": noise,
        "ebsd_observed": "native EBSD pixels on the model grid (measured/ebsd_observed)",
        "sections": [d.report for d in done],
        "config": _plain(config),
    }
    attrs = {
        "source": "ebsdray.ingest",
        "step_size": [grid.pixel_um, grid.pixel_um],
        "codec": codec.to_dict(),
        "ingest": provenance,
    }
    volume = _assemble(done, grid, codec, attrs)
    path = write_volume(volume, opts["output"], overwrite=opts["overwrite"])
    figures = _write_reports(done, opts["report_dir"])
    summary = {
        "store": str(path),
        "sections": len(done),
        "shape": list(volume.shape),
        "pixel_size_um": grid.pixel_um,
        "native_shape": list(native_shape),
        "figures": figures,
        "pl_noise_intensity": noise,
    }
    if noise is not None:
        summary["pl_noise_channels"] = float(np.max(noise / codec.pl_scale))
    return summary


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without the machine's paths group (kept small and JSON-native)."""
    return {k: v for k, v in config.items() if k != "paths"}


__all__ = ["ingest", "parse_config"]
