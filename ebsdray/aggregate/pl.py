"""PL denoising from a reconstruction set: the mean of the K PL samples, their spread as uncertainty."""

from __future__ import annotations

from typing import Any

import numpy as np

from ebsdray.data._arrays import as_numpy
from ebsdray.data.codec import ChannelCodec


def denoise_pl(pl_samples: Any, codec: ChannelCodec | None = None) -> dict[str, np.ndarray]:
    """Mean and spread of K PL samples.

    Parameters
    ----------
    pl_samples : (K, C_PL, H, W) PL channels.
    codec : optional; when given, the mean is also decoded into intensity stacks.

    Returns
    -------
    dict
        ``channels`` (C_PL, H, W) float32, the mean; ``std`` (C_PL, H, W) float32, the per-channel
        standard deviation over K (population, 0 for K = 1); ``std_rms`` (H, W) float32, the root
        mean square of ``std`` over channels (one uncertainty map); with a codec, ``intensities``
        (R, H, W) float64, the mean decoded at the codec's R stage angles.
    """
    x = as_numpy(pl_samples, np.float64)
    if x.ndim != 4:
        raise ValueError(f"pl_samples must be (K, C_PL, H, W); got shape {x.shape}")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    out = {
        "channels": mean.astype(np.float32),
        "std": std.astype(np.float32),
        "std_rms": np.sqrt((std * std).mean(axis=0)).astype(np.float32),
    }
    if codec is not None:
        if x.shape[1] != codec.pl_channels:
            raise ValueError(f"{x.shape[1]} PL channels; the codec has {codec.pl_channels}")
        out["intensities"] = np.moveaxis(codec.decode_pl(np.moveaxis(mean, 0, -1)), -1, 0)
    return out
