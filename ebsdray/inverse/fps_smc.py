"""FPS-SMC posterior sampling (Dou & Song, ICLR 2024) for ``y = m * (x + n)``.

K independent runs (one posterior sample each) x M particles move together through the levels of
a respaced chain, with one network call per step for all K M particles (chunked to
``max_batch``). Step i goes from level ``a = abar[i]`` to ``a' = abar[i + 1]`` (last level 1):

1. Measurement path, one per run, drawn from the forward process given the measurement:
   ``y_t = sqrt(a) y + sqrt(1 - a / a*) m z`` at the first level, then
   ``y' = sqrt(a') y + sqrt((1 - r' - s2_y) / (1 - r)) (y_t - sqrt(a) y) + sqrt(s2_y) m z``
   with levels ``r = a / a*`` relative to the channel's pin level ``a*`` (:class:`Ablation`)
   and the path's fresh variance ``s2_y`` at those levels.
2. Particles start at ``x = m y_t + (1 - m) z``.
3. Each step: ``eps = net(x_t, t)``, ``x0hat`` (clamped), kernel mean ``mu = sqrt(a') x0hat +
   sqrt(1 - a' - s2) eps`` with fresh variance ``s2`` (plus the x0 variance), residual
   measurement variance ``A``. Weight = predictive likelihood of the next path level under the
   parent, ``log w = -sum_measured [(y' - mu)^2 / (s2 + A) + log 2 pi (s2 + A)] / 2``; it
   depends on the parent only, so resample first (systematic, log-sum-exp normalized, when
   ESS <= ess_threshold M), then propose from kernel x likelihood: free entries ``N(mu, s2)``,
   measured entries ``N((A mu + s2 y') / (s2 + A), s2 A / (s2 + A))``.
4. Output: the final state of one particle per run, drawn by weight.

The defaults depart from the paper where ``bench/sampler_calibration.py`` (exact Gaussian
denoiser against the exact posterior) found it biased or mis-calibrated; :class:`Ablation`
says how and why, and holds the switches back to the paper's scheme for such studies.

Every run draws only from its own generator, in a fixed order, and its particles are their own
network calls, so a sample never depends on which other samples share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ebsdray.diffusion.schedule import Denoiser, DiffusionSchedule, predict_x0
from ebsdray.inverse._common import (
    KERNELS,
    SIGMA_FLOOR,
    Plan,
    check_generators,
    evaluate,
    fresh_variance,
    network_mode,
    plan_levels,
    rand_per_run,
    randn_per_run,
    sample_generators,
)
from ebsdray.inverse.operators import Observation
from ebsdray.precision import resolve_precision

__all__ = [
    "DEFAULT_C",
    "DEFAULT_FREE_KERNEL",
    "DEFAULT_KERNEL",
    "Ablation",
    "fps_smc",
    "sample_generators",
    "systematic_resample",
]

DEFAULT_KERNEL = "fps"
DEFAULT_FREE_KERNEL = "ddpm"
DEFAULT_C = {"ddpm": 1.0, "fps": 0.95}

Variance = float | Tensor


@dataclass(frozen=True)
class Ablation:
    """Research switches of :func:`fps_smc`: where its defaults depart from the paper, and why.

    The defaults are the calibrated sampler. ``Ablation(kernel="fps", c=0.95, pin_noise=False,
    x0_variance=False, fine_tail=False)`` with ``ess_threshold=1.0`` is the paper's scheme;
    ``bench/sampler_calibration.py`` measures each switch against an exact Gaussian posterior.

    - **Noise pinning** (``pin_noise``). ``y = x0 + n``, scaled by ``sqrt(a*)`` with
      ``1 / a* = 1 + sigma^2``, is distributed exactly as the diffused state at level ``a*``. So
      a channel is a *noiseless* observation of the chain at its own noise level (the nearest
      model timestep, inserted into the grid) and runs free below it (``A = a' SIGMA_FLOOR^2``).
      The paper applies an independent ``N(0, a' sigma^2)`` likelihood at every level, which
      counts the single noise draw N times: the measured entries come out under-dispersed.
    - **Kernels** (``kernel``, ``c``, ``free_kernel``). While a channel is measured it uses the
      paper's "fps" kernel: it re-draws x from x0hat every step, so unmeasured entries follow
      the measurement at once. Once free it uses the "ddpm" kernel (ancestral DDPM), whose
      small steps keep the denoised entries' spread, which the fps kernel over-disperses. A
      "ddpm" kernel throughout mixes slowly.
    - **x0 variance** (``x0_variance``). A kernel that plugs in the mean x0hat drops
      ``coef^2 Var(x0 | x_t)`` (``coef``: x0hat's coefficient in ``mu``; ~1 for the fps kernel,
      which therefore under-disperses even the prior). It is added back as the Analytic-DPM
      estimate (Bao et al., ICLR 2022) ``Var ~ (1 - a) / a (1 - mean eps^2)`` per particle and
      channel, also on the last step.
    - **Fine tail** (``fine_tail``). Below the first pin level the chain steps through every
      model timestep down to 0 (at most N/4 more steps) with the free kernel on all channels
      and on the measurement path: the coarse end of a linear respacing leaves a freshly
      unpinned channel short of its posterior variance.
    - **Measurement path** (``path_kernel``, ``path_c``). Unbiased only with the particles'
      own kernel: a ddpm kernel driven by an fps path biases the posterior mean.

    Known limit: a channel with no measured entry at all (a missing modality) follows the fps
    kernel's prior, which is under-dispersed.

    Attributes
    ----------
    kernel : {"fps", "ddpm"}
        Kernel while a channel is measured.
    c : float in (0, 1], optional
        Share of the kernel's fresh noise: ``s2 = c (1 - a')`` for "fps", ``c beta_tilde`` for
        "ddpm" (DDIM's eta^2). Default 0.95 for "fps" (the paper), 1.0 for "ddpm".
    free_kernel : {"ddpm", "fps"}
        Kernel of a channel below its pin level (only with ``pin_noise``), with its default c.
    x0_variance, pin_noise, fine_tail : bool
        The departures above (False: the paper).
    path_kernel, path_c : optional
        Kernel of the measurement path and its c (default: the particles' kernel and c).
    """

    kernel: str = DEFAULT_KERNEL
    c: float | None = None
    free_kernel: str = DEFAULT_FREE_KERNEL
    x0_variance: bool = True
    pin_noise: bool = True
    fine_tail: bool = True
    path_kernel: str | None = None
    path_c: float | None = None

    def __post_init__(self) -> None:
        path_kernel = self.path_kernel or self.kernel
        for name, k in (
            ("kernel", self.kernel),
            ("free_kernel", self.free_kernel),
            ("path_kernel", path_kernel),
        ):
            if k not in KERNELS:
                raise ValueError(f"unknown {name} {k!r}; expected one of {KERNELS}")
        c = DEFAULT_C[self.kernel] if self.c is None else float(self.c)
        path_c = self.path_c
        if path_c is None:
            path_c = c if path_kernel == self.kernel else DEFAULT_C[path_kernel]
        if not (0.0 < c <= 1.0 and 0.0 < path_c <= 1.0):
            raise ValueError(f"c and path_c must be in (0, 1]; got {c}, {path_c}")
        object.__setattr__(self, "c", c)  # frozen: fill in the defaults once
        object.__setattr__(self, "path_kernel", path_kernel)
        object.__setattr__(self, "path_c", path_c)

    def plan(self, schedule: DiffusionSchedule, num_steps: int, sigma: Tensor) -> Plan:
        """Levels of the chain: N respaced steps, each channel's pin level, the fine tail."""
        tail = max(num_steps // 4, 1) if self.fine_tail else 0
        return plan_levels(schedule, num_steps, sigma, self.pin_noise, SIGMA_FLOOR, tail)

    def noise_variance(self, sigma: Tensor) -> Tensor:
        """(C,) float64 noise variance the weights assume (the floor's once pinned)."""
        sig2 = sigma.double().clamp(min=SIGMA_FLOOR).square()
        return torch.full_like(sig2, SIGMA_FLOOR**2) if self.pin_noise else sig2

    def kernel_variance(self, a: float, a_next: float, measured: Tensor, tail: bool) -> Variance:
        """Particles' fresh variance from level a to a': a float, or (C, 1, 1) when the
        measured channels (``measured``, (C,) bool) and the free ones use different kernels."""
        s2 = fresh_variance(self.kernel, self.c, a, a_next)
        if bool(measured.all()) or self.free_kernel == self.kernel:
            return s2
        s2_free = fresh_variance(self.free_kernel, DEFAULT_C[self.free_kernel], a, a_next)
        if tail:  # the fine tail: small steps throughout
            return s2_free
        return torch.where(measured.view(-1, 1, 1), s2, s2_free)

    def path_variance(self, r: Tensor, r_next: Tensor, tail: bool) -> Tensor:
        """(C,) fresh variance of the measurement path between relative levels r, r' (C,)."""
        if tail and self.path_kernel == self.kernel:  # the path follows the particles' kernel
            return fresh_variance(self.free_kernel, DEFAULT_C[self.free_kernel], r, r_next)
        return fresh_variance(self.path_kernel, self.path_c, r, r_next)


def systematic_resample(weights: Tensor, u: Tensor) -> Tensor:
    """Systematic resampling of every row.

    Parameters
    ----------
    weights : (K, M) tensor
        Normalized weights per row.
    u : (K,) tensor of uniforms in [0, 1)
        One offset per row.

    Returns
    -------
    (K, M) int64 ancestor indices, nondecreasing in each row.
    """
    M = weights.shape[1]
    cdf = weights.double().cumsum(1)
    cdf[:, -1] = 1.0  # rounding must not leave the last position above the total
    pos = (u.double().view(-1, 1) + torch.arange(M, dtype=torch.float64, device=u.device)) / M
    return torch.searchsorted(cdf, pos.to(cdf.device), right=True).clamp_(max=M - 1)


def _categorical(log_w: Tensor, u: Tensor) -> Tensor:
    """One index per row of normalized log weights (K, M), by inversion of uniforms (K,)."""
    cdf = log_w.exp().cumsum(1)
    cdf[:, -1] = 1.0
    return torch.searchsorted(cdf, u.view(-1, 1), right=True).clamp_(max=log_w.shape[1] - 1)[:, 0]


def _step_mean(
    eps_of: Callable[[Tensor, int], Tensor],
    x: Tensor,
    t: int,
    a: float,
    a_next: float,
    s2: Variance,
    clip: bool,
    x0_variance: bool,
) -> tuple[Tensor, Variance]:
    """Kernel mean (K, M, C, H, W) and fresh variance (float or (K, M, C, 1, 1)) of a step."""
    eps = eps_of(x, t).view(-1, *x.shape[2:])
    x_flat = x.reshape(-1, *x.shape[2:])
    x0 = predict_x0(x_flat, eps, a, clip=clip)
    if clip:  # keep the step on the line through x_t and the x0 it actually uses
        eps = (x_flat - math.sqrt(a) * x0) / math.sqrt(1 - a)
    k_eps = torch.as_tensor(1 - a_next - s2, dtype=torch.float32).clamp(min=0.0).sqrt()
    mu = (math.sqrt(a_next) * x0 + k_eps * eps).view_as(x)
    if not x0_variance:
        return mu, s2
    # Var(x0 | x_t) ~ (1 - a) / a * (1 - E eps^2) (Analytic-DPM), per particle and channel
    e2 = eps.view_as(x).square().mean((-1, -2), keepdim=True)
    var_x0 = (1 - a) / a * (1 - e2).clamp(0.0, 1.0)
    coef = math.sqrt(a_next) - k_eps * math.sqrt(a / (1 - a))
    return mu, s2 + coef**2 * var_x0


def fps_smc(
    denoiser: Denoiser,
    schedule: DiffusionSchedule,
    observation: Observation,
    generators: Sequence[torch.Generator],
    *,
    num_steps: int = 100,
    particles: int = 8,
    ess_threshold: float = 0.5,
    max_batch: int = 256,
    precision: str = "fp32",
    clip: bool = True,
    ablation: Ablation | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Draw K posterior samples with FPS-SMC (module docstring), one per generator.

    Parameters
    ----------
    denoiser : callable ``(x_t (B, C, H, W), t (B,) int64) -> eps (B, C, H, W)``
        The network (or a :class:`~ebsdray.inverse.tiling.TiledDenoiser` around it).
    schedule : DiffusionSchedule
    observation : Observation
        ``y, mask`` (C, H, W) and per-channel ``sigma``; its device is the sampling device.
    generators : sequence of K torch.Generator
        Run k draws only from ``generators[k]`` (see :func:`sample_generators`).
    num_steps : int
        N respaced steps; noise pinning adds one per channel noise level and the fine tail up
        to N/4 more (``info["num_steps"]`` is the total N').
    particles : int
        M particles per run.
    ess_threshold : float in (0, 1]
        Resample a run when its ESS <= ess_threshold M (1.0: every step, as the paper; 0.5:
        only once the weights degenerate, standard practice).
    max_batch : int
        Largest batch handed to the network, within one run (each run's particles are their
        own network calls, so a sample never depends on which samples share its request).
    precision : {"fp32", "bf16", "auto"}
        Of the network only (:mod:`ebsdray.precision`); the sampler computes in float32.
    clip : bool
        Clamp x0hat to [-1, 1] (the data range); eps is recomputed from the clamped x0hat.
    ablation : Ablation, optional
        Research switches; default ``Ablation()``, the calibrated sampler.

    Returns
    -------
    samples : (K, C, H, W) float32 tensor on the observation's device
    info : dict
        ``ess`` (N', K) float64 ESS after weighting at each step; ``resampled`` (N', K) bool;
        ``log_evidence`` (K,) float64 SMC estimate of the log likelihood of each run's
        measurement path; ``network_evaluations`` (= N' K M); ``timesteps`` (N' model steps);
        and the settings used.
    """
    check_generators(generators)
    if particles < 1:
        raise ValueError(f"particles must be >= 1; got {particles}")
    if not 0.0 < ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be in (0, 1]; got {ess_threshold}")
    ablation = Ablation() if ablation is None else ablation
    plan = ablation.plan(schedule, num_steps, observation.sigma)
    eps_of = partial(evaluate, denoiser, max_batch=max_batch, precision=precision)
    with network_mode(denoiser):
        samples, info = _particle_filter(
            eps_of, observation, generators, plan, int(particles), ess_threshold, ablation, clip
        )
    info.update(asdict(ablation), ess_threshold=ess_threshold)
    info["precision"] = resolve_precision(precision, observation.y.device)
    return samples, info


def _particle_filter(
    eps_of: Callable[[Tensor, int], Tensor],
    observation: Observation,
    generators: Sequence[torch.Generator],
    plan: Plan,
    M: int,
    ess_threshold: float,
    ablation: Ablation,
    clip: bool,
) -> tuple[Tensor, dict[str, Any]]:
    """The filter of :func:`fps_smc` along ``plan``: samples (K, C, H, W) and the per-step info.

    ``eps_of(x (K, M, C, H, W), t) -> eps`` is the network.
    """
    device = observation.y.device
    K, shape, N = len(generators), observation.shape, len(plan.timesteps)
    y, m = observation.y.float(), observation.mask.float()
    abar, first_free = plan.abar, int(plan.pin.min())  # from first_free on some channel is free
    a_star = plan.pin_abar.to(device)  # (C,) level at which each channel is noiseless
    sig2 = ablation.noise_variance(observation.sigma.to(device))  # (C,)
    ess = torch.zeros(N, K, dtype=torch.float64)
    resampled = torch.zeros(N, K, dtype=torch.bool)
    log_evidence = torch.zeros(K, dtype=torch.float64, device=device)
    log_W = torch.full((K, M), -math.log(M), dtype=torch.float64, device=device)

    sd0 = _col((1.0 - abar[0] / a_star).clamp(min=0.0).sqrt())
    y_t = math.sqrt(abar[0]) * y + sd0 * m * randn_per_run(generators, shape, device)
    x = m * y_t.unsqueeze(1) + (1 - m) * randn_per_run(generators, (M, *shape), device)
    for i, t in enumerate(plan.timesteps):
        a, a_next = abar[i], abar[i + 1]
        measured = plan.pin.to(device) >= i + 1  # (C,) channels measured at level a'
        m_i, tail = m * _col(measured.double()), ablation.fine_tail and i >= first_free
        # 1. next level of each run's measurement path
        r = torch.where(measured, a / a_star, 0.5)  # levels relative to a* (dummies where free)
        r_next = torch.where(measured, (a_next / a_star).clamp(max=1.0), 0.75)
        s2_y = ablation.path_variance(r, r_next, tail)
        y_next = _path_step(generators, y, y_t, a, a_next, r, r_next, s2_y, m_i)
        y_next = torch.where(measured.view(-1, 1, 1), y_next, y_t)  # free: stays put
        # 2. kernel of every particle (one batched network call)
        s2 = ablation.kernel_variance(a, a_next, measured, tail)
        mu, s2 = _step_mean(eps_of, x, t, a, a_next, s2, clip, ablation.x0_variance)
        # 3. weights: the parent's predictive likelihood of y' on the measured entries
        A = _col(a_next * sig2)
        log_W, log_z = _reweight(log_W, y_next, mu, s2 + A, m_i)
        log_evidence += log_z
        ess_i = 1.0 / torch.exp(2.0 * log_W).sum(1)
        ess[i] = ess_i.cpu()
        # 4. resample (one uniform per run and step whether used or not, so a run's random
        # stream never depends on the other runs' weights)
        u = rand_per_run(generators, device)
        do = ess_i <= ess_threshold * M * (1 + 1e-9)
        resampled[i] = do.cpu()
        if bool(do.any()):
            log_W, mu, s2 = _resample(log_W, mu, s2, u, do)
        # 5. propose from kernel x likelihood
        x, y_t = _propose(generators, mu, s2, A, y_next, m_i), y_next

    pick = _categorical(log_W, rand_per_run(generators, device))
    samples = x[torch.arange(K, device=device), pick].float().clone()
    return samples, {
        "ess": ess,
        "resampled": resampled,
        "log_evidence": log_evidence.cpu(),
        "network_evaluations": N * K * M,
        "num_steps": N,
        "timesteps": plan.timesteps,
        "particles": M,
    }


def _path_step(
    generators: Sequence[torch.Generator],
    y: Tensor,
    y_t: Tensor,
    a: float,
    a_next: float,
    r: Tensor,
    r_next: Tensor,
    s2_y: Tensor,
    m_i: Tensor,
) -> Tensor:
    """Next level y' (K, C, H, W) of each run's measurement path y_t (K, C, H, W).

    The forward process's bridge from ``r`` to ``r'`` (C,), the levels relative to each
    channel's pin level, with fresh variance ``s2_y`` (C,) on the measured entries ``m_i``
    (C, H, W).
    """
    z_y = randn_per_run(generators, y.shape, y.device) if a_next < 1.0 else None
    k_y = ((1.0 - r_next - s2_y).clamp(min=0.0) / (1.0 - r)).sqrt()
    y_next = math.sqrt(a_next) * y + _col(k_y) * (y_t - math.sqrt(a) * y)
    if z_y is not None:
        y_next = y_next + _col(s2_y.clamp(min=0.0).sqrt()) * m_i * z_y
    return y_next


def _reweight(
    log_W: Tensor, y_next: Tensor, mu: Tensor, var: Variance, m_i: Tensor
) -> tuple[Tensor, Tensor]:
    """Log weights (K, M) times each parent's predictive likelihood ``N(y'; mu, var)`` on the
    measured entries ``m_i`` (C, H, W), normalized; and the (K,) log normalizers."""
    r2 = (m_i * (y_next.unsqueeze(1) - mu).square() / var).flatten(-3).sum(-1)
    log_det = (m_i * torch.log(2 * math.pi * var)).flatten(-3).sum(-1)
    log_W = log_W - 0.5 * (r2 + log_det).double()
    log_z = torch.logsumexp(log_W, dim=1)
    return log_W - log_z.unsqueeze(1), log_z


def _resample(
    log_W: Tensor, mu: Tensor, s2: Variance, u: Tensor, do: Tensor
) -> tuple[Tensor, Tensor, Variance]:
    """Systematic resampling (uniforms u (K,)) of the runs where ``do`` (K,) bool: their
    particles' kernel means (K, M, C, H, W) and per-particle variances, equal weights after."""
    M = log_W.shape[1]
    anc = systematic_resample(log_W.exp(), u)
    anc = torch.where(do.view(-1, 1), anc, torch.arange(M, device=u.device))
    if isinstance(s2, Tensor) and s2.ndim == mu.ndim:  # per-particle variance
        s2 = _gather(s2, anc)
    return torch.where(do.view(-1, 1), -math.log(M), log_W), _gather(mu, anc), s2


def _propose(
    generators: Sequence[torch.Generator],
    mu: Tensor,
    s2: Variance,
    A: Tensor,
    y_next: Tensor,
    m_i: Tensor,
) -> Tensor:
    """Particles x' (K, M, C, H, W) from kernel ``N(mu, s2)`` times likelihood ``N(y'; x', A)``
    on the measured entries ``m_i`` (the exact product of Gaussians)."""
    if not (isinstance(s2, Tensor) or s2 > 0):
        return mu  # last step without x0 variance: s2 = 0, x = x0hat
    z = randn_per_run(generators, mu.shape[1:], mu.device)
    var = s2 + A
    measured = (A * mu + s2 * y_next.unsqueeze(1)) / var + torch.sqrt(s2 * A / var) * z
    return m_i * measured + (1 - m_i) * (mu + torch.as_tensor(s2).sqrt() * z)


def _col(v: Tensor) -> Tensor:
    """(C,) -> (C, 1, 1) float32."""
    return v.view(-1, 1, 1).float()


def _gather(v: Tensor, anc: Tensor) -> Tensor:
    """Rows of (K, M, ...) ``v`` picked by ancestor indices (K, M)."""
    idx = anc.view(*anc.shape, *([1] * (v.ndim - 2))).expand(-1, -1, *v.shape[2:])
    return torch.gather(v, 1, idx)
