"""DDPM noise schedule, epsilon loss, respaced timesteps and pure step kernels.

Notation: ``abar_t = prod_{s <= t} (1 - beta_s)`` for model timesteps ``t = 0..T-1``;
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``. A sampler walks a descending list of model
timesteps ``t_1 > ... > t_N`` and, at step ``i``, moves from level ``abar[i]`` to ``abar[i + 1]``,
where the last level is ``abar = 1`` (clean data). The kernels below take those two levels as
numbers, so DDIM, DDPM and FPS-SMC all share them and none of them knows about respacing.

Schedule tensors are float64: ``1 - abar`` near t = 0 loses digits in float32 (cf. diffusers #9004).
Everything random takes a ``torch.Generator``.

Example::

    sched = DiffusionSchedule()
    loss = sched.training_loss(net, x0, generator)
    x = unconditional_sample(net, sched, (16, 8, 32, 32), num_steps=100, generator=g)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from ebsdray.precision import network_autocast

__all__ = [
    "Denoiser",
    "DiffusionSchedule",
    "Respacing",
    "ddim_step",
    "predict_x0",
    "unconditional_sample",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``eps = net(x_t, t)`` with ``x_t`` (B, C, H, W) and ``t`` (B,) int64 model timesteps."""

Level = float | Tensor
"""A noise level ``abar``: a Python float, a 0-d tensor, or a tensor broadcastable to ``x_t``."""


class Respacing(NamedTuple):
    """A strided sub-chain of the full schedule.

    Attributes
    ----------
    timesteps : (N,) int64 tensor
        Model timesteps to feed the network, descending (``timesteps[0] = T - 1``).
    alphas_cumprod : (N + 1,) float64 tensor
        ``alphas_cumprod[i]`` is abar at ``timesteps[i]``; the extra last entry is 1.0 (x0), so
        step ``i`` goes from ``alphas_cumprod[i]`` to ``alphas_cumprod[i + 1]``.
    """

    timesteps: Tensor
    alphas_cumprod: Tensor


class DiffusionSchedule:
    """Linear-beta DDPM schedule.

    Parameters
    ----------
    num_timesteps : int
        T (1000 by default).
    beta_start, beta_end : float
        Endpoints of the linear beta schedule (1e-4, 0.02: Ho et al. 2020).

    Attributes
    ----------
    betas, alphas_cumprod : (T,) float64 tensors on the CPU
    """

    def __init__(
        self, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> None:
        self.num_timesteps = int(num_timesteps)
        self.betas = torch.linspace(beta_start, beta_end, self.num_timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def _coef(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``values[t]`` shaped (B, 1, ..., 1) in ``like``'s dtype and device."""
        out = values.to(t.device)[t].to(like.dtype)
        return out.view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Diffuse clean data to level ``t``.

        Parameters
        ----------
        x0 : (B, ...) tensor
        t : (B,) int64 tensor
            Model timesteps in ``0..T-1``.
        noise : tensor shaped like ``x0``

        Returns
        -------
        tensor shaped like ``x0``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``
        """
        abar = self._coef(self.alphas_cumprod, t.to(x0.device), x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def training_loss(
        self,
        net: Denoiser,
        x0: Tensor,
        generator: torch.Generator,
        reduction: Literal["mean", "none"] = "mean",
    ) -> Tensor:
        """Epsilon-prediction loss ``E ||eps - net(q_sample(x0, t, eps), t)||^2``, t uniform.

        Parameters
        ----------
        net : callable ``(x_t, t) -> eps``
        x0 : (B, C, H, W) tensor
            Clean training batch.
        generator : torch.Generator
            Source of ``t`` and ``eps``; its device is used for drawing, then results move to
            ``x0.device``.
        reduction : {"mean", "none"}
            "mean": scalar over everything; "none": (B,) mean squared error per sample.

        Returns
        -------
        () or (B,) float32 tensor
        """
        gdev = generator.device
        t = torch.randint(0, self.num_timesteps, (x0.shape[0],), generator=generator, device=gdev)
        noise = torch.randn(x0.shape, generator=generator, device=gdev, dtype=x0.dtype)
        t, noise = t.to(x0.device), noise.to(x0.device)
        pred = net(self.q_sample(x0, t, noise), t)
        # The net may run under bf16 autocast; the loss is always reduced in float32.
        err = (pred.float() - noise.float()).square()
        if reduction == "mean":
            return err.mean()
        if reduction == "none":
            return err.flatten(1).mean(dim=1)
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")

    def respaced_timesteps(self, num_steps: int) -> Respacing:
        """Evenly strided model timesteps for an ``num_steps``-step sampler.

        The chain always starts at ``T - 1`` (where ``x_T ~ N(0, I)`` is accurate) and ends at
        ``t = 0``; ``num_steps = T`` gives back the full chain.

        Parameters
        ----------
        num_steps : int
            N, between 1 and T.

        Returns
        -------
        Respacing
            ``timesteps`` (N,) descending and ``alphas_cumprod`` (N + 1,) ending with 1.0.
        """
        if not 1 <= num_steps <= self.num_timesteps:
            raise ValueError(f"num_steps must be in 1..{self.num_timesteps}; got {num_steps}")
        if num_steps == 1:
            ts = torch.tensor([self.num_timesteps - 1], dtype=torch.int64)
        else:
            grid = torch.linspace(0, self.num_timesteps - 1, num_steps, dtype=torch.float64)
            ts = grid.round().to(torch.int64).flip(0)
        abar = torch.cat([self.alphas_cumprod[ts], torch.ones(1, dtype=torch.float64)])
        return Respacing(ts, abar)


def _level(abar: Level, like: Tensor) -> Tensor:
    # Coefficients are formed in float64 and cast at the end: 1 - abar near abar = 1 loses digits
    # in float32.
    return torch.as_tensor(abar, dtype=torch.float64, device=like.device)


def _cast(coef: Tensor, like: Tensor) -> Tensor:
    return coef.to(like.dtype)


def predict_x0(x_t: Tensor, eps: Tensor, abar_t: Level, clip: bool = True) -> Tensor:
    """Tweedie/DDIM estimate of the clean data from a noise prediction.

    Parameters
    ----------
    x_t, eps : (B, C, H, W) tensors
    abar_t : float or tensor broadcastable to ``x_t``
        Noise level of ``x_t``.
    clip : bool
        Clamp to [-1, 1], the range every data channel is scaled to.

    Returns
    -------
    (B, C, H, W) tensor: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``
    """
    a = _level(abar_t, x_t)
    x0 = _cast(a.rsqrt(), x_t) * x_t - _cast(((1.0 - a) / a).sqrt(), x_t) * eps
    return x0.clamp(-1.0, 1.0) if clip else x0


def ddim_step(
    x_t: Tensor,
    eps: Tensor,
    abar_t: Level,
    abar_prev: Level,
    eta: float,
    noise: Tensor | None,
    clip: bool = True,
) -> Tensor:
    """One DDIM step from level ``abar_t`` to the less noisy level ``abar_prev``.

    ``x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma noise`` with
    ``sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``.
    ``eta = 0`` is deterministic DDIM; ``eta = 1`` gives sigma^2 = the DDPM posterior variance of
    the (strided) chain, i.e. ancestral sampling. With ``abar_prev = 1`` the result is ``x0``.

    Parameters
    ----------
    x_t, eps : (B, C, H, W) tensors
    abar_t, abar_prev : float or tensor broadcastable to ``x_t``
    eta : float
        Stochasticity, >= 0.
    noise : (B, C, H, W) tensor or None
        Standard normal draw; may be None only when sigma is 0 (eta = 0 or last step).
    clip : bool
        Clamp the x0 estimate to [-1, 1]; eps is then recomputed from the clamped x0 so that the
        step stays on the line through ``x_t`` and the estimate it actually uses.

    Returns
    -------
    (B, C, H, W) tensor
    """
    a_t, a_prev = _level(abar_t, x_t), _level(abar_prev, x_t)
    x0 = predict_x0(x_t, eps, a_t, clip=clip)
    if clip:
        eps = _cast((1.0 - a_t).rsqrt(), x_t) * x_t - _cast((a_t / (1.0 - a_t)).sqrt(), x_t) * x0
    var = (eta**2 * (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)).clamp(min=0.0)
    # clamp: rounding can make the deterministic share a tiny negative number at eta = 1.
    dir_coef = (1.0 - a_prev - var).clamp(min=0.0).sqrt()
    out = _cast(a_prev.sqrt(), x_t) * x0 + _cast(dir_coef, x_t) * eps
    if bool((var > 0).any()):
        if noise is None:
            raise ValueError("ddim_step needs noise when eta > 0 and abar_prev < 1")
        out = out + _cast(var.sqrt(), x_t) * noise
    return out


def unconditional_sample(
    net: Denoiser,
    schedule: DiffusionSchedule,
    shape: Sequence[int],
    num_steps: int,
    generator: torch.Generator,
    eta: float = 1.0,
    precision: str = "fp32",
    clip: bool = True,
) -> Tensor:
    """Draw unconditional samples with the respaced DDIM/DDPM chain (for quality checks).

    Parameters
    ----------
    net : callable ``(x_t, t) -> eps``
        An ``nn.Module`` is put in eval mode for the call and restored afterwards.
    schedule : DiffusionSchedule
    shape : (B, C, H, W)
    num_steps : int
        Network evaluations per sample.
    generator : torch.Generator
        All noise comes from it, on its device.
    eta : float
        1.0 = ancestral (DDPM-like), 0.0 = deterministic DDIM.
    precision : {"fp32", "bf16", "auto"}
        Of the network (:mod:`ebsdray.precision`); the chain itself stays float32.
    clip : bool
        Clamp x0 estimates to [-1, 1].

    Returns
    -------
    (B, C, H, W) float32 tensor on the generator's device
    """
    device = generator.device
    spacing = schedule.respaced_timesteps(num_steps)
    abar = spacing.alphas_cumprod.tolist()
    was_training = isinstance(net, nn.Module) and net.training
    if isinstance(net, nn.Module):
        net.eval()
    try:
        with torch.inference_mode():
            x = torch.randn(tuple(shape), generator=generator, device=device)
            for i, t in enumerate(spacing.timesteps.tolist()):
                tt = torch.full((x.shape[0],), t, dtype=torch.int64, device=device)
                with network_autocast(precision, device):
                    eps = net(x, tt)
                eps = eps.float()
                last = abar[i + 1] >= 1.0
                noise = (
                    None
                    if last or eta == 0
                    else torch.randn(x.shape, generator=generator, device=device)
                )
                x = ddim_step(x, eps, abar[i], abar[i + 1], eta, noise, clip=clip)
    finally:
        if was_training:
            net.train()
    return x
