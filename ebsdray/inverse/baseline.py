"""A cheap baseline posterior sampler: DDPM ancestral steps with measurement replacement.

One chain per posterior sample (no particles, no weights): N network calls per sample against
N M for FPS-SMC. After each step to level ``a'`` the measured entries are replaced by a fresh
draw of the diffused measurement, ``sqrt(a') y + sqrt(1 - a' / a*) z`` (score-SDE / RePaint
inpainting without RePaint's resampling loops). ``a*`` is the channel's noise-equivalent level
(``1 / a* = 1 + sigma^2``, see :func:`ebsdray.inverse._common.plan_levels`): a noisy measurement
is the noiseless state at ``a*``, so the channel is replaced only down to that level and then
denoised freely, which keeps measurement noise out of the output (plain replacement down to
the last step would return the noisy y). Without weights the unmeasured entries are not
corrected for what the measurement implies about them, so the posterior mean is biased (see
``bench/sampler_calibration.py``); it is fast and a useful reference for speed and quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ebsdray.diffusion.schedule import Denoiser, DiffusionSchedule, ddim_step
from ebsdray.inverse._common import (
    SIGMA_FLOOR,
    check_generators,
    evaluate,
    network_mode,
    plan_levels,
    randn_per_run,
)
from ebsdray.inverse.operators import Observation

__all__ = ["replacement_sampler"]


def replacement_sampler(
    denoiser: Denoiser,
    schedule: DiffusionSchedule,
    observation: Observation,
    generators: Sequence[torch.Generator],
    *,
    num_steps: int = 100,
    max_batch: int = 256,
    precision: str = "fp32",
    clip: bool = True,
) -> tuple[Tensor, dict[str, Any]]:
    """Draw K samples by DDPM ancestral sampling with measurement replacement.

    Parameters
    ----------
    denoiser : callable ``(x_t (B, C, H, W), t (B,) int64) -> eps``
    schedule : DiffusionSchedule
    observation : Observation
        ``y, mask`` (C, H, W), per-channel ``sigma``; its device is the sampling device.
    generators : sequence of K torch.Generator
        Run k draws only from ``generators[k]`` (see :func:`~ebsdray.inverse.sample_generators`).
    num_steps : int
        N respaced steps (plus one per distinct channel noise level).
    max_batch, precision, clip
        As for :func:`~ebsdray.inverse.fps_smc.fps_smc`.

    Returns
    -------
    samples : (K, C, H, W) float32 tensor on the observation's device
    info : dict
        ``network_evaluations`` (= N' K), ``timesteps``.
    """
    check_generators(generators)
    device = observation.y.device
    K, shape = len(generators), observation.shape
    y, m = observation.y.float(), observation.mask.float()
    plan = plan_levels(schedule, num_steps, observation.sigma, True, SIGMA_FLOOR)
    abar = plan.abar
    a_star = plan.pin_abar.to(device)

    with network_mode(denoiser):
        x = randn_per_run(generators, shape, device)  # (K, C, H, W)
        for i, t in enumerate(plan.timesteps):
            a, a_next = abar[i], abar[i + 1]
            eps = evaluate(denoiser, x.unsqueeze(1), t, max_batch, precision)[:, 0]
            last = a_next >= 1.0
            noise = None if last else randn_per_run(generators, shape, device)
            x = ddim_step(x, eps, a, a_next, 1.0, noise, clip=clip)
            cond = (plan.pin >= i + 1).to(device).view(-1, 1, 1)
            if bool(cond.any()):
                sd = (1.0 - a_next / a_star).clamp(min=0.0).sqrt().view(-1, 1, 1).float()
                z = randn_per_run(generators, shape, device)
                y_next = math.sqrt(a_next) * y + sd * z
                m_i = m * cond.float()
                x = m_i * y_next + (1 - m_i) * x
    info: dict[str, Any] = {
        "network_evaluations": len(plan.timesteps) * K,
        "num_steps": len(plan.timesteps),
        "timesteps": plan.timesteps,
    }
    return x.float(), info
