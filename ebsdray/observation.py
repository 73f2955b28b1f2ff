"""Observed volumes: what a microscope measured (or would measure) of each section.

``observe(volume, ...)`` describes a cheap acquisition of a ground-truth volume: EBSD on a grid or
random subset of pixels (or not at all), PL at every pixel with noise and optional corruptions.
Sections are simulated lazily and deterministically from ``(seed, section)``, so a 1000-section
volume costs nothing until a section is asked for, and any process (a Ray worker) can rebuild
the same section. The channel encoding follows the codec of the model that will read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ebsdray.data.codec import ChannelCodec
from ebsdray.data.corruptions import illumination_gradient, misregistration_warp, scratches
from ebsdray.data.pl import pl_intensities
from ebsdray.data.volume import Volume
from ebsdray.inverse.operators import PATTERNS, MultimodalOperator, Observation
from ebsdray.io.volume_store import VolumeStore, open_volume

CORRUPTIONS = ("scratches", "illumination", "misregistration")


@dataclass(frozen=True)
class ObservationSpec:
    """How sections are observed.

    Attributes
    ----------
    ebsd_fraction : share of pixels with EBSD, in [0, 1]; 1/s^2 for a grid; 0 = EBSD missing.
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
        q = truth.quaternions[0].astype(np.float64)
        valid = truth.valid[0]
        clean = torch.from_numpy(codec.encode_section(q))
        x = clean.clone()
        seq = np.random.SeedSequence([int(self.spec.seed), int(index)])
        corrupt_seed, noise_seed = seq.spawn(2)
        if self.spec.corruptions:
            intensities = pl_intensities(q, codec.stage_angles_deg)
            corrupted = _corrupt(
                intensities, self.spec.corruptions, np.random.default_rng(corrupt_seed)
            )
            x[3:] = torch.from_numpy(np.moveaxis(codec.encode_pl(corrupted), -1, 0))
        # Unindexed pixels carry no orientation: they are never observed (the operator checks).
        x[:3, ~torch.from_numpy(valid)] = float("nan")
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
    # Fail now, not after a model is loaded: does the pattern fit the section size?
    spec.operator(5).pixel_mask(volume.shape[1], volume.shape[2], torch.Generator().manual_seed(0))
    return ObservedVolume(volume, spec)
