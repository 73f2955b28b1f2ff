"""Reconstruction set (K posterior samples of one section) -> task outputs (design.md section 7).

Pure functions of arrays: no I/O, no Ray, no MLflow. Numpy arrays or torch tensors in, numpy out::

    out = aggregate(samples, codec, observed=y, mask=m)   # samples (K, C, H, W)
    out["boundary"], out["ebsd_quaternions"], out["pl_denoised"], out["uncertainty"]

The channel layout of ``samples`` says which model made them: ``3 + C_PL`` (multimodal), 3 (EBSD
only) or ``C_PL`` (PL only). Outputs of a modality the samples lack are absent, not made up.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ebsdray.aggregate.alignment import AlignmentConfig
from ebsdray.aggregate.boundaries import (
    boundary_confidence,
    edge_maps,
    elbow_threshold,
    threshold_boundaries,
)
from ebsdray.aggregate.ebsd import MeanKind, mean_orientation, super_resolve
from ebsdray.aggregate.orientations import align_to_reference, orientation_mean
from ebsdray.aggregate.pl import denoise_pl
from ebsdray.conventions import EBSD_CHANNELS
from ebsdray.data._arrays import as_numpy
from ebsdray.data.codec import ChannelCodec

Variant = Literal["multimodal", "ebsd", "pl"]

__all__ = [
    "AlignmentConfig",
    "aggregate",
    "align_to_reference",
    "boundary_confidence",
    "denoise_pl",
    "edge_maps",
    "elbow_threshold",
    "infer_variant",
    "mean_orientation",
    "orientation_mean",
    "super_resolve",
    "threshold_boundaries",
]


def infer_variant(channels: int, codec: ChannelCodec) -> Variant:
    """The model variant whose outputs have ``channels`` channels under ``codec``."""
    options: dict[int, Variant] = {}
    for c, v in (
        (codec.pl_channels, "pl"),
        (EBSD_CHANNELS, "ebsd"),
        (codec.channels, "multimodal"),
    ):
        if c in options:
            raise ValueError(f"{c} channels could be {options[c]!r} or {v!r}; pass variant=")
        options[c] = v
    if channels not in options:
        raise ValueError(
            f"{channels} channels match no variant of this codec (multimodal {codec.channels}, "
            f"EBSD {EBSD_CHANNELS}, PL {codec.pl_channels})"
        )
    return options[channels]


def _ebsd_mask(mask: Any) -> np.ndarray:
    """(H, W) observed-EBSD pixels from an (H, W) or per-channel (C, H, W) mask."""
    m = as_numpy(mask, bool)
    if m.ndim == 3:
        m = m[:EBSD_CHANNELS].all(axis=0)  # a pixel counts when all 3 channels were observed
    return m


def aggregate(
    samples: Any,
    codec: ChannelCodec,
    observed: Any = None,
    mask: Any = None,
    variant: Variant | None = None,
    *,
    ebsd_mean: MeanKind = "orientation",
    align: bool = True,
    alignment: AlignmentConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Merge K samples of one section into boundaries, super-resolved EBSD and denoised PL.

    Parameters
    ----------
    samples : (K, C, H, W) channels, ``[ebsd(3) | pl(C_PL)]`` for the multimodal model.
    codec : the model's channel codec.
    observed : optional (C, H, W) observation in the same channel layout (only its EBSD channels
        are used: they feed the alignment MLP).
    mask : optional (H, W) or (C, H, W) bool observation mask; an EBSD pixel counts as observed
        when its 3 EBSD channels are.
    variant : ``"multimodal"``, ``"ebsd"`` or ``"pl"``; inferred from C when None.
    ebsd_mean : ``"orientation"`` (default) or ``"channel"``; see :mod:`ebsdray.aggregate.ebsd`.
    align : fit the alignment MLP when EBSD observations are given.
    alignment : MLP settings (default :class:`~ebsdray.aggregate.alignment.AlignmentConfig`).
    seed : seeds the MLP.

    Returns
    -------
    dict
        ``variant`` and ``n_samples`` (K). With PL channels: ``boundary`` (H, W) bool,
        ``boundary_confidence`` (H, W) in [0, 1], ``boundary_threshold`` (float), ``pl_denoised``
        (C_PL, H, W) channels, ``pl_intensities`` (R, H, W). With EBSD channels:
        ``ebsd_quaternions`` (H, W, 4), ``ebsd_channels`` (3, H, W), ``alignment`` (the MLP's
        record). ``uncertainty``: a dict of (H, W) maps, ``boundary_variance`` (variance over K of
        the normalized edge maps), ``pl_std`` (RMS over channels of the per-channel std),
        ``ebsd_spread_deg`` (mean disorientation of the samples to their mean), each present
        when its modality is.
    """
    x = as_numpy(samples, np.float32)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"samples must be (K, C, H, W) with K >= 1; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or inf")
    variant = variant or infer_variant(x.shape[1], codec)
    expected = {"multimodal": codec.channels, "ebsd": EBSD_CHANNELS, "pl": codec.pl_channels}
    if variant not in expected:
        raise ValueError(f"variant must be one of {sorted(expected)}; got {variant!r}")
    if x.shape[1] != expected[variant]:
        raise ValueError(f"{variant} samples have {expected[variant]} channels; got {x.shape[1]}")

    out: dict[str, Any] = {"variant": variant, "n_samples": x.shape[0]}
    uncertainty: dict[str, np.ndarray] = {}
    has_ebsd, has_pl = variant != "pl", variant != "ebsd"
    if has_pl:
        pl = x[:, EBSD_CHANNELS:] if has_ebsd else x
        maps = edge_maps(pl)
        p = maps.mean(axis=0)
        threshold = elbow_threshold(p)
        den = denoise_pl(pl, codec)
        out.update(
            boundary=p >= threshold,
            boundary_confidence=p,
            boundary_threshold=threshold,
            pl_denoised=den["channels"],
            pl_intensities=den["intensities"],
        )
        uncertainty.update(boundary_variance=maps.var(axis=0), pl_std=den["std_rms"])
    if has_ebsd:
        obs = None if observed is None else as_numpy(observed, np.float64)[:EBSD_CHANNELS]
        m = None if mask is None else _ebsd_mask(mask)
        sr = super_resolve(
            x[:, :EBSD_CHANNELS],
            codec,
            obs,
            m,
            method=ebsd_mean,
            align=align,
            alignment=alignment,
            seed=seed,
        )
        out.update(
            ebsd_quaternions=sr["quaternions"],
            ebsd_channels=sr["channels"],
            alignment=sr["alignment"],
        )
        uncertainty["ebsd_spread_deg"] = sr["spread_deg"]
    out["uncertainty"] = uncertainty
    return out
