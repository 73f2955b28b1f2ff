"""Pieces shared by the samplers: per-run generators, batched network calls, kernel variances."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ebsdray.diffusion.schedule import Denoiser, DiffusionSchedule
from ebsdray.precision import network_autocast

__all__ = ["SIGMA_FLOOR", "sample_generators"]

KERNELS = ("ddpm", "fps")
SIGMA_FLOOR = 1e-3
"""Smallest noise std the samplers assume (normalized units): a channel below it is treated as
noiseless (replaced down to the last step), and a noiseless observation would make FPS-SMC's last
step's weight a Dirac; 1e-3 is far below any channel's quantization and model error."""


def sample_generators(
    seed: int,
    section: int,
    sample_indices: Sequence[int],
    device: torch.device | str = "cpu",
) -> list[torch.Generator]:
    """One generator per posterior sample, seeded from ``SeedSequence([seed, section, k])``.

    Sample ``k`` of section ``section`` gets the same stream whichever batch or replica draws
    it, so K = 4 at once equals K = 2 + 2 with the matching indices.

    Parameters
    ----------
    seed : int
        Base seed of the reconstruction (>= 0).
    section : int
        Section (slice) index (>= 0).
    sample_indices : sequence of int
        Indices k of the posterior samples (>= 0).
    device : torch device
        Where the generators draw (a CUDA generator for sampling on a GPU; CPU and CUDA streams
        differ, so keep the device fixed for reproducibility).

    Returns
    -------
    list of torch.Generator, one per index.
    """
    out = []
    for k in sample_indices:
        state = np.random.SeedSequence([int(seed), int(section), int(k)]).generate_state(
            1, np.uint64
        )
        out.append(torch.Generator(device=device).manual_seed(int(state[0])))
    return out


def randn_per_run(
    generators: Sequence[torch.Generator], shape: tuple[int, ...], device: torch.device
) -> Tensor:
    """(K, *shape) standard normals, row k drawn from ``generators[k]`` only."""
    return torch.stack(
        [torch.randn(shape, generator=g, device=g.device).to(device) for g in generators]
    )


def rand_per_run(generators: Sequence[torch.Generator], device: torch.device) -> Tensor:
    """(K,) float64 uniforms in [0, 1), one from each generator."""
    return torch.stack(
        [torch.rand((), generator=g, device=g.device, dtype=torch.float64) for g in generators]
    ).to(device)


def fresh_variance(kernel: str, c: float, abar_t: Any, abar_prev: Any) -> Any:
    """Fresh-noise variance ``s^2`` of one reverse step from ``abar_t`` to ``abar_prev``.

    "fps": ``c (1 - abar_prev)`` (Dou & Song); "ddpm": ``c * beta_tilde`` with the DDPM posterior
    variance ``beta_tilde = (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)`` of the
    (respaced) chain, i.e. c = eta^2 of DDIM. Zero on the last step (``abar_prev = 1``).
    """
    # Works on floats and on tensors of levels alike; exactly 0 where abar_prev = 1.
    if kernel == "fps":
        return c * (1.0 - abar_prev)
    if kernel == "ddpm":
        return c * (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")


def check_generators(generators: Sequence[torch.Generator]) -> None:
    if len(generators) == 0:
        raise ValueError("need at least one generator (one per posterior sample)")
    if not all(isinstance(g, torch.Generator) for g in generators):
        raise TypeError("generators must be torch.Generator objects; see sample_generators()")


@contextlib.contextmanager
def network_mode(net: Denoiser, inference: bool = True) -> Iterator[None]:
    """Eval mode for an ``nn.Module`` during sampling, restored afterwards; inference mode
    unless the sampler differentiates through the network (``inference=False``)."""
    was_training = isinstance(net, nn.Module) and net.training
    if isinstance(net, nn.Module):
        net.eval()
    try:
        with torch.inference_mode() if inference else contextlib.nullcontext():
            yield
    finally:
        if was_training:
            net.train()  # type: ignore[union-attr]


def evaluate(net: Denoiser, x: Tensor, t: int, max_batch: int, precision: str) -> Tensor:
    """``eps = net(x, t)`` for every run of (K, B, C, H, W) ``x``; float32 out, same shape.

    Each run's B rows (its particles; a :class:`~ebsdray.inverse.tiling.TiledDenoiser` makes
    them B x tiles) are their own network call, chunked by ``max_batch`` within the run. The
    shapes the network sees therefore depend on B and the section size only, never on how many
    runs share a request: kernels whose blocking depends on the batch size (fp32 GEMMs) cannot
    make a sample depend on its neighbours, and the same seed gives bitwise-identical samples
    for any grouping of samples into requests and replicas.

    ``precision`` ("auto", "fp32", "bf16") covers the network only: the sampler's arithmetic
    (small differences of nearly equal numbers near abar = 1) stays float32.
    """
    if x.ndim != 5:
        raise ValueError(f"x must be (K, B, C, H, W); got shape {tuple(x.shape)}")
    out = []
    with network_autocast(precision, x.device):
        for run in x:
            for chunk in run.split(max(int(max_batch), 1)):
                tt = torch.full((chunk.shape[0],), t, dtype=torch.int64, device=x.device)
                out.append(net(chunk, tt).float())
    return torch.cat(out).view(x.shape)


class Plan(NamedTuple):
    """Levels of a conditioned chain and where each channel's measurement is pinned.

    Attributes
    ----------
    timesteps : list of int, length N'
        Model timesteps, descending: the respaced chain plus the pin timesteps.
    abar : list of float, length N' + 1
        ``abar[i]`` is the level of ``timesteps[i]``; ``abar[N'] = 1`` (clean data).
    pin : (C,) int64 tensor
        Channel c is conditioned at levels ``0..pin[c]`` and free afterwards.
    pin_abar : (C,) float64 tensor
        ``abar[pin[c]]``: the level at which the measurement equals the noiseless state.
    """

    timesteps: list[int]
    abar: list[float]
    pin: Tensor
    pin_abar: Tensor


def plan_levels(
    schedule: DiffusionSchedule,
    num_steps: int,
    sigma: Tensor,
    pin_noise: bool,
    floor: float,
    tail: int = 0,
) -> Plan:
    """Respaced levels with every channel's noise level inserted (see module fps_smc).

    A measurement ``y = x0 + n`` with ``n ~ N(0, sigma^2)`` is, after scaling by
    ``sqrt(a*)`` with ``1 / a* = 1 + sigma^2``, distributed exactly like the diffused state
    ``x_t*`` at level ``a*``: a *noiseless* observation of the chain at t*. With ``pin_noise``
    each channel's t* (the integer model timestep whose ``sqrt(1 / abar - 1)`` is nearest to
    sigma, or the clean level when sigma <= ``floor``) is added to the grid and the channel is
    conditioned only down to it. Without it every channel is conditioned down to the clean
    level (the paper's scheme). ``tail > 0`` adds up to that many timesteps, evenly spaced,
    between the highest pin timestep and 0: the coarse end of a linear respacing loses much of
    the spread a freshly unpinned channel should gain there.
    """
    spacing = schedule.respaced_timesteps(num_steps)
    ts = set(spacing.timesteps.tolist())
    C = sigma.shape[0]
    pin_t: list[int | None] = [None] * C  # None: the clean level
    if pin_noise:
        sig_eff = (1.0 / schedule.alphas_cumprod - 1.0).sqrt()
        for c, s in enumerate(sigma.double().cpu().tolist()):
            if s <= floor:
                continue
            t = int((sig_eff - s).abs().argmin())
            if abs(float(sig_eff[t]) - s) < s:  # nearer than the clean level (sigma_eff 0)
                pin_t[c] = t
                ts.add(t)
    pinned = [t for t in pin_t if t is not None]
    if tail > 0 and pinned and max(pinned) > 0:
        top = max(pinned)
        ts.update(torch.linspace(0, top, min(top, tail) + 1).round().long().tolist())
    timesteps = sorted(ts, reverse=True)
    abar = [float(schedule.alphas_cumprod[t]) for t in timesteps] + [1.0]
    index = {t: i for i, t in enumerate(timesteps)}
    pin = torch.tensor([len(timesteps) if t is None else index[t] for t in pin_t])
    pin_abar = torch.tensor([abar[int(p)] for p in pin], dtype=torch.float64)
    return Plan(timesteps, abar, pin, pin_abar)
