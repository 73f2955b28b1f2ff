"""ebsdray.diffusion: noise schedule, epsilon loss, respaced step kernels, EMA."""

from ebsdray.diffusion.ema import EMA
from ebsdray.diffusion.schedule import (
    Denoiser,
    DiffusionSchedule,
    Respacing,
    ddim_step,
    predict_x0,
    unconditional_sample,
)

__all__ = [
    "EMA",
    "Denoiser",
    "DiffusionSchedule",
    "Respacing",
    "ddim_step",
    "predict_x0",
    "unconditional_sample",
]
