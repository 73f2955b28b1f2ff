"""The public Python API: a sampling budget, reconstruction of observed volumes, evaluation.

    import ebsdray
    model = ebsdray.load_model("multimodal")
    vol = ebsdray.synthetic_volume((4, 64, 64), seed=7)
    obs = ebsdray.observe(vol, ebsd_fraction=1 / 16, pattern="grid", pl_noise=0.05, seed=0)
    result = ebsdray.reconstruct(obs, model, budget=ebsdray.Budget(samples=8), seed=0)
    result.sections[0].boundary                  # (H, W) bool
    ebsdray.evaluate(result, vol)                # {"chamfer": ..., "sobel_chamfer": ..., ...}

Every posterior sample k of section d draws from ``SeedSequence([seed, d, k])``: results do not
depend on how sections and samples are split over processes or Ray replicas.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ebsdray.aggregate import aggregate
from ebsdray.diffusion.pretrained import DiffusionModel
from ebsdray.inverse.baseline import replacement_sampler
from ebsdray.inverse.fps_smc import fps_smc, sample_generators
from ebsdray.inverse.tiling import TiledDenoiser
from ebsdray.metrics import (
    blurred_bce,
    chamfer,
    disorientation_stats,
    ebsd_baselines,
    grain_boundaries,
    psnr,
    sobel_baseline,
)
from ebsdray.observation import ObservedSection, ObservedVolume

SAMPLERS = ("fps_smc", "replacement")


@dataclass(frozen=True)
class Budget:
    """How much compute a reconstruction may spend.

    Attributes
    ----------
    samples : K, posterior samples per section.
    steps : N, respaced diffusion steps per sample.
    particles : M, SMC particles per sample (FPS-SMC); cost is N * M * K network evaluations.
    sampler : "fps_smc" (default) or "replacement" (cheaper baseline: N * K evaluations).
    per_section : optional ``{section: K}`` overriding ``samples`` for some sections.
    """

    samples: int = 8
    steps: int = 50
    particles: int = 4
    sampler: str = "fps_smc"
    per_section: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("samples", "steps", "particles"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"Budget.{name} must be an integer >= 1; got {value!r}")
        if self.steps > 1000:
            raise ValueError(
                f"Budget.steps must be <= 1000 (the training schedule); got {self.steps}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {SAMPLERS}")
        bad = {k: v for k, v in self.per_section.items() if int(v) < 1}
        if bad:
            raise ValueError(f"per-section sample counts must be >= 1; got {bad}")

    def samples_for(self, section: int) -> int:
        """K for ``section``."""
        return int(self.per_section.get(section, self.samples))

    def network_evaluations(self, section: int) -> int:
        """N * M * K (FPS-SMC) or N * K (replacement) for ``section``."""
        m = self.particles if self.sampler == "fps_smc" else 1
        return self.steps * m * self.samples_for(section)


@dataclass
class SectionResult:
    """The task outputs of one section (arrays are numpy).

    Attributes
    ----------
    index : section index.
    boundary : (H, W) bool grain boundaries; None for the EBSD-only model.
    boundary_confidence : (H, W) in [0, 1] (mean normalized Sobel map over the K samples).
    ebsd_quaternions : (H, W, 4) super-resolved orientations; None for the PL-only model.
    pl_denoised : (C_PL, H, W) denoised PL channels; None for the EBSD-only model.
    uncertainty : per-pixel maps (``boundary_variance``, ``ebsd_spread_deg``, ``pl_std``).
    samples : (K, C, H, W) raw posterior samples when requested, else None.
    info : sampler facts (``network_evaluations``, ``seconds``, mean ESS, K).
    """

    index: int
    boundary: np.ndarray | None
    boundary_confidence: np.ndarray | None
    ebsd_quaternions: np.ndarray | None
    pl_denoised: np.ndarray | None
    uncertainty: dict[str, np.ndarray]
    samples: np.ndarray | None
    info: dict[str, Any]


@dataclass
class Reconstruction:
    """Results of :func:`reconstruct`: one :class:`SectionResult` per section, plus provenance."""

    sections: list[SectionResult]
    observation: ObservedVolume
    model: str
    variant: str
    budget: Budget
    seed: int
    codec: Any

    def __len__(self) -> int:
        return len(self.sections)

    def stack(self, name: str) -> np.ndarray:
        """One output over all sections, e.g. ``stack("boundary")`` -> (D, H, W)."""
        return np.stack([getattr(s, name) for s in self.sections])


def sample_section(
    model: DiffusionModel,
    section: ObservedSection,
    budget: Budget,
    seed: int,
    sample_indices: Sequence[int],
    *,
    bf16: bool = True,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Draw the posterior samples ``sample_indices`` of one section (the unit of work a Ray
    replica runs). Returns samples (k, C, H, W) float32 and the sampler's info."""
    obs = section.observation.for_variant(model.variant)
    if obs.channels != model.channels:
        raise ValueError(
            f"the observation has {obs.channels} channels but the {model.variant!r} model takes "
            f"{model.channels}; observe with the model's codec"
        )
    h, w = obs.shape[1:]
    denoiser = (
        model.net
        if (h, w) == (model.window, model.window)
        else TiledDenoiser(model.net, model.window)
    )
    device = next(model.net.parameters()).device
    gens = sample_generators(seed, section.index, list(sample_indices), device=device)
    obs = obs.to(device)
    if budget.sampler == "fps_smc":
        return fps_smc(
            denoiser,
            model.schedule,
            obs,
            gens,
            num_steps=budget.steps,
            particles=budget.particles,
            autocast=bf16,
        )
    return replacement_sampler(
        denoiser, model.schedule, obs, gens, num_steps=budget.steps, autocast=bf16
    )


def reconstruct_section(
    model: DiffusionModel,
    section: ObservedSection,
    samples: torch.Tensor | np.ndarray,
    *,
    keep_samples: bool = False,
    info: dict[str, Any] | None = None,
    seed: int = 0,
) -> SectionResult:
    """Merge one section's K samples into its task outputs (pure; no sampling)."""
    obs = section.observation.for_variant(model.variant)
    out = aggregate(
        torch.as_tensor(samples).float(),
        model.codec,
        observed=obs.y,
        mask=obs.mask,
        variant=model.variant,
        seed=seed,
    )
    return SectionResult(
        index=section.index,
        boundary=out.get("boundary"),
        boundary_confidence=out.get("boundary_confidence"),
        ebsd_quaternions=out.get("ebsd_quaternions"),
        pl_denoised=out.get("pl_denoised"),
        uncertainty=out.get("uncertainty", {}),
        samples=np.asarray(samples, dtype=np.float32) if keep_samples else None,
        info=dict(info or {}),
    )


def _sections(observation: ObservedVolume, sections: Sequence[int] | None) -> list[int]:
    if sections is None:
        return list(range(len(observation)))
    bad = [s for s in sections if not 0 <= int(s) < len(observation)]
    if bad:
        raise ValueError(f"sections {bad} out of range for a volume of {len(observation)} sections")
    return [int(s) for s in sections]


def reconstruct(
    observation: ObservedVolume,
    model: DiffusionModel,
    budget: Budget | None = None,
    *,
    seed: int = 0,
    sections: Sequence[int] | None = None,
    keep_samples: bool = False,
    bf16: bool = True,
    progress: bool = True,
) -> Reconstruction:
    """Reconstruct every (or the given) section of an observed volume, in this process.

    Parameters
    ----------
    observation : from :func:`ebsdray.observe`.
    model : from :func:`ebsdray.load_model` (multimodal, EBSD-only or PL-only).
    budget : samples, steps, particles, sampler (default ``Budget()``: K = 8, N = 50, M = 4).
    seed : base seed of the posterior samples.
    sections : subset of section indices (default all).
    keep_samples : keep the raw K samples in each result.
    bf16 : bf16 autocast for the network (about 2x faster on AVX-512-bf16 CPUs).

    Returns
    -------
    Reconstruction with one SectionResult per section.
    """
    budget = budget or Budget()
    indices = _sections(observation, sections)
    results = []
    bar = tqdm(indices, desc=f"reconstructing ({model.variant})", disable=not progress)
    for i in bar:
        section = observation.section(i, model.codec)
        k = budget.samples_for(i)
        t0 = time.perf_counter()
        samples, info = sample_section(model, section, budget, seed, range(k), bf16=bf16)
        facts = {
            "samples": k,
            "network_evaluations": int(info.get("network_evaluations", 0)),
            "seconds": time.perf_counter() - t0,
        }
        if "ess" in info:
            facts["mean_ess"] = float(torch.as_tensor(info["ess"]).float().mean())
        results.append(
            reconstruct_section(
                model, section, samples, keep_samples=keep_samples, info=facts, seed=seed
            )
        )
    return Reconstruction(
        sections=results,
        observation=observation,
        model=model.source,
        variant=model.variant,
        budget=budget,
        seed=seed,
        codec=model.codec,
    )


def _boundary_metrics(prefix: str, boundary, confidence, true: np.ndarray) -> dict[str, float]:
    c = chamfer(boundary, true)
    return {
        f"{prefix}chamfer": c["bidirectional"],
        f"{prefix}chamfer_forward": c["forward"],
        f"{prefix}chamfer_backward": c["backward"],
        f"{prefix}blurred_bce": blurred_bce(confidence, true),
    }


def _ebsd_metrics(prefix: str, q: np.ndarray, truth) -> dict[str, float]:
    d = disorientation_stats(q, truth.quaternions[0], truth.grain_ids[0], valid=truth.valid[0])
    return {
        f"{prefix}disorientation_mean_deg": d["mean_deg"],
        f"{prefix}disorientation_boundary_deg": d["boundary_deg"],
    }


def section_metrics(
    result: SectionResult, section: ObservedSection, codec, prefix: str = ""
) -> dict[str, float]:
    """Metrics of one section against its ground truth, for the model and the baselines.

    The baselines (Sobel on the observed PL, nearest / bilinear upsampling of the observed EBSD,
    the noisy PL itself) are computed from the same observation, so their names differ only by
    their prefix: ``chamfer`` / ``sobel_chamfer``, ``disorientation_mean_deg`` /
    ``bilinear_disorientation_mean_deg``, ``pl_psnr`` / ``observed_pl_psnr``.
    """
    truth = section.truth
    if truth is None:
        raise ValueError(f"section {section.index} has no ground truth to evaluate against")
    true_b = grain_boundaries(truth.grain_ids[0])
    obs = section.observation
    out: dict[str, float] = {}
    if result.boundary is not None:
        out |= _boundary_metrics(prefix, result.boundary, result.boundary_confidence, true_b)
    if result.ebsd_quaternions is not None:
        out |= _ebsd_metrics(prefix, result.ebsd_quaternions, truth)
    if result.pl_denoised is not None and section.clean is not None:
        out[f"{prefix}pl_psnr"] = psnr(
            result.pl_denoised, section.clean[3:].numpy(), data_range=2.0
        )
    if prefix:  # baselines once, with the main model
        return out
    sobel = sobel_baseline(obs.y[3:])
    out |= _boundary_metrics("sobel_", sobel["boundary"], sobel["boundary_confidence"], true_b)
    if section.clean is not None:
        out["observed_pl_psnr"] = psnr(obs.y[3:].numpy(), section.clean[3:].numpy(), data_range=2.0)
    if obs.mask[:3].sum() > 0:
        for name, q in ebsd_baselines(obs.y, obs.mask, codec).items():
            out |= _ebsd_metrics(f"{name}_", q, truth)
    return out


def evaluate(
    result: Reconstruction, volume: Any = None, *, prefix: str = "", per_section: bool = False
) -> dict[str, float] | list[dict[str, float]]:
    """Metrics (design.md section 8) of a reconstruction against the ground truth.

    Parameters
    ----------
    result : from :func:`reconstruct`.
    volume : the ground truth; default: the one the observation was simulated from. Given
        explicitly, it must have the observation's shape.
    prefix : prepended to the model's metric names (e.g. ``"pl_model_"`` for a PL-only
        reconstruction compared in one table); baselines are computed only without a prefix.
    per_section : return one dict per section instead of the mean over sections.

    Returns
    -------
    Flat dict: ``chamfer``, ``chamfer_forward``, ``chamfer_backward``, ``blurred_bce``,
    ``disorientation_mean_deg``, ``disorientation_boundary_deg``, ``pl_psnr`` (what the model
    produces), the same names prefixed ``sobel_``, ``nearest_``, ``bilinear_`` for the baselines,
    and ``observed_pl_psnr``.
    """
    observation = result.observation
    if volume is not None:
        if tuple(volume.shape) != tuple(observation.shape):
            raise ValueError(
                f"volume shape {volume.shape} differs from the observation's {observation.shape}"
            )
        observation = ObservedVolume(volume, observation.spec)
    rows = []
    for s in result.sections:
        section = observation.section(s.index, result.codec)
        rows.append(section_metrics(s, section, result.codec, prefix))
    if per_section:
        return rows
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
