"""EBSD-to-PL registration: affine then B-spline, Mattes mutual information (SimpleITK).

As in the paper: the fixed image is one PL image on the EBSD grid, the moving image a grey-scale
of the EBSD map; the fitted transform warps the EBSD onto the PL frame. ::

    grey = ebsd_grey(section.quaternions[0], stage_angle_deg=0.0)
    reg = register_ebsd_to_pl(pl_image, grey, valid=section.valid[0])
    reg.save(data_dir / "ebsd_to_pl.tfm")
    registered = warp_ebsd(section, reg)        # the EBSD as seen in the PL frame
    overlay_figure(pl_image, section, registered, data_dir / "registration.png")

Direction: an ITK transform maps a point of the fixed image (PL) to the point of the moving image
(EBSD) that lands there; resampling pulls moving values onto the fixed grid. So
``displacement()[y, x]`` is where, relative to ``(y, x)``, the EBSD pixel that belongs at PL pixel
``(y, x)`` sits: ``ebsd_registered[y, x] = ebsd[y + dy, x + dx]`` (the convention of
:func:`ebsdray.data.corruptions.misregistration_warp`).

Coordinates: pixel units, origin 0, spacing 1, so ITK physical points are ``(x, y) = (column,
row)``; every array here is ``(row, column)``, displacements ``(..., 2) = (dy, dx)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk

from ebsdray.data.pl import pl_intensities
from ebsdray.data.rotations import c_axis_in_sample_frame
from ebsdray.data.volume import Volume
from ebsdray.figures import draw_edges, label_edges

GREY_KINDS = ("pl", "ipf_x")
HISTOGRAM_BINS = 32
MIN_SIZE = 16  # pixels per side: below this a B-spline mesh and a pyramid have nothing to fit
_IDENTITY_QUATERNION = np.array([1.0, 0.0, 0.0, 0.0])


def ebsd_grey(quaternions: np.ndarray, stage_angle_deg: float, *, kind: str = "pl") -> np.ndarray:
    """A grey image of an EBSD map that resembles a PL image, the moving image of registration.

    ``"pl"`` (default) is the PL forward model at the PL image's stage angle: up to the camera's
    monotone response it is the PL image itself, which is what mutual information rewards.
    ``"ipf_x"`` is the paper's choice, the [0001] component of the IPF-X colour,
    ``|c . x_sample|``; it also sees only the c-axis but ignores the stage angle, so grains that
    differ in PL may share a grey and vice versa (measured in docs/registration/report.md).

    Parameters
    ----------
    quaternions : (H, W, 4) unit quaternions (passive, scalar first).
    stage_angle_deg : stage rotation of the PL image that will be the fixed image (degrees).
    kind : one of :data:`GREY_KINDS`.

    Returns
    -------
    (H, W) float64.
    """
    q = np.asarray(quaternions, dtype=np.float64)
    if q.ndim != 3 or q.shape[-1] != 4:
        raise ValueError(f"quaternions must be (H, W, 4); got shape {q.shape}")
    if kind == "pl":
        return pl_intensities(q, np.array([float(stage_angle_deg)]))[..., 0]
    if kind == "ipf_x":
        return np.abs(c_axis_in_sample_frame(q)[..., 0])
    raise ValueError(f"unknown grey kind {kind!r}; choose one of {GREY_KINDS}")


@dataclass
class Registration:
    """A fitted EBSD->PL transform on an (H, W) grid of unit pixels.

    Attributes
    ----------
    transform : SimpleITK composite transform (affine, then B-spline on top), mapping PL
        (fixed) points ``(x, y)`` to EBSD (moving) points.
    metric_before, metric_after : Mattes mutual information (nats; higher is better aligned,
        i.e. ITK's metric value negated) with the identity and with the fitted transform, on the
        same bins, masks and samples.
    shape : (H, W) of both images.
    settings : how it was fitted (mesh, bins, sampling, iterations of the last pyramid level,
        the affine part's rotation and translation), for provenance.
    """

    transform: sitk.Transform
    metric_before: float
    metric_after: float
    shape: tuple[int, int]
    settings: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (``.tfm``, SimpleITK text) and the metrics beside it (``.json``)."""
        path = Path(path)
        if path.suffix != ".tfm":
            raise ValueError(f"save the transform as a .tfm file; got {path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteTransform(self.transform, str(path))
        meta = {
            "metric_before": self.metric_before,
            "metric_after": self.metric_after,
            "shape": list(self.shape),
            "settings": self.settings,
            "direction": "maps PL (fixed) points (x, y) to EBSD (moving) points, pixel units",
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Registration:
        """Read a registration written by :meth:`save` (the ``.tfm`` and its ``.json``)."""
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(f"need both {path} and {meta_path} (written by save)")
        meta = json.loads(meta_path.read_text())
        return cls(
            transform=sitk.ReadTransform(str(path)),
            metric_before=float(meta["metric_before"]),
            metric_after=float(meta["metric_after"]),
            shape=(int(meta["shape"][0]), int(meta["shape"][1])),
            settings=dict(meta.get("settings", {})),
        )

    def displacement(self) -> np.ndarray:
        """(H, W, 2) float64 ``(dy, dx)`` in pixels: PL pixel ``(y, x)`` takes the EBSD value
        at ``(y + dy, x + dx)``."""
        h, w = self.shape
        field_image = sitk.TransformToDisplacementField(
            self.transform, sitk.sitkVectorFloat64, [w, h], [0.0, 0.0], [1.0, 1.0]
        )
        dxy = sitk.GetArrayFromImage(field_image)  # (H, W, 2) in ITK order (dx, dy)
        return np.ascontiguousarray(dxy[..., ::-1])


@contextmanager
def _single_threaded() -> Iterator[None]:
    """ITK sums the metric over threads in a scheduling-dependent order; one thread makes a fit
    bit-for-bit repeatable (and the images are small)."""
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _check_image(name: str, image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Validate one (H, W) image; NaNs outside ``where`` are filled with the mean (ignored)."""
    img = np.asarray(image, dtype=np.float64)
    bad = ~np.isfinite(img)
    if (bad & where).any():
        raise ValueError(
            f"{name} has {int((bad & where).sum())} NaN or inf pixels; fill them (e.g. "
            "inpaint) or mark them unmeasured (`valid` for the EBSD image, `pl_valid` for the "
            "PL image)"
        )
    img = np.where(bad, img[where & ~bad].mean(), img)
    values = img[where]
    spread = float(values.std())
    if spread <= 1e-12 * max(float(np.abs(values).max()), 1e-300):
        raise ValueError(
            f"{name} is constant (no contrast to register); check that it is the right image "
            "(a PL image at one stage angle, a grey of the EBSD with several grains)"
        )
    # Zero mean, unit spread: histogram bins and optimizer steps then mean the same for any data.
    return (img - values.mean()) / spread


def _mask(name: str, mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    out = np.ones(shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if out.shape != shape:
        raise ValueError(f"{name} {out.shape} must have the images' shape {shape}")
    if out.mean() < 0.25:
        raise ValueError(f"only {out.mean():.0%} of the pixels are {name}; too few to register")
    return out


def _prepare(
    pl_image: np.ndarray,
    ebsd_image: np.ndarray,
    valid: np.ndarray | None,
    pl_valid: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalized (fixed, moving) images and their (fixed, moving) masks, all (H, W)."""
    pl = np.asarray(pl_image)
    ebsd = np.asarray(ebsd_image)
    if pl.ndim != 2 or ebsd.ndim != 2:
        raise ValueError(
            f"pl_image and ebsd_image must be (H, W) images; got {pl.shape} and {ebsd.shape}. "
            "Pick one stage angle of a PL stack and a grey of the EBSD (ebsd_grey)"
        )
    if pl.shape != ebsd.shape:
        raise ValueError(
            f"pl_image {pl.shape} and ebsd_image {ebsd.shape} differ in shape; resample the PL "
            "image onto the EBSD grid first (the registration runs on the EBSD grid)"
        )
    if min(pl.shape) < MIN_SIZE:
        raise ValueError(f"images of {pl.shape} are too small to register (< {MIN_SIZE} px)")
    moving_mask, fixed_mask = _mask("valid", valid, pl.shape), _mask("pl_valid", pl_valid, pl.shape)
    fixed = _check_image("pl_image", pl, fixed_mask)
    return fixed, _check_image("ebsd_image", ebsd, moving_mask), fixed_mask, moving_mask


def _image(array: np.ndarray, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    return sitk.Cast(img, pixel_type)  # spacing 1, origin 0: physical points are pixel (x, y)


def _method(masks, seed: int, sampling: float) -> sitk.ImageRegistrationMethod:
    """A registration method with the metric, masks ``(fixed, moving)`` and sampling shared by
    every stage and by the before/after evaluations (so the two metric values are comparable)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    reg.SetMetricFixedMask(masks[0])
    reg.SetMetricMovingMask(masks[1])
    if sampling >= 1.0:
        reg.SetMetricSamplingStrategy(reg.NONE)  # every pixel: no randomness at all
    else:
        reg.SetMetricSamplingStrategy(reg.REGULAR)
        reg.SetMetricSamplingPercentage(float(sampling), int(seed))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetNumberOfThreads(1)
    return reg


def _evaluate(fixed, moving, masks, transform, seed: int, sampling: float) -> float:
    reg = _method(masks, seed, sampling)
    reg.SetInitialTransform(transform, inPlace=False)
    return -float(reg.MetricEvaluate(fixed, moving))


def _fit_affine(fixed, moving, masks, seed: int, sampling: float, iterations: int):
    affine = sitk.AffineTransform(2)
    affine.SetCenter([(s - 1) / 2.0 for s in fixed.GetSize()])  # rotate about the image centre
    reg = _method(masks, seed, sampling)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, relaxationFactor=0.7
    )
    # One unit of every parameter moves some pixel by about one pixel: the matrix entries are
    # not over-stepped next to the translation.
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SetInitialTransform(affine, inPlace=True)
    reg.Execute(fixed, moving)
    return affine, reg.GetOptimizerIteration()


def _fit_bspline(fixed, moving, masks, affine, mesh: int, seed: int, sampling: float, iterations):
    bspline = sitk.BSplineTransformInitializer(fixed, [mesh, mesh], order=3)
    reg = _method(masks, seed, sampling)
    reg.SetMovingInitialTransform(affine)  # fitted B-spline acts first, affine after it
    reg.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-6,
        numberOfIterations=iterations,
        maximumNumberOfCorrections=7,
    )
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(fixed, moving)
    return bspline, reg.GetOptimizerIteration()


def _rotation_deg(affine: sitk.AffineTransform) -> float:
    """In-plane rotation of an affine map (the rotation of its matrix's polar decomposition)."""
    a00, a01, a10, a11 = affine.GetMatrix()
    return float(np.degrees(np.arctan2(a10 - a01, a00 + a11)))


def register_ebsd_to_pl(
    pl_image: np.ndarray,
    ebsd_image: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    pl_valid: np.ndarray | None = None,
    bspline_mesh: int = 4,
    seed: int = 0,
    sampling: float = 1.0,
    affine_iterations: int = 200,
    bspline_iterations: int = 100,
) -> Registration:
    """Fit the transform that warps the EBSD map onto a PL image (affine, then B-spline).

    Parameters
    ----------
    pl_image : (H, W) one PL image resampled onto the EBSD grid (fixed image).
    ebsd_image : (H, W) grey of the EBSD map, e.g. :func:`ebsd_grey` (moving image).
    valid : (H, W) bool EBSD validity; unindexed pixels do not enter the metric.
    pl_valid : (H, W) bool, where the PL image was measured (e.g. False outside the PL field of
        view once resampled onto the EBSD grid); default everywhere. NaNs are allowed outside.
    bspline_mesh : B-spline control mesh per side (grid cells; 0 = affine only). Cells must hold
        grains on both sides of the warp: on ~10-pixel grains a cell of 20-30 px is about right.
    seed : seed of the metric's sample positions when ``sampling < 1``.
    sampling : fraction of pixels the metric samples (1 = all, no randomness; the default,
        cheap on EBSD-sized maps).
    affine_iterations, bspline_iterations : optimizer iteration caps per pyramid level.

    Returns
    -------
    Registration (deterministic: the same inputs give the same transform bit for bit).

    Raises
    ------
    ValueError : images that are not (H, W), differ in shape, hold NaNs at pixels their mask
        calls measured, are constant or tiny; a mask with too few (< 25 %) pixels.
    """
    if bspline_mesh < 0 or not 0.0 < sampling <= 1.0:
        raise ValueError(
            f"need bspline_mesh >= 0 and 0 < sampling <= 1; got {bspline_mesh}, {sampling}"
        )
    pl, ebsd, fixed_mask, moving_mask = _prepare(pl_image, ebsd_image, valid, pl_valid)
    fixed, moving = _image(pl), _image(ebsd)
    masks = tuple(_image(m.astype(np.uint8), sitk.sitkUInt8) for m in (fixed_mask, moving_mask))
    with _single_threaded():
        before = _evaluate(
            fixed, moving, masks, sitk.Transform(2, sitk.sitkIdentity), seed, sampling
        )
        affine, affine_iters = _fit_affine(fixed, moving, masks, seed, sampling, affine_iterations)
        transform = sitk.CompositeTransform(2)
        transform.AddTransform(affine)
        bspline_iters = 0
        if bspline_mesh > 0:
            bspline, bspline_iters = _fit_bspline(
                fixed, moving, masks, affine, bspline_mesh, seed, sampling, bspline_iterations
            )
            transform.AddTransform(bspline)  # the last added acts first on a fixed point
        after = _evaluate(fixed, moving, masks, transform, seed, sampling)
    settings = {
        "bspline_mesh": int(bspline_mesh),
        "seed": int(seed),
        "sampling": float(sampling),
        "histogram_bins": HISTOGRAM_BINS,
        "affine_iterations": int(affine_iters),
        "bspline_iterations": int(bspline_iters),
        "affine_rotation_deg": _rotation_deg(affine),
        "affine_translation_px": [float(t) for t in affine.GetTranslation()[::-1]],  # (dy, dx)
        "simpleitk": sitk.Version.VersionString(),
    }
    return Registration(transform, before, after, tuple(pl.shape), settings)


def warp_ebsd(section: Volume, registration: Registration) -> Volume:
    """The EBSD map resampled onto the PL frame, by nearest neighbour.

    Orientations cannot be averaged linearly (and symmetry makes "between" ambiguous), so each
    PL pixel takes the whole measurement (orientation, grain id, validity) of the EBSD pixel
    nearest to where the transform sends it. Pixels sent outside the map are unobserved: grain
    id 0, invalid, identity orientation (as the readers store unindexed pixels).

    Orientations are kept as measured, not turned by the transform's local rotation: a
    registration corrects scan distortion of a degree or less (``settings["affine_rotation_deg"]``
    says how much), below the spread within a grain. A frame rotated by more (a rotated stage)
    should be handled before registration, with the orientations rotated with the frame.

    Parameters
    ----------
    section : Volume with D = 1 on the registration's (H, W) grid.
    registration : from :func:`register_ebsd_to_pl` or :meth:`Registration.load`.

    Returns
    -------
    Volume with D = 1, the same dtypes; ``attrs["registration"]`` records the metrics.
    """
    if len(section) != 1 or tuple(section.shape[1:]) != tuple(registration.shape):
        raise ValueError(
            f"need one section of {tuple(registration.shape)}; got a volume of {section.shape}"
        )
    h, w = registration.shape
    rows, cols = np.mgrid[0:h, 0:w]
    d = registration.displacement()
    # floor(v + 0.5), not rint: half-pixel positions always round the same way (up).
    src_r = np.floor(rows + d[..., 0] + 0.5).astype(np.int64)
    src_c = np.floor(cols + d[..., 1] + 0.5).astype(np.int64)
    inside = (src_r >= 0) & (src_r < h) & (src_c >= 0) & (src_c < w)
    r, c = np.clip(src_r, 0, h - 1), np.clip(src_c, 0, w - 1)
    quats = section.quaternions[0][r, c]
    quats[~inside] = _IDENTITY_QUATERNION.astype(quats.dtype)
    ids = np.where(inside, section.grain_ids[0][r, c], 0)
    valid = inside & section.valid[0][r, c]
    attrs = dict(section.attrs)
    attrs["registration"] = {
        "metric_before": registration.metric_before,
        "metric_after": registration.metric_after,
        "outside_fraction": float(1.0 - inside.mean()),
        **registration.settings,
    }
    return Volume(
        ids[None], quats[None], valid[None], attrs, grain_quaternions=section.grain_quaternions
    )


def overlay_figure(
    pl_image: np.ndarray, ebsd_before: Volume, ebsd_after: Volume, path: str | os.PathLike[str]
) -> Path:
    """Before/after figure: EBSD grain boundaries drawn thin over the PL image.

    Parameters
    ----------
    pl_image : (H, W) the fixed PL image.
    ebsd_before, ebsd_after : Volumes with D = 1 on the same grid: the EBSD as measured and as
        warped by :func:`warp_ebsd`.
    path : PNG to write.

    Returns
    -------
    The path written.
    """
    pl = np.asarray(pl_image, dtype=np.float64)
    for name, vol in (("ebsd_before", ebsd_before), ("ebsd_after", ebsd_after)):
        if tuple(vol.shape) != (1, *pl.shape):
            raise ValueError(f"{name} must be one section of {pl.shape}; got {vol.shape}")
    lo, hi = np.nanpercentile(pl, [1, 99])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    for ax, vol, title in ((axes[0], ebsd_before, "before"), (axes[1], ebsd_after, "after")):
        ax.imshow(pl, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        draw_edges(ax, label_edges(vol.grain_ids[0]), color="red", lw=0.9)
        info = vol.attrs.get("registration", {})
        extra = f" (MI {info['metric_after']:.3f})" if title == "after" and info else ""
        ax.set_title(f"EBSD boundaries over PL, {title} registration{extra}")
        ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
