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
    SIGMA_FLOOR,
    check_generators,
    evaluate,
    network_mode,
    plan_levels,
    randn_per_run,
)
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
    guidance : float or sequence of C floats
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
    w = _guidance_weights(guidance, observation.channels).to(observation.y.device)
    if (start_from is None) != (start_t is None):
        raise ValueError("a warm start needs both start_from (an estimate) and start_t")
    device = observation.y.device
    y, m = observation.y.float(), observation.mask.float()
    sigma2 = observation.sigma.float().to(device).clamp(min=SIGMA_FLOOR).square().view(-1, 1, 1)
    pin_t, a_star = _pin_levels(schedule, observation)
    timesteps = guided_chain(schedule, num_steps, start_t)
    abar = [float(schedule.alphas_cumprod[t]) for t in timesteps] + [1.0]
    precision = resolve_precision(precision, device)
    with network_mode(denoiser, inference=False):  # the guidance differentiates the network
        x = randn_per_run(generators, observation.shape, device)
        if start_from is not None:  # warm start: the estimate diffused to the first level
            x = math.sqrt(abar[0]) * start_from.to(device).float() + math.sqrt(1 - abar[0]) * x
        for i, t in enumerate(timesteps):
            a, a_next = abar[i], abar[i + 1]
            x0 = _guided_x0(denoiser, x, t, a, y, m, sigma2, w, max_batch, precision)
            x = _ancestral_step(generators, x, x0.clamp(-1.0, 1.0), a, a_next)
            if replace and a_next < 1.0:
                on = m * (pin_t <= timesteps[i + 1]).float()  # channel still pinned at a'
                x = _replace_observed(generators, x, y, on, a_next, a_star)
    return x.detach().float(), {
        "network_evaluations": len(timesteps) * len(generators),
        "num_steps": len(timesteps),
        "timesteps": timesteps,
        "guidance": w.flatten().tolist(),
        "replace": bool(replace),
        "start_t": None if start_t is None else int(start_t),
        "precision": precision,
    }


def _guidance_weights(guidance: float | Sequence[float], channels: int) -> Tensor:
    """(C, 1, 1) float32 weights from one weight or one per channel, each finite and >= 0."""
    w = torch.as_tensor(guidance, dtype=torch.float32).flatten()
    if w.numel() == 1:
        w = w.expand(channels)
    if w.numel() != channels or not bool(torch.isfinite(w).all() & (w >= 0).all()):
        raise ValueError(
            f"guidance must be one finite weight >= 0 or one per channel "
            f"({channels}); got {guidance}"
        )
    return w.view(-1, 1, 1)


def _pin_levels(schedule: DiffusionSchedule, observation: Observation) -> tuple[Tensor, Tensor]:
    """Each channel's noise-equivalent level (:func:`~ebsdray.inverse._common.plan_levels`):
    observed entries are replaced down to it and run free below it.

    Returns its timestep, (C, 1, 1) int64 (-1: a noiseless channel, replaced down to the last
    step), and its level ``a*``, (C, 1, 1) float32, both on the observation's device.
    """
    device = observation.y.device
    pin = plan_levels(schedule, 1, observation.sigma, True, SIGMA_FLOOR)
    pin_t = [pin.timesteps[int(p)] if int(p) < len(pin.timesteps) else -1 for p in pin.pin]
    a_star = pin.pin_abar.to(device).float().view(-1, 1, 1)
    return torch.tensor(pin_t, device=device).view(-1, 1, 1), a_star


def _ancestral_step(
    generators: Sequence[torch.Generator], x: Tensor, x0: Tensor, a: float, a_next: float
) -> Tensor:
    """DDPM ancestral step (eta = 1) of x (K, C, H, W) from level a to a' through the clean
    estimate x0 (K, C, H, W); x0 itself on the last step (a' = 1)."""
    if a_next >= 1.0:
        return x0
    eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    s2 = (1 - a_next) / (1 - a) * (1 - a / a_next)
    noise = randn_per_run(generators, x.shape[1:], x.device)
    return (
        math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - s2, 0.0)) * eps + math.sqrt(s2) * noise
    )


def _replace_observed(
    generators: Sequence[torch.Generator],
    x: Tensor,
    y: Tensor,
    on: Tensor,
    a_next: float,
    a_star: Tensor,
) -> Tensor:
    """x (K, C, H, W) with the entries ``on`` (C, H, W) replaced by the measurement y (C, H, W)
    diffused to level a' from each channel's noise-equivalent level ``a*`` (C, 1, 1)."""
    sd = (1.0 - a_next / a_star).clamp(min=0.0).sqrt()
    y_next = math.sqrt(a_next) * y + sd * randn_per_run(generators, y.shape, y.device)
    return on * y_next + (1 - on) * x


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
