"""Guided posterior sampling: a DDPM chain steered by each channel's observed residual.

One chain per posterior sample (no particles). At every step the network's clean estimate
``x0hat(x_t)`` is corrected by the gradient, *through the network*, of the measurement's
log-likelihood (Pseudoinverse-guided diffusion, Song et al. ICLR 2023, for an inpainting mask;
DPS, Chung et al. ICLR 2023, is the same step with an unweighted residual)::

    log p(y | x_t) ~ -1/2 sum_observed (y - x0hat)^2 / (r_t^2 + sigma_c^2),   r_t^2 = 1 - a
    x0' = x0hat + w (1 - a) / sqrt(a) grad_{x_t} log p(y | x_t)        (Tweedie with the guided score)

``r_t^2`` is the variance of x0hat's error at level ``a`` (PiGDM's choice for data of unit
scale) and ``sigma_c`` the channel's own noise level, so a noisy channel (PL) pulls weakly near
the end of the chain and cannot be fitted to its noise, while a precise one (EBSD) pulls hard.
The gradient is what carries an observed pixel's value into the unobserved pixels of its grain:
the network's Jacobian couples them.

Observed entries are also replaced by the diffused measurement ``sqrt(a') y + sqrt(1 - a'/a*)
z`` down to the channel's noise-equivalent level ``a*`` (``1 / a* = 1 + sigma^2``; see
:func:`~ebsdray.inverse._common.plan_levels`), as in the replacement sampler, and then run free,
which keeps measurement noise out of the output.

Warm start (``start_from``): a chain need not start from pure noise. Given a cheap estimate of
the section (nearest-upsampled EBSD, observed PL: :func:`warm_start_estimate`), the chain starts
at timestep ``start_t`` from the estimate diffused to that level, and only the last
``start_t / T`` of the chain is run: the network keeps the estimate's structure where it is
right (grain interiors) and redraws what noise of that level hides (boundaries).

Every run draws only from its own generator and is its own network call, so a sample never
depends on which other samples share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ebsdray.diffusion.schedule import Denoiser, DiffusionSchedule
from ebsdray.inverse._common import (
    check_generators,
    evaluate,
    network_mode,
    plan_levels,
    randn_per_run,
)
from ebsdray.inverse.fps_smc import SIGMA_FLOOR
from ebsdray.inverse.operators import Observation
from ebsdray.precision import resolve_precision

__all__ = ["guided_chain", "guided_sampler", "warm_start_estimate"]


def warm_start_estimate(observation: Observation) -> Tensor:
    """A cheap estimate of the section: each channel's observed entries, filled by nearest
    neighbour where unobserved (zero for a channel with no observed entry).

    Returns
    -------
    (C, H, W) float32 tensor on the observation's device.
    """
    y = observation.y.detach().cpu().numpy()
    m = observation.mask.detach().cpu().numpy() > 0
    out = np.zeros_like(y)
    for c in range(y.shape[0]):
        if m[c].all():
            out[c] = y[c]
        elif m[c].any():
            idx = ndimage.distance_transform_edt(~m[c], return_distances=False, return_indices=True)
            out[c] = y[c][idx[0], idx[1]]
    return torch.from_numpy(out).to(observation.y.device)


def guided_chain(schedule: DiffusionSchedule, num_steps: int, start_t: int | None) -> list[int]:
    """Descending model timesteps of a respaced chain over ``[0, start_t]`` (or the whole
    schedule)."""
    top = schedule.num_timesteps - 1 if start_t is None else int(start_t)
    if not 0 < top < schedule.num_timesteps:
        raise ValueError(f"start_t must be in (0, {schedule.num_timesteps}); got {start_t}")
    n = max(1, min(int(num_steps), top + 1))
    return sorted(set(np.linspace(0, top, n).round().astype(int).tolist()), reverse=True)


def guided_sampler(
    denoiser: Denoiser,
    schedule: DiffusionSchedule,
    observation: Observation,
    generators: Sequence[torch.Generator],
    *,
    num_steps: int = 50,
    guidance: float | Sequence[float] = 1.0,
    replace: bool = True,
    start_from: Tensor | None = None,
    start_t: int | None = None,
    max_batch: int = 256,
    precision: str = "fp32",
) -> tuple[Tensor, dict[str, Any]]:
    """Draw K posterior samples with residual guidance (module docstring), one per generator.

    Parameters
    ----------
    denoiser : callable ``(x_t (B, C, H, W), t (B,) int64) -> eps``
        The network or a :class:`~ebsdray.inverse.tiling.TiledDenoiser` around it.
    schedule : DiffusionSchedule
    observation : Observation
        ``y, mask`` (C, H, W), per-channel ``sigma``; its device is the sampling device.
    generators : sequence of K torch.Generator
        Run k draws only from ``generators[k]``.
    num_steps : int
        N respaced steps over the part of the chain that runs (each is one forward and one
        backward pass of the network: about 3 forward passes' cost).
    guidance : float
        Weight w of the likelihood gradient (1 = the PiGDM step; 0 = replacement only).
    replace : bool
        Replace observed entries by the diffused measurement down to each channel's noise level.
    start_from : optional (C, H, W) estimate to warm-start from (see :func:`warm_start_estimate`).
    start_t : int, optional
        Timestep the warm start is diffused to (required with ``start_from``); without a warm
        start the chain starts from pure noise at the last timestep.
    max_batch : int
        Largest number of windows per network call, within one run.
    precision : {"fp32", "bf16", "auto"}
        Of the network only; the sampler computes in float32.

    Returns
    -------
    samples : (K, C, H, W) float32 tensor on the observation's device
    info : dict
        ``network_evaluations`` (= N K forward passes, each with its backward when guided),
        ``num_steps``, ``timesteps``, and the settings used.
    """
    check_generators(generators)
    w = torch.as_tensor(guidance, dtype=torch.float32).flatten()
    if w.numel() == 1:
        w = w.expand(observation.channels)
    if w.numel() != observation.channels or not bool(torch.isfinite(w).all() & (w >= 0).all()):
        raise ValueError(
            f"guidance must be one finite weight >= 0 or one per channel "
            f"({observation.channels}); got {guidance}"
        )
    if (start_from is None) != (start_t is None):
        raise ValueError("a warm start needs both start_from (an estimate) and start_t")
    device = observation.y.device
    K, shape = len(generators), observation.shape
    y, m = observation.y.float(), observation.mask.float()
    sigma2 = observation.sigma.float().to(device).clamp(min=SIGMA_FLOOR).square().view(-1, 1, 1)
    # each channel's noise-equivalent level: replaced down to it, free below it
    pin = plan_levels(schedule, 1, observation.sigma, True, SIGMA_FLOOR)
    pin_t = [pin.timesteps[int(p)] if int(p) < len(pin.timesteps) else -1 for p in pin.pin]
    # (-1: a noiseless channel, replaced down to the last step)
    a_star = pin.pin_abar.to(device).float().view(-1, 1, 1)
    pin_t = torch.tensor(pin_t, device=device).view(-1, 1, 1)
    w = w.to(device).view(-1, 1, 1)
    timesteps = guided_chain(schedule, num_steps, start_t)
    abar = [float(schedule.alphas_cumprod[t]) for t in timesteps] + [1.0]
    precision = resolve_precision(precision, device)

    with network_mode(denoiser, inference=False):  # the guidance differentiates the network
        z = randn_per_run(generators, shape, device)
        if start_from is None:
            x = z
        else:
            a0 = abar[0]
            x = math.sqrt(a0) * start_from.to(device).float() + math.sqrt(1 - a0) * z
        for i, t in enumerate(timesteps):
            a, a_next = abar[i], abar[i + 1]
            x0 = _guided_x0(denoiser, x, t, a, y, m, sigma2, w, max_batch, precision)
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
            if a_next < 1.0:  # DDPM ancestral step (eta = 1)
                s2 = (1 - a_next) / (1 - a) * (1 - a / a_next)
                noise = randn_per_run(generators, shape, device)
                x = (
                    math.sqrt(a_next) * x0
                    + math.sqrt(max(1 - a_next - s2, 0.0)) * eps
                    + math.sqrt(s2) * noise
                )
                if replace:
                    on = m * (pin_t <= timesteps[i + 1]).float()  # channel still pinned at a'
                    sd = (1.0 - a_next / a_star).clamp(min=0.0).sqrt()
                    y_next = math.sqrt(a_next) * y + sd * randn_per_run(generators, shape, device)
                    x = on * y_next + (1 - on) * x
            else:
                x = x0
    info: dict[str, Any] = {
        "network_evaluations": len(timesteps) * K,
        "num_steps": len(timesteps),
        "timesteps": timesteps,
        "guidance": w.flatten().tolist(),
        "replace": bool(replace),
        "start_t": None if start_t is None else int(start_t),
        "precision": precision,
    }
    return x.detach().float(), info


def _guided_x0(
    net: Denoiser,
    x: Tensor,
    t: int,
    a: float,
    y: Tensor,
    m: Tensor,
    sigma2: Tensor,
    weight: Tensor,
    max_batch: int,
    precision: str,
) -> Tensor:
    """Guided clean estimate (K, C, H, W): x0hat plus the weighted likelihood step, one run at a
    time (each run its own network calls, forward and backward)."""
    r2 = 1.0 - a  # variance of x0hat's error at this level (PiGDM)
    guided = bool((weight > 0).any())
    # weights > 1 act while noise hides the grains (the network's Jacobian spreads an
    # observation over its grain) and fade to 1, the calibrated PiGDM step, as a -> 1: a weight
    # w > 2 there overshoots the observed entries themselves; weights <= 1 (0: unguided) stay
    w_t = torch.where(weight > 1, 1.0 + (weight - 1.0) * r2, weight)
    out = []
    for run in x:
        xr = run.detach()[None].requires_grad_(guided)
        eps = evaluate(net, xr[None], t, max_batch, precision)[0]
        x0 = (xr - math.sqrt(1 - a) * eps) / math.sqrt(a)
        if guided:
            log_lik = -0.5 * (w_t * (m * (y - x0)).square() / (r2 + sigma2)).sum()
            (grad,) = torch.autograd.grad(log_lik, xr)
            x0 = x0 + (1 - a) / math.sqrt(a) * grad
        out.append(x0.detach()[0])
    return torch.stack(out)
