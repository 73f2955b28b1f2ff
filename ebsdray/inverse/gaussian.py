"""A Gaussian prior with its exact denoiser and exact posterior: ground truth for samplers.

For data ``x0 ~ N(mu, Sigma)`` (flattened to d = C H W entries) and ``x_t = sqrt(abar) x0 +
sqrt(1 - abar) e`` the noisy marginal is ``N(sqrt(abar) mu, C_t)`` with
``C_t = abar Sigma + (1 - abar) I``. The MMSE noise prediction (what a perfectly trained
epsilon network returns) is

    eps*(x_t, t) = E[e | x_t] = Cov(e, x_t) C_t^{-1} (x_t - sqrt(abar) mu)
                 = sqrt(1 - abar) C_t^{-1} (x_t - sqrt(abar) mu),

computed with the eigendecomposition ``Sigma = U diag(lam) U^T`` as
``sqrt(1 - abar) U diag(1 / (abar lam + 1 - abar)) U^T (x_t - sqrt(abar) mu)``.

For ``y_O = x_O + n_O`` with ``n ~ N(0, D)`` on the observed set O the posterior is Gaussian:
``mean = mu + Sigma[:, O] (Sigma[O, O] + D)^{-1} (y_O - mu_O)`` and
``cov = Sigma - Sigma[:, O] (Sigma[O, O] + D)^{-1} Sigma[O, :]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebsdray.diffusion.schedule import DiffusionSchedule
from ebsdray.inverse.operators import Observation

__all__ = ["GaussianPrior", "calibration", "squared_exponential_covariance", "toy_problem"]


def squared_exponential_covariance(
    channels: int,
    height: int,
    width: int,
    length: float = 1.5,
    std: float = 0.5,
    channel_correlation: float = 0.7,
    jitter: float = 1e-4,
) -> Tensor:
    """A smooth image covariance: squared-exponential in space times a channel correlation.

    Returns
    -------
    (d, d) float64 tensor, d = channels * height * width, in the (C, H, W) flattening order.
    """
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    p = torch.stack([yy.flatten(), xx.flatten()], 1)
    space = torch.exp(-torch.cdist(p, p).square() / (2 * length**2))
    chan = torch.full((channels, channels), channel_correlation, dtype=torch.float64)
    chan.fill_diagonal_(1.0)
    cov = std**2 * torch.kron(chan, space)
    return cov + jitter * torch.eye(cov.shape[0], dtype=torch.float64)


class GaussianPrior:
    """``N(mu, Sigma)`` over (C, H, W) images with the exact epsilon denoiser.

    Parameters
    ----------
    mean : (C, H, W) tensor
    cov : (d, d) tensor, d = C H W, symmetric positive definite
    schedule : DiffusionSchedule
        Gives ``abar`` for the model timesteps the denoiser is called with.
    """

    def __init__(self, mean: Tensor, cov: Tensor, schedule: DiffusionSchedule) -> None:
        self.shape = tuple(mean.shape)
        self.mu = mean.double().flatten()
        self.cov = cov.double()
        d = self.mu.numel()
        if self.cov.shape != (d, d):
            raise ValueError(f"cov must be ({d}, {d}) for a mean of shape {self.shape}")
        self.lam, self.U = torch.linalg.eigh(self.cov)
        if bool((self.lam <= 0).any()):
            raise ValueError("cov must be positive definite")
        self.abar = schedule.alphas_cumprod

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Exact ``eps = E[e | x_t]`` for (B, C, H, W) ``x_t`` and (B,) timesteps."""
        a = self.abar[t.cpu()].to(x_t.device).view(-1, 1)
        U, lam, mu = (v.to(x_t.device) for v in (self.U, self.lam, self.mu))
        r = x_t.double().flatten(1) - a.sqrt() * mu
        z = (r @ U) / (a * lam + 1 - a)
        return ((1 - a).sqrt() * (z @ U.T)).view_as(x_t).to(x_t.dtype)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, C, H, W) float32 prior draws."""
        z = torch.randn(n, self.mu.numel(), generator=generator, dtype=torch.float64)
        x = self.mu + (z * self.lam.sqrt()) @ self.U.T
        return x.view(n, *self.shape).float()

    def posterior(self, observation: Observation) -> tuple[Tensor, Tensor]:
        """Exact posterior mean (C, H, W) and covariance (d, d), both float64."""
        o = observation.mask.cpu().flatten() > 0
        y = observation.y.cpu().double().flatten()[o]
        noise = observation.noise_std.cpu().double().flatten()[o] ** 2
        S_xo = self.cov[:, o]
        G = torch.linalg.solve(self.cov[o][:, o] + torch.diag(noise), S_xo.T)  # (|O|, d)
        mean = self.mu + G.T @ (y - self.mu[o])
        cov = self.cov - S_xo @ G
        return mean.view(self.shape), cov


def calibration(samples: Tensor, mean: Tensor, cov: Tensor, mask: Tensor) -> dict[str, float]:
    """Compare K independent posterior samples with the exact Gaussian posterior.

    Parameters
    ----------
    samples : (K, C, H, W) tensor
    mean : (C, H, W) exact posterior mean
    cov : (d, d) exact posterior covariance
    mask : (C, H, W) observation mask

    Returns
    -------
    dict with
        ``mean_z_rms``: RMS over entries of ``(sample mean - mean) / (sample std / sqrt(K))``;
        ~1 for an unbiased sampler (for d entries its spread is about sqrt(1 / (2 d))).
        ``mean_z_max``: the largest ``|z|``.
        ``bias_sd``: RMS over entries of ``(sample mean - mean) / posterior sd``: the bias in
        posterior standard deviations (plus Monte Carlo noise of about ``sqrt(ratio / K)``).
        ``var_ratio_observed`` / ``var_ratio_unobserved``: mean over those entries of sample
        variance / posterior variance (1 = calibrated; Monte Carlo sd ~ sqrt(2 / K) per entry).
    """
    K = samples.shape[0]
    s = samples.double().flatten(1).cpu()
    mu = mean.double().flatten().cpu()
    var = torch.diagonal(cov).cpu()
    s_mean, s_var = s.mean(0), s.var(0)
    z = (s_mean - mu) / (s_var / K).sqrt()
    o = mask.flatten().cpu() > 0
    ratio = s_var / var
    nan = float("nan")
    return {
        "mean_z_rms": float(z.square().mean().sqrt()),
        "mean_z_max": float(z.abs().max()),
        "bias_sd": float(((s_mean - mu) / var.sqrt()).square().mean().sqrt()),
        "var_ratio_observed": float(ratio[o].mean()) if bool(o.any()) else nan,
        "var_ratio_unobserved": float(ratio[~o].mean()) if bool((~o).any()) else nan,
    }


def toy_problem(
    kind: str, schedule: DiffusionSchedule, seed: int = 0
) -> tuple[GaussianPrior, Observation, Tensor, Tensor, Tensor]:
    """A Gaussian prior, one observation of a prior draw, and the exact posterior.

    Parameters
    ----------
    kind : {"gauss16", "multimodal"}
        "gauss16": 1 x 4 x 4 (16-D), half the pixels observed at random with noise 0.05.
        "multimodal": 2 x 8 x 8 (128-D), channels correlated 0.7; channel 0 ("EBSD") on a
        grid of step 2 (fraction 1/4) with noise 0.01, channel 1 ("PL") fully observed with
        noise 0.1.
    schedule : DiffusionSchedule
    seed : int
        Seeds the ground truth, the mask and the noise.

    Returns
    -------
    prior, observation, x (C, H, W) ground truth, posterior mean (C, H, W), posterior cov (d, d)
    """
    from ebsdray.inverse.operators import MultimodalOperator

    if kind == "gauss16":
        shape = (1, 4, 4)
        op = MultimodalOperator(
            pl_channels=0, ebsd_channels=1, pattern="random", ebsd_fraction=0.5, ebsd_noise=0.05
        )
    elif kind == "multimodal":
        shape = (2, 8, 8)
        op = MultimodalOperator(
            pl_channels=1, ebsd_channels=1, pattern="grid", ebsd_fraction=0.25,
            ebsd_noise=0.01, pl_noise=0.1,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown toy problem {kind!r}; expected 'gauss16' or 'multimodal'")
    cov = squared_exponential_covariance(*shape, length=1.5, std=0.5)
    prior = GaussianPrior(torch.full(shape, 0.1), cov, schedule)
    g = torch.Generator().manual_seed(seed)
    x = prior.sample(1, g)[0]
    obs = op.observe(x, g)
    mean, post_cov = prior.posterior(obs)
    return prior, obs, x, mean, post_cov
