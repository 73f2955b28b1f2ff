"""Observed volumes: what a microscope measured (or would measure) of each section.

``observe(volume, ...)`` describes a cheap acquisition of a ground-truth volume: EBSD on a grid or
random subset of pixels (or not at all), PL at every pixel with noise and optional corruptions.
Sections are simulated lazily and deterministically from ``(seed, section)``, so a 1000-section
volume costs nothing until a section is asked for, and any process (a Ray worker) can rebuild
the same section. The channel encoding follows the codec of the model that will read it.

Measured volumes (an ingested store, ``volume.measured`` set; :mod:`ebsdray.ingest`) are read,
not simulated:

- PL: the measured intensity stack, encoded with the model's codec (whose stage angles must be the
  store's). No noise is added: it is in the data. ``pl_noise`` is, as for simulated data, the
  noise std the sampler assumes (channel units); the store records the noise estimated at ingest
  and a warning says when ``pl_noise`` is below it.
- EBSD: observed only where it was measured (the native EBSD grid placed on the model grid) and
  valid; invalid (unindexed, low-confidence, out-of-map) pixels are never observed. ``pattern``
  and ``ebsd_fraction`` then act on the native grid: fraction 1 uses every measured pixel, a grid
  fraction 1/s^2 every s-th native row and column, a random fraction that share of the measured
  pixels, 0 none. No noise is added; ``ebsd_noise`` is the assumed std.
- Truth: only the measured EBSD exists. Grain ids (for boundary metrics) are the measured map's,
  nearest-upsampled; orientations are scored only at measured, valid pixels that were held out of
  the observation (none at fraction 1: the disorientation metrics are then NaN, not a
  self-comparison). There is no clean PL, so PL PSNR is not computed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.corruptions import illumination_gradient, misregistration_warp, scratches
from ebsdray.data.pl import pl_intensities
from ebsdray.data.volume import Measured, Volume, fill_unindexed
from ebsdray.inverse.operators import PATTERNS, MultimodalOperator, Observation
from ebsdray.io.volume_store import VolumeStore, open_volume

CORRUPTIONS = ("scratches", "illumination", "misregistration")


@dataclass(frozen=True)
class ObservationSpec:
    """How sections are observed.

    Attributes
    ----------
    ebsd_fraction : share of pixels with EBSD, in [0, 1]; 1/s^2 for a grid; 0 = EBSD missing.
        On a measured volume: the share of its measured (native-grid) EBSD pixels (module doc).
    pattern : "grid", "random" or "none".
    pl_noise : Gaussian noise std on the PL channels (normalized channel units, channels span
        [-1, 1]).
    ebsd_noise : noise std on observed EBSD channels (normalized units).
    corruptions : optional PL corruptions applied to the raw intensities before encoding, e.g.
        ``{"scratches": {"n": 3}, "illumination": {"strength": 0.3},
        "misregistration": {"max_shift_px": 2}}`` (keyword arguments of
        :mod:`ebsdray.data.corruptions`).
    seed : base seed; section ``i`` draws from ``SeedSequence([seed, i])``.
    """

    ebsd_fraction: float = 0.25
    pattern: str = "grid"
    pl_noise: float = 0.05
    ebsd_noise: float = 0.0
    corruptions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        # MultimodalOperator validates fraction, pattern and noise with clear messages.
        self.operator(5)
        unknown = set(self.corruptions) - set(CORRUPTIONS)
        if unknown:
            raise ValueError(f"unknown corruptions {sorted(unknown)}; choose from {CORRUPTIONS}")

    def operator(self, pl_channels: int) -> MultimodalOperator:
        return MultimodalOperator(
            pl_channels=pl_channels,
            pattern=self.pattern,  # type: ignore[arg-type]
            ebsd_fraction=float(self.ebsd_fraction),
            ebsd_noise=float(self.ebsd_noise),
            pl_noise=float(self.pl_noise),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ebsd_fraction": float(self.ebsd_fraction),
            "pattern": self.pattern,
            "pl_noise": float(self.pl_noise),
            "ebsd_noise": float(self.ebsd_noise),
            "corruptions": {k: dict(v) for k, v in self.corruptions.items()},
            "seed": int(self.seed),
        }


@dataclass
class ObservedSection:
    """One section as observed, with its ground truth (when known).

    Attributes
    ----------
    index : section index in the volume.
    observation : channel-space observation ``y, mask, sigma`` (C, H, W) for the model.
    clean : (C, H, W) float32 noise-free, uncorrupted channels (for PL PSNR), or None.
    truth : the section's ground truth as a Volume with D = 1, or None.
    """

    index: int
    observation: Observation
    clean: torch.Tensor | None
    truth: Volume | None


def _corrupt(intensities: np.ndarray, corruptions: Mapping, rng: np.random.Generator) -> np.ndarray:
    img = intensities
    if "illumination" in corruptions:
        img = illumination_gradient(img, rng=rng, **corruptions["illumination"])
    if "scratches" in corruptions:
        img = scratches(img, rng=rng, **corruptions["scratches"])
    if "misregistration" in corruptions:
        img, _ = misregistration_warp(img, rng=rng, **corruptions["misregistration"])
    return img


class ObservedVolume:
    """A volume observed section by section (see :func:`observe`).

    Holds the ground truth (in memory or a zarr store, read one section at a time) and the spec;
    :meth:`section` simulates one section's observation for a given codec.
    """

    def __init__(self, truth: Volume | VolumeStore, spec: ObservationSpec) -> None:
        self.truth = truth
        self.spec = spec

    def __len__(self) -> int:
        return self.truth.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.truth.shape)  # type: ignore[return-value]

    def section(self, index: int, codec: ChannelCodec) -> ObservedSection:
        """Simulate section ``index`` in ``codec``'s channels (deterministic in (seed, index))."""
        if not 0 <= index < len(self):
            raise IndexError(f"section {index} out of range for {len(self)} sections")
        truth = self.truth.section(index)
        if truth.measured is not None:
            return measured_section(index, truth, self.spec, codec)
        if not truth.valid.all():
            # A real map's unindexed pixels are material the EBSD missed: PL is simulated, and
            # the boundaries are scored, on the grain-dilated map; the EBSD there stays unseen.
            truth = fill_unindexed(truth)
        q = truth.quaternions[0].astype(np.float64)
        valid = truth.valid[0]
        clean = torch.from_numpy(codec.encode_section(q))
        x, data = clean.clone(), codec.layout()
        seq = np.random.SeedSequence([int(self.spec.seed), int(index)])
        corrupt_seed, noise_seed = seq.spawn(2)
        if self.spec.corruptions:
            intensities = pl_intensities(q, codec.stage_angles_deg)
            corrupted = _corrupt(
                intensities, self.spec.corruptions, np.random.default_rng(corrupt_seed)
            )
            x[data.pl] = torch.from_numpy(np.moveaxis(codec.encode_pl(corrupted), -1, 0))
        # Unindexed pixels carry no orientation: they are never observed (the operator checks).
        x[data.ebsd, ~torch.from_numpy(valid)] = float("nan")
        gen = torch.Generator().manual_seed(int(noise_seed.generate_state(1, np.uint64)[0]))
        obs = self.spec.operator(codec.pl_channels).observe(
            x, gen, valid_ebsd=torch.from_numpy(valid)
        )
        return ObservedSection(index=index, observation=obs, clean=clean, truth=truth)


def observe(
    volume: Volume | VolumeStore | str,
    *,
    ebsd_fraction: float = 0.25,
    pattern: str = "grid",
    pl_noise: float = 0.05,
    ebsd_noise: float = 0.0,
    corruptions: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
) -> ObservedVolume:
    """Describe a cheap acquisition of ``volume``: sparse or low-resolution EBSD plus noisy PL.

    Parameters
    ----------
    volume : a Volume (e.g. ``synthetic_volume(...)`` or ``read_ebsd_map(...)``), an open store,
        or the path of a zarr volume store (read lazily, one section at a time).
    ebsd_fraction, pattern, pl_noise, ebsd_noise, corruptions, seed : see :class:`ObservationSpec`.
        ``pattern`` is one of ``("grid", "random", "none")``.

    Returns
    -------
    ObservedVolume (lazy; sections are simulated when a reconstruction asks for them).

    Raises
    ------
    ValueError : fraction outside [0, 1], a grid fraction that is not 1/s^2, unknown pattern or
        corruption, negative or non-finite noise.
    """
    if isinstance(volume, str) or hasattr(volume, "__fspath__"):
        volume = open_volume(volume)  # type: ignore[arg-type]
    if not isinstance(volume, Volume | VolumeStore):
        raise TypeError(f"volume must be a Volume, a VolumeStore or a path; got {type(volume)}")
    if pattern not in PATTERNS:
        raise ValueError(f"unknown EBSD pattern {pattern!r}; choose one of {PATTERNS}")
    spec = ObservationSpec(
        ebsd_fraction=ebsd_fraction,
        pattern=pattern,
        pl_noise=pl_noise,
        ebsd_noise=ebsd_noise,
        corruptions=dict(corruptions or {}),
        seed=seed,
    )
    if _is_measured(volume):
        _check_measured_spec(volume, spec)
    else:
        # Fail now, not after a model is loaded: does the pattern fit the section size?
        spec.operator(5).pixel_mask(
            volume.shape[1], volume.shape[2], torch.Generator().manual_seed(0)
        )
    return ObservedVolume(volume, spec)


# --- measured volumes ----------------------------------------------------------------------------


def _is_measured(volume: Volume | VolumeStore) -> bool:
    if isinstance(volume, VolumeStore):
        return volume.has_measured
    return volume.measured is not None


def native_grid(ebsd_observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the model grid that hold the native EBSD grid's rows and columns.

    Parameters
    ----------
    ebsd_observed : (H, W) bool placement of the native EBSD pixels (a lattice).

    Returns
    -------
    rows (Hn,), cols (Wn,) int arrays: native pixel (i, j) is model pixel (rows[i], cols[j]).
    """
    rows = np.flatnonzero(ebsd_observed.any(axis=1))
    cols = np.flatnonzero(ebsd_observed.any(axis=0))
    if ebsd_observed.sum() != rows.size * cols.size or not ebsd_observed[np.ix_(rows, cols)].all():
        raise ValueError(
            "measured/ebsd_observed is not a lattice (native rows x columns); the store is "
            "corrupt. Re-ingest it with jobs/ingest.py."
        )
    return rows, cols


def _native_mask(shape: tuple[int, int], spec: ObservationSpec, gen: torch.Generator) -> np.ndarray:
    """(Hn, Wn) bool: the native EBSD pixels the observation uses (``pattern``/``fraction``)."""
    hn, wn = shape
    f = float(spec.ebsd_fraction)
    if spec.pattern == "grid" and 0 < f < 1:
        s = round(1.0 / math.sqrt(f))
        if not math.isclose(f, 1.0 / s**2, rel_tol=1e-6) or s > min(hn, wn):
            raise ValueError(
                f"ebsd_fraction={f:g} on a measured store means every s-th native EBSD row and "
                f"column, so it must be 1/s^2 for an integer s <= {min(hn, wn)} (the native grid "
                f"is {hn} x {wn}); e.g. 1, 1/4, 1/9, or use pattern='random'"
            )
        pix = np.zeros(shape, bool)
        pix[::s, ::s] = True  # the native grid need not be divisible by s: no tiling here
        return pix
    pix, _ = spec.operator(5).pixel_mask(hn, wn, gen)
    return pix.numpy()


def _check_measured_spec(volume: Volume | VolumeStore, spec: ObservationSpec) -> None:
    if spec.corruptions:
        raise ValueError(
            f"observation.corruptions {sorted(spec.corruptions)} simulate PL troubles, but this "
            "volume holds measured PL (its troubles are real); drop the corruptions"
        )
    first = volume.section(0).measured
    rows, cols = native_grid(first.ebsd_observed[0])
    _native_mask((rows.size, cols.size), spec, torch.Generator().manual_seed(0))


def _check_codec(measured: Measured, codec: ChannelCodec) -> None:
    same_count = measured.stage_angles_deg.shape == codec.stage_angles_deg.shape
    if not same_count or not np.allclose(measured.stage_angles_deg, codec.stage_angles_deg):
        raise ValueError(
            f"the store's PL was ingested at {measured.stage_angles_deg.size} stage angles "
            f"({measured.stage_angles_deg[:4].tolist()}...) but the model's codec expects "
            f"{codec.stage_angles_deg.size} ({codec.stage_angles_deg[:4].tolist()}...); re-ingest "
            "with this model (jobs/ingest.py model=...)"
        )


def _warn_noise(attrs: Mapping[str, Any], spec: ObservationSpec, codec: ChannelCodec) -> None:
    sigma_i = (attrs.get("ingest") or {}).get("pl_noise_intensity")
    if sigma_i is None:
        return
    estimate = float(np.max(float(sigma_i) / codec.pl_scale))  # orthonormal PCA: per channel
    if spec.pl_noise < estimate:
        warnings.warn(
            f"observation.pl_noise = {spec.pl_noise:g} is below the PL noise estimated at ingest "
            f"({estimate:.3g} in this model's channel units, from the stack's residual outside "
            f"the stage-angle harmonics 0, 2, 4): the sampler would over-trust the PL; set "
            f"observation.pl_noise >= {estimate:.2g}",
            stacklevel=3,
        )


def measured_section(
    index: int, truth: Volume, spec: ObservationSpec, codec: ChannelCodec
) -> ObservedSection:
    """Section ``index`` of a measured volume (see the module docstring).

    Parameters
    ----------
    truth : the section (D = 1) with ``measured`` set.

    Returns
    -------
    ObservedSection with ``clean`` None and ``truth.valid`` the held-out measured EBSD pixels.
    """
    m = truth.measured
    _check_codec(m, codec)
    _warn_noise(truth.attrs, spec, codec)
    q = truth.quaternions[0].astype(np.float64)
    valid = truth.valid[0]
    channels = np.concatenate([codec.encode_ebsd(q), codec.encode_pl(m.pl_intensities[0])], -1)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(channels, -1, 0)))
    rows, cols = native_grid(m.ebsd_observed[0])
    # Same seed derivation as simulated sections (the second stream draws the random pattern).
    _, noise_seed = np.random.SeedSequence([int(spec.seed), int(index)]).spawn(2)
    gen = torch.Generator().manual_seed(int(noise_seed.generate_state(1, np.uint64)[0]))
    pix = np.zeros(valid.shape, bool)
    pix[np.ix_(rows, cols)] = _native_mask((rows.size, cols.size), spec, gen)
    pix &= valid  # invalid pixels are unobserved, never a made-up orientation
    op = spec.operator(codec.pl_channels)
    e, c = op.ebsd_channels, op.pl_channels
    pt = torch.from_numpy(pix)
    mask = torch.cat([pt.float().expand(e, *pix.shape), torch.ones(c, *pix.shape)]).contiguous()
    obs = Observation(
        y=mask * x,
        mask=mask,
        sigma=op.sigma,
        ebsd_channels=e,
        pl_channels=c,
        pattern=spec.pattern,
        ebsd_fraction=float(spec.ebsd_fraction),
        grid_step=None,
    )
    held_out = m.ebsd_observed[0] & valid & ~pix
    scored = Volume(truth.grain_ids, truth.quaternions, held_out[None], dict(truth.attrs))
    scored.attrs["truth"] = "measured EBSD: held-out native pixels (orientations), grain ids"
    return ObservedSection(index=index, observation=obs, clean=None, truth=scored)
