"""Channel codec: orientations and PL intensity stacks <-> network channels in [-1, 1].

EBSD channels are the cubochoric coordinates of the orientation reduced to the 622 fundamental zone,
divided by the zone's extent per axis. PL channels are the PCA scores of the intensity stack over the
stage angles (basis fit on training data, components kept by explained variance), each divided by
its largest magnitude on the training data. The codec travels with the data and with every model: a
network's outputs mean nothing without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ebsdray import conventions
from ebsdray.data.cubochoric import from_cubochoric, to_cubochoric
from ebsdray.data.pl import pl_intensities, stage_angles
from ebsdray.data.symmetry import reduce_to_fundamental_zone

CODEC_FORMAT = "ebsdray-codec"
CODEC_VERSION = 1


@dataclass(frozen=True)
class ChannelCodec:
    """Encoder/decoder between physical quantities and network channels.

    Attributes
    ----------
    stage_angles_deg : (R,) stage rotations of the PL stack.
    pl_mean : (R,) mean intensity stack of the training data.
    pl_components : (C_PL, R) orthonormal principal directions, by decreasing variance.
    pl_scale : (C_PL,) divisor that maps each score into [-1, 1] on the training data.
    explained_variance_ratio : (C_PL,) share of the training variance held by each component.
    ebsd_extent : (3,) cubochoric half-extent of the 622 fundamental zone per axis.
    """

    stage_angles_deg: np.ndarray
    pl_mean: np.ndarray
    pl_components: np.ndarray
    pl_scale: np.ndarray
    explained_variance_ratio: np.ndarray
    ebsd_extent: np.ndarray

    @property
    def pl_channels(self) -> int:
        return int(self.pl_components.shape[0])

    @property
    def channels(self) -> int:
        """3 EBSD + C_PL PL channels."""
        return self.layout().channels

    def layout(self, variant: str = "multimodal") -> conventions.ChannelLayout:
        """Channels of ``variant`` under this codec; the default is the data's own
        ``[ebsd(3) | pl(C_PL)]``, the layout of sections and observations."""
        return conventions.ChannelLayout(variant, self.pl_channels)

    # --- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        intensities: np.ndarray,
        stage_angles_deg: np.ndarray | None = None,
        *,
        explained_variance: float = 0.99999,
        max_components: int | None = None,
    ) -> ChannelCodec:
        """Fit the PL basis on training intensity stacks.

        Parameters
        ----------
        intensities : (N, R) raw PL intensities of N training pixels.
        stage_angles_deg : (R,) the stage angles; default ``R`` equally spaced over 360 degrees.
        explained_variance : keep the fewest components whose cumulative share reaches this. The
            noise-free stack holds only stage-angle harmonics 0, 2 and 4, i.e. 5 components.
        max_components : optional cap.
        """
        x = np.asarray(intensities, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"intensities must be (N, R) with N >= 2; got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("intensities contain NaN or inf; clean the training data first")
        angles = stage_angles(x.shape[1]) if stage_angles_deg is None else stage_angles_deg
        angles = np.asarray(angles, dtype=np.float64)
        if angles.shape != (x.shape[1],):
            raise ValueError(f"{x.shape[1]} intensities per pixel but {angles.shape} stage angles")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        ratio = s**2 / np.sum(s**2)
        n = int(np.searchsorted(np.cumsum(ratio), explained_variance) + 1)
        n = min(n, len(ratio), max_components or len(ratio))
        components = vt[:n]
        # Fix each component's sign so the basis is reproducible across LAPACK builds.
        signs = np.sign(components[np.arange(n), np.abs(components).argmax(axis=1)])
        components = components * signs[:, None]
        scores = (x - mean) @ components.T
        return cls(
            stage_angles_deg=angles,
            pl_mean=mean,
            pl_components=components,
            pl_scale=np.abs(scores).max(axis=0),
            explained_variance_ratio=ratio[:n],
            ebsd_extent=np.asarray(conventions.FZ_CUBOCHORIC_EXTENT, dtype=np.float64),
        )

    # --- EBSD ---------------------------------------------------------------------------------
    def encode_ebsd(self, quaternions: np.ndarray) -> np.ndarray:
        """(..., 4) unit quaternions -> (..., 3) channels in [-1, 1] (float32)."""
        cu = to_cubochoric(reduce_to_fundamental_zone(np.asarray(quaternions, dtype=np.float64)))
        return (cu / self.ebsd_extent).astype(np.float32)

    def decode_ebsd(self, channels: np.ndarray) -> np.ndarray:
        """(..., 3) channels -> (..., 4) unit quaternions (float64), reduced to the zone.

        Values are clipped to [-1, 1] first: network outputs may stray outside the zone.
        """
        c = np.clip(np.asarray(channels, dtype=np.float64), -1.0, 1.0) * self.ebsd_extent
        return reduce_to_fundamental_zone(from_cubochoric(c))

    # --- PL -----------------------------------------------------------------------------------
    def encode_pl(self, intensities: np.ndarray) -> np.ndarray:
        """(..., R) intensity stacks -> (..., C_PL) channels (float32; in [-1, 1] on training data)."""
        x = np.asarray(intensities, dtype=np.float64)
        if x.shape[-1] != len(self.stage_angles_deg):
            raise ValueError(
                f"PL stacks have {x.shape[-1]} stage angles; this codec expects "
                f"{len(self.stage_angles_deg)}"
            )
        return (((x - self.pl_mean) @ self.pl_components.T) / self.pl_scale).astype(np.float32)

    def decode_pl(self, channels: np.ndarray) -> np.ndarray:
        """(..., C_PL) channels -> (..., R) intensity stacks (float64)."""
        z = np.asarray(channels, dtype=np.float64) * self.pl_scale
        return z @ self.pl_components + self.pl_mean

    # --- both ---------------------------------------------------------------------------------
    def encode_section(self, quaternions: np.ndarray) -> np.ndarray:
        """Channels of a section from its orientations (PL computed by the forward model).

        Parameters
        ----------
        quaternions : (H, W, 4) orientations in the section's frame.

        Returns
        -------
        (3 + C_PL, H, W) float32, channels ``[ebsd | pl]``.
        """
        ebsd = self.encode_ebsd(np.asarray(quaternions))
        q = np.asarray(quaternions, dtype=np.float64)
        pl = self.encode_pl(pl_intensities(q, self.stage_angles_deg))
        return np.moveaxis(np.concatenate([ebsd, pl], axis=-1), -1, 0)

    # --- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (stored in zarr attributes and in checkpoints)."""
        return {
            "format": CODEC_FORMAT,
            "version": CODEC_VERSION,
            "stage_angles_deg": self.stage_angles_deg.tolist(),
            "pl_mean": self.pl_mean.tolist(),
            "pl_components": self.pl_components.tolist(),
            "pl_scale": self.pl_scale.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "ebsd_extent": self.ebsd_extent.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelCodec:
        if d.get("format") != CODEC_FORMAT:
            raise ValueError(f"not an ebsdray channel codec (format={d.get('format')!r})")
        if d.get("version") != CODEC_VERSION:
            raise ValueError(
                f"codec version {d.get('version')} is not supported (this ebsdray reads "
                f"version {CODEC_VERSION}); regenerate the data or upgrade ebsdray"
            )
        return cls(**{k: np.asarray(d[k], dtype=np.float64) for k in _ARRAY_FIELDS})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChannelCodec):
            return NotImplemented
        # Equal up to floating-point rounding: the PCA fitted to the same pixels differs in the
        # last bits between CPUs (BLAS kernels), and that is still the same encoding.
        return all(
            np.shape(getattr(self, k)) == np.shape(getattr(other, k))
            and np.allclose(getattr(self, k), getattr(other, k), rtol=1e-9, atol=1e-12)
            for k in _ARRAY_FIELDS
        )

    __hash__ = None  # type: ignore[assignment]


_ARRAY_FIELDS = (
    "stage_angles_deg",
    "pl_mean",
    "pl_components",
    "pl_scale",
    "explained_variance_ratio",
    "ebsd_extent",
)
