"""Per-observation alignment MLP for EBSD super-resolution.

A small residual MLP ``c -> c + f(c)`` on the 3 EBSD channels is fitted, for one observation, to map
the reconstructed channels at the observed pixels onto the observed values, and is then applied to
every pixel. It absorbs systematic deviations of the model's outputs (a shift or shrinkage of the
channels) that the observed pixels reveal. ``f`` starts at zero, so the map starts as the identity
and early stopping on held-out observed pixels can only move it where that helps.

Targets are unwrapped: each observed orientation is expressed as the symmetry-equivalent closest to
the reconstruction before encoding, so a pair on opposite faces of the fundamental zone (channels
near +1 and -1, nearly the same orientation) is a small residual, not a jump across the zone.
Decoding accepts channels slightly beyond [-1, 1] for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ebsdray.aggregate.orientations import align_to_reference
from ebsdray.conventions import CUBE_SEMI_EDGE
from ebsdray.data.codec import ChannelCodec
from ebsdray.data.cubochoric import from_cubochoric, to_cubochoric
from ebsdray.data.symmetry import reduce_to_fundamental_zone


@dataclass(frozen=True)
class AlignmentConfig:
    """Settings of the alignment MLP.

    Attributes
    ----------
    hidden : width of the hidden layer (2 layers: 3 -> hidden -> 3, GELU between).
    steps : maximum full-batch Adam steps.
    lr : Adam learning rate.
    holdout : fraction of the observed pixels held out for early stopping.
    patience : stop after this many steps without a better held-out loss.
    huber_beta : the smooth-L1 transition (in channel units); beyond it a residual counts linearly,
        so the few observed pixels that the reconstruction puts in the wrong grain (at boundaries)
        do not dominate the fit.
    min_pixels : fewer observed pixels than this: no fit, identity map.
    max_pixels : at most this many observed pixels (a seeded random subset) are used: the MLP has
        ~450 parameters, and a fully observed 128 x 128 section would make every step 4x dearer
        without changing the fit.
    """

    hidden: int = 64
    steps: int = 300
    lr: float = 3e-3
    holdout: float = 0.2
    patience: int = 40
    huber_beta: float = 0.05
    min_pixels: int = 32
    max_pixels: int = 4096


def decode_unwrapped(channels: np.ndarray, codec: ChannelCodec) -> np.ndarray:
    """(..., 3) channels, possibly a little beyond [-1, 1], -> (..., 4) quaternions in the zone.

    Unlike :meth:`ChannelCodec.decode_ebsd` (which clips to the zone's box), values are only clipped
    to the cubochoric cube, so an equivalent just across a zone face decodes to itself.
    """
    c = np.clip(
        np.asarray(channels, np.float64) * codec.ebsd_extent, -CUBE_SEMI_EDGE, CUBE_SEMI_EDGE
    )
    return reduce_to_fundamental_zone(from_cubochoric(c))


def unwrapped_targets(
    reconstructed: np.ndarray, observed_q: np.ndarray, codec: ChannelCodec
) -> np.ndarray:
    """Channels (N, 3) of the observed orientations (N, 4) written as the equivalent closest to the
    reconstructed channels (N, 3)."""
    ref = decode_unwrapped(reconstructed, codec)
    return to_cubochoric(align_to_reference(observed_q, ref)) / codec.ebsd_extent


def _mlp(x: torch.Tensor, p: list[torch.Tensor]) -> torch.Tensor:
    w1, b1, w2, b2 = p
    return x + F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


def fit_alignment(
    reconstructed: np.ndarray,
    observed: np.ndarray,
    mask: np.ndarray,
    codec: ChannelCodec,
    config: AlignmentConfig | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit the alignment MLP on the observed pixels and apply it to every pixel.

    Parameters
    ----------
    reconstructed : (3, H, W) reconstructed EBSD channels (e.g. the mean of the K samples).
    observed : (3, H, W) observed EBSD channels (values at unobserved pixels are ignored).
    mask : (H, W) bool, the observed EBSD pixels.
    codec : decodes the observed channels into orientations for the unwrapped targets.
    config : MLP settings (default :class:`AlignmentConfig`).
    seed : seeds the initialization and the held-out split.

    Returns
    -------
    aligned : (3, H, W) float64 channels (may exceed [-1, 1] slightly; decode with
        :func:`decode_unwrapped`).
    info : ``{"pixels", "steps", "holdout_loss_before", "holdout_loss_after"}``; ``steps`` is the
        step of the kept weights (0 = identity kept).
    """
    config = config or AlignmentConfig()
    rec = np.asarray(reconstructed, np.float64)
    m = np.asarray(mask, bool)
    n = int(m.sum())
    if n < config.min_pixels:
        return rec, {"pixels": float(n), "steps": 0.0}
    x_obs = np.moveaxis(rec, 0, -1)[m]  # (N, 3)
    q_obs = decode_unwrapped(np.moveaxis(np.asarray(observed, np.float64), 0, -1)[m], codec)
    y_obs = unwrapped_targets(x_obs, q_obs, codec)

    # The caller may be a sampler running under inference_mode / no_grad: this fit needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        return _fit(rec, x_obs, y_obs, n, config, seed)


def _fit(
    rec: np.ndarray,
    x_obs: np.ndarray,
    y_obs: np.ndarray,
    n: int,
    config: AlignmentConfig,
    seed: int,
) -> tuple[np.ndarray, dict[str, float]]:
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)[: config.max_pixels]
    n_val = max(1, round(config.holdout * len(perm)))
    x = torch.as_tensor(x_obs, dtype=torch.float32)
    y = torch.as_tensor(y_obs, dtype=torch.float32)
    xv, yv, xt, yt = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]

    h = config.hidden
    params = [
        torch.randn(h, 3, generator=gen) * (2.0 / 3.0) ** 0.5,  # He-like scale for GELU
        torch.zeros(h),
        torch.zeros(3, h),  # zero output layer: the fit starts from the identity map
        torch.zeros(3),
    ]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=config.lr)

    def loss(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(_mlp(xs, params), ys, beta=config.huber_beta)

    with torch.no_grad():
        best = before = float(loss(xv, yv))
    best_params, best_step, since = [p.detach().clone() for p in params], 0, 0
    for step in range(1, config.steps + 1):
        opt.zero_grad(set_to_none=True)
        loss(xt, yt).backward()
        opt.step()
        with torch.no_grad():
            val = float(loss(xv, yv))
        if val < best:
            best, best_step, since = val, step, 0
            best_params = [p.detach().clone() for p in params]
        else:
            since += 1
            if since >= config.patience:
                break

    info = {
        "pixels": float(n),
        "steps": float(best_step),
        "holdout_loss_before": before,
        "holdout_loss_after": best,
    }
    if best_step == 0:
        return rec, info
    with torch.no_grad():
        flat = torch.as_tensor(np.moveaxis(rec, 0, -1).reshape(-1, 3), dtype=torch.float32)
        out = _mlp(flat, best_params).double().numpy().reshape(*rec.shape[1:], 3)
    return np.moveaxis(out, -1, 0), info
