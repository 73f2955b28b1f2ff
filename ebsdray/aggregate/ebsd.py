"""EBSD super-resolution and its uncertainty from a reconstruction set.

Two means of the K samples are offered:

- ``"orientation"`` (default): decode every sample, align each to a common reference under 622
  symmetry and average the quaternions (:mod:`ebsdray.aggregate.orientations`).
- ``"channel"``: average the K samples' channels, then decode (the paper's mean). Cubochoric
  channels jump at the fundamental zone's faces, so samples of one orientation that land on opposite
  faces average to an unrelated orientation.

The 622 zone is only 30 degrees thick about c, so a few degrees of spread put many samples on the
far face, which ruins the channel mean (samples turned by 5 degrees rms: the orientation mean's
error is under 0.3x the channel mean's, ``tests/aggregate/test_ebsd.py``); when the noise lives in
channel space the two means agree. Then, when observed EBSD pixels are given, the alignment MLP
(:mod:`ebsdray.aggregate.alignment`) maps the mean onto the observations.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ebsdray.aggregate.alignment import AlignmentConfig, decode_unwrapped, fit_alignment
from ebsdray.aggregate.orientations import orientation_mean, orientation_spread_deg
from ebsdray.data._arrays import as_numpy
from ebsdray.data.codec import ChannelCodec

MeanKind = Literal["orientation", "channel"]


def decode_samples(ebsd_samples: Any, codec: ChannelCodec) -> np.ndarray:
    """(K, 3, H, W) EBSD channels -> (K, H, W, 4) quaternions (float64, in the zone)."""
    x = as_numpy(ebsd_samples, np.float64)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"ebsd_samples must be (K, 3, H, W); got shape {x.shape}")
    return codec.decode_ebsd(np.moveaxis(x, 1, -1))


def mean_orientation(
    ebsd_samples: Any, codec: ChannelCodec, method: MeanKind = "orientation"
) -> np.ndarray:
    """Mean orientation (H, W, 4) of K EBSD samples (K, 3, H, W); ``method`` as in the module doc."""
    return _mean(as_numpy(ebsd_samples, np.float64), None, codec, method)


def _mean(
    x: np.ndarray, q_samples: np.ndarray | None, codec: ChannelCodec, method: MeanKind
) -> np.ndarray:
    if method == "channel":
        return codec.decode_ebsd(np.moveaxis(x.mean(axis=0), 0, -1))
    if method == "orientation":
        return orientation_mean(decode_samples(x, codec) if q_samples is None else q_samples)
    raise ValueError(f"method must be 'orientation' or 'channel'; got {method!r}")


def super_resolve(
    ebsd_samples: Any,
    codec: ChannelCodec,
    observed: Any = None,
    mask: Any = None,
    *,
    method: MeanKind = "orientation",
    align: bool = True,
    alignment: AlignmentConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Super-resolved EBSD map and its uncertainty from K samples.

    Parameters
    ----------
    ebsd_samples : (K, 3, H, W) EBSD channels of the K samples.
    codec : the model's channel codec.
    observed : optional (3, H, W) observed EBSD channels (noisy; unobserved entries ignored).
    mask : optional (H, W) bool, the observed EBSD pixels. Without observations (or with too few
        pixels) the alignment MLP is skipped.
    method : ``"orientation"`` or ``"channel"`` mean.
    align : fit the alignment MLP when observations are given.
    alignment : MLP settings (default :class:`~ebsdray.aggregate.alignment.AlignmentConfig`).
    seed : seeds the MLP.

    Returns
    -------
    dict
        ``quaternions`` (H, W, 4) float64; ``channels`` (3, H, W) float32, their encoding;
        ``mean_quaternions`` (H, W, 4), the mean before alignment; ``spread_deg`` (H, W), the mean
        disorientation of the samples to their mean (the posterior spread; 0 for K = 1);
        ``alignment`` (dict), the MLP's record (empty when skipped).
    """
    x = as_numpy(ebsd_samples, np.float64)
    q_samples = decode_samples(x, codec)
    q_mean = _mean(x, q_samples, codec, method)
    q, info = q_mean, {}
    if align and observed is not None and mask is not None:
        rec = np.moveaxis(codec.encode_ebsd(q_mean), -1, 0).astype(np.float64)
        aligned, info = fit_alignment(
            rec, as_numpy(observed, np.float64), as_numpy(mask, bool), codec, alignment, seed
        )
        if info.get("steps", 0) > 0:  # else the identity was kept: no encode/decode round trip
            q = decode_unwrapped(np.moveaxis(aligned, 0, -1), codec)
    return {
        "quaternions": q,
        "channels": np.moveaxis(codec.encode_ebsd(q), -1, 0),
        "mean_quaternions": q_mean,
        "spread_deg": orientation_spread_deg(q_samples, q_mean),
        "alignment": info,
    }
